"""Deterministic channel scenario: end customers spread over five CRMs, with ground truth.

Layout (``generate``): ``sf-direct`` (Salesforce, the manufacturer: direct deals, one
partner account per distributor, Partner Community registrations of the portal-only
distributor ``dist-portal``), ``d365-emea`` (Dynamics, a second internal division for
EMEA), ``hs-northwind`` and ``hs-brightline`` (HubSpot distributors) and ``pd-alpine``
(Pipedrive distributor). Background customers never conflict by construction; the
planted cases (``GroundTruth.conflicts``) are the only conflicts:

- ``direct_vs_channel``: an open direct deal on a customer a distributor has an active
  registration on (``reason: registered``) or owns through the internal account's
  channel owner (``reason: owned``);
- ``channel_vs_channel``: two distributors' active registrations, ``winner`` is the one
  registered first;
- ``unregistered_on_other_customer``: a distributor's unregistered open deal on a customer
  another distributor has registered;
- ``routing``: an inbound direct deal (created less than three days before ``now``) on a
  registered customer, to be routed to ``routed_to`` (the internal CRM's channel manager);
  each routing case is also listed as a ``direct_vs_channel`` conflict.

Policy assumed for ages: registration term 90 days, inactivity limit 30 days, warning
window 14 days. ``GroundTruth.registrations`` gives each registered deal's state at
``World.now`` before any manager decision is carried out.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sandbox import names
from sandbox.layout import (
    CHANNEL_MANAGER,
    DISTRIBUTORS,
    HISTORIC_WIN_RATE,
    HOME_OF,
    LAYOUT,
    PRODUCTS,
    REGISTRATION_AGES,
    REGISTRATION_TERM_DAYS,
    USD_RATE,
)
from sandbox.names import COUNTRIES, EMEA, Company
from sandbox.world import CrmSeed, GroundTruth, SeedAccount, SeedDeal, SeedUser, World


def generate(*, seed: int = 7, customers: int = 400, now: datetime | None = None) -> World:
    """Build the scenario. ``now`` defaults to today's midnight UTC (stable within a day)."""
    if customers < 20:
        raise ValueError(f"customers={customers}: the scenario needs at least 20 customers")
    if now is None:
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return _Builder(seed, now).build(customers)


def load_fixture_world(path: Path) -> World:
    """A World from a JSON or YAML fixture of neutral seeds (format: :mod:`sandbox.worldio`)."""
    from sandbox.worldio import load_world

    return load_world(path)


def _name_key(name: str) -> str:
    """Two spellings of one name ("Müller & Weber", "Muller and Weber") share this key."""
    folded = names.strip_accents(name).lower().replace("&", " and ")
    return "".join(c for c in folded if c.isalnum())


class _Builder:
    def __init__(self, seed: int, now: datetime) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        # decisions added after the first release draw from their own stream, so that every
        # seed still yields the same companies, accounts and deals as before
        self.later_rng = random.Random(f"{seed}-later")
        self.now = now
        self.crms = {c: CrmSeed(connection=c, vendor=v, role=r, distributor_id=d)
                     for c, v, r, d in LAYOUT}
        self.truth = GroundTruth()
        self.counters: dict[str, int] = {}
        self.used_names: set[tuple[str, str]] = set()
        self.used_domains: set[str] = set()
        self.companies: list[Company] = []
        self.distributor_homes: list[tuple[str, str, Company, str]] = []  # for _history

    # -- top level ------------------------------------------------------------------------
    def build(self, customers: int) -> World:
        self._users()
        self._partner_accounts()
        planted = max(2, customers // 50)
        background = customers - 4 * planted
        for _ in range(background):
            self._background_customer(self._new_company())
        for kind in ("direct_vs_channel", "channel_vs_channel", "unregistered", "routing"):
            for i in range(planted):
                self._planted(kind, i)
        for crm in self.crms.values():  # CRMs list records in no meaningful order
            self.rng.shuffle(crm.accounts)
            self.rng.shuffle(crm.deals)
        self._history()
        return World(seed=self.seed, crms=list(self.crms.values()), truth=self.truth,
                     now=self.now)

    def _key(self, connection: str, kind: str) -> str:
        counter = f"{connection}:{kind}"
        self.counters[counter] = self.counters.get(counter, 0) + 1
        return f"{connection}-{kind}{self.counters[counter]:06d}"

    def _days_ago(self, low: float, high: float) -> datetime:
        days = self.rng.uniform(low, high)
        return (self.now - timedelta(days=days)).replace(microsecond=0)

    def _users(self) -> None:
        people = iter(("Dana Whitfield", "Marco Bellini", "Priya Raman", "Tom Becker",
                       "Lena Holm", "Yuki Sato", "Sofia Ortega", "Jonas Wolff", "Amara Osei",
                       "Chris Novak", "Elif Demir", "Noah Clarke", "Ines Duarte", "Ravi Shah",
                       "Hanna Berg", "Luca Marino", "Zoe Adams", "Omar Haddad"))
        for crm in self.crms.values():
            roles = ["cm", "rep1", "rep2", "rep3"] if crm.role == "internal" else ["rep1", "rep2"]
            if crm.connection == "sf-direct":
                roles.append("portal")
            for role in roles:
                person = next(people)
                prefix = crm.connection.split("-")[0]
                crm.users.append(SeedUser(key=f"{prefix}-u-{role}", name=person,
                                          email=person.lower().replace(" ", ".") + "@example.com"))

    def _partner_accounts(self) -> None:
        crm = self.crms["sf-direct"]
        for dist_id, (legal_name, country, _) in DISTRIBUTORS.items():
            key = self._key("sf-direct", "P")
            slug = dist_id.removeprefix("dist-")
            crm.accounts.append(SeedAccount(
                key=key, name=legal_name, website=f"https://www.{slug}-partners.example",
                country=country, partner_id=dist_id, channel_owner="direct",
                created_at=self._days_ago(800, 1500), modified_at=self._days_ago(1, 60)))
            self.truth.customer_of[("sf-direct", key)] = f"partner:{dist_id}"

    # -- companies ------------------------------------------------------------------------
    def _new_company(self, *, country: str | None = None, name: str | None = None) -> Company:
        rng = self.rng
        country = country or names.pick_country(rng)
        if name is None or (country, _name_key(name)) in self.used_names:
            roll = rng.random()
            name = None
            if roll < 0.08 and self.companies:  # a look-alike in the same country
                other = rng.choice(self.companies[-200:])
                if other.country == country:
                    name = names.sibling_name(rng, other.name)
            elif roll < 0.13 and self.companies:  # the same name abroad, another company
                name = rng.choice(self.companies[-200:]).name
            while name is None or (country, _name_key(name)) in self.used_names:
                name = names.base_name(rng)
        self.used_names.add((country, _name_key(name)))
        number = len(self.companies) + 1
        suffix = COUNTRIES[country][1]
        slug = names.slug(name, rng)
        domains: tuple[str, ...] = ()
        if rng.random() < 0.9:
            # a domain belongs to one company: a namesake takes a variant of the name
            primary = f"{slug}.{suffix}"
            if primary in self.used_domains or rng.random() < 0.05:
                primary = f"{slug}{number}.{suffix}"
            domains = (primary,)
            group = f"{slug}-group.com"
            if suffix != "com" and group not in self.used_domains and rng.random() < 0.2:
                domains += (group,)
            self.used_domains.update(domains)
        duns = f"{rng.randrange(10**8, 10**9)}" if rng.random() < 0.55 else None
        vat = names.vat_for(rng, country) if rng.random() < 0.6 else None
        company = Company(customer_id=f"C{number:06d}", name=name,
                          legal_form=rng.randrange(len(COUNTRIES[country][4])), country=country,
                          domains=domains, duns=duns, vat_id=vat)
        self.companies.append(company)
        return company

    def _add_account(self, connection: str, company: Company, *,
                     channel_owner: str | None = None) -> str:
        rng = self.rng
        internal = self.crms[connection].role == "internal"
        key = self._key(connection, "A")
        created = self._days_ago(30, 1500)
        modified = (created + (self.now - created) * rng.random()).replace(microsecond=0)
        account = SeedAccount(
            key=key,
            name=names.render_name(rng, company, typo_rate=0.03),
            website=names.render_website(rng, company, free_mail_rate=0.01 if internal else 0.06),
            country=company.country if rng.random() < 0.94 else None,
            # Salesforce's DunsNumber holds 9 characters: dashes only where text is free
            duns=names.render_duns(rng, company.duns, dashes=not internal)
            if company.duns and rng.random() < (0.5 if internal else 0.15) else None,
            vat_id=names.render_vat(rng, company.vat_id)
            if company.vat_id and rng.random() < (0.35 if internal else 0.25) else None,
            owner_user=rng.choice(self._reps(connection)),
            channel_owner=channel_owner,
            created_at=created,
            modified_at=modified,
        )
        self.crms[connection].accounts.append(account)
        self.truth.customer_of[(connection, key)] = company.customer_id
        if rng.random() < 0.03:  # the same company entered twice in one CRM
            dup = self._key(connection, "A")
            self.crms[connection].accounts.append(SeedAccount(
                key=dup, name=names.render_name(rng, company, typo_rate=0.03),
                website=names.render_website(rng, company, free_mail_rate=0.05),
                country=company.country, owner_user=account.owner_user,
                created_at=self._days_ago(1, 30), modified_at=self._days_ago(0, 1)))
            self.truth.customer_of[(connection, dup)] = company.customer_id
        return key

    def _reps(self, connection: str) -> list[str]:
        return [u.key for u in self.crms[connection].users if "-u-rep" in u.key]

    def _internal_for(self, company: Company) -> str:
        if company.country in EMEA and self.rng.random() < 0.75:
            return "d365-emea"
        return "sf-direct"

    def _distributor_for(self, company: Company, *, exclude: tuple[str, ...] = ()) -> str:
        local = [d for d, (_, _, t) in DISTRIBUTORS.items()
                 if company.country in t and d not in exclude]
        pool = local or [d for d in DISTRIBUTORS if d not in exclude]
        return self.rng.choice(pool)

    # -- background: overlapping but conflict-free ----------------------------------------
    def _background_customer(self, company: Company) -> None:
        rng = self.rng
        if rng.random() < 0.45:
            internal = self._internal_for(company)
            key = self._add_account(internal, company,
                                    channel_owner="direct" if rng.random() < 0.5 else None)
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                self._direct_deal(internal, key, company, stage=None)
            if company.country in EMEA and rng.random() < 0.12:
                other = "sf-direct" if internal == "d365-emea" else "d365-emea"
                other_key = self._add_account(other, company)
                self._direct_deal(other, other_key, company, stage=None)
            if rng.random() < 0.15:  # a distributor knows the company, pursues nothing
                self._add_account(HOME_OF[self._distributor_for(company)], company)
            return
        dist = self._distributor_for(company)
        home = HOME_OF[dist]
        key = self._add_account(home, company, channel_owner=dist if home == "sf-direct" else None)
        self.distributor_homes.append((home, key, company, dist))
        for _ in range(rng.choice((1, 1, 2))):
            if rng.random() < 0.75:
                self._registered_deal(home, key, company, dist, self._background_state())
            else:
                deal = self._distributor_deal(home, key, company, open_deal=home != "sf-direct")
                if home != "sf-direct":
                    self._perhaps_closed(deal)
        if home != "sf-direct" and rng.random() < 0.35:
            owner = dist if rng.random() < 0.6 else None
            internal = self._internal_for(company)
            internal_key = self._add_account(internal, company, channel_owner=owner)
            if rng.random() < 0.3:
                self._direct_deal(internal, internal_key, company, stage="lost")
        if rng.random() < 0.12:
            self._add_account(HOME_OF[self._distributor_for(company, exclude=(dist,))], company)

    def _perhaps_closed(self, deal: SeedDeal) -> None:
        """Some of a distributor's unregistered deals in its own CRM are long closed: won or
        lost without ever being registered (what the scorecards' unregistered win rate
        counts)."""
        rng = self.later_rng
        if rng.random() >= 0.45:
            return
        deal.stage = "won" if rng.random() < 0.4 else "lost"
        deal.created_at = self.now - timedelta(days=rng.uniform(150, 500))
        deal.last_activity_at = deal.created_at + timedelta(days=rng.uniform(20, 90))
        deal.modified_at = deal.last_activity_at
        deal.close_date = max(deal.created_at.date(),
                              (deal.last_activity_at - timedelta(days=rng.randint(0, 5))).date())

    def _history(self) -> None:
        """Registrations closed a year or more ago, so that distributors have the history the
        scorecards' verdicts need; one distributor wins few of them (a paper partner). Drawn
        last, from their own stream: every other record keeps its id and values."""
        main, self.rng = self.rng, self.later_rng
        try:
            for home, key, company, dist in self.distributor_homes:
                if self.rng.random() >= 0.35:
                    continue
                won = self.rng.random() < HISTORIC_WIN_RATE.get(dist, 0.45)
                self._registered_deal(home, key, company, dist, "won" if won else "lost",
                                      registered=self._days_ago(370, 530))
        finally:
            self.rng = main

    def _background_state(self) -> str:
        return self.rng.choices(
            ("active", "expiring_term", "expiring_inactivity", "expired_term",
             "expired_inactivity", "won", "lost"), weights=(45, 8, 7, 15, 12, 8, 5))[0]

    # -- deals ----------------------------------------------------------------------------
    def _amount(self, company: Company) -> tuple[Decimal, str]:
        currency = COUNTRIES[company.country][2]
        usd = self.rng.lognormvariate(10.2, 0.9)
        value = round(usd * USD_RATE[currency], -2) or 100
        return Decimal(f"{value:.2f}"), currency

    def _deal(self, connection: str, account_key: str, company: Company, *, stage: str,
              created: datetime, last_activity: datetime, owner: str) -> SeedDeal:
        rng = self.rng
        amount, currency = self._amount(company)
        if stage == "open":
            close = (self.now + timedelta(days=rng.randint(10, 180))).date()
        else:
            close = (last_activity - timedelta(days=rng.randint(0, 5))).date()
            close = max(close, created.date())
        deal = SeedDeal(
            key=self._key(connection, "D"), account_key=account_key,
            name=f"{company.name} - {rng.choice(PRODUCTS)}", amount=amount, currency=currency,
            stage=stage, close_date=close, created_at=created,
            modified_at=max(created, last_activity), last_activity_at=last_activity,
            owner_user=owner)
        self.crms[connection].deals.append(deal)
        return deal

    def _direct_deal(self, connection: str, account_key: str, company: Company, *,
                     stage: str | None, created: datetime | None = None) -> SeedDeal:
        rng = self.rng
        stage = stage or rng.choices(("open", "won", "lost"), weights=(50, 25, 25))[0]
        if created is None:
            created = self._days_ago(5, 200) if stage == "open" else self._days_ago(120, 600)
        age = (self.now - created).total_seconds() / 86400
        last = self._days_ago(0, min(age, 20)) if stage == "open" else self._days_ago(
            max(0.0, age - 100), age)
        return self._deal(connection, account_key, company, stage=stage, created=created,
                          last_activity=max(created, last),
                          owner=rng.choice(self._reps(connection)))

    def _distributor_deal(self, connection: str, account_key: str, company: Company, *,
                          open_deal: bool) -> SeedDeal:
        stage = "open" if open_deal else self.rng.choice(("won", "lost"))
        owner = f"{connection.split('-')[0]}-u-portal" if connection == "sf-direct" else \
            self.rng.choice(self._reps(connection))
        created = self._days_ago(3, 40) if open_deal else self._days_ago(150, 500)
        last = self._days_ago(0, 3) if open_deal else created + timedelta(days=60)
        return self._deal(connection, account_key, company, stage=stage, created=created,
                          last_activity=last, owner=owner)

    def _registered_deal(self, connection: str, account_key: str, company: Company, dist: str,
                         state: str, *, registered: datetime | None = None) -> SeedDeal:
        rng = self.rng
        if state in ("won", "lost"):
            reg_at = registered or self._days_ago(60, 200)
            last = reg_at + timedelta(days=rng.uniform(20, 55))
            stage = state
        else:
            (r_low, r_high), (a_low, a_high) = REGISTRATION_AGES[state]
            reg_at = registered or self._days_ago(r_low + 0.1, r_high + 0.9)
            last = max(reg_at, self._days_ago(a_low + 0.1, a_high + 0.9))
            stage = "open"
        created = reg_at - timedelta(days=rng.uniform(0, 4))
        owner = f"{connection.split('-')[0]}-u-portal" if connection == "sf-direct" else \
            rng.choice(self._reps(connection))
        deal = self._deal(connection, account_key, company, stage=stage, created=created.replace(
            microsecond=0), last_activity=last.replace(microsecond=0), owner=owner)
        deal.registered_by = dist
        deal.registered_at = reg_at
        deal.registration_expires_at = (reg_at + timedelta(days=REGISTRATION_TERM_DAYS)).date()
        expected = state.split("_")[0]
        if expected == "expired" and rng.random() < 0.35:
            deal.registration_status = "expired"
            deal.registration_decision = rng.choice(("extend", "reassign", "release"))
            if deal.registration_decision == "reassign":
                deal.reassign_to = self._distributor_for(company, exclude=(dist,))
        self.truth.registrations[(connection, deal.key)] = expected
        return deal

    # -- planted cases --------------------------------------------------------------------
    def _planted(self, kind: str, index: int) -> None:
        rng = self.rng
        company = self._new_company()
        dist = self._distributor_for(company)
        home = HOME_OF[dist]
        reg_key = self._add_account(home, company, channel_owner=dist if home == "sf-direct"
                                    else None)
        owned = kind == "direct_vs_channel" and index % 3 == 2 and home != "sf-direct"
        first = self._registered_deal(home, reg_key, company, dist,
                                      "expired_term" if owned else "active",
                                      registered=None if owned else self._days_ago(30, 60))
        first.registration_decision = first.registration_status = first.reassign_to = None
        records: list[list[str]] = [[home, "opportunity", first.key]]
        entry: dict[str, object] = {"kind": kind, "customer": company.customer_id,
                                    "distributor": dist}
        if kind in ("direct_vs_channel", "routing"):
            internal = home if home == "sf-direct" and rng.random() < 0.5 else \
                self._internal_for(company)
            same_account = internal == home
            account = reg_key if same_account else self._add_account(
                internal, company, channel_owner=dist if owned or rng.random() < 0.5 else None)
            created = self._days_ago(0.2, 2.5) if kind == "routing" else self._days_ago(15, 60)
            direct = self._direct_deal(internal, account, company, stage="open", created=created)
            records.append([internal, "opportunity", direct.key])
            entry["reason"] = "owned" if owned else "registered"
            if kind == "routing":
                entry["routed_to"] = CHANNEL_MANAGER[internal]
                self.truth.conflicts.append({**entry, "records": list(records)})
                entry = {**entry, "kind": "direct_vs_channel", "inbound": True}
        elif kind == "channel_vs_channel":
            second = self._distributor_for(company, exclude=(dist,))
            other_home = HOME_OF[second]
            other_key = self._add_account(other_home, company)
            later = self._registered_deal(other_home, other_key, company, second, "active",
                                          registered=self._days_ago(3, 25))
            later.registration_decision = later.registration_status = later.reassign_to = None
            records.append([other_home, "opportunity", later.key])
            entry.update(winner=dist, flagged=[second])
        else:
            second = self._distributor_for(company, exclude=(dist, "dist-portal"))
            other_home = HOME_OF[second]
            other_key = self._add_account(other_home, company)
            deal = self._distributor_deal(other_home, other_key, company, open_deal=True)
            records.append([other_home, "opportunity", deal.key])
            entry.update(kind="unregistered_on_other_customer", owner=dist, intruder=second)
        entry["records"] = records
        self.truth.conflicts.append(entry)
