"""wxgated: an API gateway daemon for WeChat mini-program backends."""

__version__ = "0.1.0"

from wxgated import build as _build  # noqa: E402 - before any hot module is imported

if _build.wanted_interpreted():
    _build.install_source_only()
