"""wxgated: an API gateway daemon for WeChat mini-program backends."""

__version__ = "0.1.0"
