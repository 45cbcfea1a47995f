"""Audit chain and identity."""
