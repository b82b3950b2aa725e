"""Signed webhooks (Standard Webhooks): callback registration, signing, durable delivery."""
