"""The collect pipeline: a checked hit flows through the named steps of `CollectPipeline.steps`.

The list is the whole path of a hit after its request was read (gateway/collect/hit.py
answers bad input with a 400 before this). Each step passes the hit on or raises
`Dropped(reason)`: answered 202 with `X-Consentgate-Result: dropped: <reason>` and
counted per step and reason in /metrics. Nothing is written before the `keep` step,
and the full client IP leaves the hit in the `record` step, which builds the one
`EventRecord` that the store and the vendors receive.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable

from analytics.records import EventRecord
from gateway.collect.geo import CountryLookup
from gateway.collect.hit import Hit
from gateway.collect.useragent import parse_user_agent
from gateway.clientip import truncate_ip
from gateway.revocations import RevocationList
from gateway.tokens import TokenInvalid, TokenSigner


class Dropped(Exception):
    """A hit not kept, and why; `step` is the pipeline step that dropped it."""

    def __init__(self, reason: str, step: str = "") -> None:
        self.reason = reason
        self.step = step
        super().__init__(reason)


def random_uuid() -> str:
    """A version-4 UUID string. uuid.uuid4() costs ~10 us a call (os.urandom plus the UUID object);
    ids only need to be unique, not secret, so Python's seeded PRNG is enough here."""
    n = random.getrandbits(128)
    n = (n & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


Step = Callable[[Hit], None]
Sink = Callable[[Hit], None]


class CollectPipeline:
    def __init__(
        self,
        signer: TokenSigner,
        revocations: RevocationList,
        countries: CountryLookup,
        sinks: list[Sink],
        too_fast: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.signer = signer
        self.revocations = revocations
        self.countries = countries
        self.sinks = sinks  # where `keep` hands the record: the store's spool, the vendors' outboxes
        self.too_fast = too_fast  # (visitor id, monotonic now) -> a bot's rate (gateway/collect/behaviour.py)
        self.steps: list[tuple[str, Step]] = [
            ("consent", self.check_consent),  # a valid token of this site and policy, not withdrawn, granting a use
            ("bot", self.check_bot),  # not a known bot or tool by its User-Agent
            ("bot_rate", self.check_rate),  # not a visitor sending more hits a minute than people do
            ("record", self.build_record),  # the EventRecord: UA parts, country (full IP, memory), truncated IP
            ("keep", self.keep),  # spooled for the store (analytics), queued for vendors (marketing)
        ]

    def run(self, hit: Hit) -> Hit:
        for name, step in self.steps:
            try:
                step(hit)
            except Dropped as drop:
                drop.step = name
                raise
        return hit

    def check_consent(self, hit: Hit) -> None:
        if not hit.token_text:
            raise Dropped("no_consent")
        try:
            token = self.signer.loads(hit.token_text, hit.site.name, hit.site.policy_version)
        except TokenInvalid as exc:
            raise Dropped(exc.reason) from None
        if self.revocations.is_revoked(token.consent_id, token.issued_ms):
            raise Dropped("withdrawn")
        if not (token.grants("analytics") or token.grants("marketing")):
            raise Dropped("no_consent")
        hit.token = token

    def check_bot(self, hit: Hit) -> None:
        if parse_user_agent(hit.user_agent).is_bot:
            raise Dropped("bot")

    def check_rate(self, hit: Hit) -> None:
        assert hit.token is not None
        if self.too_fast is not None and self.too_fast(hit.token.consent_id, time.monotonic()):
            raise Dropped("bot_rate")

    def build_record(self, hit: Hit) -> None:
        assert hit.token is not None
        agent = parse_user_agent(hit.user_agent)  # cached: the bot step parsed it
        page, referrer = hit.page, hit.referrer
        hit.record = EventRecord(
            event_id=random_uuid(),
            site=hit.site.name,
            timestamp=round(time.time(), 3),
            type=hit.type,
            name=hit.name,
            visitor_id=hit.token.consent_id,
            url=page.clean,
            hostname=page.host,
            path=page.path,
            referrer=referrer.clean if referrer else "",
            referrer_host=referrer.host.removeprefix("www.") if referrer else "",
            utm_source=page.utm[0],
            utm_medium=page.utm[1],
            utm_campaign=page.utm[2],
            browser=agent.browser,
            browser_version=agent.browser_version,
            os=agent.os,
            device=agent.device,
            country=self.countries.country(hit.client_ip),
            ip=truncate_ip(hit.client_ip),
            props=hit.props,
        )
        hit.client_ip = ""  # nothing after this step can see the full address

    def keep(self, hit: Hit) -> None:
        for sink in self.sinks:
            sink(hit)
        if not hit.stored and not hit.forwarded:
            raise Dropped("no_consent")  # marketing only, and no vendor of the site takes it
