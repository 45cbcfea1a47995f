"""Schema upgrades: a frozen database of the first schema opens and upgrades intact."""

import shutil
import sqlite3

import tqcli
from tests.conftest import REPO
from tqcli.store import schema

FROZEN = REPO / "tests" / "data" / "schema-v1.db"


def test_the_frozen_first_schema_is_version_1():
    conn = sqlite3.connect(f"file:{FROZEN}?mode=ro", uri=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


def test_frozen_v1_database_upgrades_through_every_migration(tmp_path):
    copy = tmp_path / "old.db"
    shutil.copy(FROZEN, copy)
    with tqcli.open(copy) as queue:
        assert queue.audit.verify().count == 4
        extract, load, echo = (queue.get(i) for i in (1, 2, 3))
        assert (extract.queue, extract.priority, extract.payload_value) == ("etl", 5, {"day": "2026-06-01"})
        assert load.depends_on == [1] and load.idempotency_key == "load-2026-06-01"
        assert echo.state.value == "cancelled" and echo.error == "cancelled by frozen: frozen fixture"
        new_id = queue.submit("app.jobs:run")
        assert new_id == 4
        assert queue.audit.verify().count == 5
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
