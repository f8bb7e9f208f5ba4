#!/usr/bin/env bash
# HTTP load test with wrk (Debian package) against a loopback `litetrade serve`:
# GET /health, GET balance, GET positions, POST orders at 64 connections, side by side.
# Usage: scripts/loadtest.sh [SECONDS] [CONNECTIONS]     (needs target/release/litetrade)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-64}
bin=target/release/litetrade
[ -x "$bin" ] || { echo "build first: cargo build --release"; exit 1; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
dir=$(mktemp -d); port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=loadtest-admin-token
LITETRADE_ADMIN_TOKEN=$admin LITETRADE_LOG=warn "$bin" serve --db "$dir/l.db" --listen "127.0.0.1:$port" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
base="http://127.0.0.1:$port/api/v1"
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
user=$(curl -sf -X POST "$base/users" -H "Authorization: Bearer $admin" -d '{"name":"load"}')
uid=$(echo "$user" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
tok=$(echo "$user" | python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])')
curl -sf -X POST "$base/users/$uid/deposit" -H "Authorization: Bearer $admin" -d '{"amount":"1000000000"}' >/dev/null
curl -sf -X POST "$base/market/ticks" -H "Authorization: Bearer $admin" -d '{"ticks":[{"symbol":"BTCUSDT","price":"30000"}]}' >/dev/null
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"symbol":"BTCUSDT","side":"buy","type":"market","qty":"0.001"}'
wrk.headers["Content-Type"] = "application/json"
LUA
run() { # name, path, extra args
  local out; out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $tok" "${@:3}" "$base$2")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf '| %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99"
}
echo "| route ($conns connections, ${secs}s, wrk -t2) | req/s | p50 | p99 |"
echo "|---|---:|---:|---:|"
run "GET /health" "/health"
run "GET balance" "/users/$uid/balance"
run "GET positions" "/users/$uid/positions"
run "POST orders" "/users/$uid/orders" -s "$dir/post.lua"
