"""`sanad partner ...` and `sanad referral ...`: the directory, partner API keys, staff keys and the
escalation policies, from the command line. Registered on sanad.cli's parser by `add_to`.

A partner's directory entry (referral's schema) and its webhook endpoint (notify's) are two services'
data; only these operator commands touch both, the endpoint first, so a failure in between leaves an
unused endpoint, never a partner that referral would pick but notify could not reach.
"""
import json
import os
import sys
import uuid
from datetime import datetime, timezone

from sanad.contracts.vocabulary import GOVERNORATES, NATIONWIDE, RISK_LEVELS, SERVICE_TYPES
from sanad.crypto import load_keys
from sanad.platform.pool import Pool
from services.referral import access, handlers, sql
from services.referral.directory import STAFF_GENDERS, PartnerEntry, ServiceTerms, parse_hours
from services.referral.escalation import Policy


def _error(message):
    from sanad.cli import CommandError
    return CommandError(message)


def _now():
    return datetime.now(timezone.utc)


def _referral_pool(config):
    return Pool(config.database_url, size=1, schema="referral")


def find_partner(cur, name_or_id):
    """A partner's id from its id or its exact name."""
    try:
        cur.execute(sql.PARTNER_BY_ID, {"id": uuid.UUID(name_or_id)})
    except ValueError:
        cur.execute(sql.PARTNER_BY_NAME, {"name": name_or_id})
    row = cur.fetchone()
    if row is None:
        raise _error(f"partner: no partner is called or numbered {name_or_id!r}")
    return row["id"]


def register(config, keys, entry, webhook_url, secret, with_key=True):
    """Create the directory entry and its webhook endpoint; returns (partner id, API key or None)."""
    from services.notify.handlers import register_endpoint
    try:
        with _referral_pool(config).transaction() as cur:
            cur.execute(sql.PARTNER_BY_NAME, {"name": entry.name})
            if cur.fetchone():
                raise _error(f"name: a partner called {entry.name!r} exists already")
            partner_id = handlers.create_partner(cur, entry, _now())
            api_key = access.issue_key(cur, keys.lookup, _now(), "partner", partner_id=partner_id)[1] \
                if with_key else None
            with Pool(config.database_url, size=1, schema="notify").transaction() as notify_cur:
                register_endpoint(notify_cur, keys, partner_id, webhook_url, secret)
    except handlers.InvalidEntry as exc:
        raise _error("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.problems.items())) from None
    return partner_id, api_key


def partner_add(args, config):
    from sanad import webhooks
    try:
        hours = tuple(period for text in args.hours or () for period in parse_hours(text))
    except ValueError as exc:
        raise _error(str(exc)) from None
    terms = tuple(ServiceTerms(
        service=service, governorates=tuple(args.governorate), languages=tuple(args.language or ("ar",)),
        staff_genders=tuple(args.staff_gender or ()), always_open=not hours, hours=hours, min_age=args.min_age,
        max_age=args.max_age, eligibility=args.eligibility or "",
        contacts_family=args.contacts_family or service == "mediation",
    ) for service in args.service)
    entry = PartnerEntry(name=args.name, services=terms, description=args.description or "", address=args.address,
                         confidential_address=args.confidential_address, phone=args.phone, email=args.email,
                         website=args.website, accepting=not args.not_accepting)
    secret = args.secret or webhooks.generate_secret()
    partner_id, api_key = register(config, load_keys(config.keys_file), entry, args.webhook_url, secret)
    print(json.dumps({"partner_id": str(partner_id), "webhook_url": args.webhook_url, "webhook_secret": secret,
                      "api_key": api_key}, indent=2))
    print("Give the partner its API key (and the webhook secret, if generated) over a safe channel; "
          "neither is shown again.", file=sys.stderr)


def partner_list(args, config):
    with _referral_pool(config).transaction() as cur:
        cur.execute(sql.ALL_PARTNERS)
        for row in cur.fetchall():
            state = ("accepting" if row["accepting"] else "not accepting") + ("" if row["active"] else ", inactive")
            print(f"{row['id']}  {row['name']}  [{', '.join(row['services'])}]  "
                  f"in {', '.join(row['governorates'])}  ({state})")


def partner_show(args, config):
    with _referral_pool(config).transaction() as cur:
        [entry] = handlers.directory(cur, find_partner(cur, args.partner))
    print(json.dumps(entry, indent=2, ensure_ascii=False, default=str))


def partner_rotate_key(args, config):
    if args.grace_minutes < 0:
        raise _error("grace-minutes: must be 0 (the old keys stop now) or more")
    keys = load_keys(config.keys_file)
    with _referral_pool(config).transaction() as cur:
        partner_id = find_partner(cur, args.partner)
        key_id, api_key, expiring = access.rotate_partner_key(cur, keys.lookup, _now(), partner_id,
                                                               grace_seconds=args.grace_minutes * 60)
        access.audit(cur, _now(), "partner.key_rotated", "ok", actor_kind="cli", partner_id=partner_id,
                     detail={"new_key_id": key_id, "expiring": expiring, "grace_minutes": args.grace_minutes})
    print(api_key)
    when = f"in {args.grace_minutes} minutes" if args.grace_minutes else "now"
    print(f"key {key_id} is the partner's new API key, shown only now; its {len(expiring)} other key(s) "
          f"stop working {when}.", file=sys.stderr)


def partner_capacity(args, config):
    with _referral_pool(config).transaction() as cur:
        partner_id = find_partner(cur, args.partner)
        handlers.set_accepting(cur, partner_id, args.accepting == "yes", "cli", _now())
        access.audit(cur, _now(), "partner.capacity", "ok", actor_kind="cli", partner_id=partner_id,
                     detail={"accepting": args.accepting == "yes"})
    print(f"{args.partner}: {'accepting' if args.accepting == 'yes' else 'not accepting'} new cases")


def partner_seed(args, config):
    """Load a directory seed file; partners present by name are left alone, so loading twice is harmless."""
    from sanad import webhooks
    from services.referral.seed import SeedError, load
    if not config.is_development and not args.allow_production:
        raise _error("the seed directory is fictional; refusing outside development (--allow-production)")
    try:
        partners = load(args.file)
    except (SeedError, OSError) as exc:
        raise _error(str(exc)) from None
    keys = load_keys(config.keys_file)
    with _referral_pool(config).transaction() as cur:
        cur.execute("SELECT name FROM partners")
        present = {row["name"] for row in cur.fetchall()}
    added = 0
    for partner in partners:
        if partner.entry.name in present:
            continue
        register(config, keys, partner.entry, partner.webhook_url, webhooks.generate_secret(), with_key=False)
        added += 1
    print(f"seeded {added} partner(s) from {os.path.basename(args.file)}; {len(partners) - added} already present")


def referral_policy(args, config):
    if not args.level and (args.ack_seconds is not None or args.max_reoffers is not None):
        raise _error(f"level: --ack-seconds and --max-reoffers change one level's policy: name the level "
                     f"({', '.join(RISK_LEVELS)})")
    with _referral_pool(config).transaction() as cur:
        if args.level:
            if args.ack_seconds is None or args.max_reoffers is None:
                raise _error("policy: give both --ack-seconds and --max-reoffers to change a level's policy")
            try:
                handlers.set_policy(cur, Policy(args.level, args.ack_seconds, args.max_reoffers), "cli", _now())
            except handlers.InvalidEntry as exc:
                raise _error("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.problems.items())) from None
            access.audit(cur, _now(), "policy.write", "ok", actor_kind="cli",
                         detail={"level": args.level, "ack_seconds": args.ack_seconds,
                                 "max_reoffers": args.max_reoffers})
        for row in handlers.policies(cur):
            print(f"{row['level']:<9} acknowledge within {row['ack_seconds']} s, re-offer up to "
                  f"{row['max_reoffers']} times (version {row['version']}, by {row['updated_by']})")


def referral_staff_key(args, config):
    if (args.role == "counsellor") != (args.partner_id is not None):
        raise _error("partner-id: a counsellor's key needs one (their organisation); no other role takes one")
    keys = load_keys(config.keys_file)
    with _referral_pool(config).transaction() as cur:
        if args.partner_id is not None:
            cur.execute(sql.PARTNER_BY_ID, {"id": args.partner_id})
            if cur.fetchone() is None:
                raise _error(f"partner-id: no partner has id {args.partner_id} (sanad partner list)")
        key_id, api_key = access.issue_key(cur, keys.lookup, _now(), args.role, partner_id=args.partner_id,
                                           staff_name=args.name)
        access.audit(cur, _now(), "staff.key_issued", "ok", actor_kind="cli", partner_id=args.partner_id,
                     detail={"key_id": key_id, "role": args.role, "staff_name": args.name})
    print(api_key)
    print(f"key {key_id}: {args.role} {args.name} on the referral admin API (/admin/v1); shown only now.",
          file=sys.stderr)


def add_to(commands):
    """Register the subcommands on sanad's parser."""
    partner = commands.add_parser("partner", help="partner directory").add_subparsers(dest="action", required=True)

    add = partner.add_parser("add", help="add a partner organisation, its webhook endpoint and an API key")
    add.add_argument("--name", required=True)
    add.add_argument("--service", required=True, action="append", choices=SERVICE_TYPES)
    add.add_argument("--governorate", required=True, action="append", choices=GOVERNORATES + (NATIONWIDE,))
    add.add_argument("--webhook-url", required=True)
    add.add_argument("--secret", help="an existing whsec_ secret (default: generate one)")
    add.add_argument("--hours", action="append", metavar="'sun-thu 08:00-14:00'",
                     help="opening hours, Iraq time; 24:00 closes at midnight (repeat for more, e.g. a night "
                          "line: 'sun-thu 20:00-24:00' and 'mon-fri 00:00-08:00'; default: open around the clock)")
    add.add_argument("--staff-gender", action="append", choices=STAFF_GENDERS, help="staff available (repeat)")
    add.add_argument("--language", action="append", help="two-letter code (repeat; default ar)")
    add.add_argument("--min-age", type=int)
    add.add_argument("--max-age", type=int)
    add.add_argument("--eligibility", help="who may be referred, in words (no personal data)")
    add.add_argument("--contacts-family", action="store_true",
                     help="the partner contacts the victim's family: matched only when she asked for that")
    add.add_argument("--confidential-address", action="store_true")
    add.add_argument("--not-accepting", action="store_true", help="listed, but taking no new cases yet")
    for name in ("--description", "--address", "--phone", "--email", "--website"):
        add.add_argument(name)
    add.set_defaults(func=partner_add)

    partner.add_parser("list", help="list partners").set_defaults(func=partner_list)
    show = partner.add_parser("show", help="one partner's directory entry, as JSON")
    show.add_argument("partner", help="name or id")
    show.set_defaults(func=partner_show)

    rotate = partner.add_parser("rotate-key", help="give a partner a new API key (shown once)")
    rotate.add_argument("partner", help="name or id")
    rotate.add_argument("--grace-minutes", type=int, default=0, help="how long its old keys keep working")
    rotate.set_defaults(func=partner_rotate_key)

    capacity = partner.add_parser("capacity", help="whether a partner takes new cases")
    capacity.add_argument("partner", help="name or id")
    capacity.add_argument("--accepting", required=True, choices=("yes", "no"))
    capacity.set_defaults(func=partner_capacity)

    seed = partner.add_parser("seed", help="load a directory seed file (partners present by name are kept)")
    seed.add_argument("file")
    seed.add_argument("--allow-production", action="store_true")
    seed.set_defaults(func=partner_seed)

    referral = commands.add_parser("referral", help="referral policies and staff keys").add_subparsers(
        dest="action", required=True)
    policy = referral.add_parser("policy", help="show, or with a level change, the escalation policies")
    policy.add_argument("level", nargs="?", choices=RISK_LEVELS)
    policy.add_argument("--ack-seconds", type=int)
    policy.add_argument("--max-reoffers", type=int)
    policy.set_defaults(func=referral_policy)
    staff = referral.add_parser("staff-key", help="an admin API key for a member of staff (shown once)")
    staff.add_argument("name")
    staff.add_argument("--role", required=True, choices=access.STAFF_ROLES)
    staff.add_argument("--partner-id", type=uuid.UUID, help="a counsellor's partner organisation (required for them)")
    staff.set_defaults(func=referral_staff_key)
