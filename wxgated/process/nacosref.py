"""`--config-source nacos://HOST:PORT?dataId=…&group=…&namespace=…`: which Nacos config
the gateway runs on, and where its local copy lives.

Why credentials never come from the URL: the URL is on the command line, and a command
line is readable by every user of the machine (`ps`, /proc/PID/cmdline) and ends up in
unit files and shell histories. The login comes from the environment instead
(WXGATED_NACOS_USERNAME / WXGATED_NACOS_PASSWORD), and a URL with `user:pass@` is
refused outright rather than half-used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

USERNAME_ENV = "WXGATED_NACOS_USERNAME"
PASSWORD_ENV = "WXGATED_NACOS_PASSWORD"
DEFAULT_GROUP = "DEFAULT_GROUP"
SCHEMES = {"nacos": "http", "nacos+https": "https"}
# what Nacos itself accepts in a dataId and a group (ParamUtils.isValid)
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_KNOWN = ("dataId", "group", "namespace")


class SourceURLError(ValueError):
    """A `--config-source` that cannot be used; the message says why."""


@dataclass(frozen=True)
class NacosRef:
    server: str  # http(s)://host:port, the Open API's base
    data_id: str
    group: str
    namespace: str  # the namespace id (`tenant`); "" is the public namespace
    username: str | None = None
    password: str | None = None

    @property
    def label(self) -> str:
        """How config issues name this source: `nacos://host:port/DATAID?group=G`
        (and `&namespace=NS`), then `:LINE:COL` within the fetched text."""
        host = urlsplit(self.server).netloc
        scheme = "nacos+https" if self.server.startswith("https:") else "nacos"
        ns = f"&namespace={self.namespace}" if self.namespace else ""
        return f"{scheme}://{host}/{self.data_id}?group={self.group}{ns}"

    def default_cache(self, env: Mapping[str, str] | None = None) -> str:
        """`$STATE_DIRECTORY` (set by systemd's StateDirectory=) or the working directory,
        then `nacos-config/NAMESPACE/GROUP/DATAID` (namespace `public` when unset)."""
        env = os.environ if env is None else env
        base = (env.get("STATE_DIRECTORY") or "").split(":")[0] or os.getcwd()
        return os.path.join(base, "nacos-config", self.namespace or "public", self.group,
                            self.data_id)


def parse_source(url: str, env: Mapping[str, str] | None = None) -> NacosRef:
    """The NacosRef named by `url`; raises SourceURLError with a message for the user."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise SourceURLError(f"{_shown(url)}: a config source is nacos://HOST:PORT?dataId=…"
                             " (or nacos+https://)")
    if parts.username is not None or parts.password is not None:
        raise SourceURLError(f"{_shown(url)}: no credentials in the URL (a command line is "
                             f"readable by every local user); set {USERNAME_ENV} and "
                             f"{PASSWORD_ENV} instead")
    if not parts.hostname:
        raise SourceURLError(f"{_shown(url)}: no Nacos host")
    try:
        port = parts.port or 8848
    except ValueError:
        raise SourceURLError(f"{_shown(url)}: the port is not a number 1-65535") from None
    if parts.path not in ("", "/"):
        raise SourceURLError(f"{_shown(url)}: name the config with ?dataId=, not a path")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - set(_KNOWN))
    if unknown:
        raise SourceURLError(f"{_shown(url)}: unknown parameter {unknown[0]!r} (known: "
                             + ", ".join(_KNOWN) + ")")
    data_id, group = query.get("dataId", ""), query.get("group") or DEFAULT_GROUP
    for name, value in (("dataId", data_id), ("group", group)):
        if not _NAME.match(value):
            raise SourceURLError(f"{_shown(url)}: {name} must be letters, digits and . : _ -"
                                 + (" (it is required)" if not value else ""))
    namespace = query.get("namespace", "")
    if namespace and not _NAME.match(namespace):
        raise SourceURLError(f"{_shown(url)}: namespace must be an id of letters, digits "
                             "and . : _ -")
    username, password = env.get(USERNAME_ENV) or None, env.get(PASSWORD_ENV) or None
    if (username is None) != (password is None):
        raise SourceURLError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return NacosRef(f"{SCHEMES[parts.scheme]}://{host}:{port}", data_id, group, namespace,
                    username, password)


def _shown(url: str) -> str:
    """`url` for an error message, with any password in it masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1).replace(
        f":{quote(parts.password)}@", ":***@", 1)
