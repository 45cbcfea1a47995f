"""The library stands alone: `import tqcli` needs neither Typer nor rich."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
import tqcli
with tqcli.open(sys.argv[1]) as queue:
    task_id = queue.submit("app.jobs:run", payload={"n": 1}, priority=3)
    queue.cancel(task_id, reason="demo")
    task = queue.get(task_id)
    report = queue.audit.verify()
heavy = sorted(m for m in ("typer", "rich", "click", "croniter", "cryptography", "psycopg", "fastapi", "uvicorn", "pydantic") if m in sys.modules)
print(json.dumps({"state": task.state.value, "entries": report.count, "heavy": heavy}))
"""


def test_library_works_without_typer_or_rich(tmp_path):
    """On a SQLite file the PostgreSQL driver is not imported either (ARCHITECTURE rule 12)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "tq.db")], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"state": "cancelled", "entries": 2, "heavy": []}


def test_cli_import_leaves_rich_and_croniter_for_the_commands_that_need_them():
    code = "import sys, tqcli.cli; print(sorted(m for m in ('rich', 'croniter', 'cryptography', 'sqlite3', 'psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


SUBMIT_IN_PROCESS = """
import sys
from tqcli.cli import main
sys.argv = ["tqcli", "--db", sys.argv[1], "submit", "app.jobs:run"]
try:
    main()
finally:
    sys.stderr.write(repr(sorted(m for m in ("fastapi", "uvicorn", "starlette", "pydantic", "psycopg") if m in sys.modules)))
"""


def test_submit_never_imports_the_server_or_the_postgresql_driver(tmp_path):
    """ARCHITECTURE rule 12: `tqcli submit` starts without the optional extras' packages, though they are installed here."""
    done = subprocess.run([sys.executable, "-c", SUBMIT_IN_PROCESS, str(tmp_path / "tq.db")], capture_output=True, text=True)
    assert done.stdout.strip() == "1"
    assert done.stderr == "[]"


SUBMIT_IMPORTS = """
import sys
from tqcli.cli import main
sys.argv = ["tqcli", "--db", sys.argv[1], "submit", "app.jobs:run"]
try:
    main()
finally:
    sys.stderr.write(repr(sorted(m for m in ("tomllib", "base64", "random", "rich", "croniter", "cryptography") if m in sys.modules)))
"""


def test_submit_without_config_or_key_file_leaves_their_parsers_unimported(tmp_path):
    """Start-up time: with no config file and no key file, submit imports no TOML parser, base64 or random."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-c", SUBMIT_IMPORTS, str(tmp_path / "tq.db")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.stdout.strip() == "1"
    assert done.stderr == "[]"


def test_library_and_cli_share_one_database(tmp_path, cli):
    import tqcli

    with tqcli.open(cli.db) as queue:
        task_id = queue.submit("app.jobs:run")
    assert cli.ok("status", str(task_id), "--json").json["target"] == "app.jobs:run"
