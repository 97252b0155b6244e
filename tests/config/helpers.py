"""Helpers for config tests: write a config (and mapping files) and collect its problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import load_settings
from config.models import Settings

HUBSPOT_MAPPING = """\
vendor: hubspot
entities:
  account:
    object: companies
    fields:
      name: name
      country: {field: country, values: {Germany: DE}}
    writes:
      conflict_flag: {field: channel_conflict, type: boolean}
  opportunity:
    object: deals
    fields:
      name: dealname
      amount: {field: amount, type: decimal}
      stage_category: {field: dealstage, values: {closedwon: won, closedlost: lost, "*": open}}
      close_date: {field: closedate, type: date}
    writes:
      registration_status: {field: registration_status, values: {active: Active}}
"""

ENV = {"HS_TOKEN": "pat-na1-test-token-0001"}


def write_config(tmp_path: Path, text: str, **files: str) -> Path:
    """Write ``channelsync.yaml`` (dedented) plus extra files (name -> text) into tmp_path."""
    (tmp_path / "hs.yaml").write_text(HUBSPOT_MAPPING)
    for name, content in files.items():
        (tmp_path / name.replace("__", ".")).write_text(textwrap.dedent(content))
    path = tmp_path / "channelsync.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **files: str) -> Settings:
    path = write_config(tmp_path, text, **files)
    return load_settings(path, environ=ENV if env is None else env)


def problems(
    tmp_path: Path, text: str, env: dict[str, str] | None = None, **files: str
) -> list[str]:
    """Every problem message, with the tmp folder replaced by ``<dir>``."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env, **files)
    return [m.replace(str(tmp_path), "<dir>") for m in caught.value.messages]
