"""`consentgate vendors test`: one synthetic hit to one vendor, so a site owner can check its credentials."""
from __future__ import annotations

import sys
import time
from typing import TextIO

import httpx

from analytics.records import EventRecord
from gateway.config import GatewayConfig
from gateway.forwarding.outbox import Delivery
from gateway.forwarding.vendors import build_vendor

TEST_IP = "192.0.2.0"  # a documentation network (RFC 5737), already truncated


def synthetic_delivery(config: GatewayConfig, site_name: str, vendor_name: str) -> Delivery:
    site = config.sites[site_name]
    origin = site.origins[0] if site.origins else "https://www.example.com"
    now = time.time()
    event = EventRecord(event_id="00000000-0000-4000-8000-000000000000", site=site.name, timestamp=round(now, 3),
                        type="pageview", name="", visitor_id="consentgate-vendor-test",
                        url=f"{origin}/consentgate-vendor-test", hostname=origin.split("://", 1)[-1],
                        path="/consentgate-vendor-test", referrer="", referrer_host="", utm_source="consentgate",
                        utm_medium="test", utm_campaign="vendor-test", browser="Firefox", browser_version="120",
                        os="Linux", device="desktop", country="", ip=TEST_IP, props={})
    choices = {"preferences": True, "analytics": True, "marketing": True}
    return Delivery.for_record(event, vendor_name, int(now * 1000), choices,
                               "consentgate vendors test (Mozilla/5.0 compatible)",
                               delivery_id="00000000-0000-4000-8000-000000000001")


def send_test_hit(config: GatewayConfig, site_name: str, vendor_name: str, out: TextIO = sys.stdout) -> int:
    """Sends the synthetic hit and prints request (credentials masked) and answer.
    Exit code: 0 on a 2xx, 1 on any other answer or no answer, 2 for an unknown site or vendor."""
    site = config.sites.get(site_name)
    if site is None:
        print(f"no site {site_name!r} in the config; sites: {', '.join(config.sites) or 'none'}", file=out)
        return 2
    vendor_config = next((v for v in site.vendors if v.name == vendor_name), None)
    if vendor_config is None:
        names = ", ".join(v.name for v in site.vendors) or "none configured"
        print(f"site {site_name!r} has no vendor {vendor_name!r}; its vendors: {names}", file=out)
        return 2
    vendor = build_vendor(vendor_config, config.secret_keys[-1])
    request = vendor.build(synthetic_delivery(config, site_name, vendor_name), time.time())
    print(f"--- request to {vendor_name} ({vendor_config.type})\n{request.describe()}\n", file=out)
    try:
        response = httpx.post(request.url, content=request.body, headers=request.headers,
                              timeout=vendor_config.timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        print(f"--- no answer: {type(exc).__name__}: check the vendor's url and that this host can reach it",
              file=out)
        return 1
    print(f"--- answer: HTTP {response.status_code} {response.reason_phrase}", file=out)
    print(response.text[:4000], file=out)
    if response.is_success:
        return 0
    print("--- the vendor refused the hit: check its credentials (secret, api_secret, access_token, ids) "
          "and url", file=out)
    return 1
