"""A typical application session with redis-py at its current version and default
settings (then each protocol and parser explicitly): connect, commands, a pipeline, INFO
parsing, a pool health check, asyncio. Exits non-zero with the reason on any mismatch.

Usage: python3 python_session.py PORT
"""
import asyncio
import sys
import time

import redis
import redis.asyncio
from redis import _parsers

PORT = int(sys.argv[1])
# Keys unique to this run: the server may hold an earlier run's.
RUN = time.time_ns()


def session(client, tag):
    k = f"py:{RUN}:{tag}:"
    assert client.ping() is True
    assert client.set(k + "a", "1") is True
    assert client.get(k + "a") == b"1"
    assert client.get(k + "missing") is None
    assert client.set(k + "a", "2", nx=True) is None
    assert client.mget(k + "a", k + "missing") == [b"1", None]
    assert client.incr(k + "n") == 1
    assert client.incrby(k + "n", 5) == 6
    assert client.exists(k + "a", k + "missing") == 1
    assert client.delete(k + "a") == 1
    # A pipeline without MULTI (transactions land with the next issue).
    pipe = client.pipeline(transaction=False)
    pipe.set(k + "p", "v").get(k + "p").incr(k + "c").mget(k + "p", k + "none")
    assert pipe.execute() == [True, b"v", 1, [b"v", None]], tag
    info = client.info()
    for field in ("redis_version", "connected_clients", "uptime_in_seconds"):
        assert field in info, (tag, field, sorted(info))
    assert info["connected_clients"] >= 1
    assert client.dbsize() >= 1
    assert client.client_setname("worker-" + tag) is True
    assert client.client_getname() in (b"worker-" + tag.encode(), "worker-" + tag)
    assert isinstance(client.client_id(), int)
    assert client.echo("hi") == b"hi"


def main():
    # Defaults: the protocol and parser redis-py picks by itself.
    session(redis.Redis(port=PORT), "default")
    for protocol, parsers in ((2, [_parsers._RESP2Parser]), (3, [_parsers._RESP3Parser])):
        for parser in parsers + [_parsers._HiredisParser]:
            tag = f"resp{protocol}-{parser.__name__.strip('_').lower()}"
            pool = redis.ConnectionPool(port=PORT, protocol=protocol, parser_class=parser)
            session(redis.Redis(connection_pool=pool), tag)
    # A pool whose connections are health-checked (PING) after an idle second.
    pooled = redis.Redis(port=PORT, health_check_interval=1)
    session(pooled, "health")
    time.sleep(1.1)
    assert pooled.get(f"py:{RUN}:health:p") == b"v"
    asyncio.run(async_session())
    print(f"redis-py {redis.__version__}: ok")


async def async_session():
    for protocol in (None, 2, 3):
        client = redis.asyncio.Redis(port=PORT, protocol=protocol)
        k = f"py:{RUN}:async{protocol}:"
        assert await client.ping() is True
        assert await client.set(k + "a", "x") is True
        assert await client.get(k + "a") == b"x"
        assert await client.get(k + "missing") is None
        pipe = client.pipeline(transaction=False)
        pipe.incr(k + "n").incr(k + "n")
        assert await pipe.execute() == [1, 2]
        assert "redis_version" in await client.info()
        await client.aclose()


main()
