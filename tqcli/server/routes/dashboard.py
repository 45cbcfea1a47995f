"""The dashboard: `GET /` (the page, and the login redirect of `/?token=`) and its files under `/static/`.

The page is plain HTML, CSS and JavaScript shipped in the package (no build
step, nothing from another origin), so every answer here carries a
Content-Security-Policy allowing only this origin: no inline script can run
even if some task name slipped through unescaped. The page reads the JSON
API with the session cookie that `/?token=` sets.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from tqcli.security.tokens import Unauthenticated
from tqcli.server.sessions import SESSION_COOKIE, authenticate, pool_of

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the login URL's token never leaves in a Referer
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}

BAD_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tqcli: login failed</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="login-failed"><main class="notice">
<h1>This login link does not work</h1>
<p>{message}</p>
<p>Open the login URL that <code>tqcli serve</code> printed again (it changes each time the server starts),
or create a token with <code>tqcli token create USER</code> and open <code>/?token=TOKEN</code>.</p>
</main></body></html>
"""


def _secure(request: Request) -> bool:
    """Whether the browser reached us over https (directly, or as the proxy uvicorn trusts says)."""
    return request.url.scheme == "https"


@router.get("/", include_in_schema=True, tags=["dashboard"], response_class=HTMLResponse,
            responses={302: {"description": "`?token=` was valid: the session cookie is set, go to `/`"},
                       401: {"description": "`?token=` is unknown, expired or revoked (an HTML page)"}})
def dashboard(request: Request, token: str | None = None) -> Response:
    """The dashboard page; `/?token=T` logs in: sets the session cookie for T and redirects to `/`."""
    if token is None:
        response: Response = FileResponse(STATIC / "index.html", media_type=TYPES[".html"], headers=HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response
    try:
        authenticate(pool_of(request), token)
    except Unauthenticated as error:
        page = BAD_LOGIN.format(message=html.escape(str(error)))
        return HTMLResponse(page, status_code=401, headers={**HEADERS, "Cache-Control": "no-store"})
    response = RedirectResponse("/", status_code=302, headers={**HEADERS, "Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", path="/", secure=_secure(request),
    )
    return response


@router.get("/static/{name:path}", include_in_schema=False)
def static(name: str) -> Response:
    """A file of the dashboard (its script, styles, vendored libraries); 404 for anything outside the folder."""
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file() or path.suffix not in TYPES:
        return Response(
            '{"error": "no such file of the dashboard", "exit_code": 3}', status_code=404,
            media_type="application/json", headers={"X-Content-Type-Options": "nosniff"},
        )
    response = FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)
    response.headers["Cache-Control"] = "no-cache"  # revalidated by ETag: an upgraded package is seen at once
    return response
