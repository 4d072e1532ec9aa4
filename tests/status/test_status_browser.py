"""The status page in a real (headless) Chromium: what a person would see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.status_harness import (
    ENV,
    Traffic,
    backend,
    chromium_paths,
    config,
    headless_chrome,
)

pytestmark = pytest.mark.skipif(chromium_paths() is None,
                                reason="chromium / chromium-driver not installed")


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = headless_chrome()
    yield driver
    driver.quit()


def text_of(driver: Any, css: str) -> str:
    return str(driver.find_element("css selector", css).text)


def wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError("timed out")


def rendered_at(driver: Any) -> str:
    return str(driver.find_element("css selector", "body").get_attribute("data-generated"))


def test_page_shows_routes_rates_health_and_config(gateway: Any, browser: Any) -> None:
    users, orders = backend("users"), backend("orders")
    gw = gateway(config(users.url, orders.url), env=ENV)
    traffic = Traffic(gw.url)
    try:
        browser.get(gw.admin + "/")  # redirects to /-/status
        assert browser.current_url.endswith("/-/status")
        wait_until(lambda: rendered_at(browser) not in ("", "None"))
        body = text_of(browser, "body")
        for name in ("ping", "users", "orders"):
            assert browser.find_element("css selector", f'tr[data-route="{name}"]')
        assert "/api/users/:id" in body and "Upstreams" in body
        sha = text_of(browser, "#config-sha")
        assert len(sha) == 12 and text_of(browser, "#config-version") == "1"
        # req/s: a number, and it moves between two refreshes while traffic flows
        first = wait_until(lambda: rps(browser))
        gen = rendered_at(browser)
        wait_until(lambda: rendered_at(browser) != gen)
        second = wait_until(lambda: rps(browser) not in (None, first) and rps(browser))
        assert first != second and float(second) > 0
        # the target nobody listens on: unhealthy; the live one healthy, breaker closed
        down = wait_until(lambda: [t for t in targets(browser, "users")
                                   if "unhealthy" in t])
        assert len(down) == 1
        live = [t for t in targets(browser, "users") if "unhealthy" not in t][0]
        assert "healthy" in live and "closed" in live
        assert "serving" in text_of(browser, "#workers")
        assert browser.find_element("css selector", "#err").value_of_css_property(
            "display") == "none"
    finally:
        traffic.stop()
        users.stop()
        orders.stop()


def rps(driver: Any) -> str | None:
    """The ping route's req/s cell, when it shows a number."""
    cell = text_of(driver, 'tr[data-route="ping"] td.rps')
    try:
        float(cell)
    except ValueError:
        return None
    return cell


def targets(driver: Any, upstream: str) -> list[str]:
    rows = driver.find_elements(
        "xpath", f'//h3[@data-upstream="{upstream}"]/following-sibling::table[1]//tbody/tr')
    return [str(r.text) for r in rows]


def test_page_fits_a_phone_screen(gateway: Any) -> None:
    users, orders = backend("users"), backend("orders")
    gw = gateway(config(users.url, orders.url), env=ENV)
    driver = headless_chrome(390, 844)
    try:
        driver.get(gw.admin + "/-/status")
        wait_until(lambda: rendered_at(driver) not in ("", "None"))
        width = driver.execute_script("return document.documentElement.scrollWidth")
        inner = driver.execute_script("return window.innerWidth")
        assert width <= inner, "no sideways scrolling on a phone"
        assert driver.find_element("css selector", 'tr[data-route="users"]').is_displayed()
    finally:
        driver.quit()
        users.stop()
        orders.stop()
