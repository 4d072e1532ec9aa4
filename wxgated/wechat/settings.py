"""Reading the `wechat:`, `jwt:` and `state.encryption_key` config into plain values.

The schema has checked shapes already; what is left here is meaning (durations, key
material) and the rules the schema cannot express. Errors carry the config path so the
compile step can report them as FILE:LINE:COL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.units import parse_duration
from wxgated.wechat.push_crypto import aes_key

DEFAULT_APP = "default"  # the name of the app the single-app form configures


class SettingsError(SemanticError):
    """A config value that parses but cannot work; `path` locates it in routes.yaml."""

    @property
    def msg(self) -> str:
        return self.message


def seconds(value: Any, path: list[str | int]) -> float:
    """A duration: "250ms", "10s", "2h", or a plain number of seconds."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise SettingsError(str(exc), path) from None


def _aes_key(value: Any, path: list[str | int]) -> bytes | None:
    """The safe-mode AES key, checked now so a mistyped EncodingAESKey stops the start-up
    rather than failing every push."""
    if not value:
        return None
    try:
        return aes_key(str(value))
    except ValueError as exc:
        raise SettingsError(str(exc), path) from None


@dataclass(frozen=True)
class WeChatSettings:
    appid: str
    secret: str = field(repr=False)
    api_base: str = "https://api.weixin.qq.com"
    session_ttl: float = 7200.0
    push_token: str = field(default="", repr=False)
    push_aes_key: bytes | None = field(default=None, repr=False)  # None = plain mode
    push_max_age: float = 300.0  # 0 = no timestamp window
    backend: str | None = None  # where sessions live; None = state.backend
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.1
    use_stable_token: bool = True
    refresh_before: float = 300.0

    name: str = DEFAULT_APP  # the app's name in wechat.apps (metrics label, `app:` keys)

    @classmethod
    def from_config(cls, wx: dict[str, Any], name: str = DEFAULT_APP,
                    path: tuple[str | int, ...] = ("wechat",)) -> WeChatSettings:
        p: list[str | int] = list(path)
        for required in ("appid", "secret"):
            if not wx.get(required):
                raise SettingsError(f"{'.'.join(map(str, p))}.{required} is required",
                                    [*p, required])
        token = wx.get("token") or {}
        return cls(
            appid=str(wx["appid"]),
            secret=str(wx["secret"]),
            api_base=str(wx.get("api_base", cls.api_base)),
            session_ttl=seconds(wx.get("session_ttl", "2h"), [*p, "session_ttl"]),
            push_token=str(wx.get("push_token") or ""),
            push_aes_key=_aes_key(wx.get("push_aes_key"), [*p, "push_aes_key"]),
            push_max_age=seconds(wx.get("push_max_age", "5m"), [*p, "push_max_age"]),
            backend=wx.get("backend"),
            timeout=seconds(wx.get("timeout", "5s"), [*p, "timeout"]),
            retries=int(wx.get("retries", 2)),
            backoff=seconds(wx.get("backoff", "100ms"), [*p, "backoff"]),
            use_stable_token=token.get("source", "stable_token") == "stable_token",
            refresh_before=seconds(token.get("refresh_before", "5m"),
                                   [*p, "token", "refresh_before"]),
            name=name,
        )


# Keys an app of `wechat.apps` inherits from the `wechat:` level when it does not set
# them. Credentials (appid, secret, push_token, push_aes_key) are never inherited: one
# mini program's secret must not silently become another's.
SHARED_KEYS = ("api_base", "session_ttl", "push_max_age", "timeout", "retries", "backoff",
               "token")


def app_settings(wx: dict[str, Any]) -> dict[str, WeChatSettings]:
    """name -> settings for every configured mini program, in config order.

    The single-app form (`appid`/`secret` at the `wechat:` level) is one app named
    DEFAULT_APP, so everything downstream handles one shape.
    """
    if "apps" not in wx:
        return {DEFAULT_APP: WeChatSettings.from_config(wx)}
    shared = {k: wx[k] for k in SHARED_KEYS if k in wx}
    out: dict[str, WeChatSettings] = {}
    for name, own in (wx.get("apps") or {}).items():
        merged = {**shared, **(own or {}), "backend": wx.get("backend")}
        out[str(name)] = WeChatSettings.from_config(merged, str(name), ("wechat", "apps", name))
    if not out:
        raise SettingsError("wechat.apps must name at least one app", ["wechat", "apps"])
    return out
