"""Dependencies over long chains: cascade cancel, blocking, unblocking and purge walk them without recursion."""

import shutil

import pytest

import tqcli
from tqcli.clock import ManualClock

CHAIN = 10_000


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory):
    """A database holding one chain of 10,000 tasks, each submitted with depends_on its predecessor; its head fails."""
    import tqcli.core.submission as submission

    path = tmp_path_factory.mktemp("chain") / "chain.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(submission, "check_backends", lambda *args, **kwargs: None)  # found once is enough: speed
        with tqcli.open(path, clock=ManualClock()) as queue:
            ids = [queue.submit("tests.jobs:boom", max_retries=0)]
            for _ in range(CHAIN - 1):
                ids.append(queue.submit("tests.jobs:noop", depends_on=[ids[-1]]))
    return path, ids


@pytest.fixture
def chain(chain_db, tmp_path):
    """A fresh copy of the chain database, open; (queue, ids)."""
    source, ids = chain_db
    path = tmp_path / "chain.db"
    shutil.copy(source, path)
    with tqcli.open(path, clock=ManualClock()) as queue:
        yield queue, ids


def states(queue, ids):
    with queue._ctx.read() as tx:
        found = tx.task_states(ids)
    return {state: sum(1 for value in found.values() if value == state) for state in set(found.values())}


def test_cancel_cascade_of_a_10000_chain_cancels_every_dependent(chain):
    queue, ids = chain
    cancelled = queue.cancel(ids[0], cascade=True)
    assert sorted(cancelled) == ids
    assert states(queue, ids) == {"cancelled": CHAIN}
    assert len(queue.audit.entries(action="task.cancel", limit=0)) == CHAIN


def test_a_failed_head_blocks_a_10000_chain_and_replay_releases_it(chain):
    queue, ids = chain
    queue.drain(max_tasks=1)
    assert states(queue, ids) == {"failed": 1, "blocked": CHAIN - 1}
    queue.dlq.replay([ids[0]])
    assert states(queue, ids) == {"pending": CHAIN}


def test_cancelling_the_head_of_a_10000_chain_blocks_the_rest(chain):
    queue, ids = chain
    queue.cancel(ids[0])
    assert states(queue, ids) == {"cancelled": 1, "blocked": CHAIN - 1}


def test_purging_the_failed_head_of_a_10000_chain_cancels_the_rest(chain):
    queue, ids = chain
    queue.drain(max_tasks=1)
    assert [task.id for task in queue.dlq.purge([ids[0]], confirmed=True)] == [ids[0]]
    assert states(queue, ids[1:]) == {"cancelled": CHAIN - 1}
