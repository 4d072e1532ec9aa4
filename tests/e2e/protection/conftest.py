"""Black-box: traffic protection through a real `wxgated run` (issue 4), one for the folder.

Balancing, health (active and passive), retries with their budget, per-try timeout and
deadline, circuit breakers, rate limits on Redis and concurrency limits, all seen from
outside: what clients get, which upstream app answered, how many calls each upstream
really received, and what `/-/upstreams` and `/metrics` report. Each behaviour has its
own upstream apps, so one test's switches never leak into another's counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.e2e_backend import Backend
from tests.support.gateway import GatewayProcess
from tests.support.protection import NAMES, proxied, upstreams
from tests.support.servers import free_port


@pytest.fixture(scope="package")
def apps() -> Iterator[dict[str, Backend]]:
    started = {n: Backend(n).start() for n in NAMES}
    yield started
    for b in started.values():
        b.stop()


@pytest.fixture(scope="package")
def gw(apps: dict[str, Backend], redis_url: str,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ups = upstreams(apps, f"http://127.0.0.1:{free_port()}")
    routes = [proxied(n) for n in ups if n != "cl"]
    routes.append(proxied("cl", {"concurrency_limit": 2}))
    routes.append({"name": "e2e-limited", "match": {"path": "/limited", "methods": ["GET"]},
                   "filters": [{"rate_limit": {"rate": 3, "per": "1m", "key": "header.X-App-Key",
                                               "on_missing_key": "reject"}}],
                   "respond": {"json": {"ok": True}}})
    config = {"state": {"backend": "redis",
                        "redis": {"url": redis_url.rsplit("/", 1)[0] + "/5", "timeout": "1s"}},
              "upstreams": ups, "routes": routes}
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-protect"), config).start()
    yield proc
    proc.stop()
