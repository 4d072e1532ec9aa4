"""Config checks for several mini programs (`wechat.apps`) that span the file: one form
or the other, each appid configured once, `app_by_host` naming real apps.

A `wechat:` route's `app:` and a `jwt_auth` `apps:` list are checked where they are
compiled (an unknown name is reported at its value there).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from wxgated.config.errors import Issue
from wxgated.config.loader import Document


def wechat_apps(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    wx = data.get("wechat")
    if not isinstance(wx, dict):
        return
    apps = wx.get("apps")
    if apps is None:
        missing = [k for k in ("appid", "secret") if not wx.get(k)]
        if missing:
            yield doc.issue_at(("wechat",), f"wechat needs {' and '.join(missing)} (one mini "
                               "program) or apps (several, by name)", at_key=True)
        return
    for key in ("appid", "secret", "push_token", "push_aes_key"):
        if key in wx:
            yield doc.issue_at(("wechat", key), f"wechat.{key} cannot sit beside wechat.apps: "
                               "set it on each app", at_key=True)
    yield from _duplicate_appids(doc, apps)
    for host, name in (wx.get("app_by_host") or {}).items():
        if name not in apps:
            yield doc.issue_at(("wechat", "app_by_host", host),
                               f'app_by_host: unknown app "{name}" (defined in wechat.apps: '
                               f'{", ".join(apps)})')


def _duplicate_appids(doc: Document, apps: dict[str, Any]) -> Iterator[Issue]:
    """Sessions, tokens and locks are keyed by appid: two names for one appid would
    share them while looking separate."""
    first: dict[str, str] = {}
    for name, app in apps.items():
        appid = app.get("appid") if isinstance(app, dict) else None
        if not isinstance(appid, str):
            continue
        if appid in first:
            line = doc.mark(("wechat", "apps", first[appid], "appid"))[0]
            yield doc.issue_at(("wechat", "apps", name, "appid"),
                               f'app "{name}": appid {appid} is already app "{first[appid]}" '
                               f"(line {line}); each mini program is configured once")
        else:
            first[appid] = name
