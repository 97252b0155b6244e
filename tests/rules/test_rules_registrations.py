"""Registration lifecycle: states, boundaries, overrides, decisions and their read-back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules.model import OpportunityFact, Policy, TermOverride
from rules.registrations import Registration, assess, midnight, thresholds
from tests.rules.test_rules_fixtures import DAY, NOW, day, partner_opp

TERM_ONLY = Policy(
    registration_term=90 * DAY, inactivity_limit=365 * DAY, warning_window=14 * DAY
)
SECOND = timedelta(seconds=1)


def state_of(opp: OpportunityFact, policy: Policy = TERM_ONLY, now: datetime = NOW) -> Registration:
    registration = assess(opp, policy, now)
    assert registration is not None
    return registration


def test_active_until_the_warning_window_starts() -> None:
    opp = partner_opp("D1", "o1", registered_days_ago=None,
                      registered_by="D1", registered_at=NOW - 76 * DAY + SECOND)
    reg = state_of(opp)
    assert (reg.state, reg.warning_at, reg.expires_at) == ("active", NOW + SECOND,
                                                           NOW + 14 * DAY + SECOND)
    assert reg.valid and thresholds(reg) == (NOW + SECOND, NOW + 14 * DAY + SECOND)


def test_expiring_exactly_at_warning_start() -> None:
    opp = partner_opp("D1", "o1", registered_days_ago=76)
    reg = state_of(opp)
    assert (reg.state, reg.warning_at, reg.expires_on) == ("expiring", NOW, (NOW + 14 * DAY).date())


def test_expired_exactly_at_expiry_and_not_a_moment_before() -> None:
    at_expiry = partner_opp("D1", "o1", registered_days_ago=90)
    assert state_of(at_expiry).state == "expired"
    assert not state_of(at_expiry).valid
    just_before = replace(at_expiry, registered_at=NOW - 90 * DAY + SECOND)
    assert state_of(just_before).state == "expiring"


def test_inactivity_ends_a_registration_early() -> None:
    policy = Policy(registration_term=90 * DAY, inactivity_limit=30 * DAY, warning_window=7 * DAY)
    opp = partner_opp("D1", "o1", registered_days_ago=40, last_activity_at=NOW - 30 * DAY)
    reg = state_of(opp, policy)
    assert (reg.state, reg.expires_at, reg.lapsed_by_inactivity) == ("expired", NOW, True)
    active = replace(opp, last_activity_at=NOW - 2 * DAY)
    reg = state_of(active, policy)
    assert (reg.state, reg.expires_at, reg.lapsed_by_inactivity) == ("active", NOW + 28 * DAY,
                                                                     True)


def test_pending_without_registration_date_and_closed_states() -> None:
    pending = partner_opp("D1", "o1", registered_days_ago=None, registered_by="D1")
    reg = state_of(pending)
    assert (reg.state, reg.expires_at, thresholds(reg)) == ("pending", None, ())
    assert assess(partner_opp("D1", "o2", registered_days_ago=None), TERM_ONLY, NOW) is None
    won = partner_opp("D1", "o3", registered_days_ago=300, stage_category="won")
    lost = partner_opp("D1", "o4", registered_days_ago=10, stage_category="lost")
    assert (state_of(won).state, state_of(lost).state) == ("won", "lost")
    assert thresholds(state_of(won)) == ()


def test_per_distributor_and_tier_overrides() -> None:
    policy = Policy(
        registration_term=90 * DAY, inactivity_limit=365 * DAY, warning_window=14 * DAY,
        tiers={"gold": TermOverride(registration_term=120 * DAY, warning_window=30 * DAY)},
        distributors={
            "D1": TermOverride(registration_term=180 * DAY),
            "D2": TermOverride(tier="gold", registration_term=150 * DAY),
            "D3": TermOverride(tier="gold"),
        },
    )
    assert policy.terms_for("D1").registration_term == 180 * DAY
    assert policy.terms_for("D1").warning_window == 14 * DAY
    assert (policy.terms_for("D2").registration_term, policy.terms_for("D2").warning_window) == (
        150 * DAY, 30 * DAY)
    assert policy.terms_for("D3").registration_term == 120 * DAY
    assert policy.terms_for("D9") == TERM_ONLY.terms_for(None)
    opp = partner_opp("D1", "o1", registered_days_ago=100)
    assert state_of(opp, policy).state == "active"
    assert state_of(opp, TERM_ONLY).state == "expired"


def test_extend_decision_sets_a_new_expiry_and_clears_the_decision() -> None:
    decided = NOW - DAY
    opp = partner_opp("D1", "o1", registered_days_ago=100, registration_decision="extend",
                      registration_status="expired", modified_at=decided)
    reg = state_of(opp)
    assert (reg.state, reg.holder, reg.carried_out, reg.clear_decision) == (
        "extended", "D1", "extend", True)
    assert reg.expires_on == day("2026-08-29") == (decided + 90 * DAY).date()
    # next cycle reads back what we wrote: the extension stays in force
    read_back = replace(opp, registration_decision=None, registration_status="extended",
                        registration_expires_at=reg.expires_on, modified_at=NOW)
    again = state_of(read_back)
    assert (again.state, again.expires_at, again.clear_decision) == (
        "extended", midnight(day("2026-08-29")), False)
    later = datetime(2026, 8, 20, tzinfo=UTC)
    assert state_of(replace(read_back, registration_status="expiring"), now=later).state == (
        "expiring")
    assert state_of(read_back, now=midnight(day("2026-08-29"))).state == "expired"


def test_a_later_expiry_date_with_an_active_status_is_not_an_extension() -> None:
    hand_edited = partner_opp("D1", "o1", registered_days_ago=100, registration_status="active",
                              registration_expires_at=day("2026-12-31"))
    reg = state_of(hand_edited)
    assert (reg.state, reg.expires_at) == ("expired", NOW - 10 * DAY)


def test_reassign_moves_the_registration_to_the_named_distributor() -> None:
    policy = Policy(registration_term=90 * DAY, inactivity_limit=365 * DAY,
                    warning_window=14 * DAY,
                    distributors={"D2": TermOverride(registration_term=60 * DAY)})
    opp = partner_opp("D1", "o1", registered_days_ago=95, registration_decision="reassign",
                      reassign_to="D2", modified_at=NOW - 2 * DAY)
    reg = state_of(opp, policy)
    # D2 holds it for its own term from the decision day; D1's record shows its claim
    # released on that day
    assert (reg.state, reg.holder, reg.registered_by, reg.expires_on, reg.clear_decision) == (
        "active", "D2", "D1", day("2026-07-29"), True)
    assert (reg.recorded_status, reg.recorded_expiry, reg.valid) == (
        "released", day("2026-05-30"), True)
    read_back = replace(opp, registration_decision=None, registration_status="released",
                        registration_expires_at=reg.recorded_expiry, modified_at=NOW)
    for later in (NOW, NOW + 30 * DAY):  # stable, and the new holder's term runs on
        again = state_of(read_back, policy, later)
        assert (again.holder, again.expires_on, again.recorded_status,
                again.recorded_expiry, again.clear_decision) == (
            "D2", day("2026-07-29"), "released", day("2026-05-30"), False)
    assert state_of(read_back, policy, NOW + 47 * DAY).state == "expiring"
    assert state_of(read_back, policy, midnight(day("2026-07-29"))).state == "expired"


def test_decisions_on_a_reassigned_registration() -> None:
    reassigned = partner_opp("D1", "o1", registered_days_ago=200, reassign_to="D2",
                             registration_status="released",
                             registration_expires_at=day("2026-02-20"))
    assert state_of(reassigned).state == "expired"  # D2's term from 02-20 has ended
    # extend: D2's term restarts on the decision day
    extended = state_of(replace(reassigned, registration_decision="extend",
                                modified_at=NOW - DAY))
    assert (extended.state, extended.holder, extended.recorded_status,
            extended.recorded_expiry, extended.expires_on, extended.clear_decision) == (
        "active", "D2", "released", day("2026-05-31"), day("2026-08-29"), True)
    # reassign again, to D3
    moved = state_of(replace(reassigned, registration_decision="reassign", reassign_to="D3",
                             modified_at=NOW - DAY))
    assert (moved.holder, moved.state, moved.recorded_expiry) == ("D3", "active",
                                                                  day("2026-05-31"))
    # release while reassign_to still names D2 would read back as a reassignment: refused
    refused = state_of(replace(reassigned, registration_decision="release"))
    assert (refused.holder, refused.clear_decision, refused.recorded_status) == (
        "D2", False, "released")
    assert refused.invalid_decision is not None and "reassign_to" in refused.invalid_decision
    # once reassign_to is cleared, the release is carried out
    released = state_of(replace(reassigned, registration_decision="release", reassign_to=None,
                                modified_at=NOW - DAY))
    assert (released.state, released.recorded_expiry, released.clear_decision) == (
        "released", day("2026-05-31"), True)
    # a reassigned deal that closes shows won, like any closed registration
    won = state_of(replace(reassigned, stage_category="won"))
    assert (won.state, won.recorded_status, won.holder) == ("won", "won", "D1")


def test_an_extension_ignores_a_reassign_to_left_over() -> None:
    opp = partner_opp("D1", "o1", registered_days_ago=100, registration_decision="extend",
                      registration_status="expired", reassign_to="D2", modified_at=NOW - DAY)
    reg = state_of(opp)
    assert (reg.state, reg.holder, reg.recorded_status) == ("extended", "D1", "extended")
    read_back = replace(opp, registration_decision=None, registration_status="extended",
                        registration_expires_at=reg.recorded_expiry)
    assert (state_of(read_back).state, state_of(read_back).holder) == ("extended", "D1")


def test_invalid_decisions_are_reported_not_carried_out() -> None:
    no_target = partner_opp("D1", "o1", registered_days_ago=95, registration_decision="reassign")
    reg = state_of(no_target)
    assert (reg.state, reg.carried_out, reg.clear_decision) == ("expired", None, False)
    assert reg.invalid_decision is not None and "reassign_to" in reg.invalid_decision
    unknown = replace(no_target, registration_decision="postpone")
    assert state_of(unknown).invalid_decision == "unknown decision 'postpone'"
    closed = replace(no_target, registration_decision="extend", stage_category="won")
    assert (state_of(closed).state, state_of(closed).clear_decision) == ("won", False)


def test_release_is_terminal_and_dated() -> None:
    opp = partner_opp("D1", "o1", registered_days_ago=30, registration_decision="release",
                      modified_at=NOW - DAY)
    reg = state_of(opp)
    assert (reg.state, reg.expires_on, reg.clear_decision, reg.valid) == (
        "released", day("2026-05-31"), True, False)
    read_back = replace(opp, registration_decision=None, registration_status="released",
                        registration_expires_at=reg.expires_on)
    again = state_of(read_back)
    assert (again.state, again.expires_on, thresholds(again)) == (
        "released", day("2026-05-31"), ())


def test_policy_and_scorecard_config_from_loaded_settings() -> None:
    import config.models as settings
    from rules.scorecards import ScorecardConfig

    loaded = settings.Policy(
        channel_manager={"sf-main": "cm-anna"}, direct_after_release=None,
        tiers={"gold": settings.TermOverrides(registration_term=180 * DAY)},
        distributors={"D1": settings.DistributorPolicy(tier="gold", warning_window=3 * DAY)},
    )
    policy = Policy.from_settings(loaded)
    assert policy.terms_for("D1") == Policy(
        registration_term=180 * DAY, inactivity_limit=30 * DAY, warning_window=3 * DAY
    ).terms_for(None)
    assert (policy.channel_managers, policy.direct_after_release) == ({"sf-main": "cm-anna"},
                                                                      None)
    scorecards = ScorecardConfig.from_settings(settings.ScorecardSettings(
        territories={"DACH": ("DE", "AT")}, currency_rates={"USD": Decimal("0.9")}))
    assert (scorecards.territory_of("AT"), scorecards.currency_rates["USD"],
            scorecards.paper_partner.max_win_rate) == ("DACH", Decimal("0.9"), Decimal("0.15"))
