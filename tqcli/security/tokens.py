"""API tokens for `tqcli serve`: `token create|list|revoke`, the login token of `serve`, and authenticating a request.

A token's text is `tq_<id>_<secret>`, the secret `secrets.token_urlsafe(32)`
(256 random bits). Only the SHA-256 hex of the whole text is stored, so a
copy of the database lets no one in; a presented token is hashed and
compared in constant time. A token acts as its user for RBAC and in the
audit chain. Managing tokens is `admin` (or anyone while the database runs
open); `serve` makes its own login token with `operate`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from tqcli.core.context import Context, retrying
from tqcli.errors import Conflict, InvalidInput, NotFound, StorageError, TqcliError
from tqcli.security.roles import check_user
from tqcli.store.base import TokenRow
from tqcli.units import US_PER_SECOND, check_seconds, format_duration, format_time

PREFIX = "tq_"
LOGIN_NAME = "serve login"
# A use is recorded at most this often per token: authenticating stays a read.
TOUCH_EVERY = 60 * US_PER_SECOND

_TEXT = re.compile(r"tq_([1-9][0-9]{0,17})_([A-Za-z0-9_-]{32,128})")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_REJECTED = (
    "the token is unknown, expired or revoked: create one with 'tqcli token create USER', "
    "or open the login URL tqcli serve printed"
)


class Unauthenticated(TqcliError):
    """No token, or one that is unknown, expired, revoked or malformed (HTTP 401)."""

    exit_code = 4


@dataclass(frozen=True)
class TokenInfo:
    """A token as `token list` shows it (never its text or hash); times in microseconds, None when unset."""

    id: int
    user: str
    name: str | None
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None

    def active(self, now: int) -> bool:
        """Whether the token lets a request in at `now`: not revoked, not expired."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self) -> dict[str, Any]:
        """The token as in `token list --json`."""
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
            "last_used_at": format_time(self.last_used_at),
            "revoked_at": format_time(self.revoked_at),
        }


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(row.id, row.user_name, row.name, row.created_at, row.expires_at, row.last_used_at, row.revoked_at)


def digest(text: str) -> str:
    """The SHA-256 hex of a token's text, as stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_label(name: str | None) -> str | None:
    """`name` if it is a usable label (1-200 characters, no control characters), or None."""
    if name is not None and (not isinstance(name, str) or not _LABEL.fullmatch(name) or not name.strip()):
        raise InvalidInput(f"invalid --name {name!r}: give a label of 1-200 characters without control characters")
    return name


def check_lifetime(seconds: float, *, what: str = "--expires") -> float:
    """`seconds` if a token may live that long: more than 0, at most 100 years."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidInput(f"invalid {what} {seconds!r}: give a duration such as 30d or 12h")
    check_seconds(float(seconds), what=what, text=seconds)
    if seconds <= 0:
        raise InvalidInput(f"invalid {what} {seconds!r}: a token must live longer than 0 s; give a duration such as 30d or 12h")
    return float(seconds)


class TokenService:
    """`token create|list|revoke`, the login token of `serve`, and `authenticate` for each request."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @retrying
    def create(self, user: str, *, expires: float | None = None, name: str | None = None) -> tuple[TokenInfo, str]:
        """A new token acting as `user`, living `expires` seconds (None: until revoked); its info and its text, shown only now."""
        check_user(user)
        check_label(name)
        if expires is not None:
            expires = check_lifetime(expires)
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "admin", f"create a token for {user}")
            return self._insert(tx, journal, user, name, expires)

    @retrying
    def create_login(self, *, lifetime: float) -> tuple[TokenInfo, str]:
        """The login token `serve` prints: for the acting user, named "serve login", living `lifetime` seconds (renewed by `extend`)."""
        lifetime = check_lifetime(lifetime, what="lifetime")
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "operate", "serve")
            return self._insert(tx, journal, self._ctx.actor, LOGIN_NAME, lifetime)

    def _insert(self, tx: Any, journal: Any, user: str, name: str | None, lifetime: float | None) -> tuple[TokenInfo, str]:
        now = self._ctx.clock.now()
        expires_at = None if lifetime is None else now + int(lifetime * US_PER_SECOND)
        secret = secrets.token_urlsafe(32)
        texts: list[str] = []

        def hash_for(token_id: int) -> str:
            texts.append(f"{PREFIX}{token_id}_{secret}")
            return digest(texts[-1])

        token_id = tx.insert_token(user, name, hash_for, now, expires_at)
        info = TokenInfo(token_id, user, name, now, expires_at, None, None)
        journal.add("token.create", None, None, id=token_id, user=user, name=name, expires_at=format_time(expires_at))
        return info, texts[-1]

    @retrying
    def extend(self, token_id: int, *, lifetime: float) -> None:
        """Make a live token expire `lifetime` seconds from now (serve renews its login token so).

        One's own token needs `operate`, another's `admin`. NotFound for an
        unknown id; Conflict for a revoked or already expired token. Not
        audited: it renews what `token.create` recorded, every few minutes.
        """
        lifetime = check_lifetime(lifetime, what="lifetime")
        with self._ctx.change() as (tx, _journal):
            row = self._row_for_change(tx, token_id, own="operate", asked=f"extend token {token_id}")
            now = self._ctx.clock.now()
            if not _info(row).active(now):
                state = "revoked" if row.revoked_at is not None else "expired"
                raise Conflict(f"token {token_id} is {state} and cannot be extended: create a new one with 'tqcli token create USER'")
            tx.set_token_expiry(token_id, now + int(lifetime * US_PER_SECOND))

    def list(self) -> list[TokenInfo]:  # noqa: A003 - the command's name
        """Every token by id, revoked and expired ones included (their times say so)."""
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "admin", "list tokens")
            return [_info(row) for row in tx.token_rows()]

    @retrying
    def revoke(self, token_id: int) -> tuple[TokenInfo, bool]:
        """Revoke a token at once; `(token, changed)`, changed False when it was revoked already. NotFound for an unknown id."""
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "admin", f"revoke token {token_id}")
            return self._revoke(tx, journal, self._existing(tx, token_id))

    @retrying
    def end_login(self, token_id: int) -> bool:
        """Revoke `serve`'s login token as it stops; one's own token needs no role, another's `admin`. False when already revoked."""
        with self._ctx.change() as (tx, journal):
            row = self._row_for_change(tx, token_id, own=None, asked=f"revoke token {token_id}")
            return self._revoke(tx, journal, row)[1]

    def _revoke(self, tx: Any, journal: Any, row: TokenRow) -> tuple[TokenInfo, bool]:
        if row.revoked_at is not None:
            return _info(row), False
        now = self._ctx.clock.now()
        tx.revoke_token(row.id, now)
        journal.add("token.revoke", None, None, id=row.id, user=row.user_name, name=row.name)
        return _info(row._replace(revoked_at=now)), True

    def _existing(self, tx: Any, token_id: int) -> TokenRow:
        row = tx.token_row(token_id) if _is_id(token_id) else None
        if row is None:
            raise NotFound(f"no token {token_id}: 'tqcli token list' shows the tokens")
        return row

    def _row_for_change(self, tx: Any, token_id: int, *, own: str | None, asked: str) -> TokenRow:
        """The token, once the actor may change it: its own with `own` (None: always), another's with `admin`."""
        row = tx.token_row(token_id) if _is_id(token_id) else None
        if row is None or row.user_name != self._ctx.actor:
            self._ctx.authorize(tx, "admin", asked)
        elif own is not None:
            self._ctx.authorize(tx, own, asked)
        if row is None:
            raise NotFound(f"no token {token_id}: 'tqcli token list' shows the tokens")
        return row

    def authenticate(self, secret: str) -> TokenInfo:
        """The token whose text is `secret`; Unauthenticated when it is malformed, unknown, expired or revoked.

        Reads only, except that a use is recorded (`last_used_at`) at most
        once a minute per token.
        """
        match = _TEXT.fullmatch(secret) if isinstance(secret, str) else None
        if match is None:
            raise Unauthenticated(_REJECTED)
        token_id, presented = int(match.group(1)), digest(secret)  # hashed first: an unknown id costs what a wrong secret does
        with self._ctx.read() as tx:
            row = tx.token_row(token_id)
        now = self._ctx.clock.now()
        if row is None or not hmac.compare_digest(row.hash, presented) or not _info(row).active(now):
            raise Unauthenticated(_REJECTED)
        if row.last_used_at is None or row.last_used_at <= now - TOUCH_EVERY:
            try:
                with self._ctx.store.write() as wtx:
                    wtx.touch_token(token_id, now, now - TOUCH_EVERY)
                row = row._replace(last_used_at=now)
            except StorageError:
                pass  # a busy or read-only database must not turn a valid token away; the next use records it
        return _info(row)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def describe_expiry(info: TokenInfo) -> str:
    """`never`, or the expiry time and how long from creation, for messages."""
    if info.expires_at is None:
        return "never"
    return f"{format_time(info.expires_at)}, in {format_duration((info.expires_at - info.created_at) / US_PER_SECOND)}"
