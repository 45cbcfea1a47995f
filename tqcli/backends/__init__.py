"""Execution backends and their discovery through entry points."""
