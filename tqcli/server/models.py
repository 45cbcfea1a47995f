"""The API's request and response models, and what its routes share.

Responses are the CLI's `--json` documents, built by the library's own
`to_json()`/`to_dict()`; the models here describe them in the OpenAPI
document (every key the CLI promises, more allowed: keys are only ever
added) and are not used to rebuild them, so an answer is byte for byte
what the CLI prints. Request bodies are validated by these models (422),
except task objects, which the library's own parser checks as it does a
line of `submit --from-file`.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Coroutine, Literal, Optional, Union

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tqcli.core.spec import MAX_RETRIES_LIMIT
from tqcli.errors import InvalidInput
from tqcli.units import MAX_REASON

JSON_TYPES = ("application/json",)
TaskIdValue = Annotated[int, Field(ge=1, le=2**63 - 1)]
State = Literal["pending", "running", "completed", "failed", "cancelled", "blocked"]


class ApiRoute(APIRoute):
    """A route whose bad query or path values are invalid input (400, as the CLI's exit 2); a bad body stays 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                errors = list(error.errors())
                if errors and all(str((item.get("loc") or ("",))[0]) in ("query", "path") for item in errors):
                    raise InvalidInput(parameter_message(errors)) from None
                raise

        return route


def parameter_message(errors: list[Any]) -> str:
    """One line naming each invalid query or path parameter and what is wrong with it."""
    parts = []
    for item in errors[:5]:
        loc = item.get("loc") or ("", "?")
        kind = "path parameter" if loc[0] == "path" else "query parameter"
        parts.append(f"{kind} {loc[-1]}: {item.get('msg', 'invalid')}")
    return "invalid " + "; ".join(parts)


async def raw_body(request: Request) -> bytes:
    """The request's body, read whole (the body limit bounds it).

    Declare it before `caller`: a slow upload must not hold one of the
    pool's connections (FastAPI reads a model's body before dependencies too).
    """
    return await request.body()


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, lower case ('' when it has none)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def unsupported_media(message: str) -> HTTPException:
    """A body of a Content-Type the endpoint does not read: 415."""
    return HTTPException(415, message)


def answer(content: Any, status: int = 200) -> JSONResponse:
    """A JSON answer of a document the library built (not re-validated: it is the CLI's document)."""
    return JSONResponse(content, status_code=status)


def body_invalid(message: str, where: tuple[Any, ...] = ()) -> RequestValidationError:
    """A body the library refused as malformed: answered 422 like a body failing its model."""
    return RequestValidationError([{"loc": ("body", *where), "msg": message, "type": "value_error"}])


class Open(BaseModel):
    """A document of the CLI: these keys at least, more may be added."""

    model_config = ConfigDict(extra="allow")


# -- tasks ---------------------------------------------------------------


class Attempt(Open):
    """One attempt of a task (`history`)."""

    run: int
    attempt: int
    started_at: Optional[str]
    finished_at: Optional[str]
    outcome: str
    error: Optional[str]
    worker: str


class Task(Open):
    """The task object of `status ID --json` (a list's items lack `history`, `replays`, `waiting`)."""

    id: int
    name: str
    queue: str
    tenant: str
    backend: str
    target: str
    payload: Any = Field(description="The payload object; `\"<encrypted>\"` for a caller who may not see it in clear")
    priority: int
    state: State
    attempts: int
    max_retries: int
    backoff: float
    timeout: Optional[float]
    run_at: Optional[str]
    depends_on: list[int]
    dag_id: Optional[int]
    service: str
    idempotency_key: Optional[str]
    encrypted: bool
    result: Any
    error: Optional[str]
    created_at: Optional[str]
    started_at: Optional[str]
    finished_at: Optional[str]
    submitted_by: str
    run: int
    history: Optional[list[Attempt]] = None
    waiting: Optional[str] = None


class Status(Open):
    """The document of `status --json`."""

    counts: dict[str, int]
    queues: dict[str, dict[str, int]]
    tasks: list[Task]
    queue_limits: list[dict[str, Any]]
    tenant_limits: list[dict[str, Any]]
    access: Literal["open", "checked"]


class TaskObject(BaseModel):
    """A task to submit: the keys of a line of `submit --from-file` (checked by the library, as that line is)."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="package.module:function (simple backend) or a command line (shell)")
    backend: Optional[str] = Field(None, description="Execution backend [default: simple]")
    payload: Union[dict[str, Any], str, None] = Field(None, description="A JSON object (or a JSON string of one)")
    name: Optional[str] = None
    queue: Optional[str] = None
    tenant: Optional[str] = None
    priority: Union[int, str, None] = Field(None, description="-100..100, higher runs first")
    max_retries: Union[int, str, None] = None
    backoff: Union[float, str, None] = Field(None, description="Seconds, or a duration such as 30s")
    timeout: Union[float, str, None] = None
    delay: Union[float, str, None] = None
    at: Optional[str] = Field(None, description="ISO 8601 time")
    depends_on: Union[list[int], int, None] = None
    service: Optional[str] = None
    idempotency_key: Optional[str] = None
    expires: Union[float, str, None] = None
    cwd: Optional[str] = None
    env: Optional[dict[str, str]] = None
    encrypt: Optional[bool] = None


class CancelRequest(BaseModel):
    """`POST /api/v1/tasks/{id}/cancel`: the flags of `cancel ID`."""

    model_config = ConfigDict(extra="forbid")

    cascade: bool = False
    reason: Optional[str] = Field(None, max_length=MAX_REASON)


class BumpRequest(BaseModel):
    """`POST /api/v1/tasks/{id}/bump`: `{"priority": P}` or `{"by": N}`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1})

    priority: Optional[int] = Field(None, ge=-100, le=100, description="The new priority")
    by: Optional[int] = Field(None, ge=-200, le=200, description="Raise (or, negative, lower) the priority by this much")

    @model_validator(mode="after")
    def _one_of(self) -> "BumpRequest":
        if (self.priority is None) == (self.by is None):
            raise ValueError('give either "priority" (the new one) or "by" (how much to raise it)')
        return self


class ReplayRequest(BaseModel):
    """`POST /api/v1/dlq/replay`: the ids or `all` (narrowed by queue/tenant), `dry_run`, and the edits of `dlq replay`."""

    model_config = ConfigDict(extra="forbid")

    ids: list[TaskIdValue] = Field(default_factory=list, max_length=100_000)
    all: bool = False
    queue: Optional[str] = None
    tenant: Optional[str] = None
    dry_run: bool = False
    payload: Optional[dict[str, Any]] = None
    priority: Optional[int] = Field(None, ge=-100, le=100)
    max_retries: Optional[int] = Field(None, ge=0, le=MAX_RETRIES_LIMIT)
    to_queue: Optional[str] = None


# -- the rest of the catalogue -------------------------------------------


class Dag(Open):
    """The DAG object of `dag status --json` (`dag list --json` items lack `tasks`)."""

    id: int
    name: str
    state: str
    created_at: Optional[str]
    submitted_by: str
    counts: dict[str, int]
    tasks: Optional[dict[str, dict[str, Any]]] = None


class Schedule(Open):
    """A schedule of `schedule list --json`, with `next_fires` (the next ones, none while paused)."""

    name: str
    cron: str
    tz: str
    paused: bool
    next: Optional[str]
    next_fires: list[str]


class Breaker(Open):
    """A circuit of `breaker list --json`."""

    key: str
    state: Literal["closed", "open", "half-open"]
    failures: int


class QueueInfo(Open):
    """A queue of `queue list --json`."""

    name: str
    max_length: int
    max_running: int
    paused: bool
    encrypt: bool


class TenantInfo(Open):
    """A tenant of `tenant list --json`."""

    name: str
    max_pending: int
    max_running: int
    rate: Optional[str]
    weight: float


class Worker(Open):
    """A worker run of `workers --json`."""

    id: str
    host: str
    pid: int
    alive: bool
    running: list[int]


class AuditEntry(Open):
    """An entry of `audit log --json`."""

    seq: int
    ts: str
    actor: str
    action: str
    task_id: Optional[int]
    tenant: Optional[str]
    details: Any
    prev_hash: str
    hash: str


class VerifyReport(Open):
    """The document of `audit verify --json` (answered 200 whether or not the chain is intact)."""

    intact: bool
    entries: int
    head_seq: Optional[int]
    head_hash: Optional[str]
    problem: Optional[str]
    kind: Optional[str]
    bad_seq: Optional[int]


class RoleOf(BaseModel):
    """One grant of the caller: a role, on every tenant (null) or on one."""

    role: str
    tenant: Optional[str]


class May(BaseModel):
    """What the caller's roles allow (a tenant-scoped grant counts; every request is checked again anyway)."""

    read: bool
    submit: bool
    change_task: Union[bool, Literal["own"]] = Field(description='"own": its own tasks only (a submitter)')
    operate: bool
    audit: bool
    admin: bool


class Me(BaseModel):
    """`GET /api/v1/me`: who the token stands for, its roles and what they allow."""

    user: str
    open: bool = Field(description="No role is granted in this database: everyone may do everything")
    roles: list[RoleOf]
    may: May


class Minute(BaseModel):
    """Tasks that finished in one minute."""

    at: str
    completed: int
    failed: int
    cancelled: int


class Throughput(BaseModel):
    """`GET /api/v1/throughput`: finished tasks per minute, oldest first, every minute present."""

    step: int
    since: str
    series: list[Minute]
    truncated: bool = Field(description="More tasks finished than one answer reads: the newest minutes are undercounted")
