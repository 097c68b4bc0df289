"""Reads a directory seed file (YAML) into checked entries. Pure but for reading the file.

    partners:
      - name: ...
        description: ...            # optional, as are address, confidential_address, phone, email, website
        accepting: true             # optional
        webhook_url: https://...    # where notify delivers this partner's offers
        services:
          - service: counselling
            governorates: [dhi_qar]
            languages: [ar]                      # optional, default [ar]
            staff_genders: [female]              # optional
            hours: ["sun-thu 08:00-15:00"]       # or always_open: true; 24:00 closes at midnight
            min_age: 18                          # optional, as are max_age, eligibility, contacts_family
"""
from dataclasses import dataclass

import yaml

from services.referral.directory import PartnerEntry, ServiceTerms, parse_hours

PARTNER_FIELDS = {"name", "description", "address", "confidential_address", "phone", "email", "website", "accepting",
                  "webhook_url", "services"}
SERVICE_FIELDS = {"service", "governorates", "languages", "staff_genders", "always_open", "hours", "min_age",
                  "max_age", "eligibility", "contacts_family"}


class SeedError(ValueError):
    """The file is not a valid directory; the message says where."""


@dataclass(frozen=True)
class SeedPartner:
    entry: PartnerEntry
    webhook_url: str


def load(path) -> list:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or not isinstance(document.get("partners"), list):
        raise SeedError(f"{path}: expected a mapping with a list under 'partners'")
    partners, names = [], set()
    for index, item in enumerate(document["partners"]):
        where = f"{path}: partners[{index}]"
        partner = _partner(item, where)
        if partner.entry.name in names:
            raise SeedError(f"{where}.name: {partner.entry.name!r} appears twice")
        names.add(partner.entry.name)
        partners.append(partner)
    return partners


def _partner(item, where):
    if not isinstance(item, dict):
        raise SeedError(f"{where}: expected a mapping")
    unknown = set(item) - PARTNER_FIELDS
    if unknown:
        raise SeedError(f"{where}: unknown fields {sorted(unknown)}")
    if not isinstance(item.get("webhook_url"), str):
        raise SeedError(f"{where}.webhook_url: required")
    services = tuple(_service(s, f"{where}.services[{i}]") for i, s in enumerate(item.get("services") or ()))
    entry = PartnerEntry(
        name=str(item.get("name") or ""), services=services, description=item.get("description") or "",
        address=item.get("address"), confidential_address=bool(item.get("confidential_address", False)),
        phone=item.get("phone"), email=item.get("email"), website=item.get("website"),
        accepting=bool(item.get("accepting", True)),
    )
    problems = entry.problems()
    if problems:
        raise SeedError(f"{where}: " + "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in problems.items()))
    return SeedPartner(entry, item["webhook_url"])


def _service(item, where):
    if not isinstance(item, dict):
        raise SeedError(f"{where}: expected a mapping")
    unknown = set(item) - SERVICE_FIELDS
    if unknown:
        raise SeedError(f"{where}: unknown fields {sorted(unknown)}")
    try:
        hours = tuple(period for text in item.get("hours") or () for period in parse_hours(text))
    except ValueError as exc:
        raise SeedError(f"{where}.hours: {exc}") from None
    return ServiceTerms(
        service=item.get("service"), governorates=tuple(item.get("governorates") or ()),
        languages=tuple(item.get("languages") or ("ar",)), staff_genders=tuple(item.get("staff_genders") or ()),
        always_open=bool(item.get("always_open", False)), hours=hours, min_age=item.get("min_age"),
        max_age=item.get("max_age"), eligibility=item.get("eligibility") or "",
        contacts_family=bool(item.get("contacts_family", False)),
    )
