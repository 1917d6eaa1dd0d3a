"""The `airflow` CLI, with SQLite transactions that take the write lock when they begin.

    python -m devtools.airflow_cli ARGS...        (what `devtools.airflow_services cli` runs)

Why: `airflow backfill create` reads inside a SAVEPOINT, then writes. On SQLite in WAL mode a
transaction that has read cannot become a writer once another connection (the scheduler) committed
after its read: SQLite fails it at once with "database is locked", without waiting for the busy
timeout, and the backfill is left half-made. BEGIN IMMEDIATE takes the write lock first, waiting up
to the busy timeout (devtools.local.SQLITE_CONNECT_ARGS). This is SQLAlchemy's recipe for pysqlite
("Serializable isolation / Savepoints / Transactional DDL"); only this short-lived CLI process uses
it, so the services keep SQLite's concurrent readers.
"""

from __future__ import annotations

import sqlite3
import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool


def _no_implicit_begin(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None  # pysqlite no longer emits its own deferred BEGIN


def _begin_immediate(conn) -> None:
    if conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def immediate_sqlite_transactions(engine: Engine | None = None) -> None:
    """For `engine`, or for every engine of this process (installed before Airflow makes its own)."""
    event.listen(engine or Pool, "connect", _no_implicit_begin)
    event.listen(engine or Engine, "begin", _begin_immediate)


def main(argv: list[str]) -> int:
    immediate_sqlite_transactions()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *argv]
    return airflow_main() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
