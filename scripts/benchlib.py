"""What the benchmark scripts share: where the release binary is, building it, free ports,
PING, keys that land on a given shard, polling with a timeout, the CPU time of a server's
processes, and starting Corral or redis-server with the same durability."""
import os, shutil, signal, socket, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "corral")

def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "corral"], cwd=ROOT, check=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def ping(port):
    """Whether a server answers PING on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False

def crc16(data):
    """CRC16/XMODEM, as the Redis Cluster hash slot uses it."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc

def key_on_shard(shard, shards, tag):
    """The first key `tag:<n>` that Corral with `shards` workers places on `shard`."""
    i = 0
    while True:
        k = f"{tag}:{i}".encode()
        if (crc16(k) % 16384) * shards // 16384 == shard:
            return k
        i += 1

def until(cond, timeout=30.0, step=0.001):
    """Polls `cond` every `step` seconds; returns how long it took to hold."""
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("timed out")
        time.sleep(step)
    return time.perf_counter() - t0


TICKS = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    """User plus system time of `pid` and of every live descendant, in seconds."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / TICKS

def start_server(name, binary, work, fsync, workers=2):
    """Starts Corral (`binary`) or, when `binary` is None, redis-server, logging every write
    under `fsync` (Corral --fsync, redis-server --appendonly yes --appendfsync), in a data dir
    under `work`; returns the process and its port once it answers PING."""
    port = free_port()
    data = os.path.join(work, name)
    os.mkdir(data)
    log = open(os.path.join(work, f"{name}.log"), "w")
    if binary is None:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "yes",
               "--appendfsync", fsync, "--dir", data]
    else:
        cmd = [binary, "run", "--workers", str(workers), "--fsync", fsync, "--data-dir", data,
               "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{free_port()}",
               "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    until(lambda: ping(port) or proc.poll() is not None, timeout=30, step=0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"{name} did not start; see {log.name}")
    return proc, port

def stop_servers(procs, work):
    """Stops the servers of `procs` (name -> (process, port)) with SIGTERM (SIGKILL after
    60 s) and removes `work`."""
    for proc, _ in procs.values():
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(work, ignore_errors=True)
