"""Reading the `wechat:`, `jwt:` and `state.encryption_key` config into plain values.

The schema has checked shapes already; what is left here is meaning (durations, key
material) and the rules the schema cannot express. Errors carry the config path so the
compile step can report them as FILE:LINE:COL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class SettingsError(ValueError):
    """A config value that parses but cannot work; `path` locates it in routes.yaml."""

    def __init__(self, msg: str, path: list[str | int]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.path = path


def seconds(value: Any, path: list[str | int]) -> float:
    """A duration: "250ms", "10s", "2h", or a plain number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if m is None:
        raise SettingsError(f"not a duration: {value!r}", path)
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True)
class WeChatSettings:
    appid: str
    secret: str = field(repr=False)
    api_base: str = "https://api.weixin.qq.com"
    session_ttl: float = 7200.0
    push_token: str = field(default="", repr=False)
    timeout: float = 5.0
    retries: int = 2
    use_stable_token: bool = True
    token_refresh_margin: float = 300.0

    @classmethod
    def from_config(cls, wx: dict[str, Any]) -> WeChatSettings:
        p = ["wechat"]
        for required in ("appid", "secret"):
            if not wx.get(required):
                raise SettingsError(f"wechat.{required} is required", [*p, required])
        return cls(
            appid=str(wx["appid"]),
            secret=str(wx["secret"]),
            api_base=str(wx.get("api_base", cls.api_base)),
            session_ttl=seconds(wx.get("session_ttl", "2h"), [*p, "session_ttl"]),
            push_token=str(wx.get("push_token") or ""),
            timeout=seconds(wx.get("timeout", "5s"), [*p, "timeout"]),
            retries=int(wx.get("retries", 2)),
            use_stable_token=wx.get("access_token", "stable") != "classic",
            token_refresh_margin=seconds(wx.get("token_refresh_margin", "5m"),
                                         [*p, "token_refresh_margin"]),
        )
