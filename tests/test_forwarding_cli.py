"""`consentgate vendors test`: one synthetic hit to a real local vendor, its answer shown to the operator."""
from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

from harness import ROOT, write_config
from vendor_servers import VendorServer, refuse


def run_vendors_test(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "vendors", "test", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_vendors_test_sends_one_signed_hit_and_shows_the_answer(tmp_path):
    good = VendorServer().start()
    bad = VendorServer(refuse(401)).start()
    try:
        config = write_config(tmp_path, sites={"demo": {"origins": ["https://www.example.com"], "vendors": [
            {"name": "hook", "type": "webhook", "url": f"{good.url}/hook", "secret": "whsec-cli-test-123"},
            {"name": "meta", "type": "meta_capi", "url": f"{bad.url}/meta", "pixel_id": "42",
             "access_token": "very-secret-token"}]}})
        out = run_vendors_test(config, "--site", "demo", "--vendor", "hook")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "HTTP 200" in out.stdout and '"ok": true' in out.stdout
        [request] = good.requests()
        t, v1 = (part.split("=", 1)[1] for part in request.headers["x-consentgate-signature"].split(","))
        assert v1 == hmac.new(b"whsec-cli-test-123", t.encode() + b"." + request.body, hashlib.sha256).hexdigest()
        assert request.json()["event"]["path"] == "/consentgate-vendor-test"

        out = run_vendors_test(config, "--site", "demo", "--vendor", "meta")
        assert out.returncode == 1 and "HTTP 401" in out.stdout and "check its credentials" in out.stdout
        assert "very-secret-token" not in out.stdout  # masked in the request shown
        assert bad.requests()[0].json()["access_token"] == "very-secret-token"

        out = run_vendors_test(config, "--site", "demo", "--vendor", "nope")
        assert out.returncode == 2 and "its vendors: hook, meta" in out.stdout
        assert len(good.requests()) == 1
    finally:
        good.stop()
        bad.stop()
