"""The scenario's fixed cast: the five CRM connections, the distributors with their
territories and homes, the policy defaults it follows, currencies, products and the ages
that put a registration in each state."""

from __future__ import annotations

REGISTRATION_TERM_DAYS = 90
INACTIVITY_LIMIT_DAYS = 30
WARNING_WINDOW_DAYS = 14

DISTRIBUTORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # id -> (legal name, home country, territory)
    "dist-northwind": ("Northwind Distribution Ltd", "GB", ("US", "CA", "GB", "IE", "AU")),
    "dist-brightline": ("Brightline Channel GmbH", "DE",
                        ("DE", "AT", "CH", "NL", "BE", "FR", "SE", "FI", "NO", "DK")),
    "dist-alpine": ("Alpine Trade Partners AG", "CH", ("CH", "AT", "DE", "IT", "ES", "FR")),
    "dist-portal": ("Portal Resellers Inc.", "US", ("US", "JP", "SG", "BR", "MX", "AU", "CA")),
}
LAYOUT: tuple[tuple[str, str, str, str | None], ...] = (
    ("sf-direct", "salesforce", "internal", None),
    ("d365-emea", "dynamics", "internal", None),
    ("hs-northwind", "hubspot", "distributor", "dist-northwind"),
    ("hs-brightline", "hubspot", "distributor", "dist-brightline"),
    ("pd-alpine", "pipedrive", "distributor", "dist-alpine"),
)
# the share of its old registrations a distributor won (the scenario's one paper partner)
HISTORIC_WIN_RATE = {"dist-northwind": 0.04}
# Where a distributor's registrations live: its own CRM, or the manufacturer's partner portal.
HOME_OF = {"dist-northwind": "hs-northwind", "dist-brightline": "hs-brightline",
           "dist-alpine": "pd-alpine", "dist-portal": "sf-direct"}
CHANNEL_MANAGER = {"sf-direct": "sf-u-cm", "d365-emea": "d365-u-cm"}
USD_RATE = {"USD": 1, "EUR": 0.92, "GBP": 0.79, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52,
            "JPY": 150, "SEK": 10.5, "NOK": 10.7, "DKK": 6.9, "BRL": 5.0, "MXN": 17,
            "SGD": 1.34}
PRODUCTS = ("Line sensors", "Controller upgrade", "Service contract", "Spare parts",
            "Pilot installation", "Renewal", "Site licence", "Retrofit", "Training days")
# Registration ages: state -> (registered days ago range, last activity days ago range)
REGISTRATION_AGES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "active": ((5, 60), (0, 10)),
    "expiring_term": ((77, 88), (0, 8)),
    "expiring_inactivity": ((20, 50), (18, 27)),
    "expired_term": ((95, 200), (0, 20)),
    "expired_inactivity": ((35, 70), (35, 60)),
}
