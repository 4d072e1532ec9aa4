"""sd_notify(3) spoken directly over the notification socket.

systemd's protocol is one datagram of newline-separated `KEY=VALUE` lines on the
AF_UNIX socket named by NOTIFY_SOCKET, so a plain socket does the job and we avoid a
dependency on python-systemd (a C extension that is often missing from venvs).

Every call is a no-op without NOTIFY_SOCKET, so the daemon behaves the same when run
from a shell, and a failed send is logged and swallowed: telling systemd about our state
must never be the reason the gateway stops serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger(__name__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _socket_address(raw: str) -> str | bytes:
    """`@name` is Linux's abstract namespace: the kernel wants a leading NUL byte."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, the clock systemd compares RELOADING's timestamp with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Talks to the service manager; silent when there is none.

    `unset_env=True` removes NOTIFY_SOCKET/WATCHDOG_* from the environment after reading
    them (like sd_notify's unset_environment), so worker processes spawned later do not
    inherit them and try to speak for the service (the unit uses NotifyAccess=main).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        env: MutableMapping[str, str] | None = None,
        unset_env: bool = False,
    ) -> None:
        environ = os.environ if env is None else env
        raw = address if address is not None else environ.get("NOTIFY_SOCKET", "")
        self._watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self._watchdog_pid = environ.get("WATCHDOG_PID", "")
        if unset_env:
            for key in _ENV_KEYS:
                environ.pop(key, None)
        self._addr: str | bytes | None = _socket_address(raw) if raw else None
        self._sock: socket.socket | None = None
        if self._addr is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram; True when it was sent. Never blocks, never raises."""
        if self._sock is None or self._addr is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            self._sock.sendto(payload, socket.MSG_DONTWAIT, self._addr)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self._addr, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Listeners are bound and the config is loaded (also ends a RELOADING=1)."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """Start of a reload; systemd uses MONOTONIC_USEC to pair it with the request."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """Free text shown by `systemctl status`."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time for the current start/stop/reload phase."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog_interval(self) -> float | None:
        """Seconds systemd waits between pings before it kills us, or None when unarmed.

        WATCHDOG_PID, when set, names the process the watchdog is meant for; any other
        process (a worker that inherited the environment) must not ping.
        """
        if not self.enabled:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 1_000_000

    def start_watchdog(
        self, healthy: Callable[[], bool] | None = None
    ) -> asyncio.Task[None] | None:
        """Ping from the running loop at half the interval; None when there is no watchdog.

        Pinging from the event loop (not a thread) is deliberate: a wedged loop stops the
        pings and systemd restarts the service, which is what the watchdog is for.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return None
        return asyncio.get_running_loop().create_task(
            watchdog_loop(self, interval, healthy), name="sd-watchdog"
        )

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(
    notifier: Notifier, interval: float, healthy: Callable[[], bool] | None = None
) -> None:
    """Send WATCHDOG=1 every interval/2 while `healthy()` (if given) says so."""
    period = interval / 2
    while True:
        if healthy is None or healthy():
            notifier.watchdog()
        await asyncio.sleep(period)


def _status(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return ("STATUS=" + text.replace("\n", " "),)
