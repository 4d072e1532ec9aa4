"""The command line: run, check, routes, schema, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from wxgated import __version__
from wxgated.config.errors import ConfigError


def default_config() -> str:
    return os.environ.get("WXGATED_CONFIG", "routes.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wxgated", description=__doc__)
    parser.add_argument("--version", action="version", version=f"wxgated {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, help_text in (("run", "run the gateway in the foreground"),
                            ("check", "validate a config file and exit"),
                            ("routes", "print the compiled route table")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", default=None,
                       help="config file (default: $WXGATED_CONFIG or ./routes.yaml)")
        if name != "routes":
            p.add_argument("--config-source", default=None, metavar="URL",
                           help="load the config from Nacos instead of a file: "
                                "nacos://HOST:PORT?dataId=ID&group=G&namespace=NS "
                                "(login from $WXGATED_NACOS_USERNAME/_PASSWORD)")
            p.add_argument("--config-cache", default=None, metavar="PATH",
                           help="the local copy of the last good config from the source "
                                "(default: $STATE_DIRECTORY or the working directory, "
                                "then nacos-config/NAMESPACE/GROUP/DATAID)")
    sub.add_parser("schema", help="print the config's JSON Schema")
    demo = sub.add_parser("demo", help="run the gateway with a WeChat sandbox and sample "
                                       "backends on 127.0.0.1, and print what to try")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--admin-port", type=int, default=9090,
                      help="admin port: /metrics, status page (default 9090)")
    args = parser.parse_args(argv)
    if args.cmd == "schema":
        from wxgated.compiler.schema import build_schema

        print(json.dumps(build_schema(), indent=2, ensure_ascii=False))
        return 0
    if args.cmd == "demo":
        from wxgated.demo import cmd_demo

        return cmd_demo(args.port, args.admin_port)
    path = args.config or default_config()
    if getattr(args, "config_source", None):
        return _with_source(args)
    if args.cmd == "check":
        return cmd_check(path)
    if args.cmd == "routes":
        return cmd_routes(path)
    from wxgated.process.run import run

    return run(path)


def _with_source(args: argparse.Namespace) -> int:
    """`run`/`check` with `--config-source`: the config comes from Nacos."""
    from wxgated.process.configsource import NacosSource
    from wxgated.process.nacosref import SourceURLError, parse_source

    if args.config:
        print("wxgated: give -c or --config-source, not both", file=sys.stderr)
        return 2
    try:
        ref = parse_source(args.config_source)
    except SourceURLError as exc:
        print(f"wxgated: --config-source {exc}", file=sys.stderr)
        return 2
    source = NacosSource(ref, args.config_cache or ref.default_cache())
    if args.cmd == "check":
        from wxgated.process.sourcecheck import check_source

        return check_source(source)
    from wxgated.process.run import run

    return run(source)


def report(exc: ConfigError) -> None:
    for issue in exc.issues:
        print(issue, file=sys.stderr)


def compile_only(path: str) -> Any:
    """Validate and compile `path` as `run` would, without binding anything."""
    from wxgated.compiler.snapshot import load_snapshot
    from wxgated.registry import Registry

    async def compiled() -> Any:
        registry = Registry()
        try:
            return load_snapshot(path, registry)
        finally:
            registry.commit()
            await registry.aclose_all()

    return asyncio.run(compiled())


def cmd_check(path: str) -> int:
    try:
        snap = compile_only(path)
    except ConfigError as exc:
        report(exc)
        return 1
    for issue in snap.warnings:  # allowed, so the exit status stays 0
        print(f"warning: {issue}", file=sys.stderr)
    print(f"{path}: ok")
    return 0


def cmd_routes(path: str) -> int:
    from wxgated.admin import route_info

    try:
        snap = compile_only(path)
    except ConfigError as exc:
        report(exc)
        return 1
    rows = [route_info(r) for r in snap.routes]
    widths = [max([len(k)] + [len(_cell(r[k])) for r in rows]) for k in
              ("name", "methods", "host", "path", "filters", "terminal")]
    cols = ("name", "methods", "host", "path", "filters", "terminal")
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_cell(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    return 0


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(v) or "-"
    return "*" if v is None else str(v)
