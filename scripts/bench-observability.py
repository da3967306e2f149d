#!/usr/bin/env python3
"""Observability figures under load: `/metrics` scrape time with 16 workers, `/health/ready`
latency (p50/p99), and how fast faults show: kill -9 of a worker (ready goes 503), SIGSTOP
(`/health` warns, then the watchdog replaces the worker), a ring kept full (a stopped worker
under the load: `/health` warns of its queue), a crash loop (parked, 503 with the reason),
SIGTERM (ready goes 503 "draining" while live stays 200). Load: redis-benchmark SET/GET
-P 16 -c 50 running throughout; rings of 2 MiB so that one fills within the watchdog timeout.

Usage: scripts/bench-observability.py [workers, default 16]
Needs redis-tools.
"""
import http.client, json, os, signal, socket, subprocess, sys, tempfile, threading, time, shutil

from benchlib import BIN, build, free_port, key_on_shard, until

WORKERS = int(sys.argv[1]) if len(sys.argv) > 1 else 16
if WORKERS < 5:
    sys.exit("needs at least 5 workers: workers 1 to 4 each take one fault")

def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]

class Http:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path):
        try:
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            return r.status, r.read().decode()
        except (http.client.HTTPException, OSError):
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                return r.status, r.read().decode()
            except (http.client.HTTPException, OSError):
                return 0, "{}"  # not up yet

def worker_pid(h, worker):
    doc = json.loads(h.get("/health")[1])
    return doc.get("checks", {}).get(f"worker:{worker}", [{}])[0].get("pid")

def main():
    build()
    work = tempfile.mkdtemp(prefix="corral-bench-obs-")
    port, hport = free_port(), free_port()
    log = open(os.path.join(work, "corral.log"), "w")
    proc = subprocess.Popen([BIN, "run", "--workers", str(WORKERS), "--data-dir", os.path.join(work, "data"),
                             "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{hport}",
                             "--log-level", "warn", "--watchdog-timeout", "2s",
                             "--ring-bytes", "2MiB", "--max-value-bytes", "256KiB",
                             "--restart-intensity", "3", "--restart-window", "60s", "--park-retry", "3s"],
                            stderr=log)
    load = None
    try:
        h = Http(hport)
        until(lambda: h.get("/health/ready")[0] == 200)
        load = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", "100000000",
                                 "-r", "100000", "-P", "16", "-c", "50", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        scrape = []
        for _ in range(50):
            t = time.perf_counter(); status, body = h.get("/metrics"); scrape.append(time.perf_counter() - t)
            assert status == 200
        print(f"/metrics with {WORKERS} workers under load: {len(body)} bytes, "
              f"p50 {pct(scrape, .5)*1e3:.2f} ms, p99 {pct(scrape, .99)*1e3:.2f} ms")
        ready = []
        for _ in range(1000):
            t = time.perf_counter(); h.get("/health/ready"); ready.append(time.perf_counter() - t)
        print(f"/health/ready under load: p50 {pct(ready, .5)*1e3:.2f} ms, p99 {pct(ready, .99)*1e3:.2f} ms")

        # kill -9: ready goes 503, then 200 again.
        pid = worker_pid(h, 1)
        os.kill(pid, signal.SIGKILL)
        down = until(lambda: h.get("/health/ready")[0] == 503, 5)
        back = until(lambda: h.get("/health/ready")[0] == 200, 10) + down
        print(f"kill -9 of a worker: /health/ready 503 after {down*1e3:.1f} ms, 200 again after {back*1e3:.1f} ms")

        # SIGSTOP: /health warns, then the watchdog replaces the worker.
        time.sleep(0.5)
        pid = worker_pid(h, 2)
        os.kill(pid, signal.SIGSTOP)
        warn = until(lambda: json.loads(h.get("/health")[1])["checks"]["worker:2"][0]["status"] == "warn", 10)
        replaced = until(lambda: worker_pid(h, 2) not in (pid, None), 10) + warn
        print(f"SIGSTOP of a worker: /health warns after {warn*1e3:.0f} ms, replaced after {replaced*1e3:.0f} ms "
              f"(--watchdog-timeout 2s)")

        # A ring kept full: a stopped worker's queue fills with a pipeline of writes to it
        # (the benchmark's clients would soon all wait on the stopped shard instead).
        time.sleep(0.5)
        pid = worker_pid(h, 4)
        os.kill(pid, signal.SIGSTOP)
        key = key_on_shard(4, WORKERS, "full").decode()
        # A connection with writes in flight reads on only while less than 64 KiB waits
        # unrun: 48 connections with 64 KiB of writes each hold more than the ring.
        value = "v" * 1024
        pipeline = "".join(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n"
                           for _ in range(64)).encode()
        writers = [socket.create_connection(("127.0.0.1", port)) for _ in range(48)]
        senders = [threading.Thread(target=w.sendall, args=(pipeline,)) for w in writers]
        for t in senders:
            t.start()
        def queue_full():
            check = json.loads(h.get("/health")[1])["checks"]["worker:4"][0]
            return "queue" in check.get("output", "")
        try:
            full = until(queue_full, 10)
            print(f"ring kept full (worker stopped, pipelined writes): /health warns of its queue after {full*1e3:.0f} ms")
        finally:
            os.kill(pid, signal.SIGCONT)
            for t in senders:
                t.join()
            for w in writers:
                w.close()

        # Crash loop: kill every new worker of shard 3 until it parks.
        def parked():
            status, body = h.get("/health/ready")
            if status == 503 and "shard 3 is parked" in body:
                return True
            p = worker_pid(h, 3)
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return False
        took = until(parked, 20)
        print(f"crash loop (3 crashes): parked and reported by /health/ready after {took*1e3:.0f} ms")
        print(f"/health/live during all of it: {h.get('/health/live')[0]}")

        # SIGTERM: not ready (draining) at once, live until the end.
        proc.send_signal(signal.SIGTERM)
        def draining():
            status, body = h.get("/health/ready")
            return status == 503 and "draining" in body
        drain = until(draining, 10)
        live = h.get("/health/live")[0]
        print(f"SIGTERM: /health/ready 503 (draining) after {drain*1e3:.1f} ms; /health/live then: {live}")
    finally:
        if load:
            load.kill(); load.wait()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
