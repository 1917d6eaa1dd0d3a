"""devtools.airflow_cli: a transaction that reads in a SAVEPOINT and then writes (as `airflow backfill
create` does) waits for SQLite's write lock instead of failing when another connection committed."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from devtools.airflow_cli import immediate_sqlite_transactions


def _db(tmp_path):
    db = tmp_path / "airflow.db"
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")  # as Airflow sets it
    c.execute("CREATE TABLE run (writer TEXT)")
    c.commit()
    c.close()
    return db


def _savepoint_read_then_write(engine, db) -> tuple[list, threading.Thread]:
    """Reads in a SAVEPOINT; another connection (the scheduler) writes; then this one writes."""
    def scheduler():
        c = sqlite3.connect(db, timeout=30)
        c.execute("INSERT INTO run VALUES ('scheduler')")
        c.commit()
        c.close()

    other = threading.Thread(target=scheduler)
    with Session(engine) as session:
        with session.begin_nested():
            session.execute(text("SELECT count(*) FROM run")).scalar()
            other.start()
            other.join(timeout=1)  # plain: commits at once; immediate: waits for this transaction
            session.execute(text("INSERT INTO run VALUES ('backfill')"))
        session.commit()
    other.join()
    with sqlite3.connect(db) as c:
        return [w for (w,) in c.execute("SELECT writer FROM run ORDER BY rowid")], other


def test_a_deferred_transaction_fails_at_once_when_another_connection_committed(tmp_path):
    db = _db(tmp_path)
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 30})
    with pytest.raises(OperationalError, match="database is locked"):
        _savepoint_read_then_write(engine, db)


def test_with_immediate_transactions_the_write_waits_for_the_lock(tmp_path):
    db = _db(tmp_path)
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 30})
    immediate_sqlite_transactions(engine)
    rows, _ = _savepoint_read_then_write(engine, db)
    assert rows == ["backfill", "scheduler"]
