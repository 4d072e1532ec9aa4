"""`wxgated demo`: the gateway's whole job on one machine, with nothing to write.

Why: a newcomer should see login, proxying with identity, aggregation, rate limiting
and metrics before writing a backend or getting an AppID. The command starts a WeChat
sandbox and two sample backends on 127.0.0.1 (ephemeral ports), points the shipped
demo.yaml at them through its `${WXGATED_DEMO_*}` placeholders, and then serves that
config through the very code path of `wxgated run` (`wxgated.process.run`). Ctrl-C or
SIGTERM stops the gateway (gracefully, as `run` does) and then the sample services.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from importlib import resources
from pathlib import Path

import uvloop
from aiohttp import web

from wxgated.config.errors import ConfigError
from wxgated.demo.backends import make_orders, make_users
from wxgated.demo.sandbox import DEMO_CODES, make_sandbox
from wxgated.demo.tryit import try_it

LOOPBACK = "127.0.0.1"
DEMO_APPID = "wxdemo0000000000"  # must match demo.yaml's wechat.appid


def demo_config() -> Path:
    """The demo.yaml shipped inside the package (package data)."""
    return Path(str(resources.files("wxgated.demo").joinpath("demo.yaml")))


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on an ephemeral loopback port; the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{LOOPBACK}:{port}"


def banner(port: int, admin_port: int, services: dict[str, str]) -> str:
    """What the command prints once everything listens: URLs, then "Try it"."""
    gateway, admin = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{admin_port}"
    lines = [
        "wxgated demo is running (everything on 127.0.0.1):",
        f"  gateway      {gateway}",
        f"  admin        {admin}/metrics   status page {admin}/",
        f"  users        {services['users']}   (sample backend)",
        f"  orders       {services['orders']}   (sample backend)",
        f"  wechat       {services['sandbox']}   (sandbox; test codes: "
        + ", ".join(DEMO_CODES) + ")",
        "",
        "Try it (in another terminal):",
        "",
        *try_it(gateway, admin),
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def fill_placeholders(port: int, admin_port: int, services: dict[str, str],
                      wx_secret: str) -> None:
    """Set the environment demo.yaml's `${...}` read (per run: fresh secrets)."""
    os.environ.update({
        "WXGATED_DEMO_PORT": str(port),
        "WXGATED_DEMO_ADMIN_PORT": str(admin_port),
        "WXGATED_DEMO_SANDBOX": services["sandbox"],
        "WXGATED_DEMO_USERS": services["users"],
        "WXGATED_DEMO_ORDERS": services["orders"],
        "WXGATED_DEMO_WX_SECRET": wx_secret,
        "WXGATED_DEMO_JWT_SECRET": secrets.token_urlsafe(32),
    })


async def _announce_when_ready(gw: object, text: str) -> None:
    while not getattr(gw, "ready", False):
        await asyncio.sleep(0.05)
    print(text, flush=True)


async def demo_main(port: int, admin_port: int) -> int:
    """Start the sample services, then run the gateway as `wxgated run` does."""
    from wxgated.process.run import serve
    from wxgated.process.server import Gateway

    wx_secret = secrets.token_hex(16)
    apps = {"sandbox": make_sandbox(DEMO_APPID, wx_secret),
            "users": make_users(), "orders": make_orders()}
    runners: list[web.AppRunner] = []
    services: dict[str, str] = {}
    try:
        for name, app in apps.items():
            runner, services[name] = await serve_app(app)
            runners.append(runner)
        fill_placeholders(port, admin_port, services, wx_secret)
        gw = Gateway(str(demo_config()))
        printer = asyncio.ensure_future(
            _announce_when_ready(gw, banner(port, admin_port, services)))
        try:
            return await serve(gw)
        finally:
            printer.cancel()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def cmd_demo(port: int, admin_port: int) -> int:
    """The `wxgated demo` command (exit status as `run`'s)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    try:
        return uvloop.run(demo_main(port, admin_port))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except OSError as exc:  # a port in use: say which, not a traceback
        print(f"wxgated demo: {exc}", file=sys.stderr)
        return 1
