"""Proof of consent from a real browser: the decision's banner_version resolves, through the auditor
export (banner_versions), to exactly the wording Chromium showed, in Dutch and in English."""
from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from harness import STATS_TOKEN


def shown_in_browser(v) -> dict[str, Any]:
    """The banner's words as the page shows them (first layer, then the settings layer)."""
    first = v.page.evaluate("""() => ({
        title: document.querySelector('#cg-title').textContent,
        intro: document.querySelector('#cg-intro').textContent,
        policy: document.querySelector('#cg-intro a').textContent,
        policy_url: document.querySelector('#cg-intro a').getAttribute('href'),
        buttons: [...document.querySelectorAll('.cg-banner .cg-btn')].map(b => b.textContent),
    })""")
    v.banner().locator(".cg-btn[data-action=settings]").click()
    settings = v.page.evaluate("""() => ({
        prefs_title: document.querySelector('#cg-ptitle').textContent,
        prefs_intro: document.querySelector('.cg-panel > p').textContent,
        categories: [...document.querySelectorAll('.cg-cat')].map(c => ({
            label: c.querySelector('label').textContent,
            lines: c.querySelector('p').innerText.split('\\n'),
        })),
        settings_buttons: [...document.querySelectorAll('.cg-panel .cg-btn')].map(b => b.textContent),
    })""")
    return {**first, **settings}


def exported(gw, consent_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decision and the wording its banner_version resolves to, once the decision is stored."""
    deadline = time.monotonic() + 30
    while True:
        body = httpx.get(f"{gw.url}/api/consents/demo", headers={"Authorization": f"Bearer {STATS_TOKEN}"}).json()
        found = [d for d in body["decisions"] if d["consent_id"] == consent_id]
        if found and found[0]["banner_version"] in body["banner_versions"]:
            return found[0], body["banner_versions"][found[0]["banner_version"]]
        assert time.monotonic() < deadline, f"the decision (or its version) did not reach the store: {found}"
        time.sleep(0.2)


@pytest.mark.parametrize(("locale", "language", "save"), [("nl-NL", "nl", "Keuze opslaan"),
                                                           ("en-GB", "en", "Save choices")])
def test_a_browser_decision_resolves_to_the_wording_it_showed(gw, site, visit, locale, language, save):
    v = visit(locale=locale)
    v.page.goto(site.url("/producten?email=jan%40example.nl#boven"))
    v.banner().wait_for()
    seen = shown_in_browser(v)
    v.page.locator("#cg-analytics").check()
    decision = v.click_and_wait_consent(save, scope=".cg-panel")

    row, version = exported(gw, decision["consent_id"])
    assert (row["method"], row["language"], row["analytics"], row["marketing"]) == ("custom", language, True, False)
    assert row["page"] == site.url("/producten")  # where it was decided; the query (an e-mail) never left
    assert version["language"] == language
    shown = version["shown"]
    texts = shown["texts"]
    # First layer: title, the intro with the controller and every party, the policy link, equal buttons.
    assert seen["title"] == texts["title"]
    parties = [name for names in shown["vendors"].values() for name in names]
    assert seen["intro"] == (texts["intro"].replace("{controller}", shown["controller"]) + " "
                             + texts["vendors"] + ": " + ", ".join(parties) + ". " + texts["policy"])
    assert (seen["policy"], seen["policy_url"]) == (texts["policy"], shown["policy_url"])
    assert seen["buttons"] == [texts["accept"], texts["reject"], texts["settings"]]
    # Settings layer: each category's name, purpose, and the cookies and parties listed under it.
    assert (seen["prefs_title"], seen["prefs_intro"]) == (texts["prefs_title"], texts["prefs_intro"])
    assert [c["label"] for c in seen["categories"]] == [texts[c] for c in shown["categories"]]
    for category, rendered in zip(shown["categories"], seen["categories"]):
        lines = [texts[f"{category}_desc"]]
        if shown["cookies"].get(category):
            lines.append(texts["cookies"] + ": " + ", ".join(shown["cookies"][category]))
        if shown["vendors"].get(category):
            lines.append(texts["vendors"] + ": " + ", ".join(shown["vendors"][category]))
        assert rendered["lines"] == lines, category
    assert seen["settings_buttons"] == [texts["reject_all"], texts["save"], texts["accept_all"]]
