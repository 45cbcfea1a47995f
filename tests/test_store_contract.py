"""The store contract, on both stores: what the core relies on from `tqcli.store.base`.

huey's storage tests are the model: one suite, every store. Concurrency is
real here: separate connections (threads) against one database, so on
PostgreSQL the locks each operation states are what keeps the results right.
"""

from __future__ import annotations

import threading
import pytest

import tqcli
from tests.stores import raw_sql, table_dump
from tqcli.core.spec import TaskSpec
from tqcli.errors import NotFound, StorageError
from tqcli.security.verify import scan
from tqcli.store import base
from tqcli.store import open as open_store


@pytest.fixture
def store(db_location):
    """An open, migrated store on a fresh database."""
    opened = open_store(db_location)
    yield opened
    opened.close()


def _race(bodies) -> None:
    """Run each body on a thread of its own, all at once; wait for them all and re-raise the first failure."""
    failures: list[BaseException] = []

    def run(body) -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _submit(location, count: int, **options) -> list[int]:
    with tqcli.open(location) as queue:
        return [queue.submit("tests.jobs:noop", **options) for _ in range(count)]


def test_rows_are_typed_and_named(store, db_location) -> None:
    [task_id] = _submit(db_location, 1, queue="mail", priority=7)
    with store.read() as tx:
        [row] = tx.task_rows([task_id])
        listed = tx.list_task_rows(queue=None, tenant=None, state=None, limit=None)
    assert isinstance(row, base.TaskRow)
    assert (row.id, row.queue, row.priority, row.state) == (task_id, "mail", 7, "pending")
    assert listed == [row]


def test_no_limit_means_every_row(store, db_location) -> None:
    _submit(db_location, 7)
    with store.read() as tx:
        assert len(tx.list_task_rows(queue=None, tenant=None, state=None, limit=None)) == 7
        assert len(tx.list_task_rows(queue=None, tenant=None, state=None, limit=3)) == 3
        assert len(tx.audit_entries(task_id=None, actor=None, action=None, since=None, limit=None)) == 7


def test_task_ids_given_at_once_never_collide(db_location) -> None:
    _submit(db_location, 1)  # the database exists before the threads race
    got: list[int] = []
    start = threading.Barrier(4)

    def submit_some() -> None:
        with tqcli.open(db_location) as queue:
            start.wait()
            for _ in range(10):
                got.extend(queue.submit_many([TaskSpec(target="tests.jobs:noop") for _ in range(5)]))

    _race([submit_some] * 4)
    assert len(got) == len(set(got)) == 200
    reader = open_store(db_location, read_only=True)
    try:
        with reader.read() as tx:
            assert len(tx.task_states(got)) == 200
    finally:
        reader.close()


def test_concurrent_claims_never_take_a_task_twice(db_location) -> None:
    ids = _submit(db_location, 200)
    stores = [open_store(db_location) for _ in range(4)]
    claimed: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores))

    def claim(store, worker: str) -> None:
        start.wait()
        while True:
            with store.write() as tx:
                number = tx.next_claim_number()
                rows = tx.claim_tasks(count=7, now=2**62, claim_number=number, lease_until=2**62, worker=worker)
                tx.use_claim_number(number)
            if not rows:
                return
            with lock:
                claimed.extend(row.id for row in rows)

    _race([lambda store=store, n=n: claim(store, f"w{n}") for n, store in enumerate(stores)])
    for store in stores:
        store.close()
    assert sorted(claimed) == sorted(ids)  # every task once, none twice


def test_claim_numbers_are_never_handed_out_twice(db_location) -> None:
    stores = [open_store(db_location) for _ in range(3)]
    numbers: list[int] = []
    start = threading.Barrier(len(stores))

    def take(store) -> None:
        start.wait()
        for _ in range(30):
            with store.write() as tx:
                number = tx.next_claim_number()
                tx.use_claim_number(number)
            numbers.append(number)

    _race([lambda store=store: take(store) for store in stores])
    for store in stores:
        store.close()
    assert len(numbers) == len(set(numbers)) == 90


def test_appends_from_many_connections_make_one_chain(db_location) -> None:
    _submit(db_location, 1)
    writers = 4
    start = threading.Barrier(writers)

    def submit_some() -> None:
        with tqcli.open(db_location) as queue:
            start.wait()
            for _ in range(15):
                queue.submit("tests.jobs:noop")

    _race([submit_some] * writers)
    with tqcli.open(db_location) as queue:
        report = queue.audit.verify()
        with queue._ctx.read() as tx:
            seen, _, _, intact = scan(tx.iter_audit(), 1, "0" * 64)
    assert report.intact and intact
    assert seen == 1 + writers * 15


def test_a_read_sees_one_snapshot(store, db_location) -> None:
    _submit(db_location, 2)
    with store.read() as tx:
        before = tx.count_by_queue_and_state(queue=None, tenant=None)
        _submit(db_location, 3)  # committed by another connection meanwhile
        assert tx.count_by_queue_and_state(queue=None, tenant=None) == before
    with store.read() as tx:
        assert tx.count_by_queue_and_state(queue=None, tenant=None) == [("default", "pending", 5)]


def test_a_failed_change_leaves_nothing(store, db_location) -> None:
    with pytest.raises(RuntimeError):
        with store.write() as tx:
            tx.insert_dag("half", 1, "me")
            raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.dag_rows(None) == []


def test_opening_without_create_finds_no_database(db_location) -> None:
    with pytest.raises(NotFound):
        open_store(db_location, create=False)
    with pytest.raises(NotFound):
        open_store(db_location, read_only=True)


def test_read_only_store_refuses_writes(store, db_location) -> None:
    _submit(db_location, 1)
    reader = open_store(db_location, read_only=True)
    try:
        with pytest.raises(StorageError):
            with reader.write() as tx:
                tx.set_priority(1, 5)
        with reader.read() as tx:
            assert tx.task_state(1) == "pending"
    finally:
        reader.close()


def test_names_for_completion(store, db_location) -> None:
    _submit(db_location, 2, queue="mail")
    _submit(db_location, 1, queue="maps", tenant="acme")
    _submit(db_location, 1, queue="video")
    with store.read() as tx:
        assert tx.known_names("queue", "ma", 10) == [("mail", None), ("maps", None)]
        assert tx.known_names("tenant", "", 10) == [("acme", None), ("default", None)]


def test_a_dependent_submitted_while_its_dependency_finishes_is_never_stranded(db_location) -> None:
    parents = _submit(db_location, 60)
    children: list[int] = []

    def drain() -> None:
        with tqcli.open(db_location) as queue:
            queue.drain(concurrency=2)

    worker = threading.Thread(target=drain)
    worker.start()
    with tqcli.open(db_location) as queue:
        for parent in parents:  # each child's dependency may be pending, running or completing right now
            children.append(queue.submit("tests.jobs:noop", depends_on=[parent]))
    worker.join()
    with tqcli.open(db_location) as queue:
        queue.drain()
        stranded = [child for child in children if queue.get(child).state.value != "completed"]
    assert stranded == []


def test_the_server_clock_follows_the_database_not_this_host(store, monkeypatch) -> None:
    from tqcli.clock import ServerClock

    clock = ServerClock(lambda: store.server_time() + 7_000_000)  # a server 7 s ahead of this host
    assert abs(clock.now() - (store.server_time() + 7_000_000)) < 500_000
    clock.sync(store.server_time)
    assert abs(clock.now() - store.server_time()) < 500_000


def test_a_database_of_a_newer_tqcli_is_refused_and_left_untouched(db_location) -> None:
    _submit(db_location, 1)
    if isinstance(db_location, str):
        raw_sql(db_location, "UPDATE schema_version SET version = 99")
    else:
        raw_sql(db_location, "PRAGMA user_version = 99")
    before = table_dump(db_location)
    for read_only in (False, True):
        with pytest.raises(StorageError, match="made by a newer tqcli"):
            open_store(db_location, read_only=read_only)
    assert table_dump(db_location) == before


@pytest.mark.postgres_only
def test_a_database_with_another_programs_tables_is_refused_by_every_command(db_location) -> None:
    raw_sql(db_location, "CREATE TABLE invoices (id bigint)")
    for options in ({}, {"create": False}, {"read_only": True}):
        with pytest.raises(StorageError, match="holds tables of another program"):
            open_store(db_location, **options)
    assert raw_sql(db_location, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()") == [(1,)]
