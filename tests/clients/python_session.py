"""A typical application session with redis-py at its current version and default
settings (then each protocol and parser explicitly): connect, commands, pipelines with and
without MULTI, transaction() with WATCH, INFO parsing, a pool health check, asyncio. Exits non-zero with the reason on any mismatch.

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
    # A pipeline without MULTI.
    pipe = client.pipeline(transaction=False)
    pipe.set(k + "p", "v").get(k + "p").incr(k + "c").mget(k + "p", k + "none")
    assert pipe.execute() == [True, b"v", 1, [b"v", None]], tag
    # The default pipeline: MULTI/EXEC, its keys on any shards.
    pipe = client.pipeline()
    pipe.incr(k + "t1").incr(k + "t2").get(k + "p").set(k + "t3", "x", px=100000)
    assert pipe.execute() == [1, 1, b"v", True], tag
    # An error of one command at EXEC is its reply; the others apply.
    pipe = client.pipeline()
    pipe.incr(k + "t1").incr(k + "p")
    try:
        pipe.execute()
        raise AssertionError("INCR of a string did not fail")
    except redis.ResponseError as e:
        assert "not an integer" in str(e), e
    assert client.get(k + "t1") == b"2"
    # transaction(): WATCH, read, MULTI/EXEC, retried on WatchError.
    calls = []

    def double(p):
        calls.append(1)
        n = int(p.get(k + "t2"))
        if len(calls) == 1:
            # Someone else writes the watched key before EXEC: this try is aborted.
            client.incr(k + "t2")
        p.multi()
        p.set(k + "t2", n * 2)

    assert client.transaction(double, k + "t2") == [True], tag
    assert len(calls) == 2, (tag, calls)
    assert client.get(k + "t2") == b"4", tag
    # A WatchError reaches the application when it asks for one.
    with client.pipeline() as p:
        p.watch(k + "t1")
        client.set(k + "t1", "changed")
        p.multi()
        p.incr(k + "t1")
        try:
            p.execute()
            raise AssertionError("EXEC ran though a watched key changed")
        except redis.WatchError:
            pass
    assert client.get(k + "t1") == b"changed"
    assert client.msetnx({k + "m1": "1", k + "m2": "2"}) is True
    assert client.msetnx({k + "m2": "x", k + "m3": "3"}) is False
    assert client.rename(k + "m1", k + "m4") is True
    assert client.copy(k + "m4", k + "m5") is True
    assert client.mget(k + "m1", k + "m4", k + "m5") == [None, b"1", b"1"]
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
        pipe = client.pipeline()
        pipe.incr(k + "n").get(k + "n")
        assert await pipe.execute() == [3, b"3"]
        assert "redis_version" in await client.info()
        await client.aclose()


main()
