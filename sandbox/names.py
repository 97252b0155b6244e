"""Company-name, website and registry-id material for the scenario generator.

Everything here takes an explicit ``random.Random`` so the generator stays deterministic.
The variants mimic what people type into CRMs: legal forms spelled several ways or left
out, shouting capitals, ``&`` versus ``and``, accents dropped, the odd typo, websites with
and without ``www.``, shop subdomains, country domains and free-mail addresses.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

# country -> (weight, web suffix, currency, VAT prefix or "", legal forms with their spellings)
COUNTRIES: dict[str, tuple[int, str, str, str, tuple[tuple[str, ...], ...]]] = {
    "US": (22, "com", "USD", "", (("Inc.", "Inc", ", Inc.", "Incorporated"),
                                  ("Corp.", "Corporation", "Corp", "CORP"),
                                  ("LLC", "L.L.C.", "llc"))),
    "CA": (4, "ca", "CAD", "", (("Inc.", "Inc", "Incorporated"), ("Ltd.", "Limited", "Ltd"))),
    "GB": (9, "co.uk", "GBP", "GB", (("Ltd", "Limited", "Ltd."), ("PLC", "plc", "Plc"),
                                     ("LLP", "L.L.P."))),
    "IE": (2, "ie", "EUR", "IE", (("Ltd", "Limited", "Ltd."), ("DAC",))),
    "DE": (12, "de", "EUR", "DE", (("GmbH", "Gmbh", "GMBH"), ("AG",),
                                   ("GmbH & Co. KG", "GmbH & Co KG", "GmbH und Co. KG"))),
    "AT": (3, "at", "EUR", "ATU", (("GmbH", "Ges.m.b.H.", "Gmbh"), ("AG",))),
    "CH": (4, "ch", "CHF", "CHE", (("AG",), ("GmbH", "Gmbh"), ("SA", "S.A."), ("Sàrl", "Sarl"))),
    "FR": (7, "fr", "EUR", "FR", (("SAS", "S.A.S.", "Sas"), ("SA", "S.A."), ("SARL", "S.A.R.L.",
                                                                             "Sarl"))),
    "IT": (5, "it", "EUR", "IT", (("S.p.A.", "SpA", "S.P.A.", "spa"), ("S.r.l.", "Srl", "SRL"))),
    "ES": (4, "es", "EUR", "ES", (("S.A.", "SA"), ("S.L.", "SL", "S.L.U."))),
    "NL": (4, "nl", "EUR", "NL", (("B.V.", "BV", "B.V"), ("N.V.", "NV"))),
    "BE": (2, "be", "EUR", "BE", (("NV", "N.V."), ("BV", "B.V."), ("SA", "S.A."))),
    "SE": (3, "se", "SEK", "SE", (("AB", "Aktiebolag"), ("AB (publ)",))),
    "FI": (2, "fi", "EUR", "FI", (("Oy", "OY", "Osakeyhtiö"), ("Oyj", "OYJ"))),
    "NO": (1, "no", "NOK", "NO", (("AS", "A/S"), ("ASA",))),
    "DK": (2, "dk", "DKK", "DK", (("A/S", "AS"), ("ApS", "Aps"))),
    "JP": (5, "co.jp", "JPY", "", (("K.K.", "KK", "Kabushiki Kaisha", "Co., Ltd."),
                                   ("Co., Ltd.", "Co. Ltd.", "K.K."))),
    "AU": (4, "com.au", "AUD", "", (("Pty Ltd", "Pty. Ltd.", "PTY LTD", "Pty Limited"),
                                    ("Limited", "Ltd"))),
    "BR": (3, "com.br", "BRL", "", (("Ltda.", "Ltda", "LTDA"), ("S.A.", "SA"))),
    "MX": (2, "com.mx", "MXN", "", (("S.A. de C.V.", "SA de CV", "S.A. de C.V"),)),
    "SG": (2, "com.sg", "SGD", "", (("Pte. Ltd.", "Pte Ltd", "PTE LTD"),)),
}
EMEA = frozenset({"GB", "IE", "DE", "AT", "CH", "FR", "IT", "ES", "NL", "BE", "SE", "FI", "NO",
                  "DK"})

# Invented brands from syllables: large enough that a million customers do not exhaust it
SYLLABLES_START = ("ka", "ve", "lo", "tri", "no", "quan", "zen", "bra", "cor", "del", "fa",
                   "gra", "hel", "ix", "jo", "kes", "lum", "mar", "nex", "or", "pra", "ro",
                   "sil", "tan", "ul", "vor", "wex", "xan", "yel", "zor", "bel", "cal", "dra",
                   "el", "fen", "gal", "har", "is", "kor", "lin", "mor", "nor", "ost", "pel",
                   "ar", "bo", "cha", "dun", "ev", "flo", "gen", "hy", "in", "ja", "kro", "le",
                   "mi", "nu", "om", "pyr", "qui", "rey", "sca", "tho", "um", "vel", "wyn",
                   "syn", "tal", "vin", "aur", "ber", "cyr", "dor", "fal", "gor", "hal", "kal")
SYLLABLES_MID = ("ra", "li", "ven", "to", "ma", "ri", "an", "el", "o", "u", "is", "ar", "en",
                 "vi", "ta", "do", "ne", "si", "ca", "mo", "ber", "dal", "fin", "gor", "ka",
                 "lan", "mer", "nol", "pe", "quo", "rin", "sta", "tur", "val", "wen", "zo")
SYLLABLES_END = ("x", "ra", "on", "ia", "us", "ix", "is", "or", "ex", "io", "an", "a", "o",
                 "um", "en", "ar", "ic", "el", "ys", "ent", "ton", "ford", "ley", "stone",
                 "mark", "tek", "lux", "gen", "vo", "line", "dyne", "sys", "ica", "ora", "eon")
WORD_BRANDS = ("Acme", "Apex", "Summit", "Northbridge", "Bluewater", "Helios", "Kestrel",
               "Redwood", "Silverline", "Ironclad", "Granite", "Evergreen", "Pioneer", "Harbor",
               "Falcon", "Meridian", "Atlas", "Orion", "Cobalt", "Crescent", "Beacon",
               "Keystone", "Lakeside", "Highland", "Riverstone", "Sterling", "Vanguard",
               "Westbrook", "Oakridge", "Pinnacle", "Quantum", "Horizon", "Brightwater",
               "Clearview", "Stonegate", "Fairway", "Copperfield", "Nordic", "Alpine", "Baltic",
               "Aurora", "Bayside", "Cedar", "Delta", "Eagle", "Frontier", "Glacier", "Harvest",
               "Infinity", "Juniper", "Kingsway", "Liberty", "Mariner", "Northstar", "Oasis",
               "Paragon", "Redstone", "Sapphire", "Trident", "Unity", "Vertex", "Willow",
               "Zenith", "Archway", "Blackrock", "Coastal", "Dynamo", "Emerald", "Foxglove",
               "Goldcrest", "Hawthorn", "Ivory", "Jetstream", "Kingfisher", "Lighthouse",
               "Magnolia", "Neptune", "Obsidian", "Phoenix", "Radiant", "Sequoia", "Titan")
INDUSTRIES = ("Tools", "Foods", "Logistics", "Analytics", "Systems", "Robotics", "Pharma",
              "Textiles", "Energy", "Engineering", "Software", "Medical", "Packaging",
              "Plastics", "Chemicals", "Motors", "Instruments", "Electronics", "Optics",
              "Materials", "Labs", "Networks", "Solutions", "Consulting", "Builders",
              "Marine", "Aerospace", "Agritech", "Pumps", "Metals", "Furniture", "Paper",
              "Ceramics", "Controls", "Sensors", "Dynamics", "Healthcare", "Logistik",
              "Technik", "Industries")
TAILS = ("Group", "Holdings", "International", "Partners", "Europe", "Technologies",
         "Services", "Manufacturing")
ABBREVIATIONS = {"International": ("Intl", "Int'l", "Intl."), "Services": ("Svcs",),
                 "Manufacturing": ("Mfg",), "Technologies": ("Technologies",),
                 "Engineering": ("Eng.",)}
SURNAMES = ("Baker", "Finch", "Harper", "Collins", "Moreau", "Dubois", "Rossi", "Bianchi",
            "Schmidt", "Weber", "Jansen", "Visser", "Lindqvist", "Nyström", "Sørensen",
            "Tanaka", "Suzuki", "García", "Núñez", "Ibáñez", "Costa", "Müller", "Krüger",
            "Lefèvre", "Gauthier", "Larsen", "Virtanen", "O'Brien", "MacLeod", "Kelly",
            "Andersson", "Bauer", "Carter", "Dalton", "Eriksen", "Fischer", "Greco", "Hoffmann",
            "Ito", "Jensen", "Keller", "Lambert", "Marino", "Nakamura", "Olsen", "Petit",
            "Quinn", "Richter", "Santos", "Thompson", "Urban", "Vogel", "Walsh", "Young",
            "Zimmermann", "Bergström", "Côté", "Doğan", "Håkansson", "Jiménez", "Kowalski",
            "Löwe", "Martín", "Noël", "Öberg", "Pérez", "Rémy", "Šimek", "Yilmaz", "Żak")
ACCENTED = ("Électronique {s}", "Café Lumière", "Société {s} Frères", "{s} Précision",
            "Atelier Émeraude", "Crème de la Côte", "Construcciones {s}", "Señorío {s}",
            "Bäckerei {s}", "Øresund Marine", "Ålborg Tekstil", "Hôtellerie {s}",
            "{s} Électricité", "Forêt Noire Bois", "Maître {s}", "Zürich Präzision")
FREE_MAIL = ("gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "gmx.de", "web.de",
             "icloud.com", "hotmail.co.uk", "yahoo.fr", "gmx.net")


def pick_country(rng: random.Random) -> str:
    names = list(COUNTRIES)
    return rng.choices(names, weights=[COUNTRIES[c][0] for c in names])[0]


def strip_accents(text: str) -> str:
    if text.isascii():
        return text
    table = str.maketrans({"ø": "o", "Ø": "O", "å": "a", "Å": "A", "ß": "ss", "æ": "ae"})
    decomposed = unicodedata.normalize("NFKD", text.translate(table))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def brand(rng: random.Random) -> str:
    if rng.random() < 0.35:
        return rng.choice(WORD_BRANDS)
    parts = [rng.choice(SYLLABLES_START)]
    parts += [rng.choice(SYLLABLES_MID) for _ in range(rng.choice((0, 1, 1, 1, 2, 2)))]
    parts.append(rng.choice(SYLLABLES_END))
    return "".join(parts).capitalize()


def base_name(rng: random.Random) -> str:
    """A company's name without its legal form."""
    roll = rng.random()
    if roll < 0.50:
        return f"{brand(rng)} {rng.choice(INDUSTRIES)}"
    if roll < 0.62:
        return brand(rng)
    if roll < 0.75:
        first, second = rng.sample(SURNAMES, 2)
        joiner = rng.choice((" & ", " and "))
        return f"{first}{joiner}{second}" + rng.choice(("", "", f" {rng.choice(INDUSTRIES)}"))
    if roll < 0.85:
        return rng.choice(ACCENTED).format(s=rng.choice(SURNAMES))
    return f"{brand(rng)} {rng.choice(INDUSTRIES)} {rng.choice(TAILS)}"


def sibling_name(rng: random.Random, name: str) -> str:
    """A different company that looks alike: same first word, another trade."""
    first = name.split()[0]
    other = rng.choice([i for i in INDUSTRIES if i not in name.split()])
    return f"{first} {other}"


def slug(name: str, rng: random.Random) -> str:
    ascii_name = strip_accents(name).lower().replace("&", "and").replace("'", "")
    words = ["".join(c for c in w if c.isalnum()) for w in ascii_name.split()]
    words = [w for w in words if w]
    joiner = rng.choice(("", "", "-"))
    return joiner.join(words[:3]) or "company"


@dataclass(frozen=True, slots=True)
class Company:
    """One real-world end customer as the generator knows it."""

    customer_id: str
    name: str  # without legal form
    legal_form: int  # index into the country's legal forms
    country: str
    domains: tuple[str, ...]  # registrable domains, primary first; may be empty
    duns: str | None
    vat_id: str | None


def vat_for(rng: random.Random, country: str) -> str | None:
    prefix = COUNTRIES[country][3]
    if not prefix:
        return None
    digits = "".join(rng.choice("0123456789") for _ in range(9))
    if prefix == "CHE":
        return f"CHE-{digits[:3]}.{digits[3:6]}.{digits[6:]}"
    return f"{prefix}{digits}"


def render_name(rng: random.Random, company: Company, *, typo_rate: float) -> str:
    """The company's name as one CRM user typed it."""
    name = company.name
    if "&" in name and rng.random() < 0.4:
        name = name.replace("&", "and")
    elif " and " in name and rng.random() < 0.4:
        name = name.replace(" and ", " & ")
    for word, shorts in ABBREVIATIONS.items():
        if word in name and rng.random() < 0.2:
            name = name.replace(word, rng.choice(shorts))
    if rng.random() < 0.35:
        name = strip_accents(name)
    if rng.random() < 0.03 and " " not in name and len(name) > 7:
        cut = rng.randrange(3, len(name) - 3)  # "Velmarix" -> "Vel-Marix"
        name = f"{name[:cut]}-{name[cut:].capitalize()}"
    if rng.random() < typo_rate:
        name = _typo(rng, name)
    forms = COUNTRIES[company.country][4][company.legal_form]
    roll = rng.random()
    if roll < 0.55:
        name = f"{name} {forms[0]}"
    elif roll < 0.82:
        name = f"{name} {rng.choice(forms)}"
    # otherwise the legal form is left out
    name = name.replace(" , ", ", ")
    roll = rng.random()
    if roll < 0.10:
        name = name.upper()
    elif roll < 0.14:
        name = name.lower()
    elif roll < 0.16:
        name = f"The {name}"
    return name


def _typo(rng: random.Random, name: str) -> str:
    words = name.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return name
    index = rng.choice(candidates)
    word = words[index]
    pos = rng.randrange(2, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swapped neighbours
        word = word[:pos - 1] + word[pos] + word[pos - 1] + word[pos + 1:]
    elif kind == 1:  # dropped letter
        word = word[:pos] + word[pos + 1:]
    else:  # doubled letter
        word = word[:pos] + word[pos] + word[pos:]
    words[index] = word
    return " ".join(words)


def render_website(rng: random.Random, company: Company, *, free_mail_rate: float) -> str | None:
    """The website (or a domain lifted from a contact's e-mail) as one CRM holds it."""
    roll = rng.random()
    if roll < free_mail_rate:
        return rng.choice(FREE_MAIL)
    if not company.domains or roll < free_mail_rate + 0.25:
        return None
    domain = company.domains[0]
    if len(company.domains) > 1 and rng.random() < 0.3:
        domain = company.domains[1]
    style = rng.random()
    if style < 0.30:
        return f"https://www.{domain}"
    if style < 0.50:
        return f"www.{domain}"
    if style < 0.72:
        return domain
    if style < 0.82:
        return f"http://{domain}/"
    if style < 0.92:
        return f"https://{rng.choice(('shop', 'en', 'portal', 'store'))}.{domain}/"
    return f"https://www.{domain}/{rng.choice(('en', 'de/home', 'about-us', 'contact'))}"


def render_duns(rng: random.Random, duns: str, *, dashes: bool) -> str:
    if dashes and rng.random() < 0.25:
        return f"{duns[:2]}-{duns[2:5]}-{duns[5:]}"
    return duns


def render_vat(rng: random.Random, vat: str) -> str:
    roll = rng.random()
    if roll < 0.2 and vat[:2].isalpha() and not vat.startswith("CHE"):
        return f"{vat[:2]} {vat[2:5]} {vat[5:8]} {vat[8:]}".strip()
    if roll < 0.3 and vat[:2].isalpha() and not vat.startswith(("CHE", "ATU")):
        return vat[2:]  # the number without its country prefix
    return vat
