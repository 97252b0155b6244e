"""``check-config --online`` against live sandboxes: a misspelled field is caught per vendor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import main
from cli.democonfig import write_config
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate

MAPPINGS = Path(__file__).resolve().parents[2] / "config" / "mappings"


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSet]:
    tls = tmp_path_factory.mktemp("tls")
    running = start_world(generate(seed=3, customers=20), tls_dir=tls)
    try:
        yield running
    finally:
        running.stop()


def test_default_mappings_fit_every_live_crm(
    sandboxes: SandboxSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(sandboxes, tmp_path)
    assert main.main(["--config", str(config), "check-config", "--online"]) == 0
    out = capsys.readouterr().out
    for sb in sandboxes:
        assert f"{sb.connection}: every mapped field exists in the CRM and fits" in out


def test_a_misspelled_field_is_named_for_each_vendor(
    sandboxes: SandboxSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(sandboxes, tmp_path)
    document = yaml.safe_load(config.read_text())
    misspelled: dict[str, str] = {}
    for conn in document["connections"]:
        mapping = yaml.safe_load((MAPPINGS / f"{conn['vendor']}.yaml").read_text())
        right = mapping["entities"]["account"]["fields"]["name"]
        wrong = right[::-1] if isinstance(right, str) else right["field"][::-1]
        mapping["entities"]["account"]["fields"]["name"] = wrong
        path = tmp_path / f"{conn['name']}-mapping.yaml"
        path.write_text(yaml.safe_dump(mapping))
        conn["mapping"] = str(path)
        misspelled[conn["name"]] = wrong
    config.write_text(yaml.safe_dump(document))

    assert main.main(["--config", str(config), "check-config", "--online"]) == 2

    err = capsys.readouterr().err
    for name, wrong in misspelled.items():
        lines = [line for line in err.splitlines() if line.strip().startswith(f"{name}:")]
        assert any(wrong in line for line in lines), (name, wrong, err)
