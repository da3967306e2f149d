#!/usr/bin/env python3
"""Transactions and expiry next to redis-server, measured side by side in one run: MULTI/EXEC
of 10 INCRs whose keys live on one shard and across both shards, SET with EX, and plain
SET/GET/INCR (to see that they did not slow down).

For each test and server: CPU microseconds per operation (the server processes' user plus
system time from /proc: the supervisor with its threads and every worker, redis-server with
its threads; steadier than throughput on a shared machine) and operations per second. A
transaction counts as one operation. The order of the servers rotates per round and the
medians of the rounds are printed, with Corral / Redis ratios, and Corral's cross-shard /
one-shard ratio.

The transaction load: CLIENTS processes, each one connection sending DEPTH transactions
(MULTI, 10 INCR, EXEC, pre-encoded) per round trip and counting the reply lines. The
latency test: one connection, one transaction per round trip. SET EX and SET/GET/INCR run
redis-benchmark -c 50 -r 100000 at -P 1 and -P 16.

Both sides log every write with the same durability: Corral --fsync F, redis-server
--appendonly yes --appendfsync F.

Usage: scripts/bench-transactions.py [rounds, default 3] [transactions per test, default
                                      40000] [fsync: always|everysec|no, default everysec]
Needs redis-tools and redis-server.
"""
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BIN, build, cpu_seconds, key_on_shard, start_server, stop_servers

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
TRANSACTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 40_000
FSYNC = sys.argv[3] if len(sys.argv) > 3 else "everysec"
WORKERS = 2
CLIENTS = 4
DEPTH = 4
# Reply lines of one transaction: +OK, 10 × +QUEUED, *10, 10 × :n.
LINES = 22




def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def transaction(keys):
    return resp("MULTI") + b"".join(resp("INCR", k) for k in keys) + resp("EXEC")


def client(port, payload, count, depth, ready, go):
    """Sends `count` transactions, `depth` per round trip; the reply lines say when all of a
    round trip's replies are in."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    batch = payload * depth
    ready.set()
    go.wait()
    sent = 0
    while sent < count:
        s.sendall(batch)
        want, got = LINES * depth, 0
        while got < want:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise RuntimeError("connection closed")
            if b"-" in chunk and (b"\r\n-" in chunk or chunk.startswith(b"-")):
                raise RuntimeError(f"error reply: {chunk[:200]!r}")
            got += chunk.count(b"\r\n")
        sent += depth
    s.close()


def run_transactions(proc, port, keys, clients, depth, count):
    """CPU µs and wall µs per transaction, `count` in all over `clients` connections."""
    payload = transaction(keys)
    per = count // clients
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(clients)]
    procs = [ctx.Process(target=client, args=(port, payload, per, depth, r, go)) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(30)
    before, t0 = cpu_seconds(proc.pid), time.perf_counter()
    go.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("a client failed")
    wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - before
    done = per * clients
    return cpu / done * 1e6, done / wall


def run_benchmark(proc, port, args, pipeline, requests):
    """CPU µs per operation and operations per second of one redis-benchmark run."""
    before, t0 = cpu_seconds(proc.pid), time.perf_counter()
    subprocess.run(["redis-benchmark", "-p", str(port), "-r", "100000", "-n", str(requests),
                    "-c", "50", "-P", str(pipeline), "-q", *args],
                   capture_output=True, check=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - before
    return cpu / requests * 1e6, requests / wall




def main():
    build()
    one = [key_on_shard(0, WORKERS, f"txn1:{i}") for i in range(10)]
    across = [key_on_shard(i % WORKERS, WORKERS, f"txnx:{i}") for i in range(10)]
    requests = TRANSACTIONS * 5
    tests = {
        "MULTI 10 INCR, one shard": lambda p, port: run_transactions(
            p, port, one, CLIENTS, DEPTH, TRANSACTIONS),
        "MULTI 10 INCR, across shards": lambda p, port: run_transactions(
            p, port, across, CLIENTS, DEPTH, TRANSACTIONS),
        "MULTI 10 INCR, one shard, 1 conn": lambda p, port: run_transactions(
            p, port, one, 1, 1, TRANSACTIONS // 4),
        "MULTI 10 INCR, across, 1 conn": lambda p, port: run_transactions(
            p, port, across, 1, 1, TRANSACTIONS // 4),
    }
    for pipeline in (1, 16):
        n = requests * (4 if pipeline > 1 else 1)
        tests[f"SET EX 100, P{pipeline}"] = (
            lambda p, port, pl=pipeline, n=n: run_benchmark(
                p, port, ["SET", "key:__rand_int__", "xxx", "EX", "100"], pl, n))
        for t in ("set", "get", "incr"):
            tests[f"{t.upper()}, P{pipeline}"] = (
                lambda p, port, t=t, pl=pipeline, n=n: run_benchmark(p, port, ["-t", t], pl, n))
    servers = {"corral": BIN, "redis": None}
    work = tempfile.mkdtemp(prefix="corral-bench-txn-")
    procs = {}
    try:
        for name, binary in servers.items():
            procs[name] = start_server(name, binary, work, FSYNC, WORKERS)
        names = list(servers)
        results = {(n, t): [] for n in names for t in tests}
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for test, fn in tests.items():
                for name in order:
                    proc, port = procs[name]
                    results[(name, test)].append(fn(proc, port))
        print(f"median of {ROUNDS} rounds; {TRANSACTIONS} transactions per test ({CLIENTS} "
              f"connections x {DEPTH} in flight, or 1 x 1), redis-benchmark -c 50 -r 100000 "
              f"-n {requests} (x4 at P16); fsync {FSYNC}; Corral with {WORKERS} workers; "
              f"{os.cpu_count()} CPUs")
        print(f"{'test':34} {'corral µs':>10} {'redis µs':>10} {'cpu c/r':>8} "
              f"{'corral op/s':>12} {'redis op/s':>12} {'op/s c/r':>9}")
        med = {}
        for test in tests:
            for n in names:
                med[(n, test)] = (statistics.median(x[0] for x in results[(n, test)]),
                                  statistics.median(x[1] for x in results[(n, test)]))
            (cc, cr), (rc, rr) = med[("corral", test)], med[("redis", test)]
            print(f"{test:34} {cc:>10.2f} {rc:>10.2f} {cc / rc:>8.2f} {cr:>12.0f} {rr:>12.0f} "
                  f"{cr / rr:>9.2f}")
        for suffix, a, b in (("", "MULTI 10 INCR, across shards", "MULTI 10 INCR, one shard"),
                             (", 1 conn", "MULTI 10 INCR, across, 1 conn",
                              "MULTI 10 INCR, one shard, 1 conn")):
            (ac, ar), (bc, br) = med[("corral", a)], med[("corral", b)]
            print(f"Corral across / one shard{suffix}: CPU {ac / bc:.2f}, "
                  f"latency {br / ar:.2f} (transactions/s {ar:.0f} vs {br:.0f})")
    finally:
        stop_servers(procs, work)


if __name__ == "__main__":
    main()
