"""`tqcli metrics` and `worker --metrics-file` through the real CLI: promtool accepts the output, files are replaced atomically."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, installed by scripts/ensure-tools (Debian's prometheus package) when missing."""
    found = shutil.which("promtool")
    if found is None:
        subprocess.run([str(REPO / "scripts" / "ensure-tools")], capture_output=True)
        found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed and scripts/ensure-tools could not install it (Debian's prometheus package)")
    return found


def check_metrics(promtool: str, text: str) -> None:
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def busy_database(cli) -> None:
    """Tasks in several states, queues and tenants, a circuit, a schedule and a checkpoint."""
    cli.submit("tests.jobs:add", "--payload", '{"a": 1, "b": 2}')
    cli.submit("tests.jobs:boom", "--queue", "etl", "--tenant", "acme", "--max-retries", "0", "--service", "flaky-api")
    cli.submit("tests.jobs:noop", "--queue", "etl", "--tenant", "acme", "--delay", "1h")
    blocker = cli.submit("tests.jobs:boom", "--queue", "web", "--tenant", "beta", "--max-retries", "0")
    cli.submit("tests.jobs:noop", "--queue", "web", "--tenant", "beta", "--depends-on", str(blocker))
    cli.ok("schedule", "add", "nightly", "--cron", "0 2 * * *", "tests.jobs:noop")
    cli.ok("breaker", "set", "flaky-api", "--failure-threshold", "1")
    cli.ok("worker", "--once")
    cli.ok("queue", "set", "web", "--max-length", "1")
    assert cli("submit", "tests.jobs:noop", "--queue", "web").code == 5
    cli.ok("audit", "checkpoint")


def test_promtool_accepts_the_exposition_of_a_busy_database(cli, promtool):
    busy_database(cli)
    result = cli.ok("metrics")
    check_metrics(promtool, result.stdout)
    lines = result.stdout.splitlines()
    assert 'tqcli_tasks{queue="web",tenant="beta",state="blocked"} 1' in lines
    assert 'tqcli_tasks{queue="etl",tenant="acme",state="failed"} 1' in lines
    assert 'tqcli_circuit_state{key="flaky-api"} 2' in lines
    assert 'tqcli_submits_refused_total{queue="web",reason="queue_limit",tenant="default"} 1' in lines
    assert 'tqcli_task_attempts_total{backend="simple",outcome="failed",queue="etl"} 1' in lines
    for family in ("tqcli_task_duration_seconds", "tqcli_task_wait_seconds", "tqcli_audit_last_checkpoint_timestamp_seconds"):
        assert f"# TYPE {family} " in result.stdout
    assert result.stderr == ""


def test_json_samples_match_the_text_exposition(cli):
    busy_database(cli)
    text = cli.ok("metrics").stdout
    samples = cli.ok("metrics", "--format", "json").json
    series = [line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == len(series)
    for sample, name in zip(samples, series):
        assert name.startswith(sample["name"]) and set(sample) == {"name", "labels", "value"}
        for key, value in sample["labels"].items():
            assert f'{key}="{value}"' in name


def test_output_replaces_the_file_atomically_and_leaves_no_temporary_file(cli, tmp_path, promtool):
    busy_database(cli)
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "tqcli.prom"
    target.write_text("old contents\n")
    result = cli.ok("metrics", "--output", str(target))
    assert result.stdout == "" and result.stderr == ""
    assert [p.name for p in folder.iterdir()] == ["tqcli.prom"]
    check_metrics(promtool, target.read_text())
    cli.ok("metrics", "--output", str(folder / "tqcli.json"), "--format", "json")
    assert json.loads((folder / "tqcli.json").read_text())[0]["name"] == "tqcli_build_info"


def test_output_into_a_missing_folder_is_exit_2(cli, tmp_path):
    cli.create_db()
    result = cli("metrics", "--output", str(tmp_path / "nowhere" / "tqcli.prom"))
    assert result.code == 2
    assert result.error_lines == [f"error: cannot write metrics file {tmp_path / 'nowhere' / 'tqcli.prom'}: folder {tmp_path / 'nowhere'} does not exist (create it first)"]
    assert "Traceback" not in result.stderr


def test_a_bad_format_is_exit_2(cli):
    cli.create_db()
    result = cli("metrics", "--format", "xml")
    assert result.code == 2 and result.error_lines == ["error: invalid --format 'xml': use prometheus or json"]


def test_metrics_on_a_missing_database_is_exit_3(cli):
    result = cli("metrics")
    assert result.code == 3 and len(result.error_lines) == 1


def test_worker_once_leaves_exactly_one_valid_metrics_file(cli, tmp_path, promtool):
    cli.submit("tests.jobs:add", "--payload", '{"a": 1, "b": 2}')
    cli.submit("tests.jobs:boom", "--max-retries", "0", "--queue", "etl")
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "tqcli.prom"
    cli.ok("worker", "--once", "--metrics-file", str(target))
    assert [p.name for p in folder.iterdir()] == ["tqcli.prom"]
    text = target.read_text()
    check_metrics(promtool, text)
    assert 'tqcli_task_attempts_total{backend="simple",outcome="completed",queue="default"} 1' in text.splitlines()
    assert 'tqcli_workers_alive{host=' in text  # the worker that wrote it has stopped: its host shows 0 alive
    cli.ok("worker", "--once", "--metrics-file", str(target))  # nothing to do: the file is written all the same
    assert [p.name for p in folder.iterdir()] == ["tqcli.prom"]


def test_worker_metrics_file_in_a_missing_folder_is_exit_2_before_it_claims(cli, tmp_path):
    task = cli.submit("tests.jobs:noop")
    result = cli("worker", "--once", "--metrics-file", str(tmp_path / "nowhere" / "tqcli.prom"))
    assert result.code == 2 and "folder" in result.error_lines[0]
    assert cli.task(task)["state"] == "pending"
