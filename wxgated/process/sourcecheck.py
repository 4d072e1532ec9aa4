"""`wxgated check --config-source URL`: validate what Nacos holds now, as `run` would.

Why it neither falls back to nor writes the local copy: `check` answers "is the version
in Nacos good?", so an unreachable Nacos is an error here, and a check must never
change what a later start runs on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from wxgated.config.errors import ConfigError
from wxgated.process.configsource import NacosSource
from wxgated.process.nacosconfig import NacosUnavailable
from wxgated.registry import Registry


def check_source(source: NacosSource) -> int:
    try:
        text = asyncio.run(source.client.fetch())
    except NacosUnavailable as exc:
        print(f"wxgated: cannot fetch {source.label}: {exc}", file=sys.stderr)
        return 1
    if text is None:
        print(f"wxgated: {source.label} does not exist in Nacos (404)", file=sys.stderr)
        return 1
    try:
        snap = asyncio.run(_compiled(text, source.label))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    for issue in snap.warnings:
        print(f"warning: {issue}", file=sys.stderr)
    print(f"{source.label}: ok")
    return 0


async def _compiled(text: str, label: str) -> Any:
    from wxgated.compiler.snapshot import compile_text

    registry = Registry()
    try:
        return compile_text(text, label, registry)
    finally:
        registry.commit()
        await registry.aclose_all()
