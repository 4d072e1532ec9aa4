"""A gateway with two real upstreams (one target down) and steady traffic, for the
status page tests and scripts/status_screenshot.py."""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from typing import Any

from aiohttp import web

from tests.support.servers import ThreadedApp, free_port


def backend(name: str) -> ThreadedApp:
    """An upstream answering /healthz and everything else with a small JSON body."""
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def any_path(request: web.Request) -> web.Response:
        return web.json_response({"from": name, "path": request.path})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/{tail:.*}", any_path)
    return ThreadedApp(app)


def config(users: str, orders: str) -> dict[str, Any]:
    """users: one live target and one nobody listens on; orders: one live target."""
    down = f"http://127.0.0.1:{free_port()}"
    check = {"path": "/healthz", "interval": "500ms", "timeout": "500ms"}
    breaker = {"window": "10s", "min_requests": 5, "failure_ratio": 0.5, "open_for": "30s"}
    return {
        "upstreams": {
            "users": {"targets": [{"url": users}, {"url": down}], "health_check": check,
                      "circuit_breaker": breaker},
            "orders": {"targets": [{"url": orders}], "health_check": check},
        },
        "routes": [
            {"name": "ping", "match": {"path": "/ping"}, "respond": {"json": {"pong": 1}}},
            {"name": "users", "match": {"path": "/api/users/:id"}, "upstream": "users"},
            {"name": "orders", "match": {"path": "/api/orders"},
             "filters": [{"rate_limit": {"rate": 2, "per": "1s", "burst": 2, "key": "ip"}}],
             "upstream": "orders"},
        ],
    }


ENV = {"WXGATED_STATUS_INTERVAL": "1"}  # sample every second, not every 5


class Traffic:
    """Requests to every route from a background thread until `stop()`."""

    def __init__(self, base: str, pause: float = 0.02) -> None:
        self.base = base
        self.pause = pause
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        paths = ["/ping", "/api/users/1", "/api/orders", "/ping", "/api/users/2", "/nowhere"]
        i = 0
        while not self.done.wait(self.pause):
            try:
                with urllib.request.urlopen(self.base + paths[i % len(paths)], timeout=2):
                    pass
            except (urllib.error.URLError, OSError):
                pass  # 404s, 429s and 5xx are part of the traffic
            i += 1

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) when Debian's chromium and chromium-driver are installed."""
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if shutil.which(browser) and shutil.which(driver):
        return browser, driver
    return None


def headless_chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium driven by selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    assert paths is not None, "chromium / chromedriver missing (scripts/test.sh installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(paths[1]))
