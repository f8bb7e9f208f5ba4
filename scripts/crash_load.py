#!/usr/bin/env python3
"""Mixed concurrent load for litetrade, and the checks that follow a crash (stdlib only).

Used by scripts/crash-test.sh (kill -9 under load, then check) and scripts/soak.sh (long load).

  crash_load.py setup --base URL --admin TOKEN --state FILE --acks FILE [--users N]
  crash_load.py load  --base URL --admin TOKEN --state FILE --acks FILE --duration S [--round R] [--seed N]
  crash_load.py check --base URL --admin TOKEN --state FILE --acks FILE --db FILE [--round R]

`load` runs one thread per user (deposits, market and limit orders, cancels, closes, bot
switches, promo redemptions, reads) and one admin thread (ticks, signals, promo codes). Every
write answered 2xx is appended to the acks file as an acknowledged write ("ok": true); a write
whose answer never came (the server died) is appended with "ok": null (outcome unknown). A
thread stops when the server stops answering; `load` exits when every thread has stopped or
the duration is over.

`check` reads the database file (read-only) and the acks file and verifies: every acknowledged
write is present, deposits add up (acknowledged <= stored <= acknowledged + unknown), the ledger
identities hold for every balance, promo codes were never over-used, PRAGMA integrity_check is
ok, and the books were rebuilt (ticks that cross every resting order fill them all). Exit 1 on
any failure, with one line per problem.
"""

import argparse
import http.client
import json
import random
import sqlite3
import sys
import threading
import time
from decimal import ROUND_DOWN, Decimal

SYMBOLS = {"BTCUSDT": Decimal("30000"), "ETHUSDT": Decimal("2000")}
STRATEGY = "crash-s1"


class Down(Exception):
    """The server is not answering (refused or reset): stop this thread."""


class Client:
    def __init__(self, base, token):
        assert base.startswith("http://")
        hostport = base[len("http://"):].split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.token = token
        self.conn = None

    def call(self, method, path, body=None, timeout=30):
        """(status, json) of one request; raises Down when the server is gone."""
        data = None if body is None else json.dumps(body)
        headers = {"Authorization": "Bearer " + self.token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            sent = False
            try:
                self.conn.request(method, "/api/v1" + path, body=data, headers=headers)
                sent = True
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    v = json.loads(raw) if raw else None
                except ValueError:
                    v = raw.decode("utf-8", "replace")
                return r.status, v
            except (ConnectionRefusedError, FileNotFoundError):
                self.close()
                raise Down("refused")
            except (http.client.HTTPException, ConnectionError, OSError) as e:
                self.close()
                # a keep-alive connection closed by the server before it read the request is
                # safe to retry once; a request that may have reached it is not
                if attempt == 0 and not sent:
                    continue
                raise Down(repr(e))
        raise Down("unreachable")

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


class Acks:
    """Appends one JSON line per write outcome; flushed at once (the driver is not killed)."""

    def __init__(self, path, rnd):
        self.f = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.round = rnd
        self.counts = {}
        # set by the first acknowledged write
        self.first_ack = threading.Event()

    def add(self, ok, **kv):
        kv["ok"] = ok
        kv["r"] = self.round
        line = json.dumps(kv, separators=(",", ":"))
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()
            key = kv["t"] if ok else kv["t"] + "?"
            self.counts[key] = self.counts.get(key, 0) + 1
            if ok:
                self.first_ack.set()

    def close(self):
        self.f.close()


def alive(base):
    """True when the server answers /health on a fresh connection (one retry after 0.2 s)."""
    for attempt in (0, 1):
        try:
            c = Client(base, "")
            c.conn = http.client.HTTPConnection(c.host, c.port, timeout=3)
            c.conn.request("GET", "/api/v1/health")
            ok = c.conn.getresponse().status == 200
            c.close()
            return ok
        except Exception:
            if attempt == 0:
                time.sleep(0.2)
    return False


def write(c, acks, kind, method, path, body, **rec):
    """A write: (status, json) when answered; records it as acknowledged (2xx) or unknown."""
    try:
        st, v = c.call(method, path, body)
    except Down:
        acks.add(None, t=kind, **rec)
        raise
    if 200 <= st < 300:
        acks.add(True, t=kind, **rec, v=v)
    elif st >= 500:
        # the contract allows 503 only (disk full / locked): nothing was applied
        acks.add(False, t=kind, **rec, status=st, v=v)
    return st, v


def px(d, tick=Decimal("0.01")):
    return str(d.quantize(tick, rounding=ROUND_DOWN))


# ------------------------------------------------------------------------------------------
# setup


def setup(a):
    acks = Acks(a.acks, 0)
    admin = Client(a.base, a.admin)
    users = []
    for i in range(a.users):
        st, u = admin.call("POST", "/users", {"name": "crash-%d" % i, "telegram_id": 1000 + i})
        assert st == 201, (st, u)
        users.append({"id": u["id"], "token": u["token"]})
        c = Client(a.base, u["token"])
        st, v = write(c, acks, "deposit", "POST", "/users/%d/deposit" % u["id"], {"amount": "100000"}, u=u["id"], amt="100000")
        assert st == 200, (st, v)
        # half of the users follow the strategy with their bot on: signals fan out to them
        if i % 2 == 0:
            st, v = c.call("PUT", "/users/%d/config" % u["id"], {"strategy": STRATEGY, "risk_pct": "1", "leverage": 2})
            assert st == 200, (st, v)
            st, v = write(c, acks, "bot", "PUT", "/users/%d/bot" % u["id"], {"enabled": True}, u=u["id"], en=True)
            assert st == 200, (st, v)
    ticks = [{"symbol": s, "price": str(p)} for s, p in SYMBOLS.items()]
    st, v = write(admin, acks, "tick", "POST", "/market/ticks", {"ticks": ticks})
    assert st == 200, (st, v)
    with open(a.state, "w", encoding="utf-8") as f:
        json.dump({"users": users}, f)
    acks.close()
    print("setup: %d users" % len(users))


# ------------------------------------------------------------------------------------------
# load


class Shared:
    def __init__(self):
        self.last = dict(SYMBOLS)
        self.codes = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.time()
        self.notes = []

    def note(self, msg):
        with self.lock:
            self.notes.append(msg)


class UserState:
    def __init__(self, a, u, seed, bounded):
        self.rnd = random.Random(seed)
        self.c = Client(a.base, u["token"])
        self.uid = u["id"]
        self.base = "/users/%d" % u["id"]
        self.pending = []
        self.open_pos = []
        self.bot = None
        self.bounded = bounded


def user_worker(a, u, sh, acks, seed, bounded):
    st = UserState(a, u, seed, bounded)
    while not sh.stop.is_set():
        try:
            user_step(st, sh, acks)
        except Down as e:
            # an answer that never came: stop only when the server is really gone
            if not alive(a.base):
                sh.note("user %d stops at %.2fs: %s" % (st.uid, time.time() - sh.t0, e))
                break
    st.c.close()


def user_step(s, sh, acks):
    """One operation of one user."""
    rnd, c, uid, base = s.rnd, s.c, s.uid, s.base
    if sh.mix == "steady":
        # writes that do not grow the database (row updates only) and reads
        x = rnd.random()
        if x < 0.2:
            s.bot = (not s.bot) if s.bot is not None else rnd.random() < 0.5
            write(c, acks, "bot", "PUT", base + "/bot", {"enabled": s.bot}, u=uid, en=s.bot)
        elif x < 0.4:
            write(c, acks, "config", "PUT", base + "/config", {"leverage": rnd.randint(1, 20), "risk_pct": str(rnd.randint(1, 5))}, u=uid)
        else:
            path = rnd.choice(["/balance", "/positions", "/orders", "/trades?limit=20", "/license", "/config", ""])
            c.call("GET", base + path)
        return
    sym = rnd.choice(list(SYMBOLS))
    with sh.lock:
        last = sh.last[sym]
    x = rnd.random()
    if x < 0.12:
        amt = str(rnd.randint(1, 100))
        write(c, acks, "deposit", "POST", base + "/deposit", {"amount": amt}, u=uid, amt=amt)
    elif x < 0.32:
        side = rnd.choice(["buy", "sell"])
        body = {"symbol": sym, "side": side, "type": "market", "qty": "0.00%d" % rnd.randint(1, 9), "leverage": rnd.randint(1, 20)}
        if rnd.random() < 0.5:
            lo, hi = last * Decimal("0.97"), last * Decimal("1.03")
            body["sl"], body["tp"] = (px(lo), px(hi)) if side == "buy" else (px(hi), px(lo))
        if rnd.random() < 0.2:
            body["client_order_id"] = "c%d-%d" % (uid, rnd.randint(0, 10**9))
        st, v = write(c, acks, "order", "POST", base + "/orders", body, u=uid)
        if st == 201 and v.get("position_id"):
            s.open_pos.append(v["position_id"])
    elif x < 0.52:
        side = rnd.choice(["buy", "sell"])
        off = Decimal(rnd.randint(2, 40)) / Decimal(1000)
        price = last * (1 - off) if side == "buy" else last * (1 + off)
        body = {"symbol": sym, "side": side, "type": "limit", "qty": "0.00%d" % rnd.randint(1, 9), "price": px(price), "leverage": rnd.randint(1, 10)}
        st, v = write(c, acks, "order", "POST", base + "/orders", body, u=uid)
        if st == 201:
            if v.get("status") == "pending":
                s.pending.append(v["id"])
            elif v.get("position_id"):
                s.open_pos.append(v["position_id"])
    elif x < 0.62:
        if s.pending:
            oid = s.pending.pop(rnd.randrange(len(s.pending)))
            write(c, acks, "cancel", "DELETE", base + "/orders/%d" % oid, None, u=uid, oid=oid)
    elif x < 0.72:
        if s.open_pos:
            pid = s.open_pos.pop(rnd.randrange(len(s.open_pos)))
            write(c, acks, "close", "POST", base + "/positions/%d/close" % pid, {}, u=uid, pid=pid)
    elif x < 0.76:
        s.bot = (not s.bot) if s.bot is not None else rnd.random() < 0.5
        write(c, acks, "bot", "PUT", base + "/bot", {"enabled": s.bot}, u=uid, en=s.bot)
    elif x < 0.81:
        with sh.lock:
            code = rnd.choice(sh.codes) if sh.codes else None
        if code:
            write(c, acks, "redeem", "POST", base + "/redeem", {"code": code}, u=uid, code=code)
    else:
        path = rnd.choice(["/balance", "/positions", "/orders", "/trades?limit=20", "/license", "/config", ""])
        c.call("GET", base + path)
    if s.bounded:
        # keep the working set bounded on long runs: trim the oldest
        if len(s.pending) > 30:
            oid = s.pending.pop(0)
            write(c, acks, "cancel", "DELETE", base + "/orders/%d" % oid, None, u=uid, oid=oid)
        if len(s.open_pos) > 30:
            pid = s.open_pos.pop(0)
            write(c, acks, "close", "POST", base + "/positions/%d/close" % pid, {}, u=uid, pid=pid)


def admin_worker(a, sh, acks, seed):
    rnd = random.Random(seed)
    c = Client(a.base, a.admin)
    n = 0
    while not sh.stop.is_set():
        try:
            n += 1
            admin_step(a, c, rnd, sh, acks, n)
        except Down as e:
            if not alive(a.base):
                sh.note("admin stops at %.2fs: %s" % (time.time() - sh.t0, e))
                break
    c.close()


def admin_step(a, c, rnd, sh, acks, n):
    """Ticks on every call; a signal every 5th; a new promo code every 20th."""
    ticks = []
    with sh.lock:
        for s in SYMBOLS:
            # a mean-reverting random walk within +-8% of the reference
            ref = SYMBOLS[s]
            step = Decimal(rnd.randint(-30, 30)) / Decimal(10000)
            pull = (ref - sh.last[s]) / ref / 20
            p = sh.last[s] * (1 + step + pull)
            p = min(max(p, ref * Decimal("0.92")), ref * Decimal("1.08"))
            sh.last[s] = Decimal(px(p))
            ticks.append({"symbol": s, "price": px(p)})
    write(c, acks, "tick", "POST", "/market/ticks", {"ticks": ticks})
    if sh.mix == "steady":
        time.sleep(rnd.uniform(0.005, 0.03))
        return
    if n % 5 == 0:
        body = {"strategy": STRATEGY, "symbol": rnd.choice(list(SYMBOLS)), "side": rnd.choice(["buy", "sell"]), "sl_pct": "3", "tp_pct": "3"}
        write(c, acks, "signal", "POST", "/signals", body)
    if n % 20 == 1:
        code = "R%d-%d-%d" % (a.round, n, rnd.randint(0, 10**6))
        body = {"code": code, "license_type": rnd.choice(["pro", "basic"]), "days": rnd.randint(1, 30), "max_uses": rnd.randint(1, 4)}
        st, _ = write(c, acks, "promo", "POST", "/promo-codes", body, code=code, max_uses=body["max_uses"])
        if st == 201:
            with sh.lock:
                sh.codes.append(code)
    time.sleep(rnd.uniform(0.005, 0.03))


def load(a):
    with open(a.state, encoding="utf-8") as f:
        state = json.load(f)
    acks = Acks(a.acks, a.round)
    sh = Shared()
    sh.mix = a.mix
    # continue from the last known prices and the codes of earlier rounds
    for line in open(a.acks, encoding="utf-8"):
        if '"t":"promo"' in line:
            rec = json.loads(line)
            if rec["ok"]:
                sh.codes.append(rec["code"])
    seed = a.seed if a.seed is not None else random.randrange(10**9)
    threads = [threading.Thread(target=admin_worker, args=(a, sh, acks, seed), daemon=True)]
    for i, u in enumerate(state["users"]):
        threads.append(threading.Thread(target=user_worker, args=(a, u, sh, acks, seed + 1 + i, a.bounded), daemon=True))
    t0 = time.time()
    for t in threads:
        t.start()
    if a.ready:
        # tells crash-test.sh that writes are being acknowledged: its kill timer starts now.
        # (Created once the threads merely ran, a short timer on a busy machine could end
        # before the restarted server had answered anything, and the round then "did not run".)
        acks.first_ack.wait(timeout=30)
        open(a.ready, "w").close()
    deadline = t0 + a.duration
    while time.time() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    sh.stop.set()
    for t in threads:
        t.join(timeout=60)
    acks.close()
    summary = " ".join("%s=%d" % kv for kv in sorted(acks.counts.items()))
    for n in sh.notes[:3]:
        print("  " + n)
    print("load: %.1fs, seed %d: %s" % (time.time() - t0, seed, summary))


# ------------------------------------------------------------------------------------------
# check


def raw(d):
    """A decimal string as the database stores it (count of 1e-8)."""
    return int((Decimal(str(d)) * 100000000).to_integral_value())


def check(a):
    problems = []

    def bad(msg):
        problems.append(msg)

    recs = [json.loads(l) for l in open(a.acks, encoding="utf-8")]
    acked = [r for r in recs if r["ok"] is True]
    unknown = [r for r in recs if r["ok"] is None]
    this_round = sum(1 for r in acked if r["r"] == a.round)
    db = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True, timeout=30)
    q = lambda sql, *p: db.execute(sql, p).fetchall()
    one = lambda sql, *p: db.execute(sql, p).fetchone()

    ic = one("PRAGMA integrity_check")[0]
    if ic != "ok":
        bad("integrity_check: %s" % ic)

    # orders, cancels, closes
    for r in acked:
        v = r.get("v") or {}
        if r["t"] == "order":
            row = one("SELECT user_id, position_id FROM orders WHERE id = ?", v["id"])
            if row is None:
                bad("acknowledged order %s (user %s) is missing" % (v["id"], r["u"]))
            elif row[0] != r["u"]:
                bad("order %s belongs to %s, acknowledged for %s" % (v["id"], row[0], r["u"]))
            elif v.get("position_id") and row[1] != v["position_id"]:
                bad("order %s: position %s, acknowledged %s" % (v["id"], row[1], v["position_id"]))
            if v.get("position_id"):
                pid = v["position_id"]
                if one("SELECT 1 FROM active_positions WHERE id = ?", pid) is None and one("SELECT 1 FROM trade_logs WHERE position_id = ?", pid) is None:
                    bad("acknowledged position %s is neither open nor closed" % pid)
        elif r["t"] == "cancel":
            row = one("SELECT status FROM orders WHERE id = ?", r["oid"])
            if row is None or row[0] != "cancelled":
                bad("acknowledged cancel of order %s: status %s" % (r["oid"], row))
        elif r["t"] == "close":
            if one("SELECT 1 FROM trade_logs WHERE position_id = ?", r["pid"]) is None:
                bad("acknowledged close of position %s: no trade row" % r["pid"])
            if one("SELECT 1 FROM active_positions WHERE id = ?", r["pid"]) is not None:
                bad("acknowledged close of position %s: still open" % r["pid"])
        elif r["t"] == "signal":
            if one("SELECT 1 FROM signals WHERE id = ?", v["signal_id"]) is None:
                bad("acknowledged signal %s is missing" % v["signal_id"])
        elif r["t"] == "promo":
            if one("SELECT 1 FROM promo_codes WHERE code = ?", r["code"]) is None:
                bad("acknowledged promo code %s is missing" % r["code"])
        elif r["t"] == "redeem":
            row = one(
                "SELECT 1 FROM promo_redemptions pr JOIN promo_codes p ON p.id = pr.promo_id WHERE p.code = ? AND pr.user_id = ?",
                r["code"], r["u"],
            )
            if row is None:
                bad("acknowledged redemption of %s by user %s is missing" % (r["code"], r["u"]))
            lic = one("SELECT ends_at FROM user_licenses WHERE user_id = ? AND license_type = ?", r["u"], v.get("license_type"))
            if lic is None:
                bad("acknowledged license %s of user %s is missing" % (v.get("license_type"), r["u"]))

    # deposits: acknowledged <= stored <= acknowledged + unknown
    users = {r["u"] for r in recs if r["t"] == "deposit"}
    for uid in sorted(users):
        lo = sum(raw(r["amt"]) for r in acked if r["t"] == "deposit" and r["u"] == uid)
        hi = lo + sum(raw(r["amt"]) for r in unknown if r["t"] == "deposit" and r["u"] == uid)
        row = one("SELECT deposited FROM balances WHERE user_id = ? AND account_type = 'demo'", uid)
        got = row[0] if row else 0
        if not (lo <= got <= hi):
            bad("user %s: deposited %s outside [%s, %s] (acknowledged, +unknown)" % (uid, got, lo, hi))

    # the bot switch: the last acknowledged value, or an unknown one sent after it
    for uid in sorted({r["u"] for r in recs if r["t"] == "bot"}):
        seq = [r for r in recs if r["t"] == "bot" and r["u"] == uid and r["ok"] is not False]
        allowed = set()
        for r in reversed(seq):
            allowed.add(r["en"])
            if r["ok"]:
                break
        row = one("SELECT enabled FROM bot_state WHERE user_id = ?", uid)
        got = bool(row[0]) if row else False
        if got not in allowed:
            bad("user %s: bot enabled=%s, expected one of %s" % (uid, got, sorted(allowed)))

    # promo codes: never over-used; uses = redemptions
    for pid, code, uses, max_uses in q("SELECT id, code, uses, max_uses FROM promo_codes"):
        n = one("SELECT COUNT(*) FROM promo_redemptions WHERE promo_id = ?", pid)[0]
        if uses > max_uses or uses != n:
            bad("promo %s: uses %s, max_uses %s, redemptions %s" % (code, uses, max_uses, n))

    ledger_problems(q, one, bad)

    # 5xx answers other than 503 are contract violations
    for r in recs:
        if r["ok"] is False and r.get("status") != 503:
            bad("write %s answered %s: %s" % (r["t"], r.get("status"), r.get("v")))

    # books rebuilt: ticks that cross every resting order fill them all
    admin = Client(a.base, a.admin)
    fills_expected = 0
    for sym in SYMBOLS:
        for side, agg in (("buy", "MIN"), ("sell", "MAX")):
            n, p = one("SELECT COUNT(*), %s(price) FROM orders WHERE status = 'pending' AND symbol = ? AND side = ?" % agg, sym, side)
            if n == 0:
                continue
            fills_expected += n
            price = px(Decimal(p) / 100000000)
            st, v = admin.call("POST", "/market/ticks", {"ticks": [{"symbol": sym, "price": price}]})
            if st != 200:
                bad("crossing tick %s %s: %s %s" % (sym, price, st, v))
            db2 = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True, timeout=30)
            left = db2.execute("SELECT COUNT(*) FROM orders WHERE status = 'pending' AND symbol = ? AND side = ?", (sym, side)).fetchone()[0]
            db2.close()
            if left:
                bad("books not rebuilt: %d of %d resting %s %s orders did not fill at %s" % (left, n, sym, side, price))
        # back to the reference price, for the next round
        admin.call("POST", "/market/ticks", {"ticks": [{"symbol": sym, "price": str(SYMBOLS[sym])}]})
    db.close()
    db = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True, timeout=30)
    ledger_problems(lambda sql, *p: db.execute(sql, p).fetchall(), lambda sql, *p: db.execute(sql, p).fetchone(), bad)
    db.close()

    kinds = {}
    for r in acked:
        kinds[r["t"]] = kinds.get(r["t"], 0) + 1
    print(
        "check: %d acknowledged writes (%d this round, %d unknown outcomes) verified; %d resting orders filled by crossing ticks; %s"
        % (len(acked), this_round, len(unknown), fills_expected, " ".join("%s=%d" % kv for kv in sorted(kinds.items())))
    )
    if a.round and this_round == 0:
        bad("no write was acknowledged in round %d: the load did not run" % a.round)
    for p in problems[:50]:
        print("PROBLEM: " + p)
    if len(problems) > 50:
        print("PROBLEM: ... and %d more" % (len(problems) - 50))
    sys.exit(1 if problems else 0)


def ledger_problems(q, one, bad):
    for uid, acct, wallet, margin, reserved, deposited in q(
        "SELECT user_id, account_type, wallet, margin_used, order_reserved, deposited FROM balances"
    ):
        pnl = one("SELECT COALESCE(SUM(pnl), 0) FROM trade_logs WHERE user_id = ? AND account_type = ?", uid, acct)[0]
        fees = one("SELECT COALESCE(SUM(open_fee), 0) FROM active_positions WHERE user_id = ? AND account_type = ?", uid, acct)[0]
        margins = one("SELECT COALESCE(SUM(margin), 0) FROM active_positions WHERE user_id = ? AND account_type = ?", uid, acct)[0]
        reserves = one("SELECT COALESCE(SUM(reserve), 0) FROM orders WHERE user_id = ? AND account_type = ? AND status = 'pending'", uid, acct)[0]
        if wallet != deposited + pnl - fees:
            bad("user %s %s: wallet %s != deposited %s + pnl %s - open fees %s" % (uid, acct, wallet, deposited, pnl, fees))
        if margin != margins:
            bad("user %s %s: margin_used %s != sum of margins %s" % (uid, acct, margin, margins))
        if reserved != reserves:
            bad("user %s %s: order_reserved %s != sum of reserves %s" % (uid, acct, reserved, reserves))
        if wallet < 0 or wallet - margin - reserved < 0:
            bad("user %s %s: wallet %s, available %s below zero" % (uid, acct, wallet, wallet - margin - reserved))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["setup", "load", "check"])
    p.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--admin", required=True, help="admin token")
    p.add_argument("--state", required=True, help="JSON file with the users and their tokens")
    p.add_argument("--acks", required=True, help="JSON-lines file of write outcomes")
    p.add_argument("--db", help="database file (check)")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--seed", type=int)
    p.add_argument("--bounded", action="store_true", help="keep open positions and resting orders per user bounded (soak)")
    p.add_argument("--ready", help="file to create once the first write is acknowledged")
    p.add_argument("--mix", choices=["full", "steady"], default="full",
                   help="full: every kind of write; steady: only writes that do not grow the database, and reads")
    a = p.parse_args()
    if a.cmd == "setup":
        setup(a)
    elif a.cmd == "load":
        load(a)
    else:
        if not a.db:
            p.error("check needs --db")
        check(a)


if __name__ == "__main__":
    main()
