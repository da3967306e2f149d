#!/usr/bin/env python3
"""CPU seconds per operation of Corral next to redis-server (and, with BASELINE=path, an
older Corral build), measured side by side in one run. CPU time from /proc is steadier than
throughput on a shared machine: it counts what the server processes spent (the supervisor
with all its threads plus every worker process; redis-server with its threads and
children), whatever else runs next to them.

Each round runs redis-benchmark -t set,get,incr -c 50 -r 100000 at -P 1 and -P 16 (eight
times the requests) against
every server in turn (the order rotates per round, so drift hits all alike); GET runs on
keys SET filled. Prints the median microseconds of CPU per operation per server and test,
and the ratios Corral / Redis and, with a baseline, Corral / baseline.

Both sides log every write with the same durability: Corral --fsync F, redis-server
--appendonly yes --appendfsync F.

Usage: scripts/bench-cpu.py [rounds, default 3] [requests per test, default 200000]
                            [fsync: always|everysec|no, default everysec]
Needs redis-tools and redis-server.
"""
import os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

from benchlib import BIN, build, cpu_seconds, start_server, stop_servers

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
FSYNC = sys.argv[3] if len(sys.argv) > 3 else "everysec"
TESTS = ("SET", "GET", "INCR")






def measure(proc, port, test, pipeline):
    """CPU microseconds per operation of one redis-benchmark test."""
    # Pipelined tests run eight times the requests, so that the clock ticks /proc counts in
    # (10 ms) stay well under 1% of what is measured.
    requests = REQUESTS * (8 if pipeline > 1 else 1)
    before = cpu_seconds(proc.pid)
    subprocess.run(["redis-benchmark", "-p", str(port), "-t", test.lower(), "-r", "100000",
                    "-n", str(requests), "-c", "50", "-P", str(pipeline), "-q"],
                   capture_output=True, check=True)
    return (cpu_seconds(proc.pid) - before) / requests * 1e6


def main():
    build()
    servers = {"corral": BIN, "redis": None}
    if os.environ.get("BASELINE"):
        servers["baseline"] = os.environ["BASELINE"]
    work = tempfile.mkdtemp(prefix="corral-bench-cpu-")
    procs = {}
    try:
        for name, binary in servers.items():
            procs[name] = start_server(name, binary, work, FSYNC)
        names = list(servers)
        results = {(n, t, p): [] for n in names for t in TESTS for p in (1, 16)}
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for pipeline in (1, 16):
                for test in TESTS:
                    for name in order:
                        proc, port = procs[name]
                        results[(name, test, pipeline)].append(measure(proc, port, test, pipeline))
        print(f"CPU µs per operation (median of {ROUNDS} rounds); redis-benchmark -n {REQUESTS} "
              f"-c 50 -r 100000; fsync {FSYNC}; Corral with 2 workers; {os.cpu_count()} CPUs")
        header = f"{'test':6} {'P':>3} " + "".join(f"{n:>10}" for n in names) + f"{'c/redis':>9}"
        if "baseline" in names:
            header += f"{'c/base':>9}"
        print(header)
        for pipeline in (1, 16):
            for test in TESTS:
                med = {n: statistics.median(results[(n, test, pipeline)]) for n in names}
                line = f"{test:6} {pipeline:>3} " + "".join(f"{med[n]:>10.2f}" for n in names)
                line += f"{med['corral'] / med['redis']:>9.2f}"
                if "baseline" in names:
                    line += f"{med['corral'] / med['baseline']:>9.2f}"
                print(line)
    finally:
        stop_servers(procs, work)


if __name__ == "__main__":
    main()
