"""The audit entries' live feed (being built): one poller per server process, fanned out to every client."""

from fastapi import FastAPI


async def start(app: FastAPI) -> None:
    """Start the poller at the app's startup."""


async def stop(app: FastAPI) -> None:
    """Stop the poller and end every stream at shutdown."""
