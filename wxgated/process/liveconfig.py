"""Which settings a reload applies to the running process, and which wait for a restart.

A reload swaps the compiled routes and upstreams and re-applies the `server:` settings
that live connections read on every request (server_config(), the ClientIPResolver).
What was consumed when a socket was bound or a process spawned cannot follow: the
public and admin listen addresses, the worker count, plain HTTP versus TLS. Those
are compared against what the process *started* with (not against the previous
reload), so every later reload keeps saying so until the restart happens.

A `server:` key this module does not know is treated as needing a restart: a new
setting that nobody wired into the live path must not be reported as applied.
"""

from __future__ import annotations

from typing import Any

# server.* keys applied live: server_config() updates the ServerConfig live connections
# read (limits, header/idle timeouts, path and header-name rules), reload() swaps the ClientIPResolver
# (trusted_proxies), shutdown_grace is read when the drain starts, and a new tls
# cert/key pair is loaded into the listener's context. Add a key here only together
# with the code that applies it on reload.
LIVE_SERVER_KEYS = frozenset({"trusted_proxies", "limits", "timeouts", "tls", "normalize_path",
                              "merge_slashes", "escaped_slashes",
                              "allow_underscores_in_headers", "discovery_ready_timeout"})
_PINNED_SERVER_KEYS = ("listen", "workers")


def pinned(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings of `cfg` that only take effect at start, by dotted name."""
    server = cfg.get("server") or {}
    out: dict[str, Any] = {
        "server.listen": server.get("listen", "0.0.0.0:8080"),
        "server.workers": server.get("workers", 1),
        # http vs https: the listener is created with or without an SSL context
        "server.tls": "tls" in server,
        "admin.listen": (cfg.get("admin") or {}).get("listen", "127.0.0.1:9090"),
    }
    for key, value in server.items():
        if key not in LIVE_SERVER_KEYS and key not in _PINNED_SERVER_KEYS:
            out[f"server.{key}"] = value
    return out


def restart_needed(running: dict[str, Any], new_cfg: dict[str, Any]) -> list[str]:
    """Dotted names whose value in `new_cfg` differs from `running` (a pinned() of the
    config the process started with): changed, but not in effect until a restart."""
    new = pinned(new_cfg)
    return sorted(k for k in running.keys() | new.keys() if running.get(k) != new.get(k))
