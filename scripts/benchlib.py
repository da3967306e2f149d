"""What the benchmark scripts share: where the release binary is, building it, free ports,
PING, keys that land on a given shard, and polling with a timeout."""
import os, socket, subprocess, time

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
