#!/usr/bin/env bash
# Throughput of Corral next to redis-server, measured side by side in one run with
# redis-benchmark (-t set,get,incr, -c 50, -P 1 and -P 16). Prints requests/s and ratios.
# Needs: redis-tools and redis-server (apt-get install redis-tools redis-server).
# Usage: scripts/bench-redis.sh [requests per test, default 200000] [workers, default CPUs]
#                               [fsync: always|everysec|no, default always]
# Both sides log every write with the same durability: Corral --fsync P, redis-server
# --appendonly yes --appendfsync P.
# BASELINE=path/to/an/older/corral adds that build to the same run (started the same way,
# measured in turn with the others) and a column with this build's ratio to it: the
# before/after figure for a change, free of the drift between two runs.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
workers=${2:-$(nproc)}
fsync=${3:-always}
tests=${TESTS:-set,get,incr}
for tool in redis-benchmark redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-tools redis-server)"; exit 2; }
done
cargo build --release -q -p corral
work=$(mktemp -d)
cleanup() {
  [ -n "${corral_pid:-}" ] && kill -TERM "$corral_pid" 2>/dev/null && wait "$corral_pid" 2>/dev/null || true
  [ -n "${baseline_pid:-}" ] && kill -TERM "$baseline_pid" 2>/dev/null && wait "$baseline_pid" 2>/dev/null || true
  [ -n "${redis_pid:-}" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cport=$(free_port)
hport=$(free_port)
target/release/corral run --workers "$workers" --fsync "$fsync" --data-dir "$work/corral" --listen "127.0.0.1:$cport" --http "127.0.0.1:$hport" \
  --log-level warn 2>"$work/corral.log" &
corral_pid=$!
baseline=${BASELINE:-}
if [ -n "$baseline" ]; then
  bport=$(free_port)
  bhport=$(free_port)
  "$baseline" run --workers "$workers" --fsync "$fsync" --data-dir "$work/baseline" --listen "127.0.0.1:$bport" \
    --http "127.0.0.1:$bhport" --log-level warn 2>"$work/baseline.log" &
  baseline_pid=$!
fi
rport=$(free_port)
redis-server --port "$rport" --save '' --appendonly yes --appendfsync "$fsync" --dir "$work" \
  --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
for port in "$cport" "$rport" ${bport:-}; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

run() { # port pipeline -> "test rps" lines
  redis-benchmark -p "$1" -t "$tests" -n "$requests" -c 50 -P "$2" -q 2>/dev/null \
    | tr '\r' '\n' | grep 'requests per second' | sed -E 's/^([A-Z]+): ([0-9.]+) requests.*/\1 \2/'
}
# Corral's group commit counters from /metrics: "groups records syncs sync_seconds".
commit_counters() {
  curl -sf "http://127.0.0.1:$hport/metrics" | awk '
    $1 == "corral_wal_group_records_count" { g = $2 }
    $1 == "corral_wal_group_records_sum" { r = $2 }
    $1 == "corral_wal_sync_duration_seconds_count" { s = $2 }
    $1 == "corral_wal_sync_duration_seconds_sum" { t = $2 }
    END { printf "%d %d %d %.9f\n", g, r, s, t }'
}
echo "redis-benchmark -n $requests -c 50; Corral with $workers workers; fsync $fsync; $(nproc) CPUs"
if [ -n "$baseline" ]; then
  echo "baseline: $baseline"
  printf '%-6s %-4s %14s %14s %8s %14s %8s\n' test P corral_rps redis_rps ratio baseline_rps vs_base
else
  printf '%-6s %-4s %14s %14s %8s\n' test P corral_rps redis_rps ratio
fi
commits=""
for p in 1 16; do
  before=$(commit_counters)
  corral_out=$(run "$cport" "$p")
  after=$(commit_counters)
  commits+=$(echo "$before $after" | awk -v p="$p" '{
    g = $5 - $1; r = $6 - $2; s = $7 - $3; t = $8 - $4
    printf "P%-3s %9d write groups, %6.1f records/group; %8d fdatasyncs, %7.1f records/sync, mean sync %.3f ms\n",
      p, g, g ? r / g : 0, s, s ? r / s : 0, s ? t / s * 1000 : 0 }')$'\n'

  redis_out=$(run "$rport" "$p")
  baseline_out=""
  [ -n "$baseline" ] && baseline_out=$(run "$bport" "$p")
  while read -r test rps; do
    r=$(echo "$redis_out" | awk -v t="$test" '$1==t {print $2}')
    line=$(awk -v t="$test" -v p="$p" -v a="$rps" -v b="$r" 'BEGIN { printf "%-6s %-4s %14.0f %14.0f %8.2f", t, p, a, b, a / b }')
    if [ -n "$baseline" ]; then
      o=$(echo "$baseline_out" | awk -v t="$test" '$1==t {print $2}')
      line+=$(awk -v a="$rps" -v o="$o" 'BEGIN { printf " %14.0f %8.2f", o, a / o }')
    fi
    echo "$line"
  done <<<"$corral_out"
done
echo "Corral group commit (write + lifecycle records; syncs only under always and everysec):"
printf '%s' "$commits"
