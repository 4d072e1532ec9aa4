"""Terminal handlers. Importing this package registers all of them."""

from importlib import import_module

from wxgated.handlers.base import TERMINALS, Terminal, register_terminal

_MODULES: list[str] = ["proxy", "respond", "aggregate", "wechat"]

for _m in _MODULES:
    import_module(f"wxgated.handlers.{_m}")

__all__ = ["TERMINALS", "Terminal", "register_terminal"]
