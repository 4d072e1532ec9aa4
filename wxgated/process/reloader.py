"""Watch the config file and the files it references; call back when content changes.

Editors replace files (new inode), deploy tools swap symlinks (Kubernetes ConfigMaps
flip a `..data` link), and a file can be missing for a moment mid-deploy. Watching the
*directories* and comparing content hashes handles all three: any event, or a periodic
tick as a safety net, triggers a re-read, and only a real change in content — with
every file present — triggers a reload. Events are debounced by watchfiles.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

from watchfiles import awatch

Paths = Callable[[], list[str]]


def fingerprint(paths: list[str]) -> tuple[tuple[str, str], ...] | None:
    """Content hashes of `paths`; None while any of them is missing or unreadable."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                out.append((p, hashlib.sha256(f.read()).hexdigest()))
        except OSError:
            return None
    return tuple(out)


async def watch_files(paths: Paths, on_change: Callable[[], Awaitable[object]],
                      debounce_ms: int = 200, tick_ms: int = 2000) -> None:
    last = fingerprint(paths())
    while True:
        current = paths()
        dirs = sorted({os.path.dirname(os.path.abspath(p)) or "." for p in current})
        dirs = [d for d in dirs if os.path.isdir(d)]
        if not current:  # nothing to watch yet (a Nacos config referencing no file)
            await asyncio.sleep(tick_ms / 1000)
            last = fingerprint(paths())
            continue
        names = {os.path.basename(p) for p in current}

        def relevant(change: object, path: str, names: set[str] = names) -> bool:
            # our files, or the `..data`-style links a ConfigMap swap renames
            base = os.path.basename(path)
            return base in names or base.startswith("..")

        async for _ in awatch(*dirs, watch_filter=relevant, debounce=debounce_ms,
                              rust_timeout=tick_ms, yield_on_timeout=True, recursive=False):
            fp = fingerprint(paths())
            if fp is not None and fp != last:
                last = fp
                await on_change()
                last = fingerprint(paths()) or last
            if paths() != current:
                break  # the set of referenced files changed: watch the new directories
