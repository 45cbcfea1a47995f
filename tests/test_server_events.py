"""`GET /api/v1/events` through a real `tqcli serve`: live audit entries, Last-Event-ID, what each role sees, and the stream's lifetime."""

import asyncio
import signal
import threading
import time

import httpx

from tests.serving import start_server
from tests.sse import END, Event, events
from tqcli.config import login_name
from tqcli.security.rbac import Access
from tqcli.security.verify import AuditEntry
from tqcli.server import events as feed_module
from tqcli.server.lifecycle import Shutdown

WHOLE = {"seq", "ts", "actor", "action", "task_id", "tenant", "details", "key_id", "prev_hash", "hash"}
BRIEF = {"seq", "action", "task_id", "tenant"}


def token_for(cli, user: str) -> str:
    return cli.ok("token", "create", user).stdout.split()[-1]


def audit_log(cli) -> list[dict]:
    return cli.ok("audit", "log", "--limit", "0", "--json").json


def stats(server) -> dict:
    with server.client() as client:
        answer = client.get("/api/v1/events/stats")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(condition, timeout: float = 10, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_a_submit_made_by_the_cli_arrives_as_the_whole_entry_and_headers_come_at_once(cli, server):
    with events(server) as stream:
        assert stream.status == 200  # headers came before any entry
        headers = stream.response_headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
        started = time.monotonic()
        task_id = cli.submit("tests.jobs:noop")
        [event] = [item for item in stream.until(lambda item: item.data["action"] == "task.submit")]
        assert time.monotonic() - started < 5
        assert isinstance(event, Event) and event.event == "audit"
        [entry] = [item for item in audit_log(cli) if item["action"] == "task.submit"]
        assert event.data == entry and event.id == entry["seq"] and event.data["task_id"] == task_id
        assert set(event.data) == WHOLE


def test_last_event_id_replays_what_came_after_it_then_goes_on_live_without_a_gap_or_a_duplicate(cli, server):
    for _ in range(5):
        cli.submit("tests.jobs:noop")
    head = audit_log(cli)[-1]["seq"]
    stop = threading.Event()

    def submit_meanwhile():
        while not stop.is_set():
            cli.submit("tests.jobs:noop")

    writer = threading.Thread(target=submit_meanwhile)
    writer.start()
    try:
        time.sleep(0.3)
        with events(server, last_event_id=2) as stream:
            time.sleep(1.5)
            stop.set()
            writer.join()
            last = audit_log(cli)[-1]["seq"]
            seen = stream.until(lambda item: item.id == last)
            assert [item.id for item in seen] == list(range(3, last + 1))
            assert last > head + 1  # entries were appended while the stream replayed and went live
            assert stream.quiet(1.0) == []
    finally:
        stop.set()
        writer.join()
    with events(server, params={"last_event_id": last - 2}) as stream:  # the query form, for clients that cannot set headers
        assert [item.id for item in stream.until(lambda item: item.id == last)] == [last - 1, last]
    with events(server, last_event_id=last, params={"last_event_id": 1}) as stream:  # the header wins
        cli.submit("tests.jobs:noop")
        assert stream.next().id == last + 1
    with events(server, last_event_id=last + 1000) as stream:  # an id this chain never reached: live from its head
        cli.submit("tests.jobs:noop")
        assert stream.next().id == last + 2
    with server.client() as client:
        answer = client.get("/api/v1/events", headers={"Last-Event-ID": "seven"})
        assert answer.status_code == 400 and "Last-Event-ID" in answer.json()["error"]
        assert client.get("/api/v1/events", params={"last_event_id": -1}).status_code == 422


def test_each_role_gets_what_it_may_see(cli):
    cli.create_db()
    me = login_name()
    cli.ok("role", "grant", me, "admin")
    for user, role, *tenant in (("vera", "viewer"), ("tina", "viewer", "--tenant", "acme"), ("audrey", "auditor"), ("alex", "auditor", "--tenant", "acme")):
        cli.ok("role", "grant", user, role, *tenant)
    server = start_server(cli)
    try:
        tokens = {user: token_for(cli, user) for user in ("vera", "tina", "audrey", "alex")}
        plain = cli.submit("tests.jobs:noop")
        acme = cli.submit("tests.jobs:noop", "--tenant", "acme")
        cli.ok("queue", "set", "default", "--max-running", "4")
        cli.ok("role", "grant", "bob", "viewer")  # security: auditors only
        marker = cli.submit("tests.jobs:noop", "--tenant", "acme")
        entries = {entry["seq"]: entry for entry in audit_log(cli)}
        seen = {}
        for user, token in tokens.items():
            with events(server, token, last_event_id=0) as stream:
                seen[user] = stream.until(lambda item: item.data["task_id"] == marker and item.data["action"] == "task.submit")
        for item in seen["audrey"] + seen["vera"] + seen["tina"] + seen["alex"]:
            assert item.event == "audit" and item.id == item.data["seq"]
        # The auditor: every entry, whole.
        assert [item.data for item in seen["audrey"]] == [entries[seq] for seq in sorted(entries)]
        # A viewer: the brief form of what it may read (tasks, queues), nothing about grants or tokens.
        viewer = [item.data for item in seen["vera"]]
        assert all(set(data) == BRIEF for data in viewer)
        assert [(data["action"], data["task_id"]) for data in viewer] == [
            ("task.submit", plain), ("task.submit", acme), ("queue.set", None), ("task.submit", marker),
        ]
        assert all(data == {key: entries[data["seq"]][key] for key in BRIEF} for data in viewer)
        # A tenant-scoped viewer: its tenant's tasks only.
        assert [(data["action"], data["task_id"], data["tenant"]) for data in (item.data for item in seen["tina"])] == [
            ("task.submit", acme, "acme"), ("task.submit", marker, "acme"),
        ]
        assert all(set(item.data) == BRIEF for item in seen["tina"])
        # A tenant-scoped auditor: its tenant's entries whole (its grants' too, as `audit log` shows them), nothing else.
        assert [item.data for item in seen["alex"]] == [entries[seq] for seq in sorted(entries) if entries[seq]["tenant"] == "acme"]
        assert {item.data["action"] for item in seen["alex"]} == {"role.grant", "task.submit"}
        # Someone without any role is refused, and the refusal is audited.
        answer = httpx.get(f"{server.url}/api/v1/events", headers={"Authorization": f"Bearer {token_for(cli, 'nobody')}"})
        assert answer.status_code == 403 and answer.json()["exit_code"] == 4
        assert any(entry["action"] == "access.denied" and entry["actor"] == "nobody" for entry in audit_log(cli))
    finally:
        assert server.stop() == 0


def test_a_revoked_role_or_token_ends_the_stream_and_a_changed_role_changes_what_it_gets(cli):
    cli.create_db()
    cli.ok("role", "grant", login_name(), "admin")
    cli.ok("role", "grant", "vera", "viewer")
    cli.ok("role", "grant", "otto", "viewer")
    server = start_server(cli)
    try:
        vera, otto = token_for(cli, "vera"), token_for(cli, "otto")
        with events(server, vera) as by_role, events(server, otto) as by_token:
            wait_for(lambda: stats(server)["subscribers"] == 2)
            cli.ok("role", "grant", "vera", "auditor")
            time.sleep(feed_module.RECHECK_EVERY + 1)
            cli.submit("tests.jobs:noop")
            got = by_role.until(lambda item: item.data["action"] == "task.submit")
            assert set(got[-1].data) == WHOLE  # an auditor now: whole entries from then on
            assert set(by_token.until(lambda item: item.data["action"] == "task.submit")[-1].data) == BRIEF

            cli.ok("role", "revoke", "vera", "viewer")
            cli.ok("role", "revoke", "vera", "auditor")
            token_id = next(item["id"] for item in cli.ok("token", "list", "--json").json if item["user"] == "otto")
            cli.ok("token", "revoke", str(token_id))
            assert by_role.ended(feed_module.RECHECK_EVERY + 5) and by_token.ended(5)
            assert any("no role" in comment for comment in by_role.comments)
            assert any("revoked" in comment for comment in by_token.comments)
        assert wait_for(lambda: stats(server)["subscribers"] == 0)
        assert httpx.get(f"{server.url}/api/v1/events", headers={"Authorization": f"Bearer {otto}"}).status_code == 401
    finally:
        assert server.stop() == 0


def test_sigterm_with_streams_open_stops_the_server_with_exit_0_within_seconds(cli):
    cli.create_db()
    server = start_server(cli)
    with events(server) as first, events(server) as second:
        wait_for(lambda: stats(server)["subscribers"] == 2)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - started < 3
        assert first.ended(2) and second.ended(2)
    assert "Traceback" not in server.stderr and "ERROR" not in server.stderr


def test_a_client_that_hangs_up_frees_its_subscription_and_one_poller_serves_every_client(cli, server):
    assert stats(server)["subscribers"] == 0
    streams = [events(server).open() for _ in range(6)]
    try:
        assert wait_for(lambda: stats(server)["subscribers"] == 6)
        before, started = stats(server)["polls"], time.monotonic()
        task_id = cli.submit("tests.jobs:noop")
        for stream in streams:
            assert stream.until(lambda item: item.data["task_id"] == task_id)[-1].data["action"] == "task.submit"
        time.sleep(2)
        polls, elapsed = stats(server)["polls"] - before, time.monotonic() - started
        # One read per POLL_EVERY whatever the number of clients: six query loops would make six times as many.
        assert polls <= elapsed / feed_module.POLL_EVERY + 2, (polls, elapsed)
        for stream in streams[:4]:
            stream.close()
        assert wait_for(lambda: stats(server)["subscribers"] == 2, timeout=5)
    finally:
        for stream in streams:
            stream.close()
    assert wait_for(lambda: stats(server)["subscribers"] == 0, timeout=5)


def test_the_stream_needs_a_token(server):
    answer = httpx.get(f"{server.url}/api/v1/events")
    assert answer.status_code == 401 and answer.json()["exit_code"] == 4
    assert httpx.get(f"{server.url}/api/v1/events/stats").status_code == 401
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "text/event-stream" in paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in paths["/api/v1/tasks/{task_id}/logs"]["get"]["responses"]["200"]["content"]
    assert {"401", "403"} <= set(paths["/api/v1/events"]["get"]["responses"]) and "/api/v1/events/stats" in paths


# -- the feed itself, in process --------------------------------------------------------

def entry(seq: int, action: str = "task.submit", task_id: int | None = 1, tenant: str | None = "default") -> AuditEntry:
    return AuditEntry(seq, "2026-01-01T00:00:00Z", "someone", action, task_id, tenant, "{}", None, "0" * 64, "f" * 64)


def test_a_subscriber_too_slow_to_keep_up_is_dropped_not_buffered_without_bound():
    async def scenario():
        feed = feed_module.EventFeed(pool=None, shutdown=Shutdown())  # type: ignore[arg-type] - delivery reads nothing
        slow = feed.subscribe("vera", "secret", Access("vera", [], open=True))
        keeping_up = feed.subscribe("otto", "other", Access("otto", [], open=True))
        size = len(feed_module.encode(entry(1), "whole"))
        count = feed_module.BUFFER_LIMIT // size + 10
        for seq in range(1, count + 1):
            feed._deliver([entry(seq)])
            keeping_up.take()
        assert slow.closed is not None and "slow" in slow.closed
        assert slow not in feed.subscribers and keeping_up in feed.subscribers
        assert slow.size == 0 and not slow.pending  # its buffer is freed at once
        assert feed.stats()["dropped"] == 1 and feed.stats()["subscribers"] == 1

    asyncio.run(scenario())


def test_each_form_of_an_entry_is_encoded_once_as_one_sse_event():
    event = feed_module.encode(entry(7, tenant='line\nbreak'), "brief").decode()
    assert event == 'id: 7\nevent: audit\ndata: {"seq":7,"action":"task.submit","task_id":1,"tenant":"line\\nbreak"}\n\n'
    assert END is not None


class ChainFeed:
    """An EventFeed stand-in over a list of entries: what `events.stream` reads and subscribes to."""

    def __init__(self, entries):
        self.entries = entries
        self.subscribers = []

    async def read(self, function, after, limit):
        from tqcli.security.audit_feed import Page

        head = max((item.seq for item in self.entries), default=0)
        found = [item for item in self.entries if item.seq > after][:limit]
        return Page(found, min(head, after + limit), head)

    def subscribe(self, user, secret, access):
        subscriber = feed_module.Subscriber(user, secret, access)
        self.subscribers.append(subscriber)
        self.entries.append(entry(len(self.entries) + 1))  # appended while subscribing: the second replay pass finds it
        subscriber.offer(len(self.entries), feed_module.encode(self.entries[-1], "whole"))  # and the poller hands it out too
        return subscriber

    def unsubscribe(self, subscriber):
        self.subscribers.remove(subscriber)


def test_the_stream_replays_then_goes_live_skipping_what_it_replayed_and_keeps_quiet_streams_alive(monkeypatch):
    monkeypatch.setattr(feed_module, "HEARTBEAT", 0.2)

    async def scenario():
        feed = ChainFeed([entry(seq) for seq in range(1, 4)])
        body = feed_module.stream(feed, "vera", "secret", Access("vera", [], open=True), 1)
        assert (await body.__anext__()).startswith(b"retry: ")
        replayed = (await body.__anext__()).decode()
        assert [line for line in replayed.splitlines() if line.startswith("id:")] == ["id: 2", "id: 3"]
        again = (await body.__anext__()).decode()  # the entry appended while subscribing, from the database
        assert [line for line in again.splitlines() if line.startswith("id:")] == ["id: 4"]
        [subscriber] = feed.subscribers
        pending = asyncio.ensure_future(body.__anext__())
        await asyncio.sleep(0.05)
        subscriber.offer(5, feed_module.encode(entry(5), "whole"))
        live = (await pending).decode()
        assert [line for line in live.splitlines() if line.startswith("id:")] == ["id: 5"]  # 4 came once, not twice
        assert await body.__anext__() == b": keep-alive\n\n"
        subscriber.close("the server is stopping")
        assert await body.__anext__() == b": closed: the server is stopping\n\n"
        try:
            await body.__anext__()
            raise AssertionError("the stream went on after it was closed")
        except StopAsyncIteration:
            pass
        assert feed.subscribers == []

    asyncio.run(scenario())
