"""A full evaluation reads a SQLite store file ahead of the rules' random reads, when it
fits in memory, without touching this process's locks on it; other stores are left
alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from state import Store
from sync.scale import prefetch


@pytest.fixture
def file_store(tmp_path: Path) -> Any:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield store
    store.close()


def test_a_store_file_that_fits_is_read_ahead_by_another_process(file_store: Any) -> None:
    reader = prefetch(file_store, available=1 << 34)
    assert reader is not None
    assert reader.wait(timeout=30) == 0  # it read the whole file and ended


def test_reading_ahead_keeps_this_process_locks_on_the_store(
        file_store: Any, tmp_path: Path) -> None:
    """SQLite's locks are the process's: had the file been opened and closed here, another
    process closing its connection would take the store for unused, checkpoint it and
    delete the write-ahead log under this process's open connection."""
    path = tmp_path / "store.db"
    file_store.ensure_customers([("cus_1", "Acme")])  # a connection stays open in the pool
    reader = prefetch(file_store, available=1 << 34)
    assert reader is not None and reader.wait(timeout=30) == 0
    other = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
             " c.execute('SELECT count(*) FROM end_customer').fetchall(); c.close()")
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=30)
    assert path.with_name("store.db-wal").exists()
    file_store.ensure_customers([("cus_2", "Globex")])
    assert file_store.customers() == {"cus_1": "Acme", "cus_2": "Globex"}


def test_a_file_larger_than_half_the_memory_available_is_not_read(
        file_store: Any, tmp_path: Path) -> None:
    size = (tmp_path / "store.db").stat().st_size
    assert prefetch(file_store, available=2 * size) is not None
    assert prefetch(file_store, available=2 * size - 1) is None


def test_a_store_without_a_file_is_not_read() -> None:
    store = Store.from_url("sqlite://")
    try:
        assert prefetch(store, available=1 << 34) is None
    finally:
        store.close()
