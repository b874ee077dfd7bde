"""A small built-in list of well-known cookies and storage keys: a category guess, purpose and lifetime.

Used where the site's config does not say: to name what the scan saw and to draft the
declaration (`--suggest-config`). A guess, never a ruling: the site owner checks it.
Patterns are shell-style (`_ga_*`, `_pk_id.*`); the first matching entry wins, so more
specific patterns come first.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class KnownCookie:
    pattern: str
    category: str  # necessary, preferences, analytics, marketing
    vendor: str
    purpose: str
    lifetime: str  # as the vendor documents it; "session" ends with the browser


KNOWN_COOKIES: tuple[KnownCookie, ...] = (
    # Consent tools: remembering the visitor's choice is strictly necessary.
    KnownCookie("cg_consent", "necessary", "consentgate", "the visitor's consent decision (signed token)", "182 days"),
    KnownCookie("consentgate:*", "necessary", "consentgate", "the visitor's consent decision (banner, localStorage)", "until changed"),
    KnownCookie("CookieConsent", "necessary", "Cookiebot", "the visitor's consent decision", "1 year"),
    KnownCookie("OptanonConsent", "necessary", "OneTrust", "the visitor's consent decision", "1 year"),
    KnownCookie("OptanonAlertBoxClosed", "necessary", "OneTrust", "whether the banner was answered", "1 year"),
    KnownCookie("cc_cookie", "necessary", "CookieConsent (orestbida)", "the visitor's consent decision", "6 months"),
    KnownCookie("didomi_token", "necessary", "Didomi", "the visitor's consent decision", "1 year"),
    KnownCookie("euconsent-v2", "necessary", "IAB TCF", "the visitor's consent decision (TC string)", "1 year"),
    KnownCookie("cmplz_*", "necessary", "Complianz", "the visitor's consent decision", "1 year"),
    KnownCookie("tarteaucitron", "necessary", "tarteaucitron", "the visitor's consent decision", "1 year"),
    KnownCookie("klaro", "necessary", "Klaro", "the visitor's consent decision", "1 year"),
    # Sessions and security.
    KnownCookie("PHPSESSID", "necessary", "PHP", "session (login, basket)", "session"),
    KnownCookie("JSESSIONID", "necessary", "Java servlet container", "session (login, basket)", "session"),
    KnownCookie("ASP.NET_SessionId", "necessary", "ASP.NET", "session (login, basket)", "session"),
    KnownCookie("csrftoken", "necessary", "Django", "protection against cross-site request forgery", "1 year"),
    KnownCookie("XSRF-TOKEN", "necessary", "Laravel / Angular", "protection against cross-site request forgery", "session"),
    KnownCookie("__cf_bm", "necessary", "Cloudflare", "bot protection", "30 minutes"),
    KnownCookie("cf_clearance", "necessary", "Cloudflare", "passed security challenge", "30 minutes"),
    # Analytics.
    KnownCookie("_ga_*", "analytics", "Google Analytics", "keeps the session state of a GA4 property", "2 years"),
    KnownCookie("_ga", "analytics", "Google Analytics", "distinguishes visitors", "2 years"),
    KnownCookie("_gid", "analytics", "Google Analytics", "distinguishes visitors", "24 hours"),
    KnownCookie("_gat*", "analytics", "Google Analytics", "throttles the request rate", "1 minute"),
    KnownCookie("_dc_gtm_*", "analytics", "Google Tag Manager", "throttles the request rate", "1 minute"),
    KnownCookie("__utma", "analytics", "Google Analytics (Universal)", "distinguishes visitors", "2 years"),
    KnownCookie("__utm*", "analytics", "Google Analytics (Universal)", "session and campaign state", "up to 6 months"),
    KnownCookie("_hjSessionUser_*", "analytics", "Hotjar", "distinguishes visitors", "1 year"),
    KnownCookie("_hjSession_*", "analytics", "Hotjar", "keeps the session", "30 minutes"),
    KnownCookie("_hj*", "analytics", "Hotjar", "session recording and surveys", "up to 1 year"),
    KnownCookie("_clck", "analytics", "Microsoft Clarity", "distinguishes visitors", "1 year"),
    KnownCookie("_clsk", "analytics", "Microsoft Clarity", "joins page views into a session", "1 day"),
    KnownCookie("CLID", "analytics", "Microsoft Clarity", "distinguishes visitors across sites", "1 year"),
    KnownCookie("_pk_id.*", "analytics", "Matomo", "distinguishes visitors", "13 months"),
    KnownCookie("_pk_ses.*", "analytics", "Matomo", "keeps the session", "30 minutes"),
    KnownCookie("mp_*_mixpanel", "analytics", "Mixpanel", "distinguishes visitors", "1 year"),
    KnownCookie("ajs_anonymous_id", "analytics", "Segment", "distinguishes visitors", "1 year"),
    KnownCookie("ajs_user_id", "analytics", "Segment", "the logged-in visitor's id", "1 year"),
    KnownCookie("_vwo_uuid*", "analytics", "VWO", "A/B tests: distinguishes visitors", "1 year"),
    KnownCookie("AMP_*", "analytics", "Amplitude", "distinguishes visitors", "1 year"),
    # Marketing.
    KnownCookie("_fbp", "marketing", "Meta (Facebook)", "distinguishes visitors for advertising", "3 months"),
    KnownCookie("_fbc", "marketing", "Meta (Facebook)", "the ad click that brought the visitor", "3 months"),
    KnownCookie("fr", "marketing", "Meta (Facebook)", "advertising", "3 months"),
    KnownCookie("_gcl_*", "marketing", "Google Ads", "ad conversions", "3 months"),
    KnownCookie("IDE", "marketing", "Google (DoubleClick)", "advertising", "13 months"),
    KnownCookie("test_cookie", "marketing", "Google (DoubleClick)", "checks whether cookies are allowed", "15 minutes"),
    KnownCookie("NID", "marketing", "Google", "advertising and preferences", "6 months"),
    KnownCookie("_ttp", "marketing", "TikTok", "distinguishes visitors for advertising", "13 months"),
    KnownCookie("_tt_enable_cookie", "marketing", "TikTok", "checks whether cookies are allowed", "13 months"),
    KnownCookie("_uetsid", "marketing", "Microsoft Advertising", "distinguishes visitors for advertising", "1 day"),
    KnownCookie("_uetvid", "marketing", "Microsoft Advertising", "distinguishes visitors for advertising", "13 months"),
    KnownCookie("MUID", "marketing", "Microsoft", "distinguishes browsers across Microsoft sites", "1 year"),
    KnownCookie("bcookie", "marketing", "LinkedIn", "distinguishes browsers", "1 year"),
    KnownCookie("lidc", "marketing", "LinkedIn", "routing and advertising", "1 day"),
    KnownCookie("li_sugr", "marketing", "LinkedIn", "distinguishes visitors for advertising", "3 months"),
    KnownCookie("_pin_unauth", "marketing", "Pinterest", "distinguishes visitors for advertising", "1 year"),
    KnownCookie("_scid", "marketing", "Snapchat", "distinguishes visitors for advertising", "13 months"),
    KnownCookie("hubspotutk", "marketing", "HubSpot", "distinguishes visitors", "6 months"),
    KnownCookie("__hs*", "marketing", "HubSpot", "visits and sessions", "up to 6 months"),
    KnownCookie("YSC", "marketing", "YouTube", "distinguishes visitors of embedded videos", "session"),
    KnownCookie("VISITOR_INFO1_LIVE", "marketing", "YouTube", "bandwidth estimate and recommendations", "6 months"),
    # Preferences.
    KnownCookie("pll_language", "preferences", "Polylang (WordPress)", "the visitor's language", "1 year"),
)


def known_cookie(name: str) -> KnownCookie | None:
    """The first built-in entry whose pattern matches `name` (case-sensitive, as browsers are)."""
    for entry in KNOWN_COOKIES:
        if fnmatchcase(name, entry.pattern):
            return entry
    return None
