"""Costly reads are answered at most once a second per user and query, and not past the next audit entry the server sees."""

import time

from tqcli.server import recent
from tqcli.server.recent import RecentAnswers


def test_an_answer_is_handed_out_again_within_a_second_of_the_same_version(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(recent.time, "monotonic", lambda: now[0])
    answers = RecentAnswers(fresh_for=1.0)
    computed = []

    def compute():
        computed.append(1)
        return len(computed)

    assert answers.get(("ana", "tasks"), 7, compute) == 1
    assert answers.get(("ana", "tasks"), 7, compute) == 1
    assert answers.get(("bob", "tasks"), 7, compute) == 2  # per user: scopes differ
    assert answers.get(("ana", "tasks"), 8, compute) == 3  # a new audit entry was seen
    now[0] += 1.0
    assert answers.get(("ana", "tasks"), 8, compute) == 4  # a second old


def test_answers_kept_are_bounded():
    answers = RecentAnswers(kept=3)
    for n in range(10):
        answers.get(n, 0, lambda: n)
    assert answers.get(0, 0, lambda: "recomputed") == "recomputed"
    assert answers.get(9, 0, lambda: "recomputed") == 9


def test_a_change_shows_in_the_counts_within_a_second_and_a_task_at_once(cli, server):
    with server.client() as client:
        assert client.get("/api/v1/tasks").json()["tasks"] == []
        made = client.post("/api/v1/tasks", json={"target": "tests.jobs:noop"}).json()
        assert client.get(f"/api/v1/tasks/{made['id']}").json()["state"] == "pending"  # one task is never kept
        other = cli.submit("tests.jobs:noop")
        started = time.monotonic()
        while [task["id"] for task in client.get("/api/v1/tasks").json()["tasks"]] != [other, made["id"]]:
            assert time.monotonic() - started < 2, "submits never showed in GET /api/v1/tasks"
            time.sleep(0.05)
        assert client.get("/api/v1/queues").json()[0]["unfinished"] == 2
