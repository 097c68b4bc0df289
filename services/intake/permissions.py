"""Who may do what. Pure rules, no framework; the service asks them before acting.

Roles (issue 4):
- operator: records cases; sees the cases they recorded or hold, and the open queue (cases nobody holds,
  such as those a machine client posted or a supervisor released), and may take an open case;
- counsellor: sees the cases referred to their partner organisation, until it declines the referral or
  Sanad withdraws it, and of each only what their organisation needs (handlers.as_partner_staff_see_it);
- supervisor: sees every case and its audit trail, records cases, reassigns;
- admin: manages staff accounts; sees no case (they run the system, they do not work cases).
Which cases a role sees is one SQL predicate per role (sql.visibility), the single source of that rule.

Overriding the risk level: anyone who may see a case may raise its level (a missed life in danger is the
worst error this system can make); lowering it takes a supervisor, so one tired person cannot talk a
critical case down alone.
"""
from sanad.contracts.vocabulary import RISK_LEVELS

CASE_ROLES = ("operator", "counsellor", "supervisor")


def may_record_cases(role) -> bool:
    return role in ("operator", "supervisor")


def may_see_cases(role) -> bool:
    return role in CASE_ROLES


def may_override(role, current_level, new_level) -> bool:
    if role not in CASE_ROLES:
        return False
    if current_level is None or new_level is None:
        return role == "supervisor"
    lowering = RISK_LEVELS.index(new_level) < RISK_LEVELS.index(current_level)
    return role == "supervisor" or not lowering


def may_assign(role, actor_id, current_assignee, new_assignee) -> bool:
    """Supervisors reassign freely; an operator may only take an open case for themselves."""
    if role == "supervisor":
        return True
    return role == "operator" and current_assignee is None and new_assignee == actor_id


def may_see_audit(role) -> bool:
    return role == "supervisor"


def may_manage_users(role) -> bool:
    return role == "admin"
