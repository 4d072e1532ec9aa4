"""Regenerate docs/status.png: the status page of a gateway under test traffic, taken
by the same headless Chromium the tests use (tests/support/status_harness.py).

    .venv/bin/python scripts/status_screenshot.py [out.png]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.status_harness import ENV, Traffic, backend, config, headless_chrome  # noqa: E402


def main(out: Path) -> None:
    users, orders = backend("users"), backend("orders")
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(Path(tmp), config(users.url, orders.url), ENV).start()
        traffic = Traffic(gw.url, pause=0.005)
        driver = headless_chrome(1100, 900)
        try:
            time.sleep(12)  # a few ring samples: rates, sparklines, an ejected target
            driver.get(gw.admin + "/-/status")
            time.sleep(3)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 1100, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
            time.sleep(2.5)  # one more refresh at the new size
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
            traffic.stop()
            gw.stop()
            users.stop()
            orders.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "status.png")
