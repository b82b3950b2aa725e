"""Downloading an image URL under the SSRF policy."""
