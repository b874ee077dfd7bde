"""Both layers, nl and en, desktop and mobile: they fit the screen, and their screenshots document the banner.

Screenshots go to a temporary folder; to refresh the ones in docs/, run
CONSENTGATE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/browser/test_banner_screenshots.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testsite import DESKTOP, MOBILE

TEXTS = Path(__file__).resolve().parents[2] / "banner" / "i18n"


@pytest.mark.parametrize("lang", ["nl", "en"])
@pytest.mark.parametrize("device", ["desktop", "mobile"])
def test_both_layers_fit_the_screen(gw, site, visit, tmp_path, lang, device):
    out = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    viewport = DESKTOP if device == "desktop" else MOBILE
    options = {"viewport": viewport}
    if device == "mobile":
        options.update(is_mobile=True, has_touch=True)
    texts = json.loads((TEXTS / f"{lang}.json").read_text())
    v = visit(**options)
    v.page.goto(site.url(f"/?lang={lang}"))
    banner = v.banner()
    banner.wait_for(state="visible")
    assert banner.get_by_role("heading").inner_text() == texts["title"]
    box = banner.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]
    assert v.page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]  # no sideways scroll
    widths = {round(b.bounding_box()["width"]) for b in banner.get_by_role("button").all()}
    assert len(widths) == 1  # equal buttons, side by side or stacked
    v.page.screenshot(path=str(out / f"banner-first-{lang}-{device}.png"))

    banner.get_by_role("button", name=texts["settings"]).click()
    panel = v.settings_layer()
    panel.wait_for(state="visible")
    assert panel.get_by_role("heading").inner_text() == texts["prefs_title"]
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] and box["height"] <= viewport["height"]
    v.page.screenshot(path=str(out / f"banner-settings-{lang}-{device}.png"))
