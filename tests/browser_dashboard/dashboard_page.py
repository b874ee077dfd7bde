"""Reading the dashboard page in Playwright: shared by the browser tests of this folder."""
from __future__ import annotations

from playwright.sync_api import Page


def painted_pixels(page: Page, canvas_id: str) -> int:
    """How many pixels of a canvas are not transparent: 0 for a chart that was not drawn."""
    return page.evaluate("""(id) => { const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""", canvas_id)


def number(text: str) -> int:
    """A count as the page shows it (en-US grouping)."""
    return int(text.replace(",", "").replace(".", "").replace("\u202f", "").strip())


def kpi(page: Page, label: str) -> int:
    card = page.locator(".kpi", has=page.locator(".kpi-label", has_text=label))
    return number(card.locator(".kpi-value").inner_text())


def wait_loaded(page: Page) -> None:
    page.wait_for_function("() => !document.body.classList.contains('loading') && document.querySelectorAll('.kpi').length === 6")
    page.wait_for_load_state("networkidle")
