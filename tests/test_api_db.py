"""The API's own database on its embedded default, SQLite."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import sqlalchemy as sa

from control_api import db


def test_servers_starting_together_on_sqlite_create_the_tables_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'console.db'}"
    barrier = Barrier(6)

    def start(_) -> list[str]:
        barrier.wait()  # gunicorn boots its workers at the same instant
        engine = db.connect(url)
        try:
            return sorted(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    for _ in range(5):  # a fresh file each round: the race is on the first creation
        for path in tmp_path.glob("console.db*"):
            path.unlink()
        with ThreadPoolExecutor(6) as pool:
            tables = list(pool.map(start, range(6)))
        assert tables[0] == sorted(db.metadata.tables) and all(t == tables[0] for t in tables)

    engine = db.connect(url)
    with engine.connect() as connection:  # readers never wait on a writer
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
