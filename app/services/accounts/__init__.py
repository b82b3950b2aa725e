"""Accounts: sign-up and sign-in, callers (principals), credits, erasure."""
