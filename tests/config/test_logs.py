"""Log output never carries secrets; run, connection and entity are bound into every line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from config.logs import (
    REDACTED,
    configure_logging,
    connection_context,
    get_logger,
    redact_text,
    redaction_processors,
    run_context,
)
from tests.config.helpers import load

JWT = (
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIzTVZHOSIsInN1YiI6InVAZXhhbXBsZS5jb20ifQ."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
TOKEN = "pat-na1-0f3c2a9e-known-secret"
FILE_SECRET = "file-held-client-secret-77"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _a_run(tmp_path: Path) -> None:
    """Load a config with known secrets, then log the way a careless run might."""
    settings = load(
        tmp_path,
        """
        connections:
          - name: hs-one
            vendor: hubspot
            role: distributor
            distributor_id: acme
            auth: {token: "${HS_TOKEN}"}
            mapping: hs.yaml
          - name: dyn
            vendor: dynamics
            role: internal
            base_url: https://org.crm.dynamics.com
            auth: {tenant_id: t, client_id: c, client_secret: {file: dyn.secret}}
            mapping: {entities: {account: {object: accounts, fields: {name: name}}}}
        """,
        env={"HS_TOKEN": TOKEN},
        dyn__secret=FILE_SECRET + "\n",
    )
    token = settings.connections[0].auth.token.get_secret_value()  # type: ignore[union-attr]
    log = get_logger("test")
    with run_context("run-1"), connection_context("hs-one", "opportunity"):
        log.info("request_sent", headers={"Authorization": f"Bearer {token}"}, url="/crm/v3")
        log.info(f"token was {token}", detail={"nested": [f"x {FILE_SECRET} y"]})
        log.info("oauth", body={"access_token": "short", "assertion": JWT}, note=f"jwt={JWT}")
        log.warning("retrying", url=f"https://api.example.com/x?api_token={token}&page=2")
        log.info("payload", raw=b"client_secret=" + FILE_SECRET.encode())
        try:
            raise RuntimeError(f"401 for token {token} and assertion {JWT}")
        except RuntimeError:
            log.exception("auth_failed")


def _assert_clean(text: str) -> None:
    for secret in (TOKEN, FILE_SECRET, JWT, "short"):
        assert secret not in text


def test_json_output_has_no_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    _a_run(tmp_path)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 6
    _assert_clean(out.getvalue())
    assert all(line["run_id"] == "run-1" and line["connection"] == "hs-one" for line in lines)
    assert lines[0]["headers"] == {"Authorization": REDACTED}
    assert lines[1]["event"] == f"token was {REDACTED}"
    assert "RuntimeError: 401 for token [REDACTED]" in lines[-1]["exception"]


def test_console_output_has_no_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    _a_run(tmp_path)
    _assert_clean(out.getvalue())
    assert "auth_failed" in out.getvalue() and "run_id=run-1" in out.getvalue()


def test_captured_events_have_no_secrets(tmp_path: Path) -> None:
    with capture_logs(processors=redaction_processors()) as events:
        _a_run(tmp_path)
    assert [e["event"] for e in events][-1] == "auth_failed"
    assert all(e["entity"] == "opportunity" for e in events)
    _assert_clean(repr(events))


def test_auto_format_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()  # isatty() is False
    configure_logging("INFO", "auto", stream=out)
    get_logger().info("page_pulled", records=3)
    assert json.loads(out.getvalue())["records"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", f"Authorization: Bearer {REDACTED}"),
        ("x-api-token=0123456789abcdef", f"x-api-token={REDACTED}"),
        ('{"password": "hunter22"}', f'{{"password": "{REDACTED}"}}'),
        ("domain www.example.com stays", "domain www.example.com stays"),
    ],
)
def test_redact_text_patterns(text: str, expected: str) -> None:
    assert redact_text(text) == expected
