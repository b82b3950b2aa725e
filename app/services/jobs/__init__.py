"""Seed 004's contour jobs: the use case and its two queues (files, PostgreSQL)."""
