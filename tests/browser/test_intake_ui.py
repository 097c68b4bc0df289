"""An operator's night, in a real browser: log in, record a case in Arabic (the draft surviving a reload,
encrypted), see it reach the queue with its risk level and be announced, open it and read the reasons and
the words behind them; field errors in Arabic; English on request; quick exit ends the session."""
import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

NARRATIVE = "المتصلة تقول يهددها ينشر صورها باجر اذا ما تدفع، وقالت راح انتحر الليلة وعندي حبوب"
TRIAGE_WAIT_MS = 45_000  # the case travels intake -> triage -> intake over RabbitMQ; the queue polls every 5 s


def log_in(page, username):
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    expect(page).to_have_url(re.compile(r"/queue$"))


def test_an_operator_records_a_case_in_arabic_and_follows_it_from_the_queue_to_its_reasons(
        page, staff, screenshots):
    log_in(page, staff["operator"])
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    page.click("a[href='/cases/new']")
    expect(page.locator("h1")).to_have_text("تسجيل حالة جديدة")
    expect(page.locator("#case-form")).to_have_attribute("data-ready", "true")

    page.click("#case-submit")
    expect(page.locator("[data-error-for=narrative]")).to_have_text("هذا الحقل مطلوب.")

    page.fill("#f-narrative", NARRATIVE)
    page.select_option("#f-channel", "whatsapp")
    page.select_option("#f-caller_relation", "self")
    page.fill("#f-victim_age", "19")
    page.select_option("#f-victim_gender", "female")
    page.select_option("#f-district", "nasiriyah")
    page.check("input[name=extortion_types][value=sexual_images]")
    page.check("input[name=platforms][value=instagram]")
    page.check("input[name=demands][value=money]")
    page.fill("#f-demand_amount", "1000")
    page.select_option("#f-demand_currency", "USD")
    page.select_option("#f-suicidal_thoughts", "true")
    page.check("input[name=needs][value=counselling]")
    page.check("input[name=consents][value=counselling]")
    page.fill("#f-safe_contact-name", "أم علي")
    page.fill("#f-safe_contact-phone", "07701234567")
    page.fill("#f-safe_contact-safe_times", "بعد المغرب")
    expect(page.locator("#draft-status")).to_have_text("المسودة محفوظة ومشفّرة على هذا الجهاز.")
    page.screenshot(path=str(screenshots / "new-case-form-ar.png"), full_page=True)

    # A crash or a closed tab loses nothing, and the draft left on the machine is not readable as text.
    stored = page.evaluate("() => Object.values(window.localStorage).join(' ')")
    assert stored and "حبوب" not in stored and "0770" not in stored
    page.reload()
    expect(page.locator("#case-form")).to_have_attribute("data-ready", "true")
    expect(page.locator("#draft-status")).to_have_text("استُعيدت مسودة غير محفوظة.")
    expect(page.locator("#f-narrative")).to_have_value(NARRATIVE)
    expect(page.locator("input[name=consents][value=counselling]")).to_be_checked()

    page.click("#case-submit")
    expect(page).to_have_url(re.compile(r"/queue\?saved=SND-"))
    reference = re.search(r"saved=(SND-[0-9A-Z-]+)", page.url).group(1)
    assert page.evaluate("() => Object.keys(window.localStorage).length") == 0, "a saved case leaves no draft"

    row = page.locator("tr", has=page.locator(f"a:text('{reference}')"))
    expect(row.locator(".risk")).to_have_text("حرجة", timeout=TRIAGE_WAIT_MS)
    expect(row).to_have_class(re.compile("level-critical"))
    expect(page.locator("#announcer")).to_have_text(f"حالة حرجة: {reference}", timeout=10_000)
    page.screenshot(path=str(screenshots / "queue-ar.png"), full_page=True)

    row.locator("a").click()
    expect(page.locator("h1")).to_have_text(f"الحالة {reference}")
    expect(page.locator(".risk-line .risk")).to_have_text("حرجة")
    reasons = page.locator("ul.reasons li")
    assert reasons.count() >= 1
    assert page.locator("q.evidence").count() >= 1, "the words that triggered a reason are shown"
    words = " ".join(page.locator("q.evidence").all_inner_texts())
    assert any(word in NARRATIVE for word in words.split(" … ")), words
    expect(page.locator(".narrative")).to_have_text(NARRATIVE)
    page.screenshot(path=str(screenshots / "case-ar.png"), full_page=True)


def test_a_supervisor_overrides_a_level_in_english_and_quick_exit_ends_the_session(page, staff, screenshots):
    log_in(page, staff["supervisor"])
    page.click("a.lang")
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    expect(page.locator("h1")).to_have_text("Case queue")
    csrf = page.locator("body").get_attribute("data-csrf")
    created = page.request.post("/api/cases", headers={"X-CSRF-Token": csrf}, data={
        "narrative": "He says he will send the chats to her brother unless she pays.", "channel": "phone",
        "governorate": "dhi_qar"}).json()
    deadline = time.monotonic() + TRIAGE_WAIT_MS / 1000
    while page.request.get(f"/api/cases/{created['id']}").json()["risk"] is None:
        assert time.monotonic() < deadline, "triage did not assess the case"
        time.sleep(0.3)
    page.goto(f"/cases/{created['id']}")
    page.select_option("#o-level", "critical")
    page.fill("#o-reason", "<b>She called back: her brother found out</b>")
    page.click("#override-form button[type=submit]")
    expect(page.locator(".risk-line .risk")).to_have_text("Critical")
    expect(page.locator("ul.reasons, .risk-section").first).to_contain_text("<b>She called back")
    expect(page.locator("table.audit")).to_contain_text("Overrode the risk level")
    page.screenshot(path=str(screenshots / "case-en-override.png"), full_page=True)

    page.keyboard.press("Escape")
    expect(page).to_have_url(re.compile(r"/exit$"))
    assert "Sanad" not in page.content() and "سند" not in page.content()
    page.go_back()
    page.goto("/queue")
    expect(page).to_have_url(re.compile(r"/login"))


PHONE = {"width": 360, "height": 740}
SIDEWAYS_SCROLL = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_on_a_phone_every_page_fits_the_screen_without_scrolling_sideways_or_a_console_error(
        browser, stack, staff, screenshots):
    context = browser.new_context(base_url=stack.url("intake"), viewport=PHONE, locale="ar-IQ",
                                  timezone_id="Asia/Baghdad")
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/login")
        assert page.evaluate(SIDEWAYS_SCROLL) == 0, "the login page"
        log_in(page, staff["operator"])
        csrf = page.locator("body").get_attribute("data-csrf")
        created = page.request.post("/api/cases", headers={"X-CSRF-Token": csrf}, data={
            "narrative": "يهددها ينشر صورها", "channel": "phone", "governorate": "dhi_qar"}).json()
        for path in ("/queue", "/cases/new", f"/cases/{created['id']}"):
            page.goto(path)
            page.screenshot(path=str(screenshots / f"phone{path.replace('/', '-')[:16]}.png"), full_page=True)
            assert page.evaluate(SIDEWAYS_SCROLL) == 0, path
        page.keyboard.press("Escape")
        expect(page).to_have_url(re.compile(r"/exit$"))
        assert errors == [], "nothing the browser reports as an error, a missing icon included"
    finally:
        context.close()


def test_a_case_left_open_leaves_the_screen_once_its_session_has_ended(browser, stack, staff):
    context = browser.new_context(base_url=stack.url("intake"), viewport={"width": 1280, "height": 900},
                                  locale="ar-IQ", timezone_id="Asia/Baghdad")
    context.clock.install()  # the page's minute-long checks run when the test moves the clock on
    left_open = context.new_page()
    try:
        log_in(left_open, staff["operator"])
        csrf = left_open.locator("body").get_attribute("data-csrf")
        created = left_open.request.post("/api/cases", headers={"X-CSRF-Token": csrf}, data={
            "narrative": "يهددها ينشر صورها", "channel": "phone", "governorate": "dhi_qar"}).json()
        left_open.goto(f"/cases/{created['id']}")
        expect(left_open.locator(".narrative")).to_contain_text("يهددها")

        other_tab = context.new_page()  # the session ends elsewhere: quick exit in another tab
        other_tab.goto("/queue")
        other_tab.keyboard.press("Escape")
        expect(other_tab).to_have_url(re.compile(r"/exit$"))

        left_open.clock.fast_forward(61_000)
        expect(left_open).to_have_url(re.compile(r"/login\?expired=1"))
        expect(left_open.locator("body")).not_to_contain_text("يهددها")
    finally:
        context.close()
