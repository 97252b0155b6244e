"""Which daemon is active: a PostgreSQL advisory lock (HA), or a lock file beside SQLite.

The PostgreSQL lock lives as long as the session that took it: when the active daemon
dies, its connection closes, the lock is released, and a standby takes it on its next
tick. No lease table, no clocks to trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
import structlog

log = structlog.get_logger(__name__)

LOCK_KEY = 0x43_53_59_4E_43  # "CSYNC": one active daemon per store


class Leadership(Protocol):
    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


class PostgresLeader:
    def __init__(self, engine: sa.Engine, *, key: int = LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: sa.Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            if self._alive(self._conn):
                return True
            log.warning("leader_connection_lost")
            self._drop()
        conn = self.engine.connect()
        try:
            got = bool(
                conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            )
            conn.commit()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
            log.info("leader_acquired", pid=os.getpid())
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            finally:
                self._drop()

    def _alive(self, conn: sa.Connection) -> bool:
        try:
            conn.execute(sa.text("SELECT 1"))
            conn.commit()
            return True
        except sa.exc.DBAPIError:
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.close()


class FileLeader:
    """SQLite has one writer anyway: an exclusive lock file keeps a second daemon idle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def leadership_for(engine: sa.Engine) -> Leadership:
    if engine.dialect.name == "postgresql":
        return PostgresLeader(engine)
    database = engine.url.database or "channelsync.db"
    return FileLeader(
        Path(f"{database}.lock") if database != ":memory:" else Path(".channelsync.lock")
    )
