"""Image upload-then-analyze service."""

__version__ = "0.1.0"
