"""The raw upstream (`Raw`) and raw client of the HTTP edge tests (tests/http/edges/): wire
shapes aiohttp won't produce, scripted by the request path: bodies ended by the close or a
reset, trailers, `Transfer-Encoding: identity`, huge heads, early answers."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from tests.support.gateway import GatewayProcess
from tests.support.rawhttp import read_response
from tests.support.servers import LoopThread

READ_TIMEOUT = 0.3  # the raw upstream's read timeout
HEADER_TIMEOUT = 1.0  # the gateway's header timeout
BLOCK = bytes(range(256)) * 1024  # 256 KiB
DOWNLOAD = 64  # blocks: 16 MiB, more than the socket buffers and the gateway's queue
JWT_SECRET = "edge-tests-secret-of-at-least-32-bytes!"


class Raw:
    """A raw HTTP/1.1 upstream: `do_<first path segment>` answers each request."""

    def __init__(self, lt: LoopThread) -> None:
        self.heads: list[bytes] = []
        self.connections = 0
        self.server = lt.run(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                name = head.split(b" ", 2)[1].split(b"?")[0].strip(b"/").split(b"/")[0]
                if not await getattr(self, "do_" + name.decode())(reader, writer, head, conn):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return await reader.readexactly(int(line.split(b":")[1]))
        return b""

    @staticmethod
    def reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def do_echo(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        body = await self.read_body(reader, head)
        doc = json.dumps({"conn": conn, "len": len(body),
                          "head": head.decode("latin-1").lower().split("\r\n")}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % len(doc) + doc)
        await writer.drain()
        return True

    async def do_closing(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """`Connection: close`, then the socket stays open a while (a lingering close)."""
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%d"
                     % (len(str(conn)), conn))
        await writer.drain()
        await asyncio.sleep(1.0)
        return False

    async def do_eof(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """No length: the close ends the body."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        return False

    async def do_identity(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """RFC 9112 §6.3 (4): a response whose Transfer-Encoding does not end in chunked
        is delimited by the close."""
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\nhello identity")
        await writer.drain()
        return False

    async def do_eofreset(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """No length, part of the body, then a reset: the body is cut short."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.1)
        self.reset(writer)
        return False

    async def do_eofstall(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """No length, part of the body, then silence past the read timeout."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(READ_TIMEOUT * 5)
        return False

    async def do_midhead(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-")
        await writer.drain()
        return False

    async def do_bighead(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """An answer head of `?kb=` KiB (1 KiB fields), whole in one write or (`&drip=1`)
        a field a write."""
        target = head.split(b" ", 2)[1].decode()
        kb = int(target.split("kb=")[1].split("&")[0])
        fields = [b"x-f%d: %s\r\n" % (i, b"v" * 1010) for i in range(kb)]
        parts = [b"HTTP/1.1 200 OK\r\n", *fields, b"content-length: 2\r\n\r\nok"]
        if "drip=1" not in target:
            parts = [b"".join(parts)]
        for part in parts:
            writer.write(part)
            await writer.drain()
        return True

    async def do_trailer(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n"
                     b"\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
        await writer.drain()
        return True

    async def do_badchunk(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """A head and a malformed chunk in one write: broken before any of it is sent."""
        if b"content-length" in head.lower():
            await self.read_body(reader, head)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello")
        await writer.drain()
        return False

    async def do_download(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(BLOCK) * DOWNLOAD))
        for _ in range(DOWNLOAD):
            writer.write(BLOCK)
            await writer.drain()
        return True

    async def do_early(self, reader: Any, writer: Any, head: bytes, conn: int) -> bool:
        """Refuses an upload at once and closes, without reading the body (Go's net/http
        does this for a large unread body)."""
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\n"
                     b"content-length: 8\r\n\r\ntoo big!")
        await writer.drain()
        writer.transport.write_eof()
        await asyncio.sleep(0.5)
        return False


class Conn:
    """One client connection to the gateway."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, gw: GatewayProcess) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", gw.port, limit=4 << 20))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(timeout):
            return await read_response(self.reader)

    async def head(self, timeout: float = 3.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def rest(self, timeout: float = 3.0) -> bytes:
        """Everything until the gateway closes."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


def req(method: str, path: str, *headers: str, body: bytes = b"",
        version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", *headers, "", ""]
    return "\r\n".join(lines).encode() + body


async def one(gw: GatewayProcess, data: bytes,
              timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
    c = await Conn.open(gw)
    try:
        await c.send(data)
        return await c.answer(timeout)
    finally:
        c.close()


def chunked_body(raw_bytes: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; and whether it ended with the last chunk."""
    out = []
    while raw_bytes:
        line, sep, raw_bytes = raw_bytes.partition(b"\r\n")
        if not sep:
            return b"".join(out), False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out), raw_bytes.startswith(b"\r\n")
        if len(raw_bytes) < size + 2:
            return b"".join(out) + raw_bytes[:size], False
        out.append(raw_bytes[:size])
        raw_bytes = raw_bytes[size + 2:]
    return b"".join(out), False
