"""Filters: one module each. Importing this package registers all of them.

Every module here is imported (`base` first, through the import below), so adding a
filter is adding its module: nothing else lists them.
"""

from importlib import import_module
from pkgutil import iter_modules

from wxgated.filters.base import FILTERS, Filter, register

for _m in sorted(m.name for m in iter_modules(__path__)):
    import_module(f"{__name__}.{_m}")

__all__ = ["FILTERS", "Filter", "register"]
