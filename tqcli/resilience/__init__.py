"""Resilience: circuit breakers and the dead-letter queue."""
