"""The API's own records (jobs, data versions, feedback, accounts, the audit trail): SQLite by
default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import sqlalchemy as sa
from filelock import FileLock
from sqlalchemy import event

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("step", sa.String(64), nullable=True),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("log", sa.Text, nullable=False, default=""),
    # who asked for it: a user, a token's owner, the service token, or a policy
    sa.Column("requested_by", sa.String(64), nullable=True),
    sa.Column("requested_role", sa.String(16), nullable=True),
    # the fencing token of the worker that holds the job: new at each start, checked before the
    # job changes the registry, so a holder whose lease was taken away changes nothing
    sa.Column("lease", sa.String(36), nullable=True),
)

# one row per kind while a job of that kind is queued or running: the single-flight guard
job_locks = sa.Table(
    "job_locks", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("job_id", sa.String(36), nullable=False),
)

data_versions = sa.Table(
    "data_versions", metadata,
    sa.Column("md5", sa.String(32), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("class_balance", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("validation", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("pointer", sa.Text, nullable=False),
)

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # person (signs in) or service (tokens only)
    sa.Column("password_hash", sa.Text, nullable=True),  # argon2id; None for service accounts
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
)

# sign-in sessions; only the SHA-256 of the token is kept
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# personal and service API tokens; only the SHA-256 of the token and its visible prefix are kept
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# append-only and hash-chained: seq and prev_hash are unique, so two writers cannot fork the chain
audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False),
)

# challengers that passed the gate while `registry.require_approval` is on
approvals = sa.Table(
    "approvals", metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending, approved, rejected
    sa.Column("job_id", sa.String(36), nullable=True),
    sa.Column("requested_by", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("comparison", sa.JSON, nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
)

# when every API worker of the deployment switches to a newly promoted champion: each loads the new
# version ahead and switches at `switch_at`, so no response names a version older than one already
# served (the first worker to load the new version writes the row; seq orders the moves of a model)
model_switches = sa.Table(
    "model_switches", metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("from_version", sa.String(16), nullable=True),
    sa.Column("to_version", sa.String(16), nullable=False),
    sa.Column("switch_at", sa.Float, nullable=False),  # seconds since the epoch
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


SCHEMA_LOCK_KEY = 0x6F70636F6E  # any fixed number: the PostgreSQL advisory lock for table creation


def row_dict(row) -> dict | None:
    """A result row as a dict, datetimes in UTC (SQLite stores them without a zone)."""
    if row is None:
        return None
    values = dict(row._mapping)
    for key, value in values.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            values[key] = value.replace(tzinfo=UTC)
    return values


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def normalise(url: str) -> str:
    """`postgresql://...` means the pinned psycopg2 driver (SQLAlchemy 2.1 would pick psycopg 3)."""
    return "postgresql+psycopg2://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def _schema_lock(engine: sa.Engine):
    """Serialises table creation among processes sharing one SQLite file.

    Switching a new file to WAL needs an exclusive lock that SQLite does not wait for, so
    connections opening the file at once fail with "database is locked" without this.
    """
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return contextlib.nullcontext()
    return FileLock(f"{path}.lock", timeout=60)


def connect(url: str) -> sa.Engine:
    """An engine with the tables created; SQLite in WAL mode so readers never wait on the worker."""
    url = normalise(url)
    # a server that does not answer fails a connection in seconds, not minutes (the API answers 503)
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"), connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    # API servers and workers starting together would race to create the same tables
    with _schema_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        elif engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")  # kept in the file once set
        metadata.create_all(connection)
        _add_missing_columns(connection)
    return engine


def _add_missing_columns(connection) -> None:
    """Columns added to a table after a database was created (all nullable): ALTER TABLE ADD."""
    inspector = sa.inspect(connection)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=connection.dialect)
                connection.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
