"""The one start-up line in the daemon log, and the worker-count gauges.

Why a line: when an operator reads the journal after an incident, the first question
is "what was running, with which shape": which version, where it listened, how many
routes, upstreams and workers, and whether state was shared (redis) or per process.
`run` logs it exactly once per service start: from the single process, or from the
supervisor (never from each worker, which would repeat it N times and again on every
worker restart).
"""

from __future__ import annotations

import logging
from typing import Any

from wxgated import __version__, build
from wxgated.observe.metrics import WORKERS_CONFIGURED, WORKERS_SERVING

log = logging.getLogger("wxgated")


def listen_url(cfg: dict[str, Any]) -> str:
    """The public listener as a URL (https when the gateway terminates TLS)."""
    server = cfg.get("server", {})
    scheme = "https" if server.get("tls") else "http"
    return f"{scheme}://{server.get('listen', '0.0.0.0:8080')}"


def startup_line(cfg: dict[str, Any], routes: int, workers: int, admin: str) -> str:
    """The text of the start-up line (kept separate so a test can read it exactly)."""
    upstreams = len(cfg.get("upstreams") or {})
    backend = cfg.get("state", {}).get("backend", "memory")
    return (f"wxgated {__version__} (build {build.describe()}) listening on {listen_url(cfg)}, "
            f"admin http://{admin}; {routes} routes, {upstreams} upstreams, "
            f"{workers} {'worker' if workers == 1 else 'workers'}, state backend {backend}")


def announce(cfg: dict[str, Any], routes: int, workers: int, admin: str) -> None:
    """Log the start-up line and publish the configured worker count."""
    WORKERS_CONFIGURED.set(workers)
    log.info("%s", startup_line(cfg, routes, workers, admin))


def workers_serving(n: int) -> None:
    """How many workers serve right now (the supervisor's view; 1 in one process)."""
    WORKERS_SERVING.set(n)
