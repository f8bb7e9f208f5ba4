#!/usr/bin/env bash
# An in-process cached read (litetrade's balance cache hit) vs a Redis GET round trip on loopback,
# measured back to back. Starts redis-server (Debian package) on a spare port and stops it after.
# Usage: scripts/redis-compare.sh      (needs target/release/litetrade)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/litetrade
[ -x "$bin" ] || { echo "build first: cargo build --release"; exit 1; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null & rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" set balance:1:demo '{"wallet":"10000"}' >/dev/null
# one client, no pipelining: the round trip a bot pays per cached read
redis_out=$(redis-benchmark -p "$port" -c 1 -n 200000 -P 1 -t get -q --precision 3 2>/dev/null | tr '\r' '\n' | grep -i "GET" | tail -1)
redis_lat=$(redis-benchmark -p "$port" -c 1 -n 200000 -P 1 -t get 2>/dev/null | tr '\r' '\n' | awk '/latency summary/{getline; getline; print $3}')
lt=$("$bin" bench --quick --scenario reads --json 2>/dev/null | python3 -c '
import sys, json
rows = json.load(sys.stdin)["rows"]
hit = [r for r in rows if r["metric"] == "balance: cache hit"][0]
print(hit["median_us"], hit["p99_us"])')
read -r hit_med hit_p99 <<<"$lt"
echo "| read | median µs | p99 µs |"
echo "|---|---:|---:|"
echo "| litetrade balance cache hit (in process) | $hit_med | $hit_p99 |"
echo "| Redis GET, 1 client, loopback (p50 from redis-benchmark) | $(python3 -c "print(round(float('$redis_lat')*1000, 1))") | |"
echo "redis-benchmark: $redis_out"
python3 -c "print(f'ratio: Redis GET p50 / cache hit median = {float(\"$redis_lat\")*1000/float(\"$hit_med\"):.0f}x')"
