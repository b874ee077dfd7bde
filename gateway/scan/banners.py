"""Consent banners the scan recognises, and how to click their Accept and Reject buttons.

The consentgate banner first (its DOM is banner/banner.js), then a few common ones by their
documented element ids. Anything else that looks like a cookie notice is reported as
"unknown": shown, but the scan cannot answer it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BannerKind:
    name: str
    shown: str  # CSS selector of the first layer, visible while it asks
    accept: str
    reject: str


BANNERS: tuple[BannerKind, ...] = (
    BannerKind("consentgate", ".cg-banner", '.cg-banner [data-action="accept"]', '.cg-banner [data-action="reject"]'),
    BannerKind("onetrust", "#onetrust-banner-sdk", "#onetrust-accept-btn-handler", "#onetrust-reject-all-handler"),
    BannerKind("cookiebot", "#CybotCookiebotDialog",
               "#CybotCookiebotDialogBodyLevelButtonLevelOptinAllowAll, #CybotCookiebotDialogBodyButtonAccept",
               "#CybotCookiebotDialogBodyButtonDecline"),
    BannerKind("didomi", "#didomi-notice", "#didomi-notice-agree-button", "#didomi-notice-disagree-button"),
    BannerKind("cookieconsent", "#cc-main .cm", '#cc-main .cm [data-role="all"]', '#cc-main .cm [data-role="necessary"]'),
    BannerKind("complianz", ".cmplz-cookiebanner", ".cmplz-cookiebanner .cmplz-accept", ".cmplz-cookiebanner .cmplz-deny"),
    BannerKind("tarteaucitron", "#tarteaucitronAlertBig", "#tarteaucitronPersonalize2", "#tarteaucitronAllDenied2"),
    BannerKind("klaro", ".klaro .cookie-notice", ".klaro .cookie-notice .cm-btn-success", ".klaro .cookie-notice .cn-decline"),
)

# One round trip per page: the first visible recognised banner (by name), else "unknown" when a visible
# element that names cookies or consent holds a button, else null; and the consentgate API bases
# (https://gateway/s/SITE) of the page's banner script tags, whose calls are the consent tool's own.
DETECT_JS = """(banners) => {
  const visible = (el) => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return box.width * box.height > 0 && style.visibility !== "hidden" && style.display !== "none";
  };
  const apis = Array.from(document.querySelectorAll("script[src]")).map(s => s.src)
    .filter(src => /\\/s\\/[^/]+\\/banner\\.js([?#].*)?$/.test(src))
    .map(src => src.replace(/\\/banner\\.js([?#].*)?$/, ""));
  for (const [name, selector] of banners) {
    const el = document.querySelector(selector);
    if (el && !el.hidden && visible(el)) return {banner: name, apis};
  }
  const candidates = document.querySelectorAll(
    '[id*="cookie" i], [class*="cookie" i], [id*="consent" i], [class*="consent" i], [aria-label*="cookie" i]');
  for (const el of candidates) {
    if (visible(el) && el.querySelector('button, [role="button"], input[type="button"], input[type="submit"]')) {
      return {banner: "unknown", apis};
    }
  }
  return {banner: null, apis};
}"""
