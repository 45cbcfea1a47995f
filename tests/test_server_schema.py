"""schemathesis against a live `tqcli serve`: no server error, and every answer as /openapi.json describes it.

The run is bounded (a few examples per operation, a time budget) and uses
the CLI in a subprocess, against the document the server itself serves.
This module is also schemathesis's hooks module (SCHEMATHESIS_HOOKS): it
teaches it to send the TOML body of `POST /api/v1/dags`.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import schemathesis

from tests.serving import start_server
from tests.test_cli_metrics import busy_database

REPO = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
TIME_BUDGET = 10  # seconds for the whole run, per store (ten examples per operation rarely finish within it)
# Endless streams (events, logs with follow) would hold every generated request until its timeout: their own tests cover them.
STREAMS = r"^/api/v1/(events|tasks/\{task_id\}/logs)$"
DAG_TOML = 'name = "etl"\n[tasks.extract]\ntarget = "tests.jobs:noop"\n[tasks.load]\ntarget = "tests.jobs:noop"\ndepends_on = ["extract"]\n'


@schemathesis.serializer("application/toml")
def toml_body(ctx: Any, value: Any) -> bytes:
    """A generated DAG body: the string itself (most are not TOML: they must be refused with 422, not a 500)."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogatepass")


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(cli, tmp_path):
    cli.ok("keys", "init")  # without a key file `encrypt: true` is exit 8, a 500 by SPEC's map: a finding of no interest here
    busy_database(cli)
    dag = tmp_path / "etl.toml"
    dag.write_text(DAG_TOML)
    cli.ok("dag", "submit", str(dag))
    server = start_server(cli)
    try:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.test_server_schema", "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        done = subprocess.run(
            [
                str(SCHEMATHESIS), "run", f"{server.url}/openapi.json",
                "--header", f"Authorization: Bearer {server.token}",
                "--checks", CHECKS, "--max-examples", "10", "--max-time", str(TIME_BUDGET),
                "--exclude-path-regex", STREAMS, "--request-timeout", "15", "--workers", "1",
                "--generation-database", "none", "--no-color", "--output-truncate", "false",
            ],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=TIME_BUDGET + 120,
        )
        report = done.stdout + done.stderr
        assert done.returncode == 0, report
        assert "Tested:" in report, report
    finally:
        code = server.stop()
    assert code == 0
    assert "Traceback" not in server.stderr, server.stderr
