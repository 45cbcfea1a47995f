"""The database schema as named DDL, and the ordered migrations that build it.

`PRAGMA user_version` holds the number of migrations applied. A migration is
never edited once released: a change is a new migration appended to
`MIGRATIONS`. `tests/data/schema-v1.db` is a frozen database of the first
schema; a test upgrades it through every later migration.

Times are INTEGER microseconds since the Unix epoch, UTC, except in the audit
table, whose `ts` is ISO 8601 text: that table is read by people and
compliance tools with the sqlite3 shell, and its hash covers the stored text.
"""

from __future__ import annotations

APPLICATION_ID = 0x7471636C  # "tqcl": marks a SQLite file as a tqcli database

META = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID
"""

TASKS = """
CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    tenant           TEXT    NOT NULL,
    backend          TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL CHECK (priority BETWEEN -100 AND 100),
    state            TEXT    NOT NULL CHECK (state IN
                         ('pending', 'running', 'completed', 'failed', 'cancelled', 'blocked')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    backoff          REAL    NOT NULL,
    timeout          REAL,
    run_at           INTEGER NOT NULL,
    waiting_deps     INTEGER NOT NULL DEFAULT 0,
    dag_id           INTEGER REFERENCES dags(id),
    service          TEXT    NOT NULL,
    idempotency_key  TEXT,
    encrypted        INTEGER NOT NULL DEFAULT 0,
    result           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    submitted_by     TEXT    NOT NULL,
    lease_token      INTEGER,
    lease_until      INTEGER,
    worker           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
)
"""

# The claim query: WHERE state='pending' AND waiting_deps=0 AND run_at<=?
# ORDER BY priority DESC, run_at, id. Equality on the first two columns and
# the order of the rest make it an index search with no temp B-tree.
TASKS_CLAIM_INDEX = """
CREATE INDEX tasks_claim ON tasks (state, waiting_deps, priority DESC, run_at, id)
"""

# Counts per queue and state for `status`, read from the index alone.
TASKS_COUNTS_INDEX = """
CREATE INDEX tasks_counts ON tasks (queue, state, tenant)
"""

TASKS_IDEMPOTENCY_INDEX = """
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL
"""

TASKS_DAG_INDEX = """
CREATE INDEX tasks_dag ON tasks (dag_id) WHERE dag_id IS NOT NULL
"""

TASK_DEPS = """
CREATE TABLE task_deps (
    task_id    INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    depends_on INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID
"""

TASK_DEPS_REVERSE_INDEX = """
CREATE INDEX task_deps_dependents ON task_deps (depends_on, task_id)
"""

ATTEMPTS = """
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    token       INTEGER NOT NULL,
    worker      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    error       TEXT
)
"""

ATTEMPTS_INDEX = """
CREATE INDEX attempts_task ON attempts (task_id, attempt)
"""

AUDIT = """
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    task_id   INTEGER,
    tenant    TEXT,
    details   TEXT    NOT NULL,
    key_id    TEXT,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
)
"""

AUDIT_TASK_INDEX = """
CREATE INDEX audit_task ON audit (task_id) WHERE task_id IS NOT NULL
"""

DAGS = """
CREATE TABLE dags (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    submitted_by TEXT    NOT NULL,
    cancelled    INTEGER NOT NULL DEFAULT 0
)
"""

QUEUES = """
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    max_length  INTEGER NOT NULL DEFAULT 0,
    max_running INTEGER NOT NULL DEFAULT 0,
    paused      INTEGER NOT NULL DEFAULT 0,
    encrypt     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID
"""

TENANTS = """
CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    max_pending INTEGER NOT NULL DEFAULT 0,
    max_running INTEGER NOT NULL DEFAULT 0,
    rate_count  INTEGER,
    rate_period REAL,
    weight      REAL    NOT NULL DEFAULT 1,
    tokens      REAL,
    refilled_at INTEGER
) WITHOUT ROWID
"""

ROLES = """
CREATE TABLE roles (
    user   TEXT NOT NULL,
    role   TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'submitter', 'viewer', 'auditor')),
    tenant TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user, role, tenant)
) WITHOUT ROWID
"""

MIGRATION_1 = (
    META,
    DAGS,
    TASKS,
    TASKS_CLAIM_INDEX,
    TASKS_COUNTS_INDEX,
    TASKS_IDEMPOTENCY_INDEX,
    TASKS_DAG_INDEX,
    TASK_DEPS,
    TASK_DEPS_REVERSE_INDEX,
    ATTEMPTS,
    ATTEMPTS_INDEX,
    AUDIT,
    AUDIT_TASK_INDEX,
    QUEUES,
    TENANTS,
    ROLES,
)

# -- version 2: circuit breakers and shared settings ------------------------

BREAKERS = """
CREATE TABLE breakers (
    key               TEXT PRIMARY KEY,
    state             TEXT    NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half-open')),
    failures          INTEGER NOT NULL DEFAULT 0,
    failure_threshold INTEGER,
    recovery_timeout  REAL,
    opened_at         INTEGER,
    retry_at          INTEGER,
    trial_task        INTEGER,
    updated_at        INTEGER NOT NULL
) WITHOUT ROWID
"""

# Shared settings every worker must agree on (for example breaker defaults).
SETTINGS = """
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID
"""

# Leases to reclaim: running tasks ordered by when their lease ends.
TASKS_LEASE_INDEX = """
CREATE INDEX tasks_lease ON tasks (lease_until) WHERE state = 'running'
"""

MIGRATION_2 = (BREAKERS, SETTINGS, TASKS_LEASE_INDEX)

# -- version 3: cron schedules ------------------------------------------------

# `spec` is the JSON of the submit options each fire enqueues; `next_fire_at`
# lets a worker find due schedules without evaluating any cron expression.
SCHEDULES = """
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    cron         TEXT    NOT NULL,
    tz           TEXT    NOT NULL,
    catchup      INTEGER NOT NULL DEFAULT 0,
    paused       INTEGER NOT NULL DEFAULT 0,
    spec         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    next_fire_at INTEGER,
    last_fire_at INTEGER
) WITHOUT ROWID
"""

# One row per enqueued fire time: the unique key that makes a fire happen once
# however many workers look at the same moment.
SCHEDULE_FIRES = """
CREATE TABLE schedule_fires (
    schedule TEXT    NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
    fire_at  INTEGER NOT NULL,
    task_id  INTEGER,
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (schedule, fire_at)
) WITHOUT ROWID
"""

MIGRATION_3 = (SCHEDULES, SCHEDULE_FIRES)

# -- version 4: cheaper finishing -------------------------------------------
# `has_dependents` lets a worker skip looking for dependents to release; the
# `counters` table hands out claim numbers, from which fencing tokens are made
# (claim number * 2**32 + task id), so a worker claims many tasks in one
# statement and an attempt row (id = token) is written once, when the attempt
# ends; the running attempt lives on its task row.

TASKS_HAS_DEPENDENTS = "ALTER TABLE tasks ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0"
# Which process holds a running task's lease (see tqcli.core.liveness).
TASKS_HOLDER = "ALTER TABLE tasks ADD COLUMN holder TEXT"
MARK_DEPENDED_ON = "UPDATE tasks SET has_dependents = 1 WHERE id IN (SELECT depends_on FROM task_deps)"
COUNTERS = """
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID
"""
FIRST_CLAIM = "INSERT INTO counters (name, value) SELECT 'claim', (coalesce(max(id), 0) >> 32) + 1 FROM attempts"
DROP_OPEN_ATTEMPTS = "DELETE FROM attempts WHERE outcome IS NULL"

MIGRATION_4 = (TASKS_HAS_DEPENDENTS, TASKS_HOLDER, MARK_DEPENDED_ON, COUNTERS, FIRST_CLAIM, DROP_OPEN_ATTEMPTS)

# -- version 5: a fencing token that never overflows ---------------------------
# The token was `claim number * 2**32 + task id` in one INTEGER column; past
# 2**31 claims SQLite computed it as REAL and every worker failed. Now the
# claim number has a column of its own and a token is the pair (task id,
# claim). The old column is renamed, not kept, so an older tqcli still running
# during the upgrade fails on its next statement (exit 7) instead of writing
# under the old meaning. Attempts are keyed by (task id, claim), kept beside
# their task.

TASKS_RENAME_TOKEN = "ALTER TABLE tasks RENAME COLUMN lease_token TO claim"
TASKS_CLAIM_FROM_TOKEN = (
    "UPDATE tasks SET claim = CAST(claim AS INTEGER) >> 32 WHERE claim IS NOT NULL"
)
ATTEMPTS_V5 = """
CREATE TABLE attempts_v5 (
    task_id     INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    claim       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    error       TEXT,
    PRIMARY KEY (task_id, claim)
) WITHOUT ROWID
"""
COPY_ATTEMPTS = (
    "INSERT OR IGNORE INTO attempts_v5 (task_id, claim, attempt, worker, started_at, finished_at, outcome, error) "
    "SELECT task_id, CAST(token AS INTEGER) >> 32, attempt, worker, started_at, finished_at, outcome, error "
    "FROM attempts ORDER BY task_id, id"
)
DROP_OLD_ATTEMPTS = "DROP TABLE attempts"
RENAME_ATTEMPTS = "ALTER TABLE attempts_v5 RENAME TO attempts"

MIGRATION_5 = (TASKS_RENAME_TOKEN, TASKS_CLAIM_FROM_TOKEN, ATTEMPTS_V5, COPY_ATTEMPTS, DROP_OLD_ATTEMPTS, RENAME_ATTEMPTS)

# -- version 6: the everyday commands -------------------------------------------
# `run` counts a task's runs (1, one more after each `dlq replay`), so its
# history reads run by run; `restarted_from` links a `restart`; `expires_at`
# is when a still-pending task is cancelled instead of run (a partial index
# keeps the poll that finds them an index search); `cwd` and `env` (a JSON
# object) are where and with what a shell task runs. An attempt keeps its run
# and the traceback of a Python exception. `workers` is the registry behind
# `tqcli workers` and the "no worker is alive" hint of `wait`. A DAG task
# removed by `dlq purge` or `prune` leaves a row in `purged_tasks`, so the
# DAG keeps its state and shows the task as purged. `roles.user` becomes
# `user_name`: USER is reserved in PostgreSQL, and both stores share one
# schema (the JSON key stays `user`).

TASKS_RUN = "ALTER TABLE tasks ADD COLUMN run INTEGER NOT NULL DEFAULT 1"
TASKS_RESTARTED_FROM = "ALTER TABLE tasks ADD COLUMN restarted_from INTEGER"
TASKS_EXPIRES_AT = "ALTER TABLE tasks ADD COLUMN expires_at INTEGER"
TASKS_CWD = "ALTER TABLE tasks ADD COLUMN cwd TEXT"
TASKS_ENV = "ALTER TABLE tasks ADD COLUMN env TEXT"
TASKS_EXPIRY_INDEX = """
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL AND state = 'pending'
"""
# The claim index carries expires_at too, so the claim's pick, which skips
# expired tasks, still reads the index alone.
DROP_CLAIM_INDEX_5 = "DROP INDEX tasks_claim"
TASKS_CLAIM_INDEX_6 = """
CREATE INDEX tasks_claim ON tasks (state, waiting_deps, priority DESC, run_at, id, expires_at)
"""
TASKS_FINISHED_INDEX = """
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL
"""
ATTEMPTS_RUN = "ALTER TABLE attempts ADD COLUMN run INTEGER NOT NULL DEFAULT 1"
ATTEMPTS_TRACEBACK = "ALTER TABLE attempts ADD COLUMN traceback TEXT"
# Attempts given back are never recorded, so each earlier first attempt of
# the same task began one run.
NUMBER_RUNS = (
    "UPDATE attempts SET run = (SELECT count(*) FROM attempts AS first WHERE first.task_id = attempts.task_id "
    "AND first.attempt = 1 AND first.claim <= attempts.claim) WHERE task_id IN "
    "(SELECT task_id FROM attempts WHERE attempt = 1 GROUP BY task_id HAVING count(*) > 1)"
)
CURRENT_RUN = (
    "UPDATE tasks SET run = (SELECT max(run) FROM attempts WHERE attempts.task_id = tasks.id) "
    "WHERE id IN (SELECT task_id FROM attempts WHERE run > 1)"
)
WORKERS = """
CREATE TABLE workers (
    run_id       TEXT    PRIMARY KEY,
    id           TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    holder       TEXT,
    alive_for    REAL    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER
) WITHOUT ROWID
"""
WORKERS_HEARTBEAT_INDEX = "CREATE INDEX workers_heartbeat ON workers (heartbeat_at)"
PURGED_TASKS = """
CREATE TABLE purged_tasks (
    id        INTEGER PRIMARY KEY,
    dag_id    INTEGER NOT NULL REFERENCES dags(id),
    name      TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    purged_at INTEGER NOT NULL
)
"""
PURGED_TASKS_DAG_INDEX = "CREATE INDEX purged_tasks_dag ON purged_tasks (dag_id)"
ROLES_USER_NAME = "ALTER TABLE roles RENAME COLUMN user TO user_name"
# An edge outlives the task it points at: after a purge or prune its
# dependents still say what they depended on (ids are never reused, so a
# dangling `depends_on` never names another task). Only `task_id` cascades.
TASK_DEPS_V6 = """
CREATE TABLE task_deps_v6 (
    task_id    INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    depends_on INTEGER NOT NULL,
    PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID
"""
COPY_TASK_DEPS = "INSERT INTO task_deps_v6 (task_id, depends_on) SELECT task_id, depends_on FROM task_deps"
DROP_OLD_TASK_DEPS = "DROP TABLE task_deps"
RENAME_TASK_DEPS = "ALTER TABLE task_deps_v6 RENAME TO task_deps"

MIGRATION_6 = (
    TASKS_RUN, TASKS_RESTARTED_FROM, TASKS_EXPIRES_AT, TASKS_CWD, TASKS_ENV, TASKS_EXPIRY_INDEX,
    DROP_CLAIM_INDEX_5, TASKS_CLAIM_INDEX_6,
    TASKS_FINISHED_INDEX, ATTEMPTS_RUN, ATTEMPTS_TRACEBACK, NUMBER_RUNS, CURRENT_RUN, WORKERS,
    WORKERS_HEARTBEAT_INDEX, PURGED_TASKS, PURGED_TASKS_DAG_INDEX, ROLES_USER_NAME,
    TASK_DEPS_V6, COPY_TASK_DEPS, DROP_OLD_TASK_DEPS, RENAME_TASK_DEPS, TASK_DEPS_REVERSE_INDEX,
)

# -- version 7: teams sharing one database ---------------------------------------
# Tenants take turns within a priority level (see tqcli.tenancy.fairness), so
# the claim index puts the tenant and the queue after the priority: a claim
# reads the tenants and queues with work at a level, then each one's oldest
# tasks, all by index searches, and a paused queue's backlog or a worker's
# `--queue` is a seek rather than a filter. `tenant_turns` keeps each
# tenant's virtual time (its "pass"), state of the claim rather than a
# setting: every tenant that has tasks has one, and a claim reads them
# lowest first, so it looks at as many tenants as it serves.

DROP_CLAIM_INDEX_6 = "DROP INDEX tasks_claim"
TASKS_CLAIM_INDEX_7 = """
CREATE INDEX tasks_claim ON tasks (state, waiting_deps, priority DESC, tenant, queue, run_at, id, expires_at)
"""
TENANT_TURNS = """
CREATE TABLE tenant_turns (
    tenant TEXT PRIMARY KEY,
    pass   INTEGER NOT NULL
) WITHOUT ROWID
"""
# A claim reads the tenants in the order of their turns, lowest pass first.
TENANT_TURNS_ORDER = "CREATE INDEX tenant_turns_order ON tenant_turns (pass, tenant)"
# Every tenant that has tasks has a turn (a submit adds the new ones).
FIRST_TURNS = "INSERT INTO tenant_turns (tenant, pass) SELECT DISTINCT tenant, 0 FROM tasks"

MIGRATION_7 = (DROP_CLAIM_INDEX_6, TASKS_CLAIM_INDEX_7, TENANT_TURNS, TENANT_TURNS_ORDER, FIRST_TURNS)

# -- version 8: the operator's view ------------------------------------------------
# `task_output` holds what an attempt printed, as the worker read it: each
# chunk is one stream's text (UTF-8, undecodable bytes replaced; an encrypted
# task's chunk is ciphertext) keyed by the attempt (task id, claim) and the
# byte offset (`byte_offset`) at which it began in everything that attempt printed. `size` is
# the bytes it stands for, so the bytes dropped before what is kept are
# (last byte_offset + last size) - sum(size), with no row to keep up to date.
# `metric_counters` holds counters that must never go down although the rows
# they count are deleted (`dlq purge`, `prune`): attempts by outcome and the
# duration histograms' buckets, keyed by metric name and its labels as
# canonical JSON, added to once per worker commit.

TASK_OUTPUT = """
CREATE TABLE task_output (
    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    claim   INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    text    TEXT    NOT NULL,
    PRIMARY KEY (task_id, claim, byte_offset)
) WITHOUT ROWID
"""
METRIC_COUNTERS = """
CREATE TABLE metric_counters (
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, labels)
) WITHOUT ROWID
"""

MIGRATION_8 = (TASK_OUTPUT, METRIC_COUNTERS)

# -- version 9: API tokens ---------------------------------------------------------
# `tokens` holds the API tokens of `tqcli serve` (`tqcli token ...`): only the
# SHA-256 hex of a token's text is stored, never the text. Ids are handed out
# as max(id) + 1 under the write lock (rows are revoked, never deleted, so no
# id is reused), which `migrate --to` carries over with no sequence to set.
# `user_name` as in `roles` (USER is reserved in PostgreSQL).

TOKENS = """
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_name    TEXT    NOT NULL,
    name         TEXT,
    hash         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
)
"""

MIGRATION_9 = (TOKENS,)

# Each entry upgrades the schema by one version; index 0 makes version 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4, MIGRATION_5, MIGRATION_6, MIGRATION_7, MIGRATION_8, MIGRATION_9,
)

SCHEMA_VERSION = len(MIGRATIONS)
