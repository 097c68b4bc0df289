"""`sanad webhooks ...`, `sanad oncall ...` and `sanad alerts ...`: webhook endpoints, secret rotation,
dead deliveries and replay, the supervisors' pager, and the alerts notify raises for the supervisors.
Registered on sanad.cli's parser by `add_to`. Each command works in notify's own schema; what it
changes, the running notify processes take up within a second (replayed deliveries are due at once).
"""
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

from sanad import webhooks
from sanad.crypto import load_keys
from sanad.platform.pool import Pool
from services.notify import handlers


def _error(message):
    from sanad.cli import CommandError
    return CommandError(message)


def _now():
    return datetime.now(timezone.utc)


def _notify_pool(config):
    return Pool(config.database_url, size=1, schema="notify")


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


# sanad webhooks ...

def webhooks_list(args, config):
    with _notify_pool(config).transaction() as cur:
        endpoints = handlers.list_endpoints(cur, args.target)
    for row in endpoints:
        state = "enabled" if row["enabled"] else f"DISABLED since {_when(row['disabled_at'])}: {row['disabled_reason']}"
        failures = f", {row['consecutive_exhausted']} exhausted in a row" if row["consecutive_exhausted"] else ""
        print(f"{row['target']:<7}  {row['id']}  {row['url']}  ({state}{failures}; "
              f"{row['active_secrets']} active secret{'s' if row['active_secrets'] != 1 else ''})")


def webhooks_rotate_secret(args, config):
    try:
        overlap = timedelta(hours=args.overlap_hours)
    except (ValueError, OverflowError):  # nan, inf, or beyond any date
        overlap = None
    if overlap is None or overlap < timedelta(0):
        raise _error("overlap-hours: must be a number of hours, 0 (the old secrets stop signing now) or more")
    secret = args.secret or webhooks.generate_secret()
    keys = load_keys(config.keys_file)
    try:
        with _notify_pool(config).transaction() as cur:
            until = handlers.rotate_secret(cur, keys, args.endpoint, secret, overlap)
    except LookupError as exc:
        raise _error(f"endpoint: {exc}") from None
    except OverflowError:
        raise _error("overlap-hours: that many hours from now is beyond any date") from None
    print(json.dumps({"endpoint_id": str(args.endpoint), "webhook_secret": secret,
                      "previous_secrets_sign_until": until.isoformat()}, indent=2))
    print(f"Webhooks now carry a signature with each secret until {_when(until)}: give the new secret to "
          "the partner over a safe channel before then.", file=sys.stderr)


def webhooks_set_enabled(args, config):
    enabled = args.action == "enable"
    try:
        with _notify_pool(config).transaction() as cur:
            handlers.set_endpoint_enabled(cur, args.endpoint, enabled, reason=getattr(args, "reason", None))
    except LookupError as exc:
        raise _error(f"endpoint: {exc}") from None
    print(f"{'enabled' if enabled else 'disabled'} endpoint {args.endpoint}")
    if enabled:
        print("Deliveries that died while it was failing stay dead: `sanad webhooks replay --dead` resends them.",
              file=sys.stderr)


def webhooks_dead(args, config):
    with _notify_pool(config).transaction() as cur:
        dead = handlers.list_dead(cur)
    for row in dead:
        print(f"{row['id']}  {row['webhook_id']}  {row['kind']} to {row['target']} {row['endpoint_id']}  "
              f"lane {row['lane']}  case {row['case_reference'] or '-'}  after {row['attempts']} attempts "
              f"({row['last_error']}) at {_when(row['dead_at'])}"
              + ("  [referral withdrawn: not replayed]" if row["referral_withdrawn"] else ""))
    print(f"{len(dead)} dead deliver{'y' if len(dead) == 1 else 'ies'} not replayed", file=sys.stderr)


def webhooks_replay(args, config):
    chosen = list(args.delivery or ()) + list(args.webhook_id or ())
    if not args.dead and not chosen:
        raise _error("replay: say which: --dead, --delivery ID or --webhook-id ID")
    with _notify_pool(config).transaction() as cur:
        replayed, skipped = handlers.replay(cur, dead=args.dead, chosen=chosen)
    for row in replayed:
        print(f"replaying {row['id']}  {row['webhook_id']}  (lane {row['lane']})")
    for row in skipped:
        print(f"not replayed: {row.get('webhook_id') or row.get('asked')}: {row['why']}", file=sys.stderr)
    print(f"{len(replayed)} replayed under their own webhook-ids; the notify process of each lane sends them "
          "within a second", file=sys.stderr)
    if any(not row.get("dead") for row in skipped):
        return 1  # what was asked for by id and not replayed; a withdrawn offer --dead passed over is no failure


# sanad oncall ...

def oncall_add(args, config):
    secret = args.secret or webhooks.generate_secret()
    keys = load_keys(config.keys_file)
    with _notify_pool(config).transaction() as cur:
        endpoint_id = handlers.register_oncall_endpoint(cur, keys, args.url, secret, name=args.name)
    print(json.dumps({"endpoint_id": str(endpoint_id), "url": args.url, "webhook_secret": secret}, indent=2))
    if not args.secret:
        print("Give the webhook secret to whoever runs the pager over a safe channel; it is not shown again.",
              file=sys.stderr)


def oncall_list(args, config):
    with _notify_pool(config).transaction() as cur:
        endpoints = handlers.list_endpoints(cur, "oncall")
    for row in endpoints:
        print(f"{row['id']}  {row['url']}  ({'enabled' if row['enabled'] else 'disabled'})")
    if not endpoints:
        print("no on-call endpoint: escalations raise alerts instead (sanad alerts)", file=sys.stderr)


# sanad alerts ...

def alerts_list(args, config):
    with _notify_pool(config).transaction() as cur:
        alerts = handlers.list_alerts(cur, include_acknowledged=args.all)
    for row in alerts:
        seen = f"  acknowledged by {row['acknowledged_by']} at {_when(row['acknowledged_at'])}" \
            if row["acknowledged_at"] else ""
        case = f"  case {row['case_reference']}" if row["case_reference"] else ""
        print(f"#{row['id']}  {_when(row['raised_at'])}  {row['kind']}{case}  {row['detail']}{seen}")
    if not alerts:
        print("no open alerts" if not args.all else "no alerts", file=sys.stderr)


def alerts_ack(args, config):
    with _notify_pool(config).transaction() as cur:
        if not handlers.acknowledge_alert(cur, args.alert_id, args.by):
            raise _error(f"alert: no open alert #{args.alert_id}")
    print(f"acknowledged alert #{args.alert_id}")


def add_to(commands):
    """Add `webhooks`, `oncall` and `alerts` to sanad.cli's subcommands."""
    hooks = commands.add_parser("webhooks", help="webhook endpoints, secrets, dead deliveries and replay") \
        .add_subparsers(dest="action", required=True)
    listing = hooks.add_parser("list", help="every endpoint, enabled or not, with its failures and secrets")
    listing.add_argument("--target", choices=("partner", "oncall"))
    listing.set_defaults(func=webhooks_list)

    rotate = hooks.add_parser("rotate-secret", help="sign with a new secret; the old ones keep signing for a while")
    rotate.add_argument("--endpoint", required=True, type=uuid.UUID, help="a partner's id or an on-call endpoint's id")
    rotate.add_argument("--secret", help="the new whsec_ secret (default: generate one)")
    rotate.add_argument("--overlap-hours", type=float, default=24.0,
                        help="how long the old secrets keep signing too (default 24)")
    rotate.set_defaults(func=webhooks_rotate_secret)

    for action, text in (("enable", "send to this endpoint again"), ("disable", "stop sending to this endpoint")):
        toggle = hooks.add_parser(action, help=text)
        toggle.add_argument("--endpoint", required=True, type=uuid.UUID)
        if action == "disable":
            toggle.add_argument("--reason", default="disabled by hand")
        toggle.set_defaults(func=webhooks_set_enabled)

    hooks.add_parser("dead", help="deliveries whose every attempt failed, not yet replayed") \
        .set_defaults(func=webhooks_dead)

    replay = hooks.add_parser("replay", help="send dead or chosen deliveries again, under their own webhook-ids")
    replay.add_argument("--dead", action="store_true", help="every dead delivery not yet replayed")
    replay.add_argument("--delivery", action="append", type=uuid.UUID, help="a delivery id (repeatable)")
    replay.add_argument("--webhook-id", action="append", help="a webhook-id, msg_... (repeatable)")
    replay.set_defaults(func=webhooks_replay)

    oncall = commands.add_parser("oncall", help="where the on-duty supervisors are paged") \
        .add_subparsers(dest="action", required=True)
    oncall_add_parser = oncall.add_parser("add", help="add an endpoint escalations are paged to")
    oncall_add_parser.add_argument("--url", required=True)
    oncall_add_parser.add_argument("--secret", help="an existing whsec_ secret (default: generate one)")
    oncall_add_parser.add_argument("--name", help="what it is, e.g. the supervisors' phone gateway")
    oncall_add_parser.set_defaults(func=oncall_add)
    oncall.add_parser("list", help="the on-call endpoints").set_defaults(func=oncall_list)

    alerts = commands.add_parser("alerts", help="what notify needs the supervisors to know (open ones by default)")
    alerts.set_defaults(func=alerts_list, all=False)
    alert_actions = alerts.add_subparsers(dest="action")
    alert_list = alert_actions.add_parser("list", help="open alerts (--all: acknowledged ones too)")
    alert_list.add_argument("--all", action="store_true")
    alert_list.set_defaults(func=alerts_list)
    ack = alert_actions.add_parser("ack", help="acknowledge an alert: someone is dealing with it")
    ack.add_argument("alert_id", type=int)
    ack.add_argument("--by", required=True, help="who is dealing with it")
    ack.set_defaults(func=alerts_ack)
