"""Marketing channels: which kind of source a visit came from, by its referrer host and UTM tags."""
from __future__ import annotations

SEARCH_HOSTS = ("google.", "bing.com", "duckduckgo.com", "yahoo.", "ecosia.org", "baidu.com", "yandex.",
                "startpage.com", "qwant.com", "search.brave.com", "kagi.com")
SOCIAL_HOSTS = ("facebook.com", "instagram.com", "linkedin.com", "lnkd.in", "t.co", "twitter.com", "x.com",
                "reddit.com", "news.ycombinator.com", "youtube.com", "pinterest.com", "tiktok.com",
                "mastodon.social", "threads.net", "bsky.app")
PAID_MEDIUMS = ("cpc", "ppc", "paid", "paidsearch", "paid_social", "display", "cpm")


def _host_in(column: str, hosts: tuple[str, ...]) -> str:
    """True when the host is one of `hosts` or a subdomain; an entry ending in '.' matches any TLD."""
    tests = []
    for h in hosts:
        if h.endswith("."):  # google. = google.com, google.nl, www.google.co.uk, ...
            tests.append(f"({column} LIKE '{h}%' OR {column} LIKE '%.{h}%')")
        else:
            tests.append(f"({column} = '{h}' OR endsWith({column}, '.{h}'))")
    return "(" + " OR ".join(tests) + ")"


def source_sql(host: str, utm_source: str, utm_medium: str) -> str:
    """The marketing channel of a visit from its referrer host and UTM tags."""
    # Most hits carry neither referrer nor UTM tags: answer those first, so the host tests
    # below run (short-circuit) only on the few that do.
    return (f"multiIf({host} = '' AND {utm_source} = '' AND {utm_medium} = '', 'direct', "
            f"lower({utm_medium}) IN {PAID_MEDIUMS}, 'paid', "
            f"lower({utm_medium}) IN ('email', 'e-mail', 'newsletter') OR lower({utm_source}) = 'newsletter', 'email', "
            f"{_host_in(host, SEARCH_HOSTS)}, 'search', "
            f"{_host_in(host, SOCIAL_HOSTS)} OR lower({utm_medium}) = 'social', 'social', "
            f"{host} = '' AND {utm_source} = '', 'direct', "
            f"{host} = '', 'campaign', 'referral')")
