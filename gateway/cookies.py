"""The cookie declaration: every cookie and vendor of a site, per category, in nl or en.

    GET /s/{site}/cookies        HTML page (JSON with `Accept: application/json`)
    GET /s/{site}/cookies.json   the same as JSON
    GET /s/{site}/cookies.js     an embed for the site's own cookie policy: fills <div id="consentgate-cookies">
    GET /s/{site}/cookies-page.js  the HTML page's one script (its "change my choice" button)

The declaration comes from the config: the detailed `[[sites.NAME.cookie]]` tables (purpose per
language, lifetime, party), the short `cookies = {category = [names]}` lists, the vendors (purpose,
privacy link) and the gateway's own consent cookie. Every config text reaches the page escaped (HTML)
or as DOM text (the embed); the page runs no inline script under a strict CSP. The embed is a separate
script so the banner does not grow.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from banner.bundle import BannerSource, site_texts
from gateway.config import CATEGORIES, SiteConfig
from gateway.consent import current_token, site_for
from gateway.tokens import COOKIE
from gateway.services import Services

LANGUAGES = ("nl", "en")
STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1a1a1a;background:#fff}"
         "table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}"
         "th,td{border:1px solid #767676;padding:.4rem;text-align:left;vertical-align:top}a{color:#0645ad}"
         "button{font:inherit;padding:.5rem 1rem;border:2px solid #1a1a1a;background:#fff;color:#1a1a1a;cursor:pointer}"
         ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}")
# The one inline style is allowed by its hash; scripts only from the gateway itself (no inline script).
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# "Change my choice" loads the banner, which adds its own <style> (the same bytes for every site): by its hash too.
BANNER_STYLE_HASH = base64.b64encode(hashlib.sha256(BannerSource.load().css.encode()).digest()).decode()
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'self' 'sha256-{STYLE_HASH}' "
                               f"'sha256-{BANNER_STYLE_HASH}'; "
                               "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # it shows the visitor's own choice
}
# The page's own words (the category names and descriptions come from the banner's translations).
PAGE_TEXTS: dict[str, dict[str, str]] = {
    "nl": {"title": "Cookieverklaring", "intro": "Welke cookies {site} gebruikt, waarvoor, hoe lang, en met welke partijen.",
           "cookie": "Cookie", "purpose": "Doel", "lifetime": "Bewaartermijn", "party": "Partij",
           "first": "eigen", "third": "derde partij", "vendor": "Partij", "privacy": "Privacyverklaring",
           "none": "Geen cookies in deze categorie.", "choice": "Uw huidige keuze",
           "no_choice": "U heeft nog geen keuze gemaakt.", "on": "aan", "off": "uit", "change": "Keuze wijzigen",
           "always": "altijd aan", "consent_cookie": "Onthoudt uw cookiekeuze.",
           "days": "{n} dagen", "vendors": "Partijen die gegevens ontvangen"},
    "en": {"title": "Cookie declaration", "intro": "Which cookies {site} uses, what for, for how long, and with which parties.",
           "cookie": "Cookie", "purpose": "Purpose", "lifetime": "Lifetime", "party": "Party",
           "first": "first party", "third": "third party", "vendor": "Party", "privacy": "Privacy statement",
           "none": "No cookies in this category.", "choice": "Your current choice",
           "no_choice": "You have not made a choice yet.", "on": "on", "off": "off", "change": "Change my choice",
           "always": "always on", "consent_cookie": "Remembers your cookie choice.",
           "days": "{n} days", "vendors": "Parties that receive data"},
}


def _language(request: Request) -> str:
    """?lang= first, then the first nl/en in Accept-Language (by q), else Dutch."""
    asked = request.query_params.get("lang", "")[:8].lower()
    if asked in LANGUAGES:
        return asked
    ranked = []
    for item in request.headers.get("accept-language", "")[:500].split(","):
        tag, _, params = item.strip().partition(";")
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        ranked.append((q, tag.strip().lower()[:2]))
    for q, lang in sorted(ranked, key=lambda x: -x[0]):
        if lang in LANGUAGES and q > 0:
            return lang
    return "nl"


@lru_cache(maxsize=1)
def _shipped_texts() -> dict[str, dict[str, str]]:
    """The banner's translations (category names and descriptions), read once."""
    return BannerSource.load().texts


def _text(texts: dict[str, str], lang: str) -> str:
    return texts.get(lang) or texts.get("") or texts.get("en") or next(iter(texts.values()), "")


def declaration(services: Services, site: SiteConfig, lang: str) -> dict[str, Any]:
    """The declaration as data: per category its cookies and vendors, in one language."""
    words = PAGE_TEXTS[lang]
    banner = site_texts(site, _shipped_texts()).get(lang) or _shipped_texts()[lang]
    categories = []
    for category in ("necessary", *CATEGORIES):
        cookies = [{"name": c.name, "purpose": _text(c.purpose, lang), "lifetime": c.lifetime, "party": c.party,
                    "provider": c.provider} for c in site.cookie_details if c.category == category]
        listed = {c["name"] for c in cookies}
        cookies += [{"name": n, "purpose": "", "lifetime": "", "party": "first", "provider": ""}
                    for n in site.cookies.get(category, ()) if n not in listed]
        if category == "necessary" and COOKIE not in listed:
            cookies.insert(0, {"name": COOKIE, "purpose": words["consent_cookie"], "party": "first", "provider": "",
                               "lifetime": words["days"].format(n=services.config.consent_max_age_days)})
        vendors = [{"name": v.name, "purpose": _text(v.purpose, lang), "privacy_url": v.privacy_url}
                   for v in site.vendors if v.category == category]
        categories.append({"category": category, "name": banner.get(category, category),
                           "description": banner.get(f"{category}_desc", ""), "cookies": cookies, "vendors": vendors})
    return {"site": site.name, "language": lang, "policy_version": site.policy_version, "policy_url": site.policy_url,
            "controller": site.controller, "categories": categories}


def _choice(request: Request, services: Services, site: SiteConfig) -> dict[str, bool] | None:
    token = current_token(request, services, site)
    return None if token is None else {"necessary": True, **token.choices}


def _site(request: Request) -> tuple[Services, SiteConfig]:
    services: Services = request.app.state.services
    return services, site_for(request, services)


async def declaration_json(request: Request) -> JSONResponse:
    services, site = _site(request)
    body = declaration(services, site, _language(request))
    body["choice"] = _choice(request, services, site)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Vary": "Accept-Language, Cookie"})


def _table(rows: list[list[str]], headers: list[str], caption: str) -> str:
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<table><caption class="sr">{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def render_html(data: dict[str, Any], choice: dict[str, bool] | None, site_name: str) -> str:
    lang = data["language"]
    w = PAGE_TEXTS[lang]
    e = html.escape
    parts = []
    for cat in data["categories"]:
        section = [f'<section aria-labelledby="c-{cat["category"]}"><h2 id="c-{cat["category"]}">{e(cat["name"])}</h2>',
                   f'<p>{e(cat["description"])}</p>']
        if cat["cookies"]:
            rows = [[f"<code>{e(c['name'])}</code>", e(c["purpose"]) or "-", e(c["lifetime"]) or "-",
                     e(w[c["party"]] + (f" ({c['provider']})" if c["provider"] else ""))] for c in cat["cookies"]]
            section.append(_table(rows, [w["cookie"], w["purpose"], w["lifetime"], w["party"]], cat["name"]))
        else:
            section.append(f'<p>{e(w["none"])}</p>')
        if cat["vendors"]:
            rows = [[e(v["name"]), e(v["purpose"]) or "-",
                     f'<a href="{e(v["privacy_url"])}" rel="noopener noreferrer">{e(w["privacy"])}<span class="sr"> '
                     f'{e(v["name"])}</span></a>' if v["privacy_url"] else "-"] for v in cat["vendors"]]
            section.append(_table(rows, [w["vendor"], w["purpose"], w["privacy"]], f'{cat["name"]}: {w["vendors"]}'))
        parts.append("".join(section) + "</section>")
    if choice is None:
        current = f'<p>{e(w["no_choice"])}</p>'
    else:
        items = "".join(f'<li>{e(c["name"])}: {e(w["always"] if c["category"] == "necessary" else w["on"] if choice.get(c["category"]) else w["off"])}</li>'
                        for c in data["categories"])
        current = f"<ul>{items}</ul>"
    policy = (f'<p><a href="{e(data["policy_url"])}">{e(PAGE_TEXTS[lang]["privacy"])}</a></p>' if data["policy_url"] else "")
    script = "cookies-page.js"  # relative: the page also works under a path prefix (nginx first-party mode, /cg/)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(w["title"])}: {e(data["controller"] or site_name)}</title>
<style>{STYLE}</style>
<script src="{e(script)}" defer></script></head>
<body><main><h1>{e(w["title"])}</h1><p>{e(w["intro"].format(site=data["controller"] or site_name))}</p>
<section aria-labelledby="choice"><h2 id="choice">{e(w["choice"])}</h2>{current}
<button type="button" id="consentgate-reopen" data-site="{e(site_name)}">{e(w["change"])}</button></section>
{"".join(parts)}{policy}</main></body></html>"""


async def declaration_page(request: Request) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return await declaration_json(request)
    services, site = _site(request)
    data = declaration(services, site, _language(request))
    return HTMLResponse(render_html(data, _choice(request, services, site), site.name),
                        headers={**SECURITY_HEADERS, "Vary": "Accept, Accept-Language, Cookie"})


# The HTML page's button: the site's banner, loaded from this gateway, opened on its settings.
PAGE_SCRIPT = """(function () {
  var b = document.getElementById("consentgate-reopen");
  if (!b) return;
  b.addEventListener("click", function () {
    if (window.ConsentGate) { window.ConsentGate.show(); return; }
    var s = document.createElement("script");
    s.src = "banner.js";  // beside this page (/s/SITE/), under any prefix the gateway is served at
    s.onload = function () { if (window.ConsentGate) window.ConsentGate.show(); };
    document.head.appendChild(s);
  });
})();
"""

# The embed: builds the declaration with DOM text nodes only (config text is never parsed as HTML).
EMBED_SCRIPT = """(function (d, data) {
  function el(tag, text, attrs) {
    var n = d.createElement(tag);
    if (text) n.textContent = text;
    for (var k in attrs || {}) n.setAttribute(k, attrs[k]);
    return n;
  }
  function table(head, rows) {
    var t = el("table"), tr = el("tr"), tb = el("tbody");
    head.forEach(function (h) { tr.appendChild(el("th", h, {scope: "col"})); });
    t.appendChild(el("thead")).appendChild(tr);
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c) { var td = el("td"); if (typeof c === "string") td.textContent = c || "-"; else td.appendChild(c); row.appendChild(td); });
      tb.appendChild(row);
    });
    t.appendChild(tb);
    return t;
  }
  function render() {
    var root = d.getElementById("consentgate-cookies");
    if (!root) return;
    var w = data.words, doc = d.createDocumentFragment();
    // Category headings one level below the page's last heading before the div: the outline stays whole.
    var above = [].filter.call(d.querySelectorAll("h1,h2,h3,h4,h5"), function (h) {
      return h.compareDocumentPosition(root) & 4;
    }).pop(), level = above ? +above.tagName[1] + 1 : 2;
    var cg = window.ConsentGate, choice = cg && cg.getConsent ? cg.getConsent() : null;
    var cur = el("p", w.choice + ": ");
    if (choice && choice.choices) choice = choice.choices;
    cur.appendChild(d.createTextNode(choice ? data.categories.map(function (c) {
      return c.name + " " + (c.category === "necessary" ? w.always : choice[c.category] ? w.on : w.off);
    }).join(", ") : w.no_choice));
    doc.appendChild(cur);
    if (cg && cg.show) {
      var b = el("button", w.change, {type: "button"});
      b.addEventListener("click", function () { cg.show(); });
      doc.appendChild(b);
    }
    data.categories.forEach(function (c) {
      doc.appendChild(el("h" + level, c.name));
      doc.appendChild(el("p", c.description));
      if (c.cookies.length) doc.appendChild(table([w.cookie, w.purpose, w.lifetime, w.party], c.cookies.map(function (k) {
        return [k.name, k.purpose, k.lifetime, w[k.party] + (k.provider ? " (" + k.provider + ")" : "")];
      })));
      else doc.appendChild(el("p", w.none));
      if (c.vendors.length) doc.appendChild(table([w.vendor, w.purpose, w.privacy], c.vendors.map(function (v) {
        var link = v.privacy_url ? el("a", w.privacy, {href: v.privacy_url, rel: "noopener noreferrer"}) : "";
        return [v.name, v.purpose, link];
      })));
    });
    root.textContent = "";
    root.appendChild(doc);
  }
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", render); else render();
  window.addEventListener("consentgate:change", render);
})(document, %s);
"""


async def declaration_script(request: Request) -> Response:
    services, site = _site(request)
    lang = _language(request)
    data = declaration(services, site, lang)
    data["words"] = PAGE_TEXTS[lang]
    # The data becomes DOM text only; '<' is escaped anyway, so it could never end a script element.
    literal = json.dumps(data, ensure_ascii=True).replace("<", "\\u003c")
    return Response(EMBED_SCRIPT % literal, media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300", "Vary": "Accept-Language",
                             "X-Content-Type-Options": "nosniff"})


async def page_script(request: Request) -> Response:
    _site(request)
    return Response(PAGE_SCRIPT, media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
