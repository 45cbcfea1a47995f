"""A real browser for the dashboard's tests (Debian's chromium, driven by selenium), and a realistic queue to look at."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from tqcli.clock import ManualClock

WAIT = 15.0  # seconds a test waits for the page to show something


def missing_browser() -> str | None:
    """Why no browser can run here (None when chromium and chromedriver are both on PATH)."""
    lacking = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if not lacking:
        return None
    return f"{' and '.join(lacking)} not found on PATH: run scripts/ensure-tools (Debian's chromium and chromium-driver)"


def chromium(width: int = 1280, height: int = 900) -> Any:
    """A headless chromium at `width`×`height`, driven through chromedriver (selenium's webdriver.Chrome)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver"), log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT, driver: Any = None) -> Any:
    """Poll `condition` until it answers something true; fail naming `what` (and the page's message line) if it never does."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - an element replaced while we read it: read again
            last_error = error
        time.sleep(0.1)
    shown = ""
    if driver is not None:
        shown = driver.execute_script("const m = document.getElementById('message'); return m && !m.hidden ? m.textContent : ''")
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                         + (f"; the page's message line says: {shown}" if shown else "")
                         + (f"; last error: {last_error}" if last_error else ""))


def page_ready(driver: Any) -> bool:
    """Whether the open view has loaded (the app marks it data-ready)."""
    return bool(driver.execute_script("const v = document.querySelector('#main .view'); return v && v.dataset.ready === 'true'"))


def realistic_queue(db: Path | str, *, minutes: int = 60, seed: int = 7) -> dict[str, Any]:
    """Fill `db` with what a busy queue looks like: an hour of finished work, failures, a DAG part way, schedules, breakers.

    Work is claimed and finished through the dispatcher on a clock that
    starts `minutes` ago, so finish times spread over the chart's window;
    nothing here needs a worker process. Answers the ids a caller may want.
    """
    import tqcli
    from tqcli.core import dispatcher
    from tqcli.core.dags import parse_dag
    from tqcli.core.dispatcher import Outcome

    rng = random.Random(seed)
    clock = ManualClock(int((time.time() - minutes * 60 - 90) * 1_000_000))  # ends a little before now
    jobs = [
        ("etl", "acme", "etl.jobs:extract_orders"), ("etl", "acme", "etl.jobs:load_warehouse"),
        ("email", "globex", "mail.jobs:send_welcome"), ("email", "acme", "mail.jobs:send_receipt"),
        ("reports", "globex", "reports.jobs:render_pdf"), ("default", "default", "ops.jobs:rotate_logs"),
    ]
    failures = ["TimeoutError: upstream took longer than 30s", "ConnectionError: smtp.example.net:587 refused",
                "ValueError: invoice 4411 has no currency", "KeyError: 'customer_id'"]
    dead: list[int] = []

    with tqcli.open(db, clock=clock) as q:
        def claim(**which: Any) -> list[Any]:
            with q._ctx.change() as (tx, journal):
                return dispatcher.claim(tx, journal, now=clock.now(), worker="web-1:4242", lease_seconds=3600, **which)

        def finish(task: Any, outcome: Any) -> None:
            with q._ctx.change() as (tx, journal):
                dispatcher.finish(tx, journal, task, outcome, now=clock.now(), worker="web-1:4242")

        def work(fail_rate: float) -> None:
            while claimed := claim(count=20):
                for task in claimed:
                    clock.advance(rng.uniform(0.2, 2.0))
                    failed = rng.random() < fail_rate
                    finish(task, Outcome("failed", error=rng.choice(failures)) if failed
                           else Outcome("completed", result=json.dumps({"rows": rng.randint(10, 5000)})))

        for minute in range(minutes):
            burst = rng.randint(2, 9) + (12 if 20 <= minute <= 28 else 0)
            for _ in range(burst):
                queue_name, tenant, target = rng.choice(jobs)
                q.submit(target, queue=queue_name, tenant=tenant, payload={"batch": minute}, max_retries=0, priority=rng.choice([0, 0, 0, 5, 10]))
            work(0.15 if 40 <= minute <= 44 else 0.04)
            clock.set(clock.now() + 60_000_000 - clock.now() % 60_000_000 + rng.randint(0, 5_000_000))
        dead = [task.id for task in q.dlq.list()]

        plan = parse_dag({
            "name": "nightly-etl",
            "defaults": {"queue": "etl", "tenant": "acme", "max_retries": 1},
            "tasks": {
                "fetch": {"target": "etl.jobs:fetch_exports"},
                "extract-orders": {"target": "etl.jobs:extract_orders", "depends_on": ["fetch"]},
                "extract-customers": {"target": "etl.jobs:extract_customers", "depends_on": ["fetch"]},
                "extract-invoices": {"target": "etl.jobs:extract_invoices", "depends_on": ["fetch"]},
                "transform": {"target": "etl.jobs:transform", "depends_on": ["extract-orders", "extract-customers", "extract-invoices"]},
                "load": {"target": "etl.jobs:load_warehouse", "depends_on": ["transform"]},
                "report": {"target": "reports.jobs:render_pdf", "depends_on": ["load"]},
                "notify": {"target": "mail.jobs:send_digest", "depends_on": ["load"]},
            },
        }, "nightly-etl.toml")
        dag_id = q.dags.submit(plan)
        dag = q.dags.get(dag_id).to_json()["tasks"]
        ids = {name: task["id"] for name, task in dag.items()}
        (fetch,) = claim(count=1, task_id=ids["fetch"])
        clock.advance(2)
        finish(fetch, Outcome("completed", result=json.dumps({"files": 3})))
        extracts = [claim(count=1, task_id=ids[name])[0] for name in ("extract-orders", "extract-customers", "extract-invoices")]
        clock.advance(3)
        finish(extracts[0], Outcome("completed", result=json.dumps({"rows": 1200})))
        finish(extracts[1], Outcome("failed", error="ConnectionError: crm.example.net refused the export"))

        for key in ("simple:mail.jobs:send_welcome",):
            q.breakers.configure(key, failure_threshold=3, recovery_timeout="10m")
        for _ in range(3):
            q.submit("mail.jobs:send_welcome", queue="email", tenant="globex", max_retries=0)
        while claimed := claim(count=3, queues=("email",)):
            for task in claimed:
                finish(task, Outcome("failed", error="ConnectionError: smtp.example.net:587 refused"))
        q.breakers.configure("simple:reports.jobs:render_pdf", failure_threshold=5)
        q.schedules.add("nightly-etl", cron="0 2 * * *", tz="Europe/Berlin", options={"target": "etl.jobs:extract_orders", "queue": "etl"})
        q.schedules.add("hourly-digest", cron="@hourly", options={"target": "mail.jobs:send_digest", "queue": "email"})

        pending = [q.submit(target, queue=queue_name, tenant=tenant, priority=rng.choice([0, 5]), payload={"n": n})
                   for n, (queue_name, tenant, target) in enumerate(rng.choices(jobs, k=9))]
        later = q.submit("reports.jobs:render_pdf", queue="reports", tenant="globex", delay=3600, payload={"month": "2026-11"})
        dead = [task.id for task in q.dlq.list()]
    return {"dag_id": dag_id, "dag_tasks": {name: task["id"] for name, task in dag.items()},
            "dead": dead, "pending": pending, "later": later}
