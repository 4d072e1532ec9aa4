"""Terminal handlers. Importing this package registers all of them.

Every module here is imported, so adding a terminal is adding its module (which calls
`register_terminal`): nothing else lists them.
"""

from importlib import import_module
from pkgutil import iter_modules

from wxgated.terminals.base import TERMINALS, Terminal, register_terminal

for _m in sorted(m.name for m in iter_modules(__path__)):
    import_module(f"{__name__}.{_m}")

__all__ = ["TERMINALS", "Terminal", "register_terminal"]
