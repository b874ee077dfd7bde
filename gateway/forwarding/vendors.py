"""One class per vendor type, each turning a Delivery into the HTTP request that vendor expects.

Vendors never see the consent id: each gets its own pseudonym for the visitor
(`pseudonym`), so two vendors cannot join their data on it. They get the hit as
stored (truncated IP, page address without query string except UTM parameters),
limited to the vendor's `fields` when configured.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from analytics.records import VENDOR_FIELDS
from gateway.config import VendorConfig
from gateway.forwarding.outbox import Delivery

USER_AGENT = "consentgate-forwarder/0.1"
SIGNATURE_HEADER = "X-Consentgate-Signature"
DELIVERY_HEADER = "X-Consentgate-Delivery"
GA4_URL = "https://www.google-analytics.com/mp/collect"
META_URL = "https://graph.facebook.com/v21.0"
ALWAYS_SENT = ("event_id", "type", "name", "timestamp")


def pseudonym(secret_key: str, site: str, vendor: str, consent_id: str) -> bytes:
    """HMAC-SHA256(secret_key, "consentgate.vendor-id\\n{site}\\n{vendor}\\n{consent_id}"): stable per
    visitor and vendor, unlinkable across vendors without the gateway's secret."""
    message = f"consentgate.vendor-id\n{site}\n{vendor}\n{consent_id}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).digest()


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` (the recipe in docs/vendors.md)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def sha256_normalised(value: str) -> str:
    """Meta's recipe for customer information: trim, lowercase, then SHA-256 hex."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class VendorRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    secrets: tuple[str, ...] = ()  # credentials inside url/body, masked when shown

    def describe(self) -> str:
        text = f"POST {self.url}\n" + "".join(f"{k}: {v}\n" for k, v in self.headers.items()) + \
            "\n" + self.body.decode()
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Vendor:
    """What every vendor type shares: its config, the visitor pseudonym and the allowed fields."""

    def __init__(self, config: VendorConfig, secret_key: str) -> None:
        self.config = config
        self.secret_key = secret_key
        self.allowed = set(config.fields or VENDOR_FIELDS)

    @property
    def name(self) -> str:
        return self.config.name

    def visitor_pseudonym(self, delivery: Delivery) -> bytes:
        return pseudonym(self.secret_key, delivery.site, self.config.name, delivery.consent_id)

    def fields(self, delivery: Delivery) -> dict[str, Any]:
        """The hit as this vendor may see it: identity fields plus the allowed ones."""
        event = {**delivery.event, "user_agent": delivery.user_agent}
        return {k: v for k, v in event.items() if k in ALWAYS_SENT or k in self.allowed}

    @staticmethod
    def page_location(event: dict[str, Any]) -> str:
        """The page address with its UTM parameters back on (the only query parameters kept)."""
        url = event.get("url", "")
        utm = {k: event[k] for k in ("utm_source", "utm_medium", "utm_campaign") if event.get(k)}
        return f"{url}?{urlencode(utm)}" if url and utm else url

    def build(self, delivery: Delivery, now: float) -> VendorRequest:
        raise NotImplementedError


class WebhookVendor(Vendor):
    """A JSON POST of the hit, signed with the vendor's `secret` when one is set."""

    def build(self, delivery: Delivery, now: float) -> VendorRequest:
        body = _json({
            "delivery_id": delivery.delivery_id,
            "site": delivery.site,
            "vendor": self.name,
            "visitor_id": self.visitor_pseudonym(delivery).hex()[:32],
            "consent": delivery.choices,
            "event": self.fields(delivery),
        })
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   DELIVERY_HEADER: delivery.delivery_id}
        if self.config.secret:
            headers[SIGNATURE_HEADER] = sign_webhook(self.config.secret, int(now), body)
        return VendorRequest(self.config.url, headers, body)


def ga4_client_id(digest: bytes) -> str:
    """GA4's '<int>.<int>' client id shape, from the first 8 bytes of the visitor's pseudonym."""
    return f"{int.from_bytes(digest[:4], 'big')}.{int.from_bytes(digest[4:8], 'big')}"


def ga4_event_name(hit_type: str, name: str) -> str:
    if hit_type == "pageview":
        return "page_view"
    # GA4 names: letters, digits and underscores, starting with a letter, at most 40 characters.
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return (clean if clean[:1].isalpha() else f"e_{clean}")[:40]


class GA4Vendor(Vendor):
    """GA4 Measurement Protocol: one page_view (or named event) per hit."""

    def build(self, delivery: Delivery, now: float) -> VendorRequest:
        event = self.fields(delivery)
        params: dict[str, Any] = {"engagement_time_msec": 1}
        if event.get("url"):
            params["page_location"] = self.page_location(event)[:1000]
        if event.get("referrer"):
            params["page_referrer"] = event["referrer"][:420]
        ads = "GRANTED" if delivery.choices.get("marketing") else "DENIED"
        body = _json({
            "client_id": ga4_client_id(self.visitor_pseudonym(delivery)),
            "timestamp_micros": int(event["timestamp"] * 1_000_000),
            "consent": {"ad_user_data": ads, "ad_personalization": ads},
            "events": [{"name": ga4_event_name(event["type"], event.get("name", "")), "params": params}],
        })
        query = urlencode({"measurement_id": self.config.measurement_id, "api_secret": self.config.api_secret})
        return VendorRequest(f"{self.config.url or GA4_URL}?{query}",
                             {"Content-Type": "application/json", "User-Agent": USER_AGENT}, body,
                             (self.config.api_secret,))


class MetaCapiVendor(Vendor):
    """Meta Conversions API: one server event per hit; customer information hashed as Meta specifies,
    except the (truncated) IP address and user agent, which Meta wants in the clear."""

    def build(self, delivery: Delivery, now: float) -> VendorRequest:
        event = self.fields(delivery)
        user_data: dict[str, Any] = {"external_id": [sha256_normalised(self.visitor_pseudonym(delivery).hex())]}
        if event.get("ip"):
            user_data["client_ip_address"] = event["ip"]
        if event.get("user_agent"):
            user_data["client_user_agent"] = event["user_agent"]
        if event.get("country"):
            user_data["country"] = [sha256_normalised(event["country"])]
        server_event: dict[str, Any] = {
            "event_name": "PageView" if event["type"] == "pageview" else event.get("name", "")[:50],
            "event_time": int(event["timestamp"]),
            "event_id": event["event_id"],  # Meta de-duplicates on it, so a re-sent event counts once
            "action_source": "website",
            "user_data": user_data,
        }
        if event.get("url"):
            server_event["event_source_url"] = self.page_location(event)
        body = _json({"data": [server_event], "access_token": self.config.access_token})
        url = f"{(self.config.url or META_URL).rstrip('/')}/{self.config.pixel_id}/events"
        return VendorRequest(url, {"Content-Type": "application/json", "User-Agent": USER_AGENT}, body,
                             (self.config.access_token,))


VENDOR_CLASSES: dict[str, type[Vendor]] = {"webhook": WebhookVendor, "ga4": GA4Vendor, "meta_capi": MetaCapiVendor}


def build_vendor(config: VendorConfig, secret_key: str) -> Vendor:
    return VENDOR_CLASSES[config.type](config, secret_key)
