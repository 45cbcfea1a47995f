"""`tqcli serve`: the HTTP API, the events stream and the dashboard (the optional extra `tqcli[server]`).

Nothing here is imported by `import tqcli` or by any other command; the
modules below import FastAPI and uvicorn, which only this extra installs.
"""

INSTALL_HINT = "pip install 'tqcli[server]'"


def missing_extra() -> str | None:
    """The name of a package the server needs that is not installed, or None when it can run."""
    import importlib.util

    for name in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(name) is None:
            return name
    return None
