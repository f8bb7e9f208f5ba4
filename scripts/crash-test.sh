#!/usr/bin/env bash
# Crash loop (issue 7.1): `litetrade serve` under mixed concurrent load is killed with SIGKILL at
# a random moment, restarted on the same file, and checked, ROUNDS times (default 20).
#
#   scripts/crash-test.sh [ROUNDS]
#
# Needs target/release/litetrade (cargo build --release; this script builds nothing) and
# python3 (stdlib only). Each round:
#   1. scripts/crash_load.py load: 8 user threads (deposits, market/limit orders, cancels,
#      closes, bot switches, promo redemptions, reads) and an admin thread (ticks, signals,
#      promo codes); every acknowledged write is appended to acks.jsonl;
#   2. kill -9 of the server a random 0.5-4 s after the load has started;
#   3. restart on the same database;
#   4. scripts/crash_load.py check: every acknowledged write present, deposits add up, ledger
#      identities, promo uses <= max_uses, PRAGMA integrity_check ok, and the books rebuilt
#      (ticks crossing every resting order fill them all).
# One line per round and a summary; exit 1 on any failure. Env: LITETRADE_BIN (binary),
# CRASH_KEEP=1 keeps the work directory, CRASH_SEED fixes the random choices.
set -u
ROUNDS=${1:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${LITETRADE_BIN:-$ROOT/target/release/litetrade}
PY=${PYTHON:-python3}

if [ ! -x "$BIN" ]; then
    echo "crash-test: $BIN is missing; build it first with: cargo build --release" >&2
    exit 2
fi
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "crash-test: python3 is needed (stdlib only)" >&2
    exit 2
fi
case "$ROUNDS" in '' | *[!0-9]*) echo "usage: $0 [ROUNDS]" >&2; exit 2 ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/litetrade-crash.XXXXXX")
DB=$WORK/crash.db
STATE=$WORK/users.json
ACKS=$WORK/acks.jsonl
LOG=$WORK/server.log
ADMIN="crash-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SEED=${CRASH_SEED:-$RANDOM}
RANDOM=$SEED
SERVER_PID=""
LOAD_PID=""

cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    wait 2>/dev/null
    if [ "${CRASH_KEEP:-0}" = 1 ] || [ "${FAILED:-0}" -gt 0 ]; then
        echo "crash-test: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server: serve on a fresh port, wait for /health (60 s)
start_server() {
    local i
    for _ in 1 2 3; do
        PORT=$(free_port)
        BASE="http://127.0.0.1:$PORT"
        echo "--- start $(date +%T) port $PORT" >>"$LOG"
        LITETRADE_ADMIN_TOKEN=$ADMIN LITETRADE_LOG=warn "$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" >>"$LOG" 2>&1 &
        SERVER_PID=$!
        for i in $(seq 1 600); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                wait "$SERVER_PID" 2>/dev/null
                SERVER_PID=""
                break
            fi
            if "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$BASE/api/v1/health', timeout=1).status == 200 else 1)" 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
        [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=""
    done
    echo "crash-test: the server did not start; log: $LOG" >&2
    tail -5 "$LOG" >&2
    return 1
}

drv() {
    "$PY" "$HERE/crash_load.py" "$1" --base "$BASE" --admin "$ADMIN" --state "$STATE" --acks "$ACKS" "${@:2}"
}

echo "crash-test: $ROUNDS rounds, binary $BIN, seed $SEED, work $WORK"
T0=$(date +%s)
FAILED=0
: >"$ACKS"
start_server || exit 1
drv setup --users 8 >"$WORK/setup.out" 2>&1 || { cat "$WORK/setup.out"; FAILED=1; exit 1; }

for r in $(seq 1 "$ROUNDS"); do
    # a kill moment between 0.5 and 4.0 s into the load
    delay_ms=$((500 + RANDOM % 3500))
    rm -f "$WORK/ready"
    drv load --round "$r" --duration 60 --seed "$((SEED * 1000 + r))" --ready "$WORK/ready" >"$WORK/load-$r.out" 2>&1 &
    LOAD_PID=$!
    # the kill timer starts once the load has its first acknowledged write
    for _ in $(seq 1 300); do
        [ -e "$WORK/ready" ] && break
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    else
        wait "$SERVER_PID"
        echo "round $r: FAILED: the server had exited by itself (status $?) before the kill"
        FAILED=$((FAILED + 1))
    fi
    SERVER_PID=""
    wait "$LOAD_PID"
    LOAD_PID=""
    rounds_load=$(cat "$WORK/load-$r.out")
    if ! start_server; then
        echo "round $r: FAILED: the server did not restart after kill -9"
        FAILED=$((FAILED + 1))
        break
    fi
    if drv check --round "$r" --db "$DB" >"$WORK/check-$r.out" 2>&1; then
        status=ok
    else
        status=FAILED
        FAILED=$((FAILED + 1))
    fi
    printf 'round %2d: kill -9 after %4d ms; %s; %s\n' "$r" "$delay_ms" "$status" "$(grep '^check:' "$WORK/check-$r.out" | sed 's/^check: //')"
    if [ "$status" != ok ]; then
        echo "  load: $rounds_load"
        grep -E 'PROBLEM|Traceback|Error' "$WORK/check-$r.out" | head -20 | sed 's/^/  /'
    fi
done

# a clean stop at the end: SIGTERM, exit 0, integrity ok
kill -TERM "$SERVER_PID" 2>/dev/null
wait "$SERVER_PID"
rc=$?
SERVER_PID=""
if [ "$rc" != 0 ]; then
    echo "final SIGTERM: the server exited with $rc"
    FAILED=$((FAILED + 1))
fi
final=$("$PY" -c "import sqlite3,sys; c=sqlite3.connect('file:$DB?mode=ro', uri=True); print(c.execute('PRAGMA integrity_check').fetchone()[0])")
[ "$final" = ok ] || { echo "final integrity_check: $final"; FAILED=$((FAILED + 1)); }
if grep -qi "panicked" "$LOG"; then
    echo "the server log has a panic:"; grep -i -m5 "panicked" "$LOG"
    FAILED=$((FAILED + 1))
fi

total=$(grep -c '"ok":true' "$ACKS")
unknown=$(grep -c '"ok":null' "$ACKS")
errors=$(grep -c '"ok":false' "$ACKS")
echo "summary: $ROUNDS rounds in $(($(date +%s) - T0)) s; $total acknowledged writes checked, $unknown in flight at a kill (outcome unknown), $errors answered 5xx; $FAILED failure(s)"
[ "$FAILED" -eq 0 ]
