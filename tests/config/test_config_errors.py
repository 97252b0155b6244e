"""Each config mistake yields its exact message with file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import load_settings
from tests.config.helpers import ENV, problems

CF = "<dir>/channelsync.yaml"

BASE = """
connections:
  - name: hs-one
    vendor: hubspot
    role: distributor
    distributor_id: acme
    auth: {token: "${HS_TOKEN}"}
    mapping: hs.yaml
"""


def test_wrong_type(tmp_path: Path) -> None:
    text = BASE + "outbox:\n  max_attempts: many\n"
    assert problems(tmp_path, text) == [
        f"{CF}:9 outbox.max_attempts: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_unknown_key_gets_a_suggestion(tmp_path: Path) -> None:
    text = BASE + "schedule:\n  cycle_intervall: 5m\n"
    assert problems(tmp_path, text) == [
        f"{CF}:9 schedule.cycle_intervall: unknown key 'cycle_intervall'; "
        "did you mean 'cycle_interval'?"
    ]


def test_unknown_key_inside_a_connection(tmp_path: Path) -> None:
    text = BASE + "    budget_shar: 0.5\n"
    assert problems(tmp_path, text) == [
        f"{CF}:8 connections[0].budget_shar: unknown key 'budget_shar'; "
        "did you mean 'budget_share'?"
    ]


def test_missing_env_var(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE, env={}) == [
        f"{CF}:6 connections[0].auth.token: environment variable HS_TOKEN is not set"
    ]


def test_missing_secret_file(tmp_path: Path) -> None:
    text = BASE.replace('{token: "${HS_TOKEN}"}', "{token: {file: secrets/hs.token}}")
    assert problems(tmp_path, text) == [
        f"{CF}:6 connections[0].auth.token: secret file secrets/hs.token does not exist"
    ]


def test_duplicate_connection_names(tmp_path: Path) -> None:
    text = BASE + BASE.replace("connections:\n", "")
    assert problems(tmp_path, text) == [
        f"{CF}:9 connections[1].name: duplicate connection name 'hs-one' (first at line 2)"
    ]


def test_unknown_vendor(tmp_path: Path) -> None:
    text = BASE.replace("vendor: hubspot", "vendor: hubspott")
    assert problems(tmp_path, text) == [
        f"{CF}:3 connections[0].vendor: unknown vendor 'hubspott'; use one of salesforce, "
        "hubspot, pipedrive, dynamics; did you mean 'hubspot'?"
    ]


def test_distributor_without_distributor_id(tmp_path: Path) -> None:
    text = BASE.replace("    distributor_id: acme\n", "")
    assert problems(tmp_path, text) == [
        f"{CF}:2 connections[0].distributor_id: required for a distributor connection"
    ]


def test_internal_connection_with_distributor_id(tmp_path: Path) -> None:
    text = BASE.replace("role: distributor", "role: internal")
    assert problems(tmp_path, text) == [
        f"{CF}:5 connections[0].distributor_id: only distributor connections have a distributor_id"
    ]


def test_mapping_file_names_an_unknown_canonical_field(tmp_path: Path) -> None:
    mapping = "vendor: hubspot\nentities:\n  account:\n    object: companies\n    fields:\n"
    mapping += "      name: name\n      nmae: name\n"
    text = BASE.replace("mapping: hs.yaml", "mapping: bad.yaml")
    assert problems(tmp_path, text, bad__yaml=mapping) == [
        "<dir>/bad.yaml:7 entities.account.fields.nmae: unknown canonical field 'nmae' "
        "for account; did you mean 'name'?"
    ]


def test_inline_mapping_with_unknown_output(tmp_path: Path) -> None:
    text = BASE.replace(
        "mapping: hs.yaml",
        "mapping:\n"
        "      entities:\n"
        "        account:\n"
        "          object: companies\n"
        "          fields: {name: name}\n"
        "          writes:\n"
        "            conflict: channel_conflict\n",
    )
    assert problems(tmp_path, text) == [
        f"{CF}:13 connections[0].mapping.entities.account.writes.conflict: unknown output "
        "'conflict' for account; did you mean 'conflict_flag'?"
    ]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            "90days",
            "invalid duration '90days'; use a number and a unit: s, m (minutes), h, d, w "
            "(e.g. '90d', '1h30m')",
        ),
        ("3mo", "invalid duration '3mo': months vary in length; use days (e.g. '90d')"),
        (90, "a duration needs a unit, e.g. '90d', '12h', '15m' (got int)"),
    ],
)
def test_invalid_durations(tmp_path: Path, written: object, message: str) -> None:
    text = BASE + f"policy:\n  registration_term: {written}\n"
    assert problems(tmp_path, text) == [f"{CF}:9 policy.registration_term: {message}"]


def test_invalid_period(tmp_path: Path) -> None:
    text = BASE + "scorecards:\n  period: 18 months\n"
    assert problems(tmp_path, text) == [
        f"{CF}:9 scorecards.period: invalid period '18 months'; use months or years: "
        "'18m', '18mo' or '2y'"
    ]


def test_mapping_file_that_does_not_exist(tmp_path: Path) -> None:
    text = BASE.replace("mapping: hs.yaml", "mapping: mappings/nope.yaml")
    assert problems(tmp_path, text) == [
        f"{CF}:7 connections[0].mapping: mapping file mappings/nope.yaml does not exist"
    ]


def test_ca_bundle_that_does_not_exist(tmp_path: Path) -> None:
    text = BASE + "    ca_bundle: certs/ca.pem\n"
    assert problems(tmp_path, text) == [
        f"{CF}:8 connections[0].ca_bundle: file certs/ca.pem does not exist"
    ]


@pytest.mark.parametrize(
    ("share", "message"),
    [
        ("1.5", "Input should be less than or equal to 1"),
        ("0", "Input should be greater than 0"),
    ],
)
def test_budget_share_out_of_range(tmp_path: Path, share: str, message: str) -> None:
    text = BASE + f"    budget_share: {share}\n"
    assert problems(tmp_path, text) == [f"{CF}:8 connections[0].budget_share: {message}"]


def test_bad_yaml_syntax_reports_its_line(tmp_path: Path) -> None:
    text = BASE + "policy:\n  registration_term: [90d\n  warning_window: 14d\n"
    assert problems(tmp_path, text) == [f"{CF}:10: invalid YAML: expected ',' or ']', but got ':'"]


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = BASE + "policy:\n  warning_window: 14d\n  warning_window: 7d\n"
    assert problems(tmp_path, text) == [
        f"{CF}:10 policy.warning_window: duplicate key (first at line 9)"
    ]


def test_auth_shape_of_another_vendor(tmp_path: Path) -> None:
    text = BASE.replace('{token: "${HS_TOKEN}"}', '{api_token: "${HS_TOKEN}"}')
    assert problems(tmp_path, text) == [
        f"{CF}:6 connections[0].auth.api_token: unknown key 'api_token'; did you mean "
        "'token'? (hubspot auth takes: token)",
        f"{CF}:6 connections[0].auth.token: required key is missing",
    ]


def test_salesforce_flow_without_its_keys(tmp_path: Path) -> None:
    text = """
    connections:
      - name: sf
        vendor: salesforce
        role: internal
        auth: {flow: client_credentials, consumer_key: abc}
        mapping: {entities: {account: {object: Account, fields: {name: Name}}}}
    """
    assert problems(tmp_path, text) == [
        f"{CF}:5 connections[0].auth: salesforce flow 'client_credentials' needs consumer_secret"
    ]


def test_value_map_that_is_not_a_map(tmp_path: Path) -> None:
    mapping = "entities:\n  account:\n    object: companies\n    fields:\n"
    mapping += "      name: name\n      country: {field: country, values: [DE, AT]}\n"
    text = BASE.replace("mapping: hs.yaml", "mapping: bad.yaml")
    assert problems(tmp_path, text, bad__yaml=mapping) == [
        "<dir>/bad.yaml:6 entities.account.fields.country.values: values must be a non-empty "
        "mapping (vendor value: canonical value)"
    ]


def test_value_map_target_outside_the_vocabulary(tmp_path: Path) -> None:
    mapping = "entities:\n  opportunity:\n    object: deals\n    fields:\n      name: dealname\n"
    mapping += "      stage_category:\n        field: dealstage\n"
    mapping += "        values: {closedwon: won, closedlost: closed}\n"
    text = BASE.replace("mapping: hs.yaml", "mapping: bad.yaml")
    assert problems(tmp_path, text, bad__yaml=mapping) == [
        "<dir>/bad.yaml:8 entities.opportunity.fields.stage_category.values.closedlost: "
        "'closed' is not one of lost, open, won; did you mean 'lost'?"
    ]


def test_unknown_type_and_format_in_mapping(tmp_path: Path) -> None:
    mapping = "entities:\n  opportunity:\n    object: deals\n    fields:\n      name: dealname\n"
    mapping += "      amount: {field: amount, type: decmial}\n"
    mapping += "      close_date: {field: closedate, type: date, format: epoch}\n"
    text = BASE.replace("mapping: hs.yaml", "mapping: bad.yaml")
    assert problems(tmp_path, text, bad__yaml=mapping) == [
        "<dir>/bad.yaml:6 entities.opportunity.fields.amount.type: unknown type 'decmial'; use "
        "one of string, integer, decimal, boolean, date, datetime; did you mean 'decimal'?",
        "<dir>/bad.yaml:7 entities.opportunity.fields.close_date.format: unknown format 'epoch'; "
        "use iso, epoch_ms, epoch_s or a strftime pattern (%d.%m.%Y)",
    ]


def test_mapping_for_another_vendor(tmp_path: Path) -> None:
    text = BASE.replace("vendor: hubspot", "vendor: pipedrive").replace(
        '{token: "${HS_TOKEN}"}', '{api_token: "${HS_TOKEN}"}'
    )
    assert problems(tmp_path, text) == [
        "<dir>/hs.yaml:1 vendor: mapping is for 'hubspot' but the connection is pipedrive"
    ]


def test_policy_references_unknown_connection_and_tier(tmp_path: Path) -> None:
    text = BASE + (
        "policy:\n  channel_manager: {hs-onee: '005'}\n  distributors:\n    acme: {tier: gold}\n"
    )
    assert problems(tmp_path, text) == [
        f"{CF}:9 policy.channel_manager.hs-onee: unknown connection 'hs-onee'; "
        "did you mean 'hs-one'?",
        f"{CF}:11 policy.distributors.acme.tier: unknown tier 'gold'",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = BASE.replace("vendor: hubspot", "vendor: hubspot\n    enabled: maybe") + (
        "store:\n  url: mysql://db/x\nlogging:\n  level: LOUD\n"
    )
    assert problems(tmp_path, text, env={}) == [
        f"{CF}:4 connections[0].enabled: Input should be a valid boolean, "
        "unable to interpret input",
        f"{CF}:7 connections[0].auth.token: environment variable HS_TOKEN is not set",
        f"{CF}:10 store.url: store URL must start with sqlite:///, postgresql+psycopg:// "
        "or postgresql://",
        f"{CF}:12 logging.level: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR",
    ]


def test_config_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.yaml", environ=ENV)
    assert caught.value.messages == [f"{tmp_path}/nope.yaml: config file does not exist"]


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    secret = "pat-na1-very-secret-value-42"
    text = BASE.replace('{token: "${HS_TOKEN}"}', '{token: "${HS_TOKEN}", scope: all}')
    text += "    budget_share: lots\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), environ={"HS_TOKEN": secret})
    assert secret not in str(caught.value)
    assert len(caught.value.problems) == 2


def _write(tmp_path: Path, text: str) -> Path:
    from tests.config.helpers import write_config

    return write_config(tmp_path, text)


def test_unquoted_norway_is_not_a_boolean(tmp_path: Path) -> None:
    text = BASE + "scorecards:\n  territories:\n    nordics: [SE, NO]\n"
    assert problems(tmp_path, text) == [
        f"{CF}:10 scorecards.territories.nordics[1]: got false, not a country code; quote it: 'NO'"
    ]


def test_section_of_the_wrong_shape(tmp_path: Path) -> None:
    text = BASE + "policy: strict\nscorecards:\n  territories: {dach: DE}\n"
    assert problems(tmp_path, text) == [
        f"{CF}:8 policy: expected a mapping (key: value), got str",
        f"{CF}:10 scorecards.territories.dach: expected a list, got str",
    ]


def test_country_in_two_territories(tmp_path: Path) -> None:
    text = BASE + "scorecards:\n  territories:\n    dach: [DE, AT]\n    central: [PL, de]\n"
    assert problems(tmp_path, text) == [
        f"{CF}:11 scorecards.territories.central[1]: DE is already in territory 'dach'"
    ]
