"""One `wxgated run` for the folder, in front of the scripted raw upstream (`Raw`). Each
test here covers behaviour no other test does; most were written as failing tests for
bugs found in a review of the HTTP layer, then fixed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.edges import HEADER_TIMEOUT, JWT_SECRET, READ_TIMEOUT, Raw
from tests.support.gateway import GatewayProcess
from tests.support.servers import LoopThread


@pytest.fixture(scope="package")
def raw(loop_thread: LoopThread) -> Raw:
    return Raw(loop_thread)


@pytest.fixture(scope="package")
def gw(raw: Raw, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "jwt": {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256",
                                               "secret": JWT_SECRET}]},
        "server": {"limits": {"max_header": "2KiB", "max_body": "64MiB"},
                   "timeouts": {"header": f"{HEADER_TIMEOUT}s", "body": f"{HEADER_TIMEOUT}s",
                                "shutdown_grace": "1s"}},
        "upstreams": {"raw": {"targets": [{"url": raw.url}],
                              "timeouts": {"read": f"{int(READ_TIMEOUT * 1000)}ms"},
                              "passive_health": {"enabled": False}}},
        "routes": [
            {"name": "r", "match": {"path": "/r/*rest"}, "filters": [{"strip_prefix": 1}],
             "upstream": "raw"},
            {"name": "keep-host", "match": {"host": "a.test", "path": "/kh/*rest"},
             "filters": [{"strip_prefix": 1}], "upstream": "raw", "preserve_host": True},
            {"name": "small", "match": {"path": "/small/*rest"},
             "filters": [{"strip_prefix": 1}], "upstream": "raw", "max_body": "16B"},
            {"name": "auth", "match": {"path": "/auth/*rest"},
             "filters": [{"jwt_auth": {"check_session": False}}, {"strip_prefix": 1}],
             "upstream": "raw"},
            {"name": "a", "match": {"host": "a.test", "path": "/who"},
             "respond": {"json": "a"}},
            {"name": "b", "match": {"host": "b.test", "path": "/who"},
             "respond": {"json": "b"}},
            {"name": "fixed", "match": {"path": "/fixed", "methods": ["GET"]},
             "respond": {"status": 200, "body": "twelve bytes"}},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-edges"), config).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def loop_thread() -> Iterator[LoopThread]:
    """The loop of this folder's raw upstreams, which serve every module in it."""
    lt = LoopThread()
    yield lt
    lt.stop()
