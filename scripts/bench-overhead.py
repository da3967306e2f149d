#!/usr/bin/env python3
"""What observability costs in throughput: Corral with its metrics and logging on versus
off, measured side by side in one run (rounds alternate, so drift of a noisy machine hits
both alike).

- on:  --command-metrics on --log-level info, and a scraper fetching /metrics and /health
       every second (ten times as often as a usual Prometheus scrape interval);
- off: --command-metrics off --log-level error, nobody scraping.

What cannot be switched off is measured in both: the workers' counters and apply-time
histogram in shared memory (a few plain stores per write) and the lifecycle log lines.

Load: redis-benchmark -t set,get,incr -c 50 at -P 1 and -P 16 (eight times the requests, so
that scrapes happen during it too), with random keys.
Prints the median requests/s of each side per test and the ratio on/off.

Usage: scripts/bench-overhead.py [rounds, default 5] [requests per test, default 200000]
Needs redis-tools.
"""
import http.client, os, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time, shutil

from benchlib import BIN, build, free_port, ping

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
SIDES = {
    "on": ["--command-metrics", "on", "--log-level", "info"],
    "off": ["--command-metrics", "off", "--log-level", "error"],
}

def scraper(port, stop, counts):
    while True:
        for path in ("/metrics", "/health"):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", path)
                c.getresponse().read()
                c.close()
                counts[path] = counts.get(path, 0) + 1
            except (OSError, http.client.HTTPException):
                pass
        if stop.wait(1.0):
            return

def run_side(side, pipeline, work):
    port, hport = free_port(), free_port()
    data = tempfile.mkdtemp(dir=work)
    log = open(os.path.join(work, f"{side}.log"), "a")
    proc = subprocess.Popen([BIN, "run", "--workers", "2", "--data-dir", data,
                             "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{hport}",
                             *SIDES[side]], stderr=log)
    stop, counts = threading.Event(), {}
    thread = None
    try:
        t0 = time.time()
        while not ping(port):
            if time.time() - t0 > 20 or proc.poll() is not None:
                raise RuntimeError(f"corral did not start; see {log.name}")
            time.sleep(0.05)
        if side == "on":
            thread = threading.Thread(target=scraper, args=(hport, stop, counts))
            thread.start()
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get,incr", "-r", "100000",
                              "-n", str(REQUESTS * (8 if pipeline > 1 else 1)), "-c", "50", "-P", str(pipeline), "-q"],
                             capture_output=True, text=True, check=True).stdout
        rps = {}
        for line in out.replace("\r", "\n").splitlines():
            m = re.match(r"^([A-Z]+): ([0-9.]+) requests per second", line)
            if m:
                rps[m.group(1)] = float(m.group(2))
        return rps, counts
    finally:
        stop.set()
        if thread:
            thread.join()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait()
        shutil.rmtree(data, ignore_errors=True)

def main():
    build()
    work = tempfile.mkdtemp(prefix="corral-bench-overhead-")
    try:
        print(f"{ROUNDS} rounds, redis-benchmark -n {REQUESTS} -c 50 -r 100000, 2 workers, {os.cpu_count()} CPUs")
        print(f"{'test':6} {'P':>3} {'on (median)':>14} {'off (median)':>14} {'on/off':>8}  on/off per round")
        for pipeline in (1, 16):
            results = {"on": [], "off": []}
            scrapes = 0
            for r in range(ROUNDS):
                # Alternate which side goes first.
                for side in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    rps, counts = run_side(side, pipeline, work)
                    results[side].append(rps)
                    scrapes += counts.get("/metrics", 0)
            for test in ("SET", "GET", "INCR"):
                on = [x[test] for x in results["on"]]
                off = [x[test] for x in results["off"]]
                rounds = " ".join(f"{a / b:.2f}" for a, b in zip(on, off))
                print(f"{test:6} {pipeline:>3} {statistics.median(on):>14.0f} {statistics.median(off):>14.0f} "
                      f"{statistics.median(on) / statistics.median(off):>8.3f}  {rounds}")
            print(f"       (P{pipeline}: {scrapes} scrapes of /metrics during the 'on' runs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
