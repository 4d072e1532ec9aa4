"""WeChat errcodes that mean "the gateway is misconfigured", said once a minute in plain words.

A wrong AppSecret or a server IP missing from the mini program's whitelist fails every
login until an operator fixes it; the client only sees a 502. So these errcodes get a
log line naming the errcode and the setting to fix, at most once per minute per errcode
(a login storm must not flood the log). They are counted like every other answer in
`wxgated_wechat_api_requests_total{api, errcode}` (docs/OPERATIONS.md has the alert).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("wxgated.wechat.config")

LOG_INTERVAL = 60.0  # seconds between two log lines for the same errcode

# errcode -> what it means and what to fix; valid from any API.
_ANY_API = {
    40013: "WeChat rejected the AppID (40013): check wechat.appid",
    40125: "WeChat rejected the AppSecret (40125): check wechat.secret",
    40164: ("WeChat refused this server's IP address (40164): add it to the mini "
            "program's IP whitelist (mp.weixin.qq.com, Development settings)"),
    41002: "WeChat got no appid (41002): check wechat.appid",
}
# errcode -> meaning, only when it answers an access_token fetch (elsewhere 40001/40014
# mean a stale token, which the token keeper handles).
_TOKEN_APIS = frozenset({"token", "stable_token"})
_ON_TOKEN_FETCH = {
    40001: ("WeChat refused to hand out an access_token (40001): check wechat.secret "
            "and wechat.appid"),
    40014: ("WeChat refused to hand out an access_token (40014): check wechat.secret "
            "and wechat.appid"),
}

_last: dict[tuple[str, int], float] = {}


def config_problem(api: str, errcode: int) -> str | None:
    """The operator-facing explanation when `errcode` from `api` is a configuration error."""
    if errcode in _ANY_API:
        return _ANY_API[errcode]
    if api in _TOKEN_APIS:
        return _ON_TOKEN_FETCH.get(errcode)
    return None


def report(api: str, errcode: int, now: float | None = None, app: str = "default") -> bool:
    """Log a configuration errcode (rate-limited per app and errcode); True when a line
    was written. `app` names which of several mini programs' settings to fix."""
    problem = config_problem(api, errcode)
    if problem is None:
        return False
    t = time.monotonic() if now is None else now
    last = _last.get((app, errcode))
    if last is not None and t - last < LOG_INTERVAL:
        return False
    _last[(app, errcode)] = t
    where = "" if app == "default" else f", app {app}: its wechat.apps.{app} settings"
    log.error("configuration error: %s (api %s%s; repeats are logged at most once a minute)",
              problem, api, where)
    return True
