"""Streaming multipart/form-data: the parser and the reader over it."""
