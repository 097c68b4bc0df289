"""The operators' pages, rendered on the server: every string from the catalogue, every value escaped
(markup.py), dates in Baghdad time. The script (static/app.js) adds the draft, live queue and form posting."""
from datetime import datetime
from zoneinfo import ZoneInfo

from sanad.contracts.vocabulary import CHANNELS, GOVERNORATES, RISK_LEVELS, SERVICE_TYPES
from services.intake import i18n
from services.intake.i18n import label, t
from services.intake.markup import Safe, attribute_json, join, render
from services.intake.vocabulary import (
    AGE_BANDS, CALLER_RELATIONS, CURRENCIES, DEMANDS, DHI_QAR_DISTRICTS, EXTORTION_TYPES, GENDERS, PERPETRATORS,
    PLATFORMS,
)

BAGHDAD = ZoneInfo("Asia/Baghdad")
# Strings and labels the script needs, sent with each page.
SCRIPT_STRING_PREFIXES = ("form.", "queue.", "risk.", "status.", "governorate.", "district.", "service.",
                          "channel.", "error.", "login.expired")


def when(value) -> str:
    """A moment as Baghdad local time, "2026-03-10 12:30"."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(BAGHDAD).strftime("%Y-%m-%d %H:%M")


def script_strings(lang) -> dict:
    collected = {}
    for prefix in SCRIPT_STRING_PREFIXES:
        collected.update(i18n.strings(prefix, lang))
    return collected


def layout(lang, title, content, principal=None, page="", path="/") -> Safe:
    nav = Safe("")
    if principal is not None:
        links = []
        if principal.role in ("operator", "counsellor", "supervisor"):
            links.append(render('<a href="/queue">{text}</a>', text=t("nav.queue", lang)))
        if principal.role in ("operator", "supervisor"):
            links.append(render('<a href="/cases/new">{text}</a>', text=t("nav.new_case", lang)))
        if principal.role == "admin":
            links.append(render('<a href="/users">{text}</a>', text=t("nav.users", lang)))
        nav = render(
            '<nav aria-label="{label}">{links}</nav>'
            '<span class="who">{who}</span>'
            '<form method="post" action="/logout" class="inline">'
            '<input type="hidden" name="csrf_token" value="{csrf}">'
            '<button type="submit" class="link">{logout}</button></form>',
            label=t("app.name", lang), links=join(links), csrf=principal.csrf_token or "",
            who=t("nav.signed_in_as", lang, principal.display_name, label("role", principal.role, lang)),
            logout=t("nav.logout", lang),
        )
    other = "en" if lang == "ar" else "ar"
    return render(
        '<!doctype html>\n<html lang="{lang}" dir="{dir}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        '<title>{title}</title><link rel="stylesheet" href="/static/app.css">'
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">'  # a plain square: no name, no symbol
        '<script src="/static/app.js" defer></script></head>'
        '<body data-page="{page}" data-lang="{lang}" data-csrf="{csrf}" data-user="{user}" data-strings="{strings}">'
        '<a class="skip" href="#content">{skip}</a>'
        '<header><strong class="brand">{app}</strong>{nav}'
        '<a class="lang" href="/lang/{other}?next={path}" lang="{other}">{switch}</a>'
        '<button type="button" id="quick-exit" class="quick-exit">{exit}</button></header>'
        '<div id="announcer" class="visually-hidden" aria-live="assertive" aria-atomic="true"></div>'
        '<main id="content" tabindex="-1">{content}</main></body></html>',
        lang=lang, dir=i18n.DIRECTION[lang], title=f"{title} · {t('app.name', lang)}", page=page,
        csrf=principal.csrf_token if principal else "", user=principal.id if principal else "",
        strings=attribute_json(script_strings(lang)), skip=t("nav.skip", lang), app=t("app.name", lang),
        nav=nav, other=other, path=path, switch=t("nav.language", lang), exit=t("nav.quick_exit", lang),
        content=content,
    )


# Login and exit ---------------------------------------------------------------------------------------

def login_page(lang, csrf, next_path="/queue", message_key=None, username="") -> Safe:
    message = Safe("")
    if message_key:
        message = render('<p class="error" role="alert">{text}</p>', text=t(message_key, lang))
    content = render(
        '<h1>{title}</h1>{message}'
        '<form method="post" action="/login" class="login">'
        '<input type="hidden" name="csrf_token" value="{csrf}">'
        '<input type="hidden" name="next" value="{next}">'
        '<label for="username">{user_label}</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus value="{username}" dir="ltr">'
        '<label for="password">{password_label}</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required dir="ltr">'
        '<button type="submit">{submit}</button></form>',
        title=t("login.title", lang), message=message, csrf=csrf, next=next_path, username=username,
        user_label=t("login.username", lang), password_label=t("login.password", lang),
        submit=t("login.submit", lang),
    )
    return layout(lang, t("login.title", lang), content, page="login", path="/login")


def exit_page(lang) -> Safe:
    """Somewhere a passer-by sees nothing: no name of the service, no way back by the Back button."""
    return render(
        '<!doctype html>\n<html lang="{lang}" dir="{dir}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml"></head>'
        '<body><h1>{title}</h1><p>{body}</p></body></html>',
        lang=lang, dir=i18n.DIRECTION[lang], title=t("exit.title", lang), body=t("exit.body", lang),
    )


def error_page(lang, principal, message_key, path="/") -> Safe:
    content = render('<h1>{text}</h1><p><a href="/queue">{back}</a></p>', text=t(message_key, lang),
                     back=t("case.back", lang))
    return layout(lang, t(message_key, lang), content, principal, page="error", path=path)


# Queue ------------------------------------------------------------------------------------------------

def risk_badge(level, lang) -> Safe:
    return render('<span class="risk risk-{level}">{text}</span>', level=level or "none",
                  text=label("risk", level or "none", lang))


def place(row, lang) -> str:
    text = label("governorate", row["governorate"], lang)
    if row.get("district"):
        text += " / " + label("district", row["district"], lang)
    return text


def queue_row(row, lang) -> Safe:
    holder = row["assigned_to"]["name"] if row["assigned_to"] else t("queue.open", lang)
    return render(
        '<tr data-id="{id}" data-reference="{reference}" data-level="{level}" class="level-{level}">'
        '<td><a href="/cases/{id}">{reference}</a></td><td>{risk}</td><td>{status}</td>'
        '<td><time datetime="{iso}">{received}</time></td><td>{place}</td><td>{needs}</td><td>{holder}</td></tr>',
        id=row["id"], level=row["risk_level"] or "none", reference=row["reference"],
        risk=risk_badge(row["risk_level"], lang), status=label("status", row["status"], lang),
        iso=row["received_at"], received=when(row["received_at"]), place=place(row, lang),
        needs=join((label("service", need, lang) for need in row["needs"]), "، " if lang == "ar" else ", "),
        holder=holder,
    )


def queue_page(lang, principal, rows) -> Safe:
    content = render(
        '<h1>{title}</h1><p class="hint">{hint} <span id="queue-updated" class="muted"></span></p>'
        '<div class="table-scroll" role="region" aria-label="{title}" tabindex="0">'
        '<table class="queue"><thead><tr><th scope="col">{reference}</th><th scope="col">{risk}</th>'
        '<th scope="col">{status}</th><th scope="col">{received}</th><th scope="col">{place}</th>'
        '<th scope="col">{needs}</th><th scope="col">{holder}</th></tr></thead>'
        '<tbody id="queue-body">{rows}</tbody></table></div>'
        '<p id="queue-empty" class="muted"{hidden}>{empty}</p>',
        title=t("queue.title", lang), hint=t("queue.hint", lang), reference=t("queue.reference", lang),
        risk=t("queue.risk", lang), status=t("queue.status", lang), received=t("queue.received", lang),
        place=t("queue.place", lang), needs=t("queue.needs", lang), holder=t("queue.holder", lang),
        rows=join(queue_row(row, lang) for row in rows), hidden=Safe(" hidden") if rows else Safe(""),
        empty=t("queue.empty", lang),
    )
    return layout(lang, t("queue.title", lang), content, principal, page="queue", path="/queue")


# New case form ----------------------------------------------------------------------------------------

def _select(name, group, codes, lang, blank=True, selected=None) -> Safe:
    options = [render('<option value="">{text}</option>', text=t("form.unknown", lang))] if blank else []
    options += [render('<option value="{code}"{sel}>{text}</option>', code=code, text=label(group, code, lang),
                       sel=Safe(" selected") if code == selected else Safe(""))
                for code in codes]
    return render('<label for="f-{id}">{text}</label><select id="f-{id}" name="{name}">{options}</select>'
                  '<span class="field-error" data-error-for="{name}"></span>',
                  id=name.replace(".", "-"), name=name, text=t(f"field.{name}", lang), options=join(options))


def _yes_no(name, lang) -> Safe:
    options = [("", "form.unknown"), ("true", "form.yes"), ("false", "form.no")]
    return render('<label for="f-{name}">{text}</label><select id="f-{name}" name="{name}" data-kind="bool3">'
                  '{options}</select><span class="field-error" data-error-for="{name}"></span>',
                  name=name, text=t(f"field.{name}", lang),
                  options=join(render('<option value="{v}">{text}</option>', v=v, text=t(k, lang))
                               for v, k in options))


def _checks(name, group, codes, lang, hint_key=None) -> Safe:
    boxes = join(render('<label class="check"><input type="checkbox" name="{name}" value="{code}"> {text}</label>',
                        name=name, code=code, text=label(group, code, lang)) for code in codes)
    hint = render('<p class="hint">{text}</p>', text=t(hint_key, lang)) if hint_key else Safe("")
    return render('<fieldset data-kind="list" data-name="{name}"><legend>{text}</legend>{hint}{boxes}'
                  '<span class="field-error" data-error-for="{name}"></span></fieldset>',
                  name=name, text=t(f"field.{name}", lang), hint=hint, boxes=boxes)


def _flag(name, lang, checked=False, hint_key=None) -> Safe:
    hint = render(' <span class="hint">{text}</span>', text=t(hint_key, lang)) if hint_key else Safe("")
    return render('<label class="check"><input type="checkbox" name="{name}" data-kind="flag"{checked}> {text}</label>'
                  '{hint}<span class="field-error" data-error-for="{name}"></span>',
                  name=name, text=t(f"field.{name}", lang), checked=Safe(" checked") if checked else Safe(""),
                  hint=hint)


def _input(name, lang, kind="text", attributes="", hint_key=None) -> Safe:
    hint = render('<span class="hint">{text}</span>', text=t(hint_key, lang)) if hint_key else Safe("")
    return render('<label for="f-{id}">{text}</label><input id="f-{id}" name="{name}" {attributes}>{hint}'
                  '<span class="field-error" data-error-for="{name}"></span>',
                  id=name.replace(".", "-"), name=name, text=t(f"field.{name}", lang),
                  attributes=Safe(attributes or f'type="{kind}"'), hint=hint)


def _section(lang, key, *parts) -> Safe:
    return render('<fieldset class="section"><legend>{title}</legend>{parts}</fieldset>',
                  title=t(key, lang), parts=join(parts))


def new_case_page(lang, principal) -> Safe:
    form = render(
        '<form id="case-form" novalidate data-draft-key-url="/api/me/draft-key">'
        '<p id="draft-status" class="muted" role="status"></p>'
        '<button type="button" id="draft-discard" class="link" hidden>{discard}</button>'
        '<div id="form-errors" class="error" role="alert" tabindex="-1" hidden></div>'
        '{narrative}{call}{victim}{extortion}{risk}{needs}{contact}'
        '<button type="submit" id="case-submit">{submit}</button></form>',
        discard=t("form.draft_discard", lang),
        narrative=_section(lang, "form.section.narrative", render(
            '<label for="f-narrative">{text}</label><p class="hint">{hint}</p>'
            '<textarea id="f-narrative" name="narrative" rows="6" required></textarea>'
            '<span class="field-error" data-error-for="narrative"></span>',
            text=t("field.narrative", lang), hint=t("form.narrative_hint", lang))),
        call=_section(lang, "form.section.call",
                      _select("channel", "channel", CHANNELS, lang, blank=False, selected="phone"),
                      _select("caller_relation", "caller_relation", CALLER_RELATIONS, lang)),
        victim=_section(lang, "form.section.victim",
                        _input("victim_age", lang, attributes='type="number" min="0" max="120" step="1" '
                                                              'inputmode="numeric" data-kind="int"'),
                        _select("victim_age_band", "age_band", tuple(AGE_BANDS), lang),
                        _select("victim_gender", "gender", GENDERS, lang),
                        _select("governorate", "governorate", GOVERNORATES, lang, blank=False, selected="dhi_qar"),
                        _select("district", "district", DHI_QAR_DISTRICTS, lang)),
        extortion=_section(lang, "form.section.extortion",
                           _checks("extortion_types", "extortion_type", EXTORTION_TYPES, lang),
                           _checks("platforms", "platform", PLATFORMS, lang),
                           _select("perpetrator", "perpetrator", PERPETRATORS, lang),
                           _checks("demands", "demand", DEMANDS, lang),
                           _input("demand_amount", lang, attributes='type="number" min="0" step="any" '
                                                                    'inputmode="decimal" data-kind="decimal"'),
                           _select("demand_currency", "currency", CURRENCIES, lang),
                           _input("deadline_at", lang, attributes='type="datetime-local" data-kind="baghdad"',
                                  hint_key="form.deadline_hint"),
                           _yes_no("material_published", lang),
                           _checks("published_on", "platform", PLATFORMS, lang)),
        risk=_section(lang, "form.section.risk", _yes_no("suicidal_thoughts", lang),
                      _yes_no("threat_of_violence", lang)),
        needs=_section(lang, "form.section.needs",
                       _checks("needs", "service", SERVICE_TYPES, lang),
                       _checks("consents", "service", SERVICE_TYPES, lang, hint_key="form.consent_hint"),
                       _flag("family_contact_allowed", lang, hint_key="form.family_hint"),
                       _flag("tribe_contact_allowed", lang)),
        contact=_section(lang, "form.section.contact",
                         _flag("anonymous", lang, hint_key="form.anonymous_hint"),
                         _input("safe_contact.name", lang, attributes='type="text" autocomplete="off"'),
                         _input("safe_contact.phone", lang, attributes='type="tel" dir="ltr" autocomplete="off"'),
                         _input("safe_contact.safe_times", lang, attributes='type="text" autocomplete="off"'),
                         _input("safe_contact.code_word", lang, attributes='type="text" autocomplete="off"'),
                         _flag("safe_contact.no_messages", lang, checked=True)),
        submit=t("form.submit", lang),
    )
    content = render('<h1>{title}</h1>{form}', title=t("form.title", lang), form=form)
    return layout(lang, t("form.title", lang), content, principal, page="new-case", path="/cases/new")


# The case page ----------------------------------------------------------------------------------------

def _row(lang, key, value) -> Safe:
    return render('<dt>{key}</dt><dd>{value}</dd>', key=t(key, lang), value=value)


def _labels(group, codes, lang) -> str:
    separator = "، " if lang == "ar" else ", "
    return separator.join(label(group, code, lang) for code in codes or ()) or t("case.none", lang)


def _yes_no_text(value, lang) -> str:
    return t("form.unknown", lang) if value is None else t("form.yes" if value else "form.no", lang)


def case_page(lang, principal, view, trail=None, assignees=()) -> Safe:
    risk = view["risk"]
    if risk is None:
        risk_block = render('<p>{text}</p>', text=t("case.awaiting_triage", lang))
    else:
        reasons = join(
            render('<li><strong>{code}</strong> <span class="muted">({source})</span>{evidence}</li>',
                   code=label("reason", reason["code"], lang), source=label("source", reason["source"], lang),
                   evidence=render(' — {words}: <q class="evidence">{quoted}</q>', words=t("case.evidence", lang),
                                   quoted=join(reason["evidence"], " … ")) if reason["evidence"] else Safe(""))
            for reason in risk["reasons"]
        ) or render('<li>{text}</li>', text=t("case.no_reasons", lang))
        overrides = join(
            render('<li>{line}{reason}</li>',
                   line=t("case.override_line", lang, when(o["at"]), label("risk", o["previous_level"], lang),
                          label("risk", o["level"], lang), (o["by"] or {}).get("name") or t("case.hotline_staff", lang)),
                   reason=render('<br><q>{text}</q>', text=o["reason"]) if o["reason"] is not None else Safe(""))
            for o in risk["overrides"]
        )
        risk_block = render(
            '<p class="risk-line">{badge} <span class="muted">{score} · {lexicon}</span></p>'
            '<h3>{reasons_title}</h3><ul class="reasons">{reasons}</ul>{overrides}',
            badge=risk_badge(risk["level"], lang), score=t("case.score", lang, risk["score"]),
            lexicon=t("case.lexicon", lang, risk["lexicon_version"]), reasons_title=t("case.reasons", lang),
            reasons=reasons,
            overrides=render('<h3>{title}</h3><ul>{items}</ul>', title=t("case.overrides", lang), items=overrides)
            if risk["overrides"] else Safe(""),
        )
    override_form = Safe("")
    if risk is not None and principal.role in ("operator", "counsellor", "supervisor"):
        override_form = render(
            '<form id="override-form" data-action="/api/cases/{id}/risk-override" class="api-form">'
            '<h3>{title}</h3><p class="hint">{hint}</p>'
            '<label for="o-level">{level_label}</label><select id="o-level" name="level">{options}</select>'
            '<span class="field-error" data-error-for="level"></span>'
            '<label for="o-reason">{reason_label}</label><textarea id="o-reason" name="reason" rows="2" required></textarea>'
            '<span class="field-error" data-error-for="reason"></span>'
            '<button type="submit">{submit}</button><p class="form-status" role="status"></p></form>',
            id=view["id"], title=t("case.override.title", lang), hint=t("case.override.hint", lang),
            level_label=t("field.level", lang), reason_label=t("field.reason", lang),
            options=join(render('<option value="{code}"{sel}>{text}</option>', code=code, text=label("risk", code, lang),
                                sel=Safe(" selected") if code == risk["level"] else Safe(""))
                         for code in reversed(RISK_LEVELS)),
            submit=t("case.override.submit", lang),
        )
    assign_form = Safe("")
    if principal.role == "supervisor":
        assign_form = render(
            '<form id="assign-form" data-action="/api/cases/{id}/assignment" data-method="PUT" class="api-form">'
            '<h3>{title}</h3><label for="a-assignee">{label_text}</label>'
            '<select id="a-assignee" name="assignee" data-kind="nullable"><option value="">{release}</option>{options}'
            '</select><span class="field-error" data-error-for="assignee"></span>'
            '<button type="submit">{submit}</button><p class="form-status" role="status"></p></form>',
            id=view["id"], title=t("case.assign.title", lang), label_text=t("field.assignee", lang),
            release=t("case.assign.release", lang),
            options=join(render('<option value="{id}"{sel}>{name}</option>', id=user["id"], name=user["display_name"],
                                sel=Safe(" selected") if view["assigned_to"] and view["assigned_to"]["id"] == user["id"]
                                else Safe(""))
                         for user in assignees),
            submit=t("case.assign.submit", lang),
        )
    elif principal.role == "operator" and view["assigned_to"] is None:
        assign_form = render(
            '<form id="assign-form" data-action="/api/cases/{id}/assignment" data-method="PUT" class="api-form">'
            '<input type="hidden" name="assignee" value="{me}"><button type="submit">{take}</button>'
            '<span class="field-error" data-error-for="assignee"></span><p class="form-status" role="status"></p></form>',
            id=view["id"], me=principal.id, take=t("case.assign.take", lang),
        )
    contact = view["safe_contact"]
    record = join([
        _row(lang, "field.channel", label("channel", view["channel"], lang)),
        _row(lang, "field.caller_relation", label("caller_relation", view["caller_relation"], lang)),
        _row(lang, "field.victim_age", view["victim_age"] if view["victim_age"] is not None else t("case.none", lang)),
        _row(lang, "field.victim_age_band", label("age_band", view["victim_age_band"], lang)),
        _row(lang, "field.victim_gender", label("gender", view["victim_gender"], lang)),
        _row(lang, "field.governorate", label("governorate", view["governorate"], lang)),
        _row(lang, "field.district", label("district", view["district"], lang)),
        _row(lang, "field.extortion_types", _labels("extortion_type", view["extortion_types"], lang)),
        _row(lang, "field.platforms", _labels("platform", view["platforms"], lang)),
        _row(lang, "field.perpetrator", label("perpetrator", view["perpetrator"], lang)),
        _row(lang, "field.demands", _labels("demand", view["demands"], lang)),
        _row(lang, "field.demand_amount", f"{view['demand_amount']} {label('currency', view['demand_currency'], lang)}"
             if view["demand_amount"] else t("case.none", lang)),
        _row(lang, "field.deadline_at", when(view["deadline_at"]) or t("case.none", lang)),
        _row(lang, "field.material_published", _yes_no_text(view["material_published"], lang)),
        _row(lang, "field.published_on", _labels("platform", view["published_on"], lang)),
        _row(lang, "field.suicidal_thoughts", _yes_no_text(view["suicidal_thoughts"], lang)),
        _row(lang, "field.threat_of_violence", _yes_no_text(view["threat_of_violence"], lang)),
        _row(lang, "field.needs", _labels("service", view["needs"], lang)),
        _row(lang, "field.consents", _labels("service", view["consents"], lang)),
        _row(lang, "field.family_contact_allowed", _yes_no_text(view["family_contact_allowed"], lang)),
        _row(lang, "field.tribe_contact_allowed", _yes_no_text(view["tribe_contact_allowed"], lang)),
    ])
    contact_rows = join([
        _row(lang, "field.anonymous", _yes_no_text(view["anonymous"], lang)),
        _row(lang, "field.safe_contact.name", contact["name"] or t("case.none", lang)),
        _row(lang, "field.safe_contact.phone", render('<bdi dir="ltr">{p}</bdi>', p=contact["phone"])
             if contact["phone"] else t("case.none", lang)),
        _row(lang, "field.safe_contact.safe_times", contact["safe_times"] or t("case.none", lang)),
        _row(lang, "field.safe_contact.code_word", contact["code_word"] or t("case.none", lang)),
        _row(lang, "field.safe_contact.no_messages", _yes_no_text(contact["no_messages"], lang)),
    ])
    repeat = Safe("")
    if view["repeat_caller"]["other_cases"]:
        repeat = render('<p class="warning">{text} {refs}</p>',
                        text=t("case.repeat_caller", lang, view["repeat_caller"]["other_cases"]),
                        refs=join(view["repeat_caller"]["references"], " "))
    referrals = join(
        render('<li><strong>{partner}</strong> — {service} — {status}<ul>{attempts}</ul></li>',
               partner=ref["partner_name"], service=label("service", ref["service"], lang),
               status=label("referral_status", ref["status"], lang),
               attempts=join(render('<li>{text}</li>', text=t(
                   "case.attempt", lang, d["attempt"], label("delivery", d["outcome"], lang),
                   d["status_code"] if d["status_code"] is not None else "—", when(d["attempted_at"])))
                   for d in ref["deliveries"]))
        for ref in view["referrals"]
    ) or render('<li>{text}</li>', text=t("case.no_referrals", lang))
    escalations = Safe("")
    if view["escalations"]:
        escalations = render('<h3>{title}</h3><ul>{items}</ul>', title=t("case.escalations", lang), items=join(
            render('<li>{text}</li>', text=t("case.escalation_line", lang, when(e["escalated_at"]),
                                             label("escalation", e["reason"], lang), e["step"]))
            for e in view["escalations"]))
    unmatched = Safe("")
    if view["unmatched_services"]:
        unmatched = render('<p class="warning">{text}</p>',
                           text=t("case.unmatched", lang, _labels("service", view["unmatched_services"], lang)))
    audit_block = Safe("")
    if trail is not None:
        audit_block = render(
            '<section><h2>{title}</h2><div class="table-scroll" role="region" aria-label="{title}" tabindex="0">'
            '<table class="audit"><thead><tr><th scope="col">{when_h}</th>'
            '<th scope="col">{who_h}</th><th scope="col">{what_h}</th><th scope="col">{where_h}</th></tr></thead>'
            '<tbody>{rows}</tbody></table></div></section>',
            title=t("case.audit", lang), when_h=t("case.audit.when", lang), who_h=t("case.audit.who", lang),
            what_h=t("case.audit.what", lang), where_h=t("case.audit.where", lang),
            rows=join(render('<tr><td>{at}</td><td>{who}</td><td>{what}</td><td><bdi dir="ltr">{ip}</bdi></td></tr>',
                             at=when(entry["at"]), who=entry["actor_name"] or entry["via"],
                             what=label("audit", entry["action"], lang), ip=entry["ip"] or "")
                      for entry in trail),
        )
    if principal.role == "counsellor":  # not named to a partner's staff (handlers.as_partner_staff_see_it)
        recorded_by = holder = t("case.hotline_staff", lang)
    else:
        recorded_by = (view["recorded_by"] or {}).get("name") or t("case.none", lang)
        holder = view["assigned_to"]["name"] if view["assigned_to"] else t("queue.open", lang)
    content = render(
        '<p><a href="/queue">{back}</a></p><h1>{title}</h1>'
        '<dl class="summary">{received}{recorded}{holder}{status}</dl>'
        '<div class="columns"><section class="risk-section"><h2>{risk_title}</h2>{risk}{override}</section>'
        '<section><h2>{narrative_title}</h2><blockquote class="narrative">{narrative}</blockquote>'
        '<h2>{contact_title}</h2>{repeat}<dl>{contact}</dl></section></div>'
        '<section><h2>{referrals_title}</h2>{unmatched}<ul class="referrals">{referrals}</ul>{escalations}</section>'
        '<section><h2>{record_title}</h2><dl class="record">{record}</dl>{assign}</section>{audit}',
        back=t("case.back", lang), title=t("case.title", lang, view["reference"]),
        received=_row(lang, "case.received", when(view["received_at"])),
        recorded=_row(lang, "case.recorded_by", recorded_by),
        holder=_row(lang, "case.assigned_to", holder),
        status=_row(lang, "queue.status", label("status", view["status"], lang)),
        risk_title=t("case.risk", lang), risk=risk_block, override=override_form,
        narrative_title=t("case.narrative", lang), narrative=view["narrative"], contact_title=t("case.contact", lang),
        repeat=repeat, contact=contact_rows, referrals_title=t("case.referrals", lang), unmatched=unmatched,
        referrals=referrals, escalations=escalations, record_title=t("case.record", lang), record=record,
        assign=assign_form, audit=audit_block,
    )
    return layout(lang, t("case.title", lang, view["reference"]), content, principal, page="case",
                  path=f"/cases/{view['id']}")


# Accounts ---------------------------------------------------------------------------------------------

def users_page(lang, principal, users) -> Safe:
    rows = join(
        render('<tr><td dir="ltr">{username}</td><td>{name}</td><td>{role}</td><td>{state}</td>'
               '<td><form class="api-form" data-action="/api/users/{id}" data-method="PATCH">'
               '<input type="hidden" name="active" value="{flip}" data-kind="bool">'
               '<button type="submit" class="link">{action}</button><p class="form-status" role="status"></p>'
               '</form></td></tr>',
               username=user["username"], name=user["display_name"], role=label("role", user["role"], lang),
               state=t("users.active" if user["active"] else "users.inactive", lang), id=user["id"],
               flip="false" if user["active"] else "true",
               action=t("users.deactivate" if user["active"] else "users.activate", lang))
        for user in users
    )
    roles = join(render('<option value="{code}">{text}</option>', code=code, text=label("role", code, lang))
                 for code in ("operator", "counsellor", "supervisor", "admin"))
    content = render(
        '<h1>{title}</h1><div class="table-scroll" role="region" aria-label="{title}" tabindex="0">'
        '<table><thead><tr><th scope="col">{u}</th><th scope="col">{n}</th><th scope="col">{r}</th>'
        '<th scope="col"></th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table></div>'
        '<form class="api-form" data-action="/api/users" data-method="POST"><h2>{add}</h2>'
        '<label for="u-username">{u}</label><input id="u-username" name="username" dir="ltr" autocomplete="off">'
        '<span class="field-error" data-error-for="username"></span>'
        '<label for="u-name">{n}</label><input id="u-name" name="display_name">'
        '<span class="field-error" data-error-for="display_name"></span>'
        '<label for="u-role">{r}</label><select id="u-role" name="role">{roles}</select>'
        '<span class="field-error" data-error-for="role"></span>'
        '<label for="u-partner">{p}</label><input id="u-partner" name="partner_id" dir="ltr" data-kind="nullable">'
        '<span class="field-error" data-error-for="partner_id"></span>'
        '<label for="u-password">{pw}</label><input id="u-password" name="password" type="password" '
        'autocomplete="new-password" dir="ltr"><span class="field-error" data-error-for="password"></span>'
        '<button type="submit">{add}</button><p class="form-status" role="status"></p></form>',
        title=t("users.title", lang), u=t("field.username", lang), n=t("field.display_name", lang),
        r=t("field.role", lang), p=t("field.partner_id", lang), pw=t("field.password", lang), rows=rows,
        roles=roles, add=t("users.add", lang),
    )
    return layout(lang, t("users.title", lang), content, principal, page="users", path="/users")
