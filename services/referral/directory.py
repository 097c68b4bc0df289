"""Directory entries as the CLI, the admin API and the seed file give them: checked here, field by field,
before anything is stored. Pure: no framework, no database."""
import re
from dataclasses import dataclass, field
from datetime import time

from sanad.contracts.vocabulary import GOVERNORATES, NATIONWIDE, SERVICE_TYPES
from services.referral.matching import END_OF_DAY, FAMILY_CONTACT_BY_NATURE, Hours, Partner

STAFF_GENDERS = ("female", "male")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_TEXT = 500
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_HOURS = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
                    r"(?P<opens>\d{2}:\d{2})-(?P<closes>\d{2}:\d{2})$")


@dataclass(frozen=True)
class ServiceTerms:
    """One service a partner offers, and on what terms (Open Referral: service, service area, language,
    eligibility, schedule; with this field's staff gender and family contact)."""
    service: str
    governorates: tuple
    languages: tuple = ("ar",)
    staff_genders: tuple = ()
    always_open: bool = True
    hours: tuple = ()
    min_age: int = None
    max_age: int = None
    eligibility: str = ""
    contacts_family: bool = False

    def problems(self) -> dict:
        problems = {}
        if self.service not in SERVICE_TYPES:
            problems["service"] = [f"Must be one of: {', '.join(SERVICE_TYPES)}."]
        wrong = [g for g in self.governorates if g not in GOVERNORATES + (NATIONWIDE,)]
        if not self.governorates or wrong:
            problems["governorates"] = [f"Give one or more of the governorates, or {NATIONWIDE}."]
        if not self.languages or any(not _LANGUAGE.match(lang or "") for lang in self.languages):
            problems["languages"] = ["Give one or more two-letter language codes, such as ar, ku, en."]
        if any(g not in STAFF_GENDERS for g in self.staff_genders):
            problems["staff_genders"] = [f"Each must be one of: {', '.join(STAFF_GENDERS)}."]
        if not self.always_open and not self.hours:
            problems["hours"] = ["Give opening hours, or mark the service as open around the clock."]
        if any(not (0 <= h.weekday <= 6 and h.opens < h.closes) for h in self.hours):
            problems["hours"] = ["Each period needs a weekday from 0 to 6 and opens before it closes."]
        for name in ("min_age", "max_age"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= 120):
                problems[name] = ["Must be a whole number from 0 to 120."]
        if "min_age" not in problems and "max_age" not in problems and None not in (self.min_age, self.max_age) \
                and self.min_age > self.max_age:
            problems["max_age"] = ["Must not be below min_age."]
        if len(self.eligibility) > MAX_TEXT:
            problems["eligibility"] = [f"At most {MAX_TEXT} characters."]
        if self.service in FAMILY_CONTACT_BY_NATURE and not self.contacts_family:
            problems["contacts_family"] = ["Mediation contacts the family by nature; say so."]
        return problems


@dataclass(frozen=True)
class PartnerEntry:
    """An organisation in the directory (Open Referral: organization, with its one location)."""
    name: str
    services: tuple = field(default=())
    description: str = ""
    address: str = None
    confidential_address: bool = False
    phone: str = None
    email: str = None
    website: str = None
    accepting: bool = True

    def problems(self) -> dict:
        problems = {}
        if not self.name or not self.name.strip() or len(self.name) > 200:
            problems["name"] = ["Give a name of 1 to 200 characters."]
        for name in ("description", "address", "phone", "email", "website"):
            if len(getattr(self, name) or "") > MAX_TEXT:
                problems[name] = [f"At most {MAX_TEXT} characters."]
        if not self.services:
            problems["services"] = ["Give at least one service."]
        seen = set()
        for index, terms in enumerate(self.services):
            for name, messages in terms.problems().items():
                problems[f"services.{index}.{name}"] = messages
            if terms.service in seen:
                problems[f"services.{index}.service"] = ["Each service once."]
            seen.add(terms.service)
        return problems


def parse_hours(text) -> tuple:
    """"sun-thu 08:00-14:00" or "sat,mon 09:00-12:00" -> Hours periods. ValueError saying what is wrong."""
    match = _HOURS.match((text or "").strip().lower())
    if not match:
        raise ValueError(f"hours {text!r}: write them like 'sun-thu 08:00-14:00'")
    try:
        opens, closes = time.fromisoformat(match["opens"]), closing_time(match["closes"])
    except ValueError:
        raise ValueError(f"hours {text!r}: times are HH:MM, 00:00 to 23:59, or 24:00 to close at midnight") \
            from None
    if opens >= closes:
        raise ValueError(f"hours {text!r}: opening must come before closing (split a night across two days)")
    days = []
    for part in match["days"].split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"hours {text!r}: days are {', '.join(WEEKDAYS)}")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        span = (end - start) % 7
        days += [(start + i) % 7 for i in range(span + 1)]
    return tuple(Hours(day, opens, closes) for day in days)


def closing_time(text) -> time:
    """A closing time: HH:MM[:SS], or 24:00 (END_OF_DAY), which PostgreSQL writes 24:00:00. ValueError else."""
    if str(text) in ("24:00", "24:00:00"):
        return END_OF_DAY
    return time.fromisoformat(str(text))


def closing_for_storage(closes):
    """What service_hours.closes_at stores: PostgreSQL's own 24:00 for END_OF_DAY."""
    return "24:00" if closes == END_OF_DAY else closes


def hours_from_rows(rows) -> tuple:
    """Hours from the JSON the directory queries build ({"weekday", "opens", "closes"})."""
    return tuple(Hours(int(r["weekday"]), time.fromisoformat(str(r["opens"])), closing_time(r["closes"]))
                 for r in rows)


def partner_from_row(row) -> Partner:
    """One row of sql.OFFERS_FOR as the matching sees it."""
    return Partner(
        id=row["id"], name=row["name"], services=(row["service"],), governorates=tuple(row["governorates"]),
        accepting=row["accepting"], open_referrals=int(row["open_referrals"]), always_open=row["always_open"],
        hours=hours_from_rows(row["hours"]), staff_genders=tuple(row["staff_genders"]),
        languages=tuple(row["languages"]), min_age=row["min_age"], max_age=row["max_age"],
        contacts_family=row["contacts_family"],
    )


def hours_as_data(hours) -> list:
    return [{"weekday": h.weekday, "opens": h.opens.strftime("%H:%M"),
             "closes": "24:00" if h.closes == END_OF_DAY else h.closes.strftime("%H:%M")} for h in hours]
