"""Where a Gateway's config comes from: a file (the default), or Nacos.

The Gateway compiles and swaps the same way whatever the source; a source only says
what text to compile, under which name issues are reported, and which files to watch.

Nacos: the fetched text is compiled exactly like a file (issues name
`nacos://host:port/DATAID?group=G:LINE:COL`, positions within the fetched text), and
only a version that compiled is written to the local copy, atomically (temp file,
fsync, rename). The local copy is therefore always the last good version: it is what a
start with Nacos unreachable runs on, what SIGHUP and a changed referenced file
recompile, and, with several workers, the file the workers load (the supervisor listens
to Nacos and writes it before it tells them to reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from wxgated.config.errors import ConfigError, Issue
from wxgated.process.nacosconfig import NacosConfigClient, NacosUnavailable, content_md5
from wxgated.process.nacosref import NacosRef
from wxgated.registry import Registry

log = logging.getLogger("wxgated")

RETRY_FIRST = 1.0  # seconds before retrying an unreachable Nacos, doubling...
RETRY_MAX = 30.0  # ...up to this


class SourceUnavailable(Exception):
    """The gateway cannot start: no config from the source and no local copy."""


class ConfigSource(Protocol):
    path: str  # the file workers load (routes.yaml, or Nacos' local copy)
    label: str  # how issues name the source

    async def prepare(self) -> None: ...
    def first_compile(self, registry: Registry) -> Any: ...
    def compile(self, registry: Registry) -> Any: ...
    def watched(self, snapshot: Any) -> list[str]: ...


class FileSource:
    """routes.yaml on disk: re-read on reload, watched with the files it references."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path

    async def prepare(self) -> None:
        """Nothing to fetch: a missing or broken file is reported by the first load."""

    def compile(self, registry: Registry) -> Any:
        from wxgated.compiler.snapshot import load_snapshot

        return load_snapshot(self.path, registry)

    first_compile = compile

    def watched(self, snapshot: Any) -> list[str]:
        return [self.path, *snapshot.files]


class NacosSource:
    def __init__(self, ref: NacosRef, cache_path: str,
                 client: NacosConfigClient | None = None) -> None:
        self.ref = ref
        self.label = ref.label
        self.path = cache_path  # the local copy: the last version that compiled
        self.client = client or NacosConfigClient(ref)
        self.candidate: str | None = None  # fetched, not compiled yet
        self.md5 = ""  # of the text Nacos last gave us (good or not): what we listen with

    async def prepare(self) -> None:
        """Fetch the current version before the first load; when Nacos cannot give one,
        start from the local copy (with a warning), or refuse to start without one."""
        try:
            text = await self.client.fetch()
        except NacosUnavailable as exc:
            self._fallback(f"cannot fetch {self.label} from Nacos ({exc})")
            return
        if text is None:
            self._fallback(f"{self.label} does not exist in Nacos (404)")
            return
        self.md5 = content_md5(text)
        self.candidate = text

    def _fallback(self, why: str) -> None:
        cached = read_text(self.path)
        if cached is None:
            raise SourceUnavailable(f"{why}, and there is no local copy at {self.path}: "
                                    "cannot start without a config")
        self.md5 = content_md5(cached)
        log.warning("%s; starting from the local copy %s (the last good version)",
                    why, self.path)

    def compile(self, registry: Registry) -> Any:
        """The newest fetched version when there is one (written to the local copy once
        it compiled), else the local copy again (SIGHUP, a changed referenced file)."""
        from wxgated.compiler.snapshot import compile_text

        text, self.candidate = self.candidate, None
        if text is None:
            cached = read_text(self.path)
            if cached is None:
                raise ConfigError([Issue(self.path, 1, 1, "the local copy is gone")])
            return compile_text(cached, self.label, registry)
        snap = compile_text(text, self.label, registry)
        try:
            write_atomically(self.path, text)
        except OSError as exc:  # serve it anyway: it is valid; only a restart would miss it
            log.error("cannot write the local copy %s: %s", self.path, exc)
        return snap

    def first_compile(self, registry: Registry) -> Any:
        """The start: a broken version in Nacos falls back to the local copy, when there
        is one (its issues logged); without one it fails the start like a broken file."""
        try:
            return self.compile(registry)
        except ConfigError as exc:
            if read_text(self.path) is None:
                raise
            for issue in exc.issues:
                log.error("config in Nacos rejected: %s", issue)
            log.warning("starting from the local copy %s (the last good version)", self.path)
            return self.compile(registry)

    def watched(self, snapshot: Any) -> list[str]:
        """Only the referenced files: the local copy is ours to write, not to watch."""
        return list(snapshot.files)

    async def listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        """Hold a listener request at all times; on a change fetch the new version and
        hand it to `on_change` (which compiles it). Nacos outages are retried after 1 s,
        doubling to 30 s, while the last good version keeps serving."""
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST
        down = False
        while True:
            started = loop.time()
            try:
                if await self.client.changed(self.md5):
                    text = await self.client.fetch()
                    self._fetched(text)
                    if text is not None:
                        await on_change()
                elif loop.time() - started < RETRY_FIRST:
                    # "no change" without the hold (a proxy in front that does not
                    # keep the request open): never a busy loop against Nacos
                    await asyncio.sleep(RETRY_FIRST)
                if down:
                    log.info("Nacos is reachable again (%s)", self.label)
                down, delay = False, RETRY_FIRST
            except Exception as exc:  # noqa: BLE001 - the listener must outlive any answer
                if not down:
                    log.warning("Nacos config listener: %s; keeping the current config, "
                                "retrying", exc if isinstance(exc, NacosUnavailable)
                                else repr(exc))
                down = True
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    def _fetched(self, text: str | None) -> None:
        if text is None:
            self.md5 = ""
            log.warning("%s was deleted in Nacos; keeping the current config", self.label)
            return
        self.md5 = content_md5(text)
        self.candidate = text


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_atomically(path: str, text: str) -> None:
    """Write `path` so a reader (a worker, a restart after a crash) sees the old content
    or the new, never a mix: a temp file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
