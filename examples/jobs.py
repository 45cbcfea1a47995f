"""Small task functions for the demo and the sample DAGs (run with the `simple` backend)."""

import hashlib
import time


def resize(path: str, width: int) -> dict:
    """Pretend to resize an image; returns what it would have written."""
    time.sleep(0.05)
    return {"path": path.replace(".", f"-{width}."), "width": width}


def checksum(text: str) -> str:
    """SHA-256 of some text."""
    return hashlib.sha256(text.encode()).hexdigest()


def extract(day: str) -> dict:
    """First step of the sample ETL: pretend to fetch a day's rows."""
    return {"day": day, "rows": 1200}


def transform(day: str) -> dict:
    """Second step of the sample ETL."""
    return {"day": day, "clean_rows": 1187}


def fail(message: str = "upstream returned 503") -> None:
    """Always fails: shows retries and the dead-letter queue."""
    raise RuntimeError(message)
