"""`sanad`: the command line for those who run the system.

    sanad keys init            create the key file (development: .sanad/keys.json, mode 0600)
    sanad keys rotate          add a new primary key to a ring (old keys still open what they sealed)
    sanad keys reseal          re-encrypt stored values under the primary keys, so old keys can be retired
    sanad migrate              create the database and schemas, apply migrations, declare queues
    sanad run                  start all services in the foreground until Ctrl-C
    sanad user add             create a staff account (password read from stdin or prompted)
    sanad token add / revoke   API tokens for machine clients, acting as a staff account
    sanad partner ...          the partner directory: add, list, show, rotate-key, capacity, seed
    sanad referral ...         escalation policies; staff keys for the referral admin API
    sanad triage score         score JSON Lines cases from stdin, as the triage service would
    sanad purge                drop the personal data of cases closed longer than the retention period
    sanad webhooks ...         webhook endpoints: list, rotate-secret, enable, disable, dead, replay
    sanad oncall add / list    where the on-duty supervisors are paged
    sanad alerts [ack]         what notify needs the supervisors to know, outside the webhook path
"""
import argparse
import getpass
import sys
import uuid
import warnings

# nameko 2 is built on eventlet, which warns at every import that it is deprecated; an operator can do
# nothing about it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from kombu import Connection

from sanad import settings
from sanad.contracts import routing
from sanad.crypto import ensure_keys, load_keys
from sanad.platform.migrate import ensure_database, migrate
from sanad.platform.pool import Pool


class CommandError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def cmd_keys_init(args, config):
    created = ensure_keys(config.keys_file)
    print(f"{'created' if created else 'kept existing'} key file {config.keys_file}")


def cmd_migrate(args, config):
    if ensure_database(config.database_url):
        print("created the database")
    applied = migrate(config.database_url)
    print("\n".join(f"applied {name}" for name in applied) or "database schema is up to date")
    with Connection(config.amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        routing.declare_all(connection)
    print(f"declared exchange {routing.EXCHANGE.name} and {len(routing.ALL_QUEUES)} queues")


def cmd_run(args, config):
    from sanad.launcher import run_foreground
    return run_foreground(port_base=args.port_base, host=args.host)


def cmd_user_add(args, config):
    from services.intake import accounts
    from services.intake import sql as intake_sql
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    errors = accounts.check_new_account(args.username, args.role, password, args.partner_id)
    if errors:
        raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))
    with Pool(config.database_url, size=1, schema="intake").transaction() as cur:
        cur.execute(intake_sql.USER_BY_USERNAME, {"username": args.username})
        if cur.fetchone():
            raise CommandError(f"username: an account called {args.username!r} exists already")
        user_id = accounts.add_user(cur, args.username, args.display_name, args.role, password, args.partner_id)
    print(f"created {args.role} {args.username} ({user_id})")


def cmd_token_add(args, config):
    from datetime import datetime, timedelta, timezone

    from services.intake import auth
    lifetime = timedelta(days=args.days) if args.days else None
    with Pool(config.database_url, size=1, schema="intake").transaction() as cur:
        try:
            token, token_id = auth.add_token(cur, args.username, args.label, datetime.now(timezone.utc), lifetime)
        except LookupError as exc:
            raise CommandError(f"username: {exc}") from None
    print(token)
    print(f"token {token_id} acts as {args.username}; it is shown only now. Send it as "
          f"'Authorization: Bearer <token>'.", file=sys.stderr)


def cmd_token_revoke(args, config):
    from datetime import datetime, timezone

    from services.intake import auth
    with Pool(config.database_url, size=1, schema="intake").transaction() as cur:
        if not auth.revoke_token(cur, args.token_id, datetime.now(timezone.utc)):
            raise CommandError(f"token_id: no live token {args.token_id}")
    print(f"revoked token {args.token_id}")


def cmd_keys_rotate(args, config):
    import dataclasses

    from sanad.crypto import write_keys
    keys = load_keys(config.keys_file)
    ring = getattr(keys, args.ring).rotated()
    write_keys(config.keys_file, dataclasses.replace(keys, **{args.ring: ring}))
    print(f"{args.ring} ring: new primary key {ring.primary}; {len(ring.keys) - 1} older key(s) still open "
          f"what they sealed")
    print("Restart the services so they seal with the new key, then run `sanad keys reseal`.", file=sys.stderr)


def cmd_keys_reseal(args, config):
    """Each service that stores sealed values offers reseal(pool, ring) in its handlers module."""
    import importlib
    keys = load_keys(config.keys_file)
    for schema in ("intake", "triage", "referral", "notify"):
        module = importlib.import_module(f"services.{schema}.handlers")
        reseal = getattr(module, "reseal", None)
        if reseal is None:
            print(f"{schema}: offers no reseal; values it sealed stay under their keys", file=sys.stderr)
            continue
        pool = Pool(config.database_url, size=1, schema=schema)
        try:
            changed = reseal(pool, keys.data)
        finally:
            pool.close()
        print(f"{schema}: " + ", ".join(f"{table} {count}" for table, count in changed.items()))
    print(f"every value found is now under data key {keys.data.primary}")


def cmd_triage_score(args, config):
    from services.triage.replay import score_stream
    score_stream(sys.stdin, sys.stdout)


DEFAULT_RETENTION_DAYS = 365
MIN_RETENTION_DAYS = 30


def cmd_purge(args, config):
    """Each service says what it holds open and what it drops in services/<service>/retention.py."""
    import importlib
    import os
    from datetime import datetime, timedelta, timezone

    from sanad.platform.migrate import SCHEMAS
    from sanad.platform.retention import purge_closed_cases
    days = args.retention_days
    if days is None:
        days = int(os.environ.get("SANAD_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))
    if days < MIN_RETENTION_DAYS:
        raise CommandError(f"retention-days: {days} is under the minimum of {MIN_RETENTION_DAYS} days")
    now = datetime.now(timezone.utc)
    cutoff = now - timedelta(days=days)
    modules = {schema: importlib.import_module(f"services.{schema}.retention") for schema in SCHEMAS}
    pools = {schema: Pool(config.database_url, size=1, schema=schema) for schema in SCHEMAS}
    try:
        keys = None if args.dry_run else load_keys(config.keys_file)
        report = purge_closed_cases(pools, modules, keys, cutoff, now, dry_run=args.dry_run)
    finally:
        for pool in pools.values():
            pool.close()
    held = ", ".join(f"{service} {count}" for service, count in report.held_open.items() if count) or "none"
    print(f"cases received before {cutoff:%Y-%m-%d} and not purged yet: {report.candidates}; "
          f"still open (by service): {held}")
    if args.dry_run:
        print(f"would purge {report.purged} case(s); nothing changed")
        return
    print(f"purged {report.purged} case(s)")
    for table, rows in sorted(report.changed.items()):
        print(f"  {table}: {rows} row(s)")


def build_parser():
    parser = argparse.ArgumentParser(prog="sanad", description="Run and administer Sanad.")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="manage encryption keys").add_subparsers(dest="action", required=True)
    keys.add_parser("init", help="create the key file if there is none").set_defaults(func=cmd_keys_init)
    keys_rotate = keys.add_parser("rotate", help="add a new primary key to a ring")
    keys_rotate.add_argument("--ring", choices=("data", "transport"), default="data")
    keys_rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser("reseal", help="re-encrypt stored values under the primary data key").set_defaults(
        func=cmd_keys_reseal)

    commands.add_parser("migrate", help="create and upgrade the database and queues").set_defaults(func=cmd_migrate)

    run = commands.add_parser("run", help="start every service in the foreground")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port-base", type=int, default=8000, help="intake's port; the others follow it")
    run.set_defaults(func=cmd_run)

    user = commands.add_parser("user", help="staff accounts").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="create a staff account")
    user_add.add_argument("username")
    user_add.add_argument("--role", required=True, choices=("operator", "counsellor", "supervisor", "admin"))
    user_add.add_argument("--display-name")
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_add.add_argument("--partner-id", type=uuid.UUID, help="a counsellor's partner organisation")
    user_add.set_defaults(func=cmd_user_add)

    token = commands.add_parser("token", help="API tokens for machine clients").add_subparsers(
        dest="action", required=True)
    token_add = token.add_parser("add", help="create a token acting as an account; prints it once")
    token_add.add_argument("username")
    token_add.add_argument("--label", required=True, help="what uses it, e.g. 'web form'")
    token_add.add_argument("--days", type=int, help="expire after this many days (default: never)")
    token_add.set_defaults(func=cmd_token_add)
    token_revoke = token.add_parser("revoke", help="revoke a token by its id")
    token_revoke.add_argument("token_id", type=uuid.UUID)
    token_revoke.set_defaults(func=cmd_token_revoke)

    # The partner directory, partner API keys, staff keys and escalation policies: services/referral/commands.py.
    from services.referral import commands as referral_commands
    referral_commands.add_to(commands)

    # Webhook endpoints, replay, the supervisors' pager and alerts: services/notify/commands.py.
    from services.notify import commands as notify_commands
    notify_commands.add_to(commands)

    triage = commands.add_parser("triage", help="risk assessment tools").add_subparsers(dest="action", required=True)
    triage.add_parser("score", help="score JSON Lines cases from stdin").set_defaults(func=cmd_triage_score)

    purge = commands.add_parser("purge", help="drop the personal data of cases closed longer than the retention "
                                               "period; statistics stay")
    purge.add_argument("--retention-days", type=int,
                       help=f"default: SANAD_RETENTION_DAYS, or {DEFAULT_RETENTION_DAYS}; at least {MIN_RETENTION_DAYS}")
    purge.add_argument("--dry-run", action="store_true", help="count what would be purged; change nothing")
    purge.set_defaults(func=cmd_purge)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, settings.from_environment()) or 0
    except CommandError as exc:
        print(f"sanad: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"sanad: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
