"""Raw HTTP/1.1 on a socket, for what an HTTP library hides: pipelining, exact framing,
answers that must not be there; and the echo upstream's view of the headers it got."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, headers, body


async def raw_exchange(port: int, data: bytes, n: int,
                       timeout: float = 5.0) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """Send `data` in one write; read `n` answers, then whatever follows until the
    server closes or goes quiet (0.3 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            answers = [await read_response(reader) for _ in range(n)]
        try:
            rest = await asyncio.wait_for(reader.read(65536), 0.3)
        except TimeoutError:
            rest = b"(still open)"
        return answers, rest
    finally:
        writer.close()


async def get_json(url: str, **kw: object) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.request(kw.pop("method", "GET"), url, **kw) as r:
        return r.status, r.headers.copy(), await r.json(content_type=None)


def headers_of(doc: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in doc["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def raw_request(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes, read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


def call(url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}
