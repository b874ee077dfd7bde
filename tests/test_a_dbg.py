import time, httpx
from concurrent.futures import ThreadPoolExecutor
from test_nginx import nginx_gateway  # noqa
def test_dbg(nginx_gateway):
    from harness import STATS_TOKEN
    gw, url, folder = nginx_gateway
    def stats(_):
        return httpx.get(f"{url}/api/stats/sites", headers={"Authorization": f"Bearer {STATS_TOKEN}"}, timeout=10)
    t = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(stats, range(200)))
    print("took", time.monotonic() - t, {r.status_code for r in answers})
    print(open(f"{folder}/consentgate.access.log").read()[-500:])
