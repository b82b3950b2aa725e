"""Stored images: their catalog, the ingest of an upload, Idempotency-Keys."""
