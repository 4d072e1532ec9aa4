"""WeChat identity: API client, crypto, sessions, JWT keys, the access-token keeper.

`build_services(config, state)` makes the process-wide objects the `jwt_auth` filter
and the `wechat` terminal find in `ctx.services`. The compiler keeps them in the
Registry keyed by the `wechat`/`jwt`/`state` sections, so a reload that leaves those
alone keeps the HTTP session, the verification cache and the token keeper.

Sessions live in `state.backend` unless `wechat.backend` names the other one. When they
live in Redis, `state.encryption_key` (32 bytes as base64 or 64 hex digits) is required:
a session_key stored in clear in Redis is a config error.
"""

from __future__ import annotations

from typing import Any

from wxgated.config.units import parse_encryption_key
from wxgated.state.base import StateBackend
from wxgated.wechat.apps import App, Apps
from wxgated.wechat.client import WeChatClient, WeChatError
from wxgated.wechat.crypto import SecretBox
from wxgated.wechat.jwt_keys import KeyRing, TokenError
from wxgated.wechat.sessions import Session, SessionRecord, SessionStore
from wxgated.wechat.settings import SettingsError, WeChatSettings, app_settings
from wxgated.wechat.token_keeper import TokenKeeper

__all__ = [
    "KeyRing", "SecretBox", "Session", "SessionRecord", "SessionStore", "SettingsError",
    "TokenError", "TokenKeeper", "WeChatClient", "WeChatError", "WeChatSettings",
    "build_services",
]


def _box(state_cfg: dict[str, Any]) -> SecretBox | None:
    text = state_cfg.get("encryption_key")
    if not text:
        return None
    try:
        return SecretBox(parse_encryption_key(str(text)))
    except ValueError as exc:
        raise SettingsError(str(exc), ["state", "encryption_key"]) from None


def _session_state(settings: WeChatSettings, state_cfg: dict[str, Any],
                   state: StateBackend) -> tuple[StateBackend, bool]:
    """The backend sessions use, and whether it was opened here (and must be closed)."""
    wanted = settings.backend or state.name
    if wanted == state.name:
        return state, False
    from wxgated.state import open_backend

    return open_backend({**state_cfg, "backend": wanted}), True


def build_services(config: dict[str, Any], state: StateBackend) -> dict[str, Any]:
    """{"jwt", "wechat_apps", and the first app's "wechat", "wechat_settings", "sessions",
    "tokens"} for the sections present (the single-app form is one app, "default").

    Raises SettingsError (a SemanticError with a config path) for values that cannot work.
    """
    services: dict[str, Any] = {}
    if config.get("jwt"):
        services["jwt"] = KeyRing.from_config(config["jwt"])
    wx_cfg = config.get("wechat")
    if not wx_cfg:
        return services
    all_settings = app_settings(wx_cfg)
    first = next(iter(all_settings.values()))
    state_cfg = config.get("state") or {}
    box = _box(state_cfg)
    sess_state, own = _session_state(first, state_cfg, state)
    if sess_state.name == "redis" and box is None:
        raise SettingsError("state.encryption_key is required when sessions are stored in "
                            "Redis (the session_key must not sit there in clear)",
                            ["state", "encryption_key"])
    apps: dict[str, App] = {}
    # the single-app form keeps the session keys it always had (wx:sess:{sid}), so an
    # upgrade logs nobody out; with `apps` each app's keys carry its appid
    several = "apps" in wx_cfg
    for name, settings in all_settings.items():
        client = WeChatClient(settings.api_base, settings.appid, settings.secret,
                              timeout=settings.timeout, retries=settings.retries,
                              backoff=settings.backoff, app=name)
        apps[name] = App(settings, client,
                         SessionStore(sess_state, settings.session_ttl, box,
                                      appid=settings.appid if several else ""),
                         TokenKeeper(client, state, settings.appid,
                                     use_stable=settings.use_stable_token,
                                     refresh_margin=settings.refresh_before))
    main = apps[first.name]
    hosts = {str(h).lower(): str(n) for h, n in (wx_cfg.get("app_by_host") or {}).items()}
    services.update(
        wechat_apps=Apps(apps, hosts),
        wechat=main.client,  # also closed through wechat_apps: closing twice is harmless
        wechat_settings=main.settings,
        sessions=main.sessions,
        tokens=main.tokens,
    )
    if own:
        services["session_state"] = sess_state  # closed with the bundle
    return services
