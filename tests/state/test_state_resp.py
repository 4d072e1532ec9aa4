"""The small RESP client used for per-request Redis calls, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from wxgated.state.base import StateError
from wxgated.state.resp import ReplyError, RespClient, _Incomplete, encode, parse


def test_encode_and_parse_round_trip_shapes() -> None:
    assert encode(("GET", "k")) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    buf = b"*3\r\n:1\r\n$-1\r\n*2\r\n$2\r\nab\r\n+OK\r\n-NOSCRIPT missing\r\n"
    value, pos = parse(buf, 0)
    assert value == [1, None, [b"ab", "OK"]]
    err, pos = parse(buf, pos)
    assert isinstance(err, ReplyError) and str(err).startswith("NOSCRIPT")
    assert pos == len(buf)
    for cut in range(1, len(b"$5\r\nhello\r\n")):
        with pytest.raises(_Incomplete):
            parse(b"$5\r\nhello\r\n"[:cut], 0)


async def test_calls_in_order_with_db_selection(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/3"
    other = Redis.from_url(url)
    await other.set("resp:k", b"v3")
    client = RespClient(url, timeout=1.0)
    try:
        results = await asyncio.gather(*(client.call("GET", "resp:k") for _ in range(50)),
                                       client.call("GET", "resp:missing"))
        assert results[:50] == [b"v3"] * 50 and results[50] is None
        with pytest.raises(ReplyError):
            await client.call("EVALSHA", "0" * 40, 0)
        assert await client.call("GET", "resp:k") == b"v3"  # still usable after an error
    finally:
        client.close()
        await other.aclose()


async def test_a_silent_server_costs_one_timeout_then_reconnects(redis_url: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(StateError):
        await client.call("GET", "x")
    assert loop.time() - start < 0.6
    server.close()
    client.close()
    real = RespClient(redis_url, timeout=1.0)
    assert await real.call("PING") == "PONG"
    real.close()


async def test_calls_made_together_share_one_write(redis_url: str) -> None:
    client = RespClient(redis_url, timeout=1.0)
    try:
        await client.call("SET", "resp:n", "7")  # connected
        conn = client._conn
        assert conn is not None
        writes: list[bytes] = []
        real_write = conn.transport.write
        conn.transport.write = lambda data: (writes.append(data), real_write(data))[1]
        results = await asyncio.gather(*(client.call("INCR", "resp:n") for _ in range(40)))
        assert results == list(range(8, 48))  # in order, each its own reply
        assert len(writes) == 1 and writes[0].count(b"INCR") == 40
    finally:
        client.close()


async def test_a_caller_that_gives_up_does_not_shift_the_replies(redis_url: str) -> None:
    client = RespClient(redis_url, timeout=2.0)
    try:
        await client.call("SET", "resp:g", "mine")
        slow = asyncio.ensure_future(client.call("BLPOP", "resp:empty-list", "0.3"))
        await asyncio.sleep(0.05)
        slow.cancel()  # its nil reply still comes, and must not be the next call's
        assert await client.call("GET", "resp:g") == b"mine"
        assert await client.call("INCR", "resp:g2") == 1
    finally:
        client.close()


async def test_a_late_reply_fails_the_calls_within_the_timeout(redis_url: str) -> None:
    client = RespClient(redis_url, timeout=0.2)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(StateError, match="did not answer within"):
            await client.call("BLPOP", "resp:empty-list", "1")
        assert 0.2 <= loop.time() - start < 0.9  # BLPOP itself would answer at 1 s
        await client.call("SET", "resp:after", "1")  # a new connection, in sync again
        assert await client.call("GET", "resp:after") == b"1"
    finally:
        client.close()
