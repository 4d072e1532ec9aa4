"""Build: the hot modules compiled with Cython where a C compiler exists.

One source: each compiled module is the ordinary `.py` (pure-Python mode); a `.pxd`
beside it gives its classes C fields and its methods C signatures. Without a compiler,
without Cython, or with WXGATED_NO_EXTENSIONS=1 the same modules run interpreted, and a
build that fails to compile falls back to them with a warning rather than failing the
install (aiohttp and yarl do the same).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HOT_MODULES = [
    "wxgated/http/server.py",
    "wxgated/http/serving.py",
    "wxgated/http/body.py",
    "wxgated/http/cycle.py",
    "wxgated/http/deadlines.py",
    "wxgated/http/flowcontrol.py",
    "wxgated/http/framing.py",
    "wxgated/http/headers.py",
    "wxgated/http/writer.py",
    "wxgated/http/message.py",
    "wxgated/http/target.py",
    "wxgated/http/client.py",
    "wxgated/gateway/engine.py",
    "wxgated/gateway/dispatch.py",
    "wxgated/terminals/proxy.py",
    "wxgated/terminals/aggregate.py",
    "wxgated/aggregate/template.py",
    "wxgated/aggregate/select.py",
    "wxgated/gateway/envelope.py",
    "wxgated/upstream/forward.py",
    "wxgated/upstream/targets.py",
    "wxgated/upstream/balancer.py",
    "wxgated/upstream/breaker.py",
    "wxgated/upstream/health.py",
    "wxgated/routing/router.py",
    "wxgated/observe/metrics.py",
    "wxgated/observe/accesslog.py",
    "wxgated/observe/trace.py",
    "wxgated/limits/gcra.py",
    "wxgated/limits/local.py",
    "wxgated/limits/keys.py",
    "wxgated/limits/clientkey.py",
    "wxgated/limits/distributed.py",
    "wxgated/wechat/auth.py",
    "wxgated/wechat/jwt_keys.py",
    "wxgated/wechat/sessions.py",
    "wxgated/state/memory.py",
    "wxgated/state/base.py",
    "wxgated/state/resp.py",
    "wxgated/filters/jwt_auth.py",
    "wxgated/filters/rate_limit.py",
]

DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,  # the .pxd files type; annotations stay documentation
    "binding": False,
    # bounds are checked as in Python: a bad index is an IndexError, never a bad read
}


class LenientBuildExt(build_ext):
    """A failed compile leaves every hot module interpreted, with a warning: all or
    none, as a compiled module expects the classes it cimports compiled too."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: interpreted
            for ext in self.extensions:
                for root in (os.curdir, self.build_lib):
                    built = os.path.join(root, self.get_ext_filename(ext.name))
                    if os.path.exists(built):
                        os.remove(built)
            print(f"wxgated: compiling the hot modules failed ({exc}); "
                  "they will run interpreted", file=sys.stderr)


def extensions() -> list:
    if os.environ.get("WXGATED_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("wxgated: Cython is not installed; the hot modules run interpreted",
              file=sys.stderr)
        return []
    try:
        exts = cythonize(HOT_MODULES, compiler_directives=DIRECTIVES, quiet=True,
                         build_dir="build/cython", nthreads=os.cpu_count() or 1)
    except Exception as exc:  # noqa: BLE001 - a module Cython refuses: all interpreted
        print(f"wxgated: Cython failed ({exc}); the hot modules run interpreted",
              file=sys.stderr)
        return []
    for ext in exts:  # no debug info: it doubles the compile time and the .so size
        ext.extra_compile_args = ["-O3", "-g0"]
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": LenientBuildExt},
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
