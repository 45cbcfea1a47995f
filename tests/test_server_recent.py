"""Costly reads are answered at most once a second per user and query, and never from before a change the client could know of."""

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


def test_an_answer_computed_across_a_change_is_not_kept():
    answers = RecentAnswers()

    def compute_while_something_changes():
        answers.forget()
        return "from before the change"

    assert answers.get("key", 1, compute_while_something_changes) == "from before the change"
    assert answers.get("key", 1, lambda: "fresh") == "fresh"


def test_answers_kept_are_bounded():
    answers = RecentAnswers(kept=3)
    for n in range(10):
        answers.get(n, 0, lambda: n)
    assert answers.get(0, 0, lambda: "recomputed") == "recomputed"
    assert answers.get(9, 0, lambda: "recomputed") == 9


def test_a_client_reads_its_own_writes_and_soon_those_of_the_cli(cli, server):
    with server.client() as client:
        assert client.get("/api/v1/tasks").json()["tasks"] == []
        made = client.post("/api/v1/tasks", json={"target": "tests.jobs:noop"}).json()
        assert [task["id"] for task in client.get("/api/v1/tasks").json()["tasks"]] == [made["id"]]
        assert client.get("/api/v1/queues").json()[0]["unfinished"] == 1
        other = cli.submit("tests.jobs:noop")
        deadline = time.monotonic() + 5
        while other not in [task["id"] for task in client.get("/api/v1/tasks").json()["tasks"]]:
            assert time.monotonic() < deadline, "a CLI submit never showed in GET /api/v1/tasks"
            time.sleep(0.05)
