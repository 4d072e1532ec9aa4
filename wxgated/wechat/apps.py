"""Several mini programs behind one gateway: each configured app's own client, sessions
and access-token keeper, and how a route or a token finds its app (docs/CONFIG.md,
`wechat.apps`).

Everything an app owns in the state backend is keyed by its appid (sessions
`wx:sess:{appid}:…`, tokens and locks `wx:token…:{appid}`, push nonces), so two apps
never share a session, a token or a lock even when they share Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.wechat.client import WeChatClient
from wxgated.wechat.sessions import SessionStore
from wxgated.wechat.settings import WeChatSettings
from wxgated.wechat.token_keeper import TokenKeeper


@dataclass(frozen=True)
class App:
    """One configured mini program and the process-wide objects that act for it."""

    settings: WeChatSettings
    client: WeChatClient
    sessions: SessionStore
    tokens: TokenKeeper

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def appid(self) -> str:
        return self.settings.appid


@dataclass(frozen=True)
class Apps:
    """The configured apps by name (config order) and the Host → app rule."""

    by_name: dict[str, App]
    by_host: dict[str, str]  # lower-cased host (no port) -> app name

    async def close(self) -> None:
        """Every app's HTTP session (the registry closes the services bundle)."""
        for app in self.by_name.values():
            await app.client.close()

    def sessions_by_appid(self) -> dict[str, SessionStore]:
        return {a.appid: a.sessions for a in self.by_name.values()}

    def appids(self, names: list[str], path: tuple[str | int, ...]) -> frozenset[str]:
        """The appids of these app names (a `jwt_auth: {apps: [...]}`); unknown → error."""
        out = set()
        for i, name in enumerate(names):
            out.add(self.named(name, (*path, i)).appid)
        return frozenset(out)

    def named(self, name: str, path: tuple[str | int, ...]) -> App:
        app = self.by_name.get(name)
        if app is None:
            raise SemanticError(f"unknown app {name!r} (defined in wechat.apps: "
                                f"{', '.join(self.by_name)})", path)
        return app

    def for_route(self, name: str | None, route: str) -> App | None:
        """The app a `wechat:` route acts for: the one it names, the only one, or None
        when several are configured and the request's Host picks (`app_by_host`)."""
        if name is not None:
            return self.named(name, ("app",))
        if len(self.by_name) == 1:
            return next(iter(self.by_name.values()))
        if self.by_host:
            return None
        raise SemanticError(f"route {route!r} must name its app (app: NAME): wechat.apps "
                            f"has several ({', '.join(self.by_name)}) and no app_by_host", ())


def host_of(value: bytes | None) -> str:
    """The Host header as app_by_host keys are written: lower case, without the port."""
    if not value:
        return ""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):  # [v6]:port
        return text.split("]", 1)[0] + "]"
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def apps_of(services: dict[str, Any]) -> Apps | None:
    found = services.get("wechat_apps")
    return found if isinstance(found, Apps) else None


def app_rules(services: dict[str, Any], names: list[str] | None
              ) -> tuple[dict[str, SessionStore] | None, frozenset[str] | None]:
    """(session store by appid, allowed appids) for an Authenticator of `jwt_auth`."""
    apps = apps_of(services)
    if apps is None:
        if names:
            raise SemanticError("apps needs a wechat: section", ("apps",))
        return None, None
    allowed = apps.appids(names, ("apps",)) if names else None
    return apps.sessions_by_appid(), allowed


def by_host(handlers: dict[str, Handler]) -> Handler:
    """A route whose app comes from the request's Host (`wechat.app_by_host`); a host
    that maps to no app is a 404: guessing would act for the wrong mini program."""

    async def pick(req: Request) -> Response:
        handler = handlers.get(host_of(req.header(b"host")))
        if handler is None:
            raise HTTPError(404, "no mini program is configured for this host")
        return await handler(req)

    return pick
