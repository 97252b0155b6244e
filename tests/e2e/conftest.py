"""Fixtures: a small world's sandboxes with a ready config, and the crash lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.launch import SandboxSet
from sandbox.world import World
from tests.e2e.support import CrmView, config_for, running_world, small_world


@pytest.fixture(scope="session")
def e2e_tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA and localhost certificate for every HTTPS sandbox of the session."""
    return tmp_path_factory.mktemp("e2e-tls")


@pytest.fixture
def world() -> World:
    return small_world()


@pytest.fixture
def sandboxes(world: World, e2e_tls_dir: Path) -> Iterator[SandboxSet]:
    """The small world's five CRMs, served on free local ports for one test."""
    with running_world(world, e2e_tls_dir) as running:
        yield running


@pytest.fixture
def e2e_config(sandboxes: SandboxSet, tmp_path: Path) -> Path:
    """A ``channelsync.yaml`` for those sandboxes (SQLite store in ``tmp_path``)."""
    return config_for(sandboxes, tmp_path / "config")


@pytest.fixture
def crm(sandboxes: SandboxSet, e2e_config: Path) -> CrmView:
    return CrmView.of(sandboxes, e2e_config)
