"""Routes: DAGs — list (`dag list --json`), get (`dag status --json`), submit a DAG file's TOML."""

from __future__ import annotations

import tomllib

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from tqcli.core.dags import parse_dag
from tqcli.errors import InvalidInput
from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import Dag, answer, body_invalid, raw_body
from tqcli.server.sessions import Caller, caller

router = APIRouter(tags=["dags"], route_class=models.ApiRoute)

TOML_TYPES = ("application/toml", "text/toml", "application/x-toml")
SOURCE = "body"  # how errors name the DAG file
DEFAULT_NAME = "dag"  # a DAG file is named after its file without `name`; a body has no file name
EXAMPLE = 'name = "etl"\n\n[tasks.extract]\ntarget = "myapp.jobs:extract"\n\n[tasks.load]\ntarget = "myapp.jobs:load"\ndepends_on = ["extract"]\n'
DAG_BODY = {
    "requestBody": {
        "required": True,
        "description": "The DAG file's TOML, as `dag submit FILE` reads it.",
        "content": {"application/toml": {"schema": {"type": "string"}, "example": EXAMPLE}},
    },
}


@router.get("/api/v1/dags", response_model=list[Dag], responses=error_responses(400, 401, 403, 503))
def list_dags(
    who: Caller = Depends(caller),
    limit: int = Query(100, ge=1, le=1_000_000, description="How many of the newest DAGs to list"),
) -> JSONResponse:
    """The newest DAGs and their states, newest first: the `dag list --json` array."""
    return answer([dag.to_json(with_tasks=False) for dag in who.queue.dags.list(limit)])


@router.get("/api/v1/dags/{dag_id}", response_model=Dag, responses=error_responses(400, 401, 403, 404, 503))
def get_dag(dag_id: int = Path(..., ge=1, le=2**63 - 1), who: Caller = Depends(caller)) -> JSONResponse:
    """A DAG with its tasks by name: the `dag status --json` object."""
    return answer(who.queue.dags.get(dag_id).to_json())


@router.post(
    "/api/v1/dags", status_code=201, response_model=Dag, openapi_extra=DAG_BODY,
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503),
)
def submit_dag(request: Request, body: bytes = Depends(raw_body), who: Caller = Depends(caller)) -> JSONResponse:
    """Check a DAG file (the body, `Content-Type: application/toml`) and enqueue all its tasks; 201 with the DAG."""
    if models.media_type(request) not in TOML_TYPES:
        raise models.unsupported_media("send the DAG file's TOML with Content-Type: application/toml")
    try:
        data = tomllib.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise body_invalid("the DAG file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise body_invalid(f"malformed TOML: {error}") from None
    data.setdefault("name", DEFAULT_NAME)
    try:
        plan = parse_dag(data, SOURCE)
    except InvalidInput as error:
        raise body_invalid(error.message.removeprefix(f"{SOURCE}: ")) from None  # the answer names the body once
    dag_id = who.queue.dags.submit(plan)
    return answer(who.queue.dags.get(dag_id).to_json(), 201)
