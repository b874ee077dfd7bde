"""How soon the banner is visible after DOMContentLoaded, in Debian's Chromium on a local page.

Target: within 100 ms. Starts a real gateway and the browser tests' test site, loads the
page N times in fresh profiles (a first visit each time), and prints the delay from
DOMContentLoaded to the first frame that paints the banner, plus the bytes on the wire.

    .venv/bin/python bench/banner_visible.py [--runs 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

from playwright.sync_api import sync_playwright  # noqa: E402

from harness import UA_CHROME, free_port  # noqa: E402
from testsite import CHROMIUM, CHROMIUM_ARGS, DESKTOP, EmbeddingSite, handler, start_gateway  # noqa: E402

# Records DOMContentLoaded and the first animation frame in which the banner has a box.
PROBE = """
window.addEventListener('DOMContentLoaded', function () {
  window.dcl = performance.now();
  (function check() {
    var b = document.querySelector('.cg-banner');
    if (b && !b.hidden && b.getBoundingClientRect().height > 0) requestAnimationFrame(function () { window.visible = performance.now(); });
    else requestAnimationFrame(check);
  })();
});
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    site = EmbeddingSite(port=free_port())
    server = ThreadingHTTPServer(("127.0.0.1", site.port), handler(site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as folder:
        gw = start_gateway(Path(folder), site)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                delays, wire, encoding = [], 0, ""
                for _ in range(args.runs):
                    context = browser.new_context(user_agent=UA_CHROME, viewport=DESKTOP, locale="nl-NL")
                    context.add_init_script(PROBE)
                    page = context.new_page()
                    with page.expect_response(lambda r: r.url.endswith("/banner.js")) as banner:
                        page.goto(site.url("/"))
                    wire = int(banner.value.header_value("content-length") or 0)
                    encoding = banner.value.header_value("content-encoding") or "identity"
                    page.wait_for_function("window.visible !== undefined")
                    delays.append(page.evaluate("window.visible - window.dcl"))
                    context.close()
                browser.close()
        finally:
            gw.kill()
            server.shutdown()
    delays.sort()
    print(f"banner.js on the wire: {wire} bytes ({encoding})")
    print(f"DOMContentLoaded -> banner painted, {args.runs} first visits: median {statistics.median(delays):.1f} ms, "
          f"p90 {delays[int(len(delays) * 0.9) - 1]:.1f} ms, max {delays[-1]:.1f} ms (target: 100 ms)")


if __name__ == "__main__":
    main()
