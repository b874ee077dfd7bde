"""The banner in a real Chromium on a test site of its own origin, against a real gateway.

What each test expects follows from the visitor's clicks, not from the banner's code:
gated snippets leave counters and cookies behind when they run, and every page view
the gateway answered is seen with its X-Consentgate-Result header.
"""
from __future__ import annotations

import json

from testsite import start_gateway

GATED = "[window.analyticsRuns, window.marketingRuns, window.preferencesRuns]"
LAYOUT_SHIFT_PROBE = """
window.layoutShift = 0;
new PerformanceObserver(function (list) {
  list.getEntries().forEach(function (e) { if (!e.hadRecentInput) window.layoutShift += e.value; });
}).observe({type: 'layout-shift', buffered: true});
"""


def consent_posts(v) -> list[dict]:
    return [json.loads(r.post_data) for r in v.requests if r.url.endswith("/consent") and r.method == "POST"]


def collect_bodies(v) -> list[dict]:
    return [json.loads(r.post_data) for r in v.collects()]


def test_first_visit_shows_the_banner_and_leaves_the_page_usable(gw, site, visit):
    v = visit()
    v.context.add_init_script(LAYOUT_SHIFT_PROBE)
    v.page.goto(site.url("/"))
    dialog = v.page.get_by_role("dialog", name="Cookies op deze website")
    dialog.wait_for(state="visible")
    # Who processes and for what, on the first layer.
    text = dialog.inner_text()
    assert "Voorbeeldwinkel B.V." in text and "Voorbeeld CRM" in text and "statistieken" in text
    assert dialog.get_by_role("link", name="Privacyverklaring").get_attribute("href") == site.url("/privacy")
    # Focus moved into the banner.
    assert v.page.evaluate("!!document.activeElement.closest('.cg-banner')")
    # Three choices of equal size and weight, in this order.
    buttons = dialog.get_by_role("button")
    assert buttons.all_inner_texts() == ["Accepteren", "Weigeren", "Instellingen"]
    boxes = [b.bounding_box() for b in buttons.all()]
    assert max(b["width"] for b in boxes) - min(b["width"] for b in boxes) < 1
    assert len({round(b["height"]) for b in boxes}) == 1
    styles = buttons.evaluate_all("bs => bs.map(b => { const s = getComputedStyle(b); "
                                  "return [s.fontWeight, s.fontSize, s.backgroundColor, s.color].join(' '); })")
    assert len(set(styles)) == 1
    # Nothing before a choice: no page view, no gated script, no consent yet.
    v.settle()
    assert v.collects() == [] and v.page.evaluate(GATED) == [None, None, None]
    assert v.page.evaluate("window.ConsentGate.getConsent()") is None
    # No cookie wall: the page works while the banner is open, and nothing shifted.
    v.page.locator("#page-button").click()
    assert v.page.locator("#page-output").inner_text() == "added"
    assert v.page.evaluate("window.layoutShift") == 0
    # No pre-ticked boxes: only 'necessary' is on, and it cannot be switched off.
    dialog.get_by_role("button", name="Instellingen").click()
    switches = v.settings_layer().get_by_role("switch")
    assert switches.evaluate_all("s => s.map(x => [x.id, x.checked, x.disabled])") == [
        ["cg-necessary", True, True], ["cg-preferences", False, False],
        ["cg-analytics", False, False], ["cg-marketing", False, False]]
    assert "_ga_*" in v.settings_layer().inner_text() and "Voorbeeld CRM" in v.settings_layer().inner_text()
    # A click beside the settings goes back to the first layer, deciding nothing.
    v.page.mouse.click(5, 5)
    v.banner().wait_for(state="visible")
    assert v.settings_layer().is_hidden() and consent_posts(v) == []


def test_reject_runs_no_gated_script_and_sends_no_page_view(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    answer = v.click_and_wait_consent("Weigeren")
    assert answer["choices"] == {"necessary": True, "preferences": False, "analytics": False, "marketing": False}
    assert consent_posts(v)[0]["method"] == "reject_all"
    v.page.evaluate("history.pushState({}, '', '/producten')")
    v.page.reload()
    v.page.locator(".cg-reopen").wait_for(state="visible")
    assert v.banner().is_hidden()  # the choice is remembered
    v.page.evaluate("history.pushState({}, '', '/over-ons')")
    v.settle()
    assert v.collects() == [] and v.page.evaluate(GATED) == [None, None, None]
    assert v.page.evaluate("document.cookie") == ""


def test_accept_runs_gated_scripts_and_sends_one_page_view_per_route(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/?utm_source=nieuwsbrief"))
    answer = v.click_and_wait_consent("Accepteren")
    assert all(answer["choices"].values())
    v.page.wait_for_function("window.marketingRuns === 1")  # data-src script, loaded in order
    assert v.page.evaluate(GATED) == [1, 1, 1]
    v.wait_for_collects(1)
    # SPA navigation: one page view per new URL; the same URL or a fragment is no new page.
    v.page.evaluate("history.pushState({}, '', '/producten')")
    v.page.evaluate("history.pushState({}, '', '/producten')")
    v.page.evaluate("history.pushState({}, '', '/producten#bonen')")
    v.page.evaluate("history.pushState({}, '', '/producten/ethiopie')")
    v.wait_for_collects(3)
    v.page.go_back()  # popstate to /producten#bonen: /producten again, after /producten/ethiopie
    v.page.go_back()  # /producten: the URL just counted
    v.page.go_back()  # /producten
    v.page.go_back()  # the landing URL
    v.wait_for_collects(5)
    v.settle()
    urls = [b["url"] for b in collect_bodies(v)]
    landing = site.url("/?utm_source=nieuwsbrief")
    assert urls == [landing, site.url("/producten"), site.url("/producten/ethiopie"), site.url("/producten"), landing]
    assert v.collect_results == ["stored"] * 5
    bodies = collect_bodies(v)
    assert bodies[2]["referrer"] == site.url("/producten") and all(b["consent"] == answer["token"] for b in bodies)
    # The next page load remembers the choice: no banner, scripts run, one page view.
    v.page.reload()
    v.page.wait_for_function("window.marketingRuns === 1")
    assert v.banner().is_hidden() and v.page.evaluate(GATED) == [1, 1, 1]
    v.wait_for_collects(6)


def test_custom_choice_runs_only_the_granted_category(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    v.banner().get_by_role("button", name="Instellingen").click()
    v.settings_layer().get_by_role("switch", name="Statistieken").check()
    answer = v.click_and_wait_consent("Keuze opslaan", scope=".cg-panel")
    assert answer["choices"] == {"necessary": True, "preferences": False, "analytics": True, "marketing": False}
    assert consent_posts(v)[0]["method"] == "custom"
    v.wait_for_collects(1)
    v.settle()
    assert v.page.evaluate(GATED) == [1, None, None]
    assert v.collect_results == ["stored"]
    assert v.page.evaluate("window.ConsentGate.getConsent()") == answer["choices"]
    # Consent Mode v2: denied by default, then exactly the visitor's choice.
    layer = v.page.evaluate("window.dataLayer.map(a => Array.from(a))")
    assert layer[0][:2] == ["consent", "default"] and set(layer[0][2].values()) == {"denied", "granted"}
    assert {k for k, val in layer[0][2].items() if val == "granted"} == {"security_storage"}
    assert layer[-1][:2] == ["consent", "update"]
    assert {k for k, val in layer[-1][2].items() if val == "granted"} == {"analytics_storage", "security_storage"}


def test_reopen_and_withdraw_clears_cookies_and_stops_page_views(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    v.page.evaluate("document.cookie = 'site_cart=3; path=/'")
    token = v.click_and_wait_consent("Accepteren")["token"]
    v.page.wait_for_function("document.cookie.includes('_fbp_test') && document.cookie.includes('_ga_TEST')")
    v.wait_for_collects(1)
    v.page.evaluate("window.changes = []; ConsentGate.onChange(function (c) { window.changes.push(c); })")
    # The persistent control re-opens the banner; withdrawing is one click, like consenting.
    v.page.get_by_role("button", name="Cookie-instellingen").click()
    v.banner().wait_for(state="visible")
    answer = v.click_and_wait_consent("Weigeren")
    assert not any(answer["choices"][c] for c in ("preferences", "analytics", "marketing"))
    assert answer["consent_id"] == v.page.evaluate("JSON.parse(localStorage.getItem('consentgate:demo')).consent_id")
    v.page.wait_for_function("window.changes.length === 1")
    assert v.page.evaluate("window.changes[0].analytics") is False
    # The configured cookies of the withdrawn categories are gone; the site's own cookie stays.
    cookies = dict(c.split("=") for c in v.page.evaluate("document.cookie").split("; "))
    assert cookies == {"site_cart": "3"}
    # The next page view is not sent, and the old token no longer counts at the gateway.
    v.page.evaluate("history.pushState({}, '', '/na-intrekken')")
    v.settle()
    assert len(v.collects()) == 1
    replay = v.page.evaluate("""async ([api, token]) => {
        const r = await fetch(api + '/collect', {method: 'POST', body: JSON.stringify(
            {type: 'pageview', url: location.href, consent: token})});
        return r.headers.get('X-Consentgate-Result'); }""", [f"{gw.url}/s/demo", token])
    assert replay == "dropped: withdrawn"
    v.page.reload()
    v.page.locator(".cg-reopen").wait_for(state="visible")
    v.settle()
    assert v.page.evaluate(GATED) == [None, None, None]


def test_policy_bump_and_expiry_ask_again(gw, site, visit, tmp_path):
    v = visit()
    v.page.goto(site.url("/"))
    first = v.click_and_wait_consent("Accepteren")
    v.page.reload()
    v.page.locator(".cg-reopen").wait_for(state="visible")
    v.wait_for_collects(2)  # one page view per load
    # The site owner raises policy_version: the same visitor is asked again.
    bumped = start_gateway(tmp_path, site, policy_version=2)
    try:
        v.page.reload()
        v.banner().wait_for(state="visible")
        v.settle()
        assert v.page.evaluate("window.ConsentGate.getConsent()") is None
        assert v.page.evaluate(GATED) == [None, None, None] and len(v.collects()) == 2
        second = v.click_and_wait_consent("Accepteren")
        # A token that is no longer valid (older policy) does not carry its consent id into the new decision:
        # only a live token may (issue 8, finding 3), so an old copy of it cannot reach what comes after.
        assert second["policy_version"] == 2 and second["consent_id"] != first["consent_id"]
        # An expired token asks again too.
        v.page.evaluate("""() => { const s = JSON.parse(localStorage.getItem('consentgate:demo'));
            s.expires_at = new Date(Date.now() - 1000).toISOString();
            localStorage.setItem('consentgate:demo', JSON.stringify(s)); }""")
        v.page.reload()
        v.banner().wait_for(state="visible")
        assert v.page.evaluate("window.ConsentGate.getConsent()") is None
    finally:
        site.gateway = gw.url
        bumped.kill()


def test_global_privacy_control_keeps_marketing_off(gw, site, visit):
    v = visit(extra_http_headers={"Sec-GPC": "1"})
    v.context.add_init_script("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})")
    v.page.goto(site.url("/"))
    assert "Global Privacy Control" in v.banner().inner_text()
    answer = v.click_and_wait_consent("Accepteren")
    assert answer["choices"] == {"necessary": True, "preferences": True, "analytics": True, "marketing": False}
    post = [r for r in v.requests if r.url.endswith("/consent") and r.method == "POST"][0]
    assert json.loads(post.post_data)["method"] == "gpc" and post.headers.get("sec-gpc") == "1"
    v.wait_for_collects(1)
    v.settle()
    assert v.page.evaluate(GATED) == [1, None, 1]
    # The visitor may still switch marketing on themselves; it starts off.
    v.page.get_by_role("button", name="Cookie-instellingen").click()
    v.banner().get_by_role("button", name="Instellingen").click()
    assert not v.settings_layer().get_by_role("switch", name="Marketing").is_checked()
    assert v.settings_layer().get_by_role("switch", name="Statistieken").is_checked()


def test_keyboard_only_flow_and_focus_trap(gw, site, visit):
    v = visit()
    page = v.page
    page.goto(site.url("/"))
    v.banner().wait_for(state="visible")
    focused = "document.activeElement.textContent || document.activeElement.id || document.activeElement.className"
    assert page.evaluate("document.activeElement.className") == "cg-banner"
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate(focused))
    assert order == ["Privacyverklaring", "Accepteren", "Weigeren", "Instellingen"]
    # Focus is visible.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    v.settings_layer().wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "cg-preferences"
    # Trapped: Tab cycles through the layer's controls and comes back to the first.
    stops = page.evaluate("Array.from(document.querySelectorAll('.cg-panel input:not([disabled]), .cg-panel button'))"
                          ".map(e => e.id || e.textContent)")
    seen = []
    for _ in range(len(stops)):
        page.keyboard.press("Tab")
        assert page.evaluate("!!document.activeElement.closest('.cg-panel')")
        seen.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert seen == stops[1:] + stops[:1]
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Alles accepteren"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # preferences -> analytics
    page.keyboard.press("Space")
    assert page.evaluate("document.getElementById('cg-analytics').checked") is True
    # Escape goes back to the first layer, then closes it without a decision.
    page.keyboard.press("Escape")
    assert v.settings_layer().is_hidden() and v.banner().is_visible()
    page.keyboard.press("Escape")
    assert v.banner().is_hidden() and consent_posts(v) == []
    assert page.evaluate(GATED) == [None, None, None]
    # Keyboard only, through the re-open control: reach it, open, reject.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.className").startswith("cg-reopen"):
            break
    page.keyboard.press("Enter")
    v.banner().wait_for(state="visible")
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Weigeren"
    with page.expect_response(lambda r: r.url.endswith("/consent")):
        page.keyboard.press("Enter")
    assert consent_posts(v)[0]["method"] == "reject_all"


def test_language_from_html_lang_then_browser_then_site_default(gw, site, visit):
    cases = [  # (html lang, browser locale, expected banner language); the site offers nl and en
        ("en", "nl-NL", "en"),
        ("nl-BE", "en-US", "nl"),
        ("", "en-GB", "en"),
        ("", "de-DE", "nl"),
        ("fr", "de-DE", "nl"),
    ]
    accept = {"nl": "Accepteren", "en": "Accept"}
    for html_lang, locale, expected in cases:
        v = visit(locale=locale)
        v.page.goto(site.url(f"/?lang={html_lang}" if html_lang else "/"))
        v.banner().wait_for(state="visible")
        assert v.banner().get_by_role("button").first.inner_text() == accept[expected], (html_lang, locale)
        assert v.page.locator(".cg").get_attribute("lang") == expected


def test_works_under_a_strict_content_security_policy(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/?csp=1"))
    v.banner().wait_for(state="visible")
    assert v.banner().evaluate("b => getComputedStyle(b).position") == "fixed"  # the nonce'd style applied
    v.click_and_wait_consent("Accepteren")
    v.page.wait_for_function("window.analyticsRuns === 1")  # inline gated snippet, with the page's nonce
    v.wait_for_collects(1)
    assert v.collect_results == ["stored"]
    assert v.page.evaluate("window.cspViolations") == []


def test_text_contrast_meets_wcag_aa(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    v.banner().wait_for(state="visible")
    v.banner().get_by_role("button", name="Instellingen").click()
    v.page.locator(".cg-banner").evaluate("b => b.hidden = false")  # both layers at once, for measuring
    ratios = v.page.evaluate("""() => {
      const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                         return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const bg = el => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
                         if (!c.endsWith(', 0)') && c !== 'transparent') return rgb(c); } return [255, 255, 255]; };
      const out = {};
      document.querySelectorAll('.cg h2, .cg p, .cg a, .cg button, .cg label').forEach(el => {
        const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg(el))];
        out[el.tagName + ':' + el.textContent.slice(0, 20)] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      });
      return out; }""")
    assert len(ratios) > 10
    low = {k: round(r, 2) for k, r in ratios.items() if r < 4.5}
    assert not low, f"below WCAG AA 4.5:1: {low}"


def test_hidden_reopen_control_leaves_it_to_the_site_link(gw, site, visit, tmp_path):
    own = start_gateway(tmp_path, site, reopen_position="hidden")
    try:
        v = visit()
        v.page.goto(site.url("/"))
        v.click_and_wait_consent("Weigeren")
        assert v.page.locator(".cg-reopen").is_hidden() and v.banner().is_hidden()
        v.page.evaluate("window.ConsentGate.show()")  # what the site's own "Cookie settings" link calls
        v.banner().wait_for(state="visible")
        assert v.page.evaluate("!!document.activeElement.closest('.cg-banner')")
    finally:
        site.gateway = gw.url
        own.kill()


def test_a_withdrawal_the_gateway_missed_still_holds_and_asks_again(gw, site, visit, tmp_path):
    (tmp_path / "first").mkdir()
    first = start_gateway(tmp_path / "first", site)
    try:
        v = visit()
        v.page.goto(site.url("/"))
        v.click_and_wait_consent("Accepteren")
        v.wait_for_collects(1)
        first.kill()  # the gateway goes away while the page is open
        v.page.get_by_role("button", name="Cookie-instellingen").click()
        v.banner().get_by_role("button", name="Weigeren").click()
        v.page.wait_for_function("window.ConsentGate.getConsent().analytics === false")
        assert v.page.evaluate("document.cookie") == ""  # withdrawn on this page at once
        (tmp_path / "second").mkdir()
        second = start_gateway(tmp_path / "second", site)
        try:
            v.page.reload()
            v.banner().wait_for(state="visible")  # the old acceptance does not come back
            v.settle()
            assert v.page.evaluate(GATED) == [None, None, None] and len(v.collects()) == 1
        finally:
            second.kill()
    finally:
        site.gateway = gw.url
        first.kill()
