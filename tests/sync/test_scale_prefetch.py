"""A full evaluation reads a SQLite store file ahead of the rules' random reads, when it
fits in memory; other stores are left alone."""

from __future__ import annotations

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


def test_a_store_file_that_fits_is_read_ahead_in_a_thread(file_store: Any) -> None:
    thread = prefetch(file_store, available=1 << 34)
    assert thread is not None and thread.name == "store-prefetch"
    thread.join(timeout=10)
    assert not thread.is_alive()


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
