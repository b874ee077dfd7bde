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

# Returns the first visible element that looks like a cookie notice (id, class or label naming
# cookies or consent, holding a button), described briefly; or null.
UNKNOWN_BANNER_JS = """() => {
  const candidates = document.querySelectorAll(
    '[id*="cookie" i], [class*="cookie" i], [id*="consent" i], [class*="consent" i], [aria-label*="cookie" i]');
  for (const el of candidates) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width * box.height === 0 || style.visibility === "hidden" || style.display === "none") continue;
    if (!el.querySelector('button, [role="button"], input[type="button"], input[type="submit"]')) continue;
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  }
  return null;
}"""

# The consentgate banner's own API base (https://gateway/s/SITE), from its script tag: its calls are
# the consent tool's, not a tracker's.
CONSENTGATE_API_JS = """() => Array.from(document.querySelectorAll('script[src]'))
  .map(s => s.src).filter(src => /\\/s\\/[^/]+\\/banner\\.js([?#].*)?$/.test(src))
  .map(src => src.replace(/\\/banner\\.js([?#].*)?$/, ""))"""
