#!/usr/bin/env bash
# Soak (issue 7.5): `litetrade serve` under MINUTES (default 10) of mixed load, with the
# server's memory sampled every 10 s from /proc/PID/status into a CSV.
#
#   scripts/soak.sh [MINUTES]
#
# Needs target/release/litetrade (this script builds nothing) and python3 (stdlib only). The
# load is scripts/crash_load.py with --bounded (each user keeps at most ~30 open positions and
# 30 resting orders). Columns: elapsed_s, VmRSS, RssAnon (heap: caches, books, buffers),
# RssFile (file-backed pages: the binary and the database mapped with mmap_size), VmHWM (peak),
# all in KiB, the database and WAL sizes, and the load's acknowledged writes so far.
# Flat means: after a warm-up (the first minute, while the caches fill), the mean RssAnon of the
# last third of the samples is within 20 % of the mean of the first third. RssFile grows with the database file
# (up to the 512 MiB mmap window) and is reported, not judged. Exit 1 when not flat or when the
# server died. Env: LITETRADE_BIN, SOAK_DIR (keep the work files there), SOAK_INTERVAL (s),
# SOAK_MIX=steady (only writes that do not grow the database: bot switches, config updates,
# ticks; and reads), which separates memory that follows the data from memory that follows time.
set -u
MINUTES=${1:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${LITETRADE_BIN:-$ROOT/target/release/litetrade}
PY=${PYTHON:-python3}
INTERVAL=${SOAK_INTERVAL:-10}

if [ ! -x "$BIN" ]; then
    echo "soak: $BIN is missing; build it first with: cargo build --release" >&2
    exit 2
fi
command -v "$PY" >/dev/null 2>&1 || { echo "soak: python3 is needed (stdlib only)" >&2; exit 2; }
[ -r /proc/self/status ] || { echo "soak: needs /proc (Linux)" >&2; exit 2; }
case "$MINUTES" in '' | *[!0-9]*) echo "usage: $0 [MINUTES]" >&2; exit 2 ;; esac

if [ -n "${SOAK_DIR:-}" ]; then
    WORK=$SOAK_DIR
    mkdir -p "$WORK"
    KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/litetrade-soak.XXXXXX")
    KEEP=0
fi
DB=$WORK/soak.db
CSV=$WORK/rss.csv
ACKS=$WORK/acks.jsonl
ADMIN="soak-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""
LOAD_PID=""
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    wait 2>/dev/null
    [ "$KEEP" = 1 ] && echo "soak: files kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$DB" "$DB-wal" "$DB-shm" "$ACKS"
LITETRADE_ADMIN_TOKEN=$ADMIN LITETRADE_LOG=warn "$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$BASE/api/v1/health', timeout=1).status == 200 else 1)" 2>/dev/null && break
    sleep 0.1
done
drv() {
    "$PY" "$HERE/crash_load.py" "$1" --base "$BASE" --admin "$ADMIN" --state "$WORK/users.json" --acks "$ACKS" "${@:2}"
}
: >"$ACKS"
drv setup --users 8 >/dev/null || { echo "soak: setup failed" >&2; exit 1; }
SECS=$((MINUTES * 60))
drv load --round 1 --duration "$SECS" --bounded --mix "${SOAK_MIX:-full}" >"$WORK/load.out" 2>&1 &
LOAD_PID=$!

kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
echo "elapsed_s,vm_rss_kib,rss_anon_kib,rss_file_kib,vm_hwm_kib,db_bytes,wal_bytes,acked_writes" >"$CSV"
echo "soak: $MINUTES min of ${SOAK_MIX:-full} load on $BASE (pid $SERVER_PID), sampling every $INTERVAL s into $CSV"
T0=$(date +%s)
while :; do
    now=$(($(date +%s) - T0))
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "soak: the server died at ${now}s"; tail -5 "$WORK/server.log"; exit 1
    fi
    acked=$(grep -c '"ok":true' "$ACKS")
    line="$now,$(kib VmRSS),$(kib RssAnon),$(kib RssFile),$(kib VmHWM),$(size "$DB"),$(size "$DB-wal"),$acked"
    echo "$line" >>"$CSV"
    echo "  $line"
    [ "$now" -ge "$SECS" ] && break
    kill -0 "$LOAD_PID" 2>/dev/null || { echo "soak: the load stopped early:"; cat "$WORK/load.out"; break; }
    sleep "$INTERVAL"
done
wait "$LOAD_PID"
LOAD_PID=""
echo "load: $(tail -1 "$WORK/load.out")"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
rc=$?
SERVER_PID=""
errors=$(grep -c '"ok":false' "$ACKS")

"$PY" - "$CSV" "$rc" "$errors" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rc, errors = int(sys.argv[2]), int(sys.argv[3])
n = len(rows)
warm = [r for r in rows if int(r["elapsed_s"]) >= 60] or rows
third = max(1, len(warm) // 3)
first = warm[:third]
last = warm[len(warm) - third:]
mean = lambda rs, k: sum(int(r[k]) for r in rs) / len(rs)
print("%8s %10s %10s %10s %10s %12s %10s" % ("t (s)", "RSS MiB", "anon MiB", "file MiB", "peak MiB", "db MiB", "writes"))
step = max(1, n // 20)
for i, r in enumerate(rows):
    if i % step == 0 or i == n - 1:
        print("%8s %10.1f %10.1f %10.1f %10.1f %12.1f %10s" % (r["elapsed_s"], int(r["vm_rss_kib"]) / 1024, int(r["rss_anon_kib"]) / 1024,
              int(r["rss_file_kib"]) / 1024, int(r["vm_hwm_kib"]) / 1024, int(r["db_bytes"]) / 2**20, r["acked_writes"]))
ok = True
for k, judged in (("rss_anon_kib", True), ("vm_rss_kib", False)):
    a, b = mean(first, k), mean(last, k)
    ch = (b - a) / a * 100 if a else 0.0
    verdict = "flat" if abs(ch) <= 20 else "NOT flat"
    print("%s after warm-up: first third %.1f MiB, last third %.1f MiB (%+.1f %%): %s%s" % (k, a / 1024, b / 1024, ch, verdict, "" if judged else " (reported only)"))
    if judged and abs(ch) > 20:
        ok = False
a0, a1 = int(rows[0]["rss_anon_kib"]), int(rows[-1]["rss_anon_kib"])
d0, d1 = int(rows[0]["db_bytes"]), int(rows[-1]["db_bytes"])
print("over the run: RssAnon %+.1f MiB, database %+.1f MiB (%s), largest WAL %.1f MiB" % (
    (a1 - a0) / 1024, (d1 - d0) / 2**20,
    "%.2f MiB of heap per MiB of database" % ((a1 - a0) / 1024 / ((d1 - d0) / 2**20)) if d1 - d0 > 2**20 else "the database did not grow",
    max(int(r["wal_bytes"]) for r in rows) / 2**20))
print("server exit status after SIGTERM: %d; 5xx answers: %d" % (rc, errors))
sys.exit(0 if ok and rc == 0 and errors == 0 else 1)
EOF
