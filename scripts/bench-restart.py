#!/usr/bin/env python3
"""Time from `kill -9` of a worker to its shard serving again, over many kills.

Starts `corral run` (release build) with 2 workers, then repeatedly: SIGKILL the worker of
shard 1, and issue SET on a key of shard 1 in a tight loop over one raw RESP connection
until it answers +OK. Reports median, p99 and max in milliseconds.
Usage: scripts/bench-restart.py [kills, default 100]
"""
import os, signal, socket, subprocess, sys, tempfile, time, shutil

from benchlib import BIN, build, free_port, key_on_shard

KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 100

def command(sock, *args):
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    sock.sendall(out)
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    if buf[:1] == b"$":
        n = int(buf[1:buf.index(b"\r\n")])
        while n >= 0 and len(buf) < buf.index(b"\r\n") + 2 + n + 2:
            buf += sock.recv(65536)
    return buf

def shard_pid(sock, shard):
    info = command(sock, b"INFO").decode()
    for line in info.split("\r\n"):
        if line.startswith(f"shard{shard}:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return int(fields["pid"]), fields["state"]
    raise RuntimeError("no shard line")

def main():
    build()
    work = tempfile.mkdtemp(prefix="corral-bench-restart-")
    port = free_port()
    log = open(os.path.join(work, "corral.log"), "w")
    proc = subprocess.Popen([BIN, "run", "--workers", "2", "--data-dir", os.path.join(work, "data"),
                             "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0", "--log-level", "warn",
                             # A benchmark kills far more often than the default crash-loop limit.
                             "--restart-intensity", "1000000", "--restart-backoff-initial", "0s"],
                            stderr=log)
    try:
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", port)); break
            except OSError:
                time.sleep(0.05)
        key = key_on_shard(1, 2, "restart")
        while shard_pid(sock, 1)[1] != "ready":
            time.sleep(0.01)
        samples = []
        for _ in range(KILLS):
            pid, _ = shard_pid(sock, 1)
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:
                reply = command(sock, b"SET", key, b"v")
                if reply.startswith(b"+OK"):
                    # The reply may come from the old worker if it had not died yet.
                    new_pid, state = shard_pid(sock, 1)
                    if new_pid != pid and state == "ready":
                        break
            samples.append((time.perf_counter() - t0) * 1000.0)
            time.sleep(0.02)
        samples.sort()
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
        print(f"kill -9 -> shard serving again, {len(samples)} kills: "
              f"median {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {samples[-1]:.2f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
