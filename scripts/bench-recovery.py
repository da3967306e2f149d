#!/usr/bin/env python3
"""Recovery time with about 1M keys and 3M logged writes after the last checkpoint, next
to redis-server reloading the same writes from its AOF.

1. Corral (release build, 2 workers, checkpoints effectively off so that every write is
   after the last checkpoint): load WRITES random SETs over KEYS keys with redis-benchmark.
   - worker recovery: kill -9 the worker of shard 1; time until INFO shows shard 1 ready
     again (new pid), i.e. its replay is applied;
   - supervisor recovery: kill -9 the supervisor (its workers die with it), start it again
     on the same data dir; time from exec until every shard is ready.
2. redis-server (appendonly yes, appendfsync everysec, no AOF rewrite): the same load, then
   kill -9 and restart on the same dir; time from exec until PING answers PONG (not LOADING).

Usage: scripts/bench-recovery.py [writes, default 3000000] [keys, default 1000000]
Needs redis-tools and redis-server. Prints the figures and the ratio.
"""
import json, os, signal, subprocess, sys, tempfile, time, shutil

from benchlib import BIN, build, free_port, until

WRITES = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000_000
KEYS = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000

def cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None

def shards(port):
    info = cli(port, "INFO")
    if not info:
        return None
    out = []
    for line in info.splitlines():
        if line.startswith("shard"):
            out.append(dict(kv.split("=") for kv in line.split(":", 1)[1].split(",")))
    return out

def load(port):
    subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(WRITES),
                    "-r", str(KEYS), "-P", "64", "-c", "16", "-q"],
                   check=True, stdout=subprocess.DEVNULL)

def wait(cond):
    """A recovery may take minutes."""
    return until(cond, 600.0, 0.002)

def start_corral(data, port, log):
    return subprocess.Popen([BIN, "run", "--workers", "2", "--data-dir", data,
                             "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0", "--fsync", "everysec",
                             "--checkpoint-writes", "1000000000", "--checkpoint-interval", "10h",
                             "--checkpoint-log-bytes", "1000GiB", "--wal-max-bytes", "1000GiB"],
                            stderr=log)

def corral():
    work = tempfile.mkdtemp(prefix="corral-bench-recovery-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "corral.log"), "w")
    port = free_port()
    proc = start_corral(data, port, log)
    try:
        wait(lambda: (s := shards(port)) is not None and all(x["state"] == "ready" for x in s))
        t = time.perf_counter(); load(port); took = time.perf_counter() - t
        before = shards(port)
        keys = sum(int(s["keys"]) for s in before)
        wal = sum(os.path.getsize(os.path.join(data, "wal", f)) for f in os.listdir(os.path.join(data, "wal")))
        print(f"corral: loaded {WRITES} writes in {took:.1f} s; {keys} keys; event log {wal / 2**20:.0f} MiB")

        old = int(before[1]["pid"])
        os.kill(old, signal.SIGKILL)
        t0 = time.perf_counter()
        wait(lambda: (s := shards(port)) is not None and int(s[1]["pid"]) != old and s[1]["state"] == "ready")
        worker_s = time.perf_counter() - t0
        after = shards(port)
        assert after[1]["digest"] == before[1]["digest"], "worker state differs after recovery"
        print(f"corral: worker kill -9 -> shard {1} ready ({after[1]['keys']} keys): {worker_s:.3f} s")

        proc.kill(); proc.wait()
        time.sleep(0.2)
        t0 = time.perf_counter()
        proc = start_corral(data, port, log)
        wait(lambda: (s := shards(port)) is not None and all(x["state"] == "ready" for x in s))
        supervisor_s = time.perf_counter() - t0
        again = shards(port)
        assert [s["digest"] for s in again] == [s["digest"] for s in before], "state differs after restart"
        print(f"corral: supervisor kill -9 -> restart -> all shards ready: {supervisor_s:.3f} s")
        log.flush()
        for line in open(os.path.join(work, "corral.log")):
            if '"replay done"' in line or '"event log open"' in line:
                j = json.loads(line)
                if j.get("process_pid") == proc.pid:
                    fields = {k: j[k] for k in ("worker", "records", "duration_ms", "next_seq") if k in j}
                    print(f"  {j['msg']}: {fields}")
        return worker_s, supervisor_s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)

def redis():
    work = tempfile.mkdtemp(prefix="corral-bench-recovery-redis-")
    port = free_port()
    args = ["redis-server", "--port", str(port), "--dir", work, "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--auto-aof-rewrite-percentage", "0", "--daemonize", "no", "--logfile", os.path.join(work, "redis.log")]
    proc = subprocess.Popen(args)
    try:
        wait(lambda: cli(port, "PING") == "PONG")
        t = time.perf_counter(); load(port); took = time.perf_counter() - t
        keys = cli(port, "DBSIZE")
        print(f"redis-server: loaded {WRITES} writes in {took:.1f} s; {keys} keys")
        time.sleep(1.5)  # the everysec fsync
        proc.kill(); proc.wait()
        t0 = time.perf_counter()
        proc = subprocess.Popen(args)
        wait(lambda: cli(port, "PING") == "PONG")
        s = time.perf_counter() - t0
        print(f"redis-server: kill -9 -> restart -> AOF loaded ({cli(port, 'DBSIZE')} keys): {s:.3f} s")
        return s
    finally:
        proc.kill(); proc.wait()
        shutil.rmtree(work, ignore_errors=True)

def main():
    build()
    worker_s, supervisor_s = corral()
    redis_s = redis()
    print(f"recovery, {WRITES} writes over {KEYS} keys: corral worker {worker_s:.3f} s, "
          f"corral supervisor {supervisor_s:.3f} s, redis-server AOF {redis_s:.3f} s "
          f"(redis/corral-supervisor {redis_s / supervisor_s:.2f}x)")

if __name__ == "__main__":
    main()
