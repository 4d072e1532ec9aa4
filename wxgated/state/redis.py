"""The shared state backend: Redis or Redis Cluster through redis-py's asyncio client.

Every call is bounded by `timeout` as a whole (connect, send, any retry and the reply),
not just per socket operation: a Redis that accepts connections and never answers must
cost a request at most `timeout`, never a stall. Every failure surfaces as StateError so
callers have one thing to catch and a policy to apply (allow, deny, serve stale).

Keys are `prefix + key`. Callers that need several keys in one Cluster slot put a hash
tag in the key themselves (`"{rl:route:client}"`); the prefix carries no braces, so the
caller's tag is the one Redis Cluster uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from wxgated.state.base import StateError
from wxgated.state.resp import ReplyError, RespClient

T = TypeVar("T")

# Compare-and-delete: only the holder of the lease token may release the lock, so a
# holder whose lease expired (and was taken over) cannot free someone else's lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Script:
    """A Lua script run with EVALSHA, falling back to EVAL when Redis lost it."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_RELEASE_SCRIPT = Script(_RELEASE)


class RedisState:
    name = "redis"

    def __init__(
        self,
        url: str,
        cluster: bool = False,
        timeout: float = 0.2,
        prefix: str = "wxgated:",
        max_connections: int = 64,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the redis key prefix must not contain a hash tag")
        self.url = url
        self.cluster = cluster
        self.timeout = timeout
        self.prefix = prefix
        # One immediate retry heals a pooled connection that died with a Redis restart;
        # the overall timeout still bounds the call.
        common: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 1),
        }
        self.client: Redis | RedisCluster
        if cluster:
            self.client = RedisCluster.from_url(
                url, max_connections=max_connections, **common
            )
        else:
            # A blocking pool queues callers when every connection is busy instead of
            # opening connections without bound against a Redis that has stopped answering.
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout, **common
            )
            self.client = Redis(connection_pool=pool)
        # the per-request calls (rate-limit script, session GET) take a leaner client
        self.fast = (RespClient(url, timeout)
                     if not cluster and url.startswith("redis://") else None)

    def key(self, key: str) -> str:
        return self.prefix + key

    async def run(self, call: Awaitable[T]) -> T:
        """Await a redis-py call within `timeout`, turning every failure into StateError."""
        try:
            # wait_for, not asyncio.timeout: the request engine may run this before its
            # first wait outside any task (wxgated.gateway.engine)
            return await asyncio.wait_for(call, self.timeout)
        except TimeoutError:
            raise StateError(f"redis did not answer within {self.timeout:g}s") from None
        except (RedisError, OSError) as e:
            raise StateError(f"redis: {type(e).__name__}: {e}") from None

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One round trip normally (EVALSHA); EVAL once after a restart or SCRIPT FLUSH."""

        fast = self.fast
        if fast is not None:
            try:
                try:
                    return await fast.call("EVALSHA", script.sha, len(keys), *keys, *args)
                except ReplyError as e:
                    if not str(e).startswith("NOSCRIPT"):
                        raise
                    return await fast.call("EVAL", script.source, len(keys), *keys, *args)
            except ReplyError as e:
                raise StateError(f"redis: {e}") from None

        async def go() -> Any:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self.client.eval(script.source, len(keys), *keys, *args)

        return await self.run(go())

    async def get(self, key: str) -> bytes | None:
        if self.fast is not None:
            try:
                value = await self.fast.call("GET", self.prefix + key)
            except ReplyError as e:
                raise StateError(f"redis: {e}") from None
            return None if value is None else bytes(value)
        # bytes: the client is built without decode_responses (its stubs also allow str)
        value = cast("bytes | None", await self.run(self.client.get(self.prefix + key)))
        return None if value is None else bytes(value)

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        k = self.prefix + key
        if ttl is not None and ttl <= 0:
            await self.run(self.client.delete(k))
            return True
        px = None if ttl is None else max(1, round(ttl * 1000))
        done = await self.run(self.client.set(k, value, px=px, nx=nx))
        return bool(done)

    async def delete(self, key: str) -> bool:
        return bool(await self.run(self.client.delete(self.prefix + key)))

    async def ttl(self, key: str) -> float | None:
        ms = await self.run(self.client.pttl(self.prefix + key))
        return None if ms < 0 else ms / 1000.0

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        k = self.prefix + "lock:" + key
        taken = await self.run(self.client.set(k, token, px=max(1, round(ttl * 1000)), nx=True))
        return token if taken else None

    async def release_lock(self, key: str, token: str) -> None:
        await self.run_script(_RELEASE_SCRIPT, [self.prefix + "lock:" + key], [token])

    async def ping(self) -> None:
        """For readiness checks: raises StateError when Redis is not answering."""
        await self.run(self.client.ping())

    async def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        try:
            if isinstance(self.client, RedisCluster):
                await self.client.aclose()
            else:
                await self.client.aclose(close_connection_pool=True)
        except (RedisError, OSError):
            pass
