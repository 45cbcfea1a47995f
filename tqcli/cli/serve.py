"""`tqcli serve`: the HTTP API and the dashboard, on the same database and the same checks as the CLI."""

import sys
from typing import Annotated, List, Optional

import typer

from tqcli.cli import state
from tqcli.errors import InvalidInput


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface), or one of this machine's addresses.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on; 0 picks a free one (the printed URL names it).")] = 8765,
    public_metrics: Annotated[bool, typer.Option("--public-metrics", help="Serve /metrics without a token (for a Prometheus scraper on a trusted network).")] = False,
    allow_host: Annotated[Optional[List[str]], typer.Option("--allow-host", metavar="NAME", help="Also answer requests for this Host name (a reverse proxy's public name); repeatable. IP addresses and localhost are always answered.")] = None,
) -> None:
    """Serve the HTTP API and the dashboard until SIGTERM or Ctrl-C (then exit 0).

    Prints one line on stderr with the dashboard's URL and a login token for
    you; the token ends when serve stops. API clients send 'Authorization:
    Bearer TOKEN' with a token from 'tqcli token create USER'. Requests are
    checked with the same roles as the CLI. Needs the operate permission and
    the optional extra: pip install 'tqcli[server]'. Creates the database if
    it does not exist yet, as queue set does. docs/server.md has the
    API, the roles' views and how to run it behind a reverse proxy.
    """
    from tqcli.server import INSTALL_HINT, missing_extra

    missing = missing_extra()
    if missing:
        raise InvalidInput(f"serve needs the server extra ({missing} is not installed): {INSTALL_HINT}")
    names = [name.strip() for name in allow_host or []]
    if any(not name or "/" in name or " " in name for name in names):
        raise InvalidInput("--allow-host takes a host name such as queue.example.com (no scheme, path or spaces)")
    from tqcli.server.launcher import serve as run_server

    queue = state(ctx).queue(create=True)  # a dashboard on a new, empty queue is a fine first look

    def announce(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    run_server(queue, host=host, port=port, public_metrics=public_metrics, extra_hosts=names, announce=announce)
