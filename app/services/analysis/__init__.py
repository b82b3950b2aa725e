"""The analysis use case: cache, single flight, fair scheduling, the seed-003 form."""
