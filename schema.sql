-- litetrade schema. Embedded in the binary with include_str! and versioned by PRAGMA user_version.
--
-- Scale: every price, quantity and money column is an INTEGER count of 10^-8 units
-- (1.5 USDT is 150000000), so SQL compares, orders and range-scans them exactly.
-- Fee and margin rates (*_cbps) are INTEGER hundredths of a basis point (5.5 bps is 550).
-- Times are INTEGER milliseconds since the Unix epoch.
--
-- Foreign keys are on. The four tables the writer fills with multi-row INSERTs (balances, order_rows,
-- active_positions, trade_logs) check theirs at COMMIT (DEFERRABLE INITIALLY DEFERRED): a
-- statement that could fail half-way would make SQLite copy every page it touches into a
-- statement journal first, and a violation fails the writer's whole transaction either way.
--
-- Tables and the `orders` view first (IF NOT EXISTS); the indexes follow the marker line below and
-- are applied by `litetrade optimize` too, so an old file that has the tables but no index gains
-- them.

CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    telegram_id INTEGER,
    token_hash  BLOB    NOT NULL,           -- SHA-256 of the bearer token; the token is never stored
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS user_config (
    user_id      INTEGER PRIMARY KEY REFERENCES users(id),
    strategy     TEXT,
    leverage     INTEGER,
    risk_pct     INTEGER,
    sl_pct       INTEGER,
    tp_pct       INTEGER,
    account_type TEXT    NOT NULL DEFAULT 'demo' CHECK (account_type IN ('demo', 'real')),
    updated_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS bot_state (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id),
    enabled    INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS credentials (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    exchange   TEXT    NOT NULL,
    nonce      BLOB    NOT NULL,            -- XChaCha20-Poly1305 nonce
    ciphertext BLOB    NOT NULL,            -- encrypted {api_key, api_secret}; plaintext never stored
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, exchange)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS balances (
    user_id        INTEGER NOT NULL REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    account_type   TEXT    NOT NULL CHECK (account_type IN ('demo', 'real')),
    wallet         INTEGER NOT NULL DEFAULT 0,
    margin_used    INTEGER NOT NULL DEFAULT 0,
    order_reserved INTEGER NOT NULL DEFAULT 0,
    deposited      INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, account_type)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS symbols (
    symbol         TEXT PRIMARY KEY,
    tick_size      INTEGER NOT NULL,
    lot_size       INTEGER NOT NULL,
    min_qty        INTEGER NOT NULL,
    max_leverage   INTEGER NOT NULL,
    maker_fee_cbps INTEGER NOT NULL,
    taker_fee_cbps INTEGER NOT NULL,
    mmr_cbps       INTEGER NOT NULL,
    last_price     INTEGER,
    last_ts        INTEGER
) WITHOUT ROWID;

-- Orders with a row of their own: limit orders in every status, and market orders placed with a
-- client_order_id. A market order without one is recorded only by the position it opened (same
-- id, order_id = id) and, once closed, by that position's trade log; the `orders` view below
-- shows all orders, in every status, as one relation.
CREATE TABLE IF NOT EXISTS order_rows (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    symbol          TEXT    NOT NULL,
    side            TEXT    NOT NULL CHECK (side IN ('buy', 'sell')),
    type            TEXT    NOT NULL CHECK (type IN ('market', 'limit')),
    qty             INTEGER NOT NULL,
    price           INTEGER,
    leverage        INTEGER NOT NULL,
    sl              INTEGER,
    tp              INTEGER,
    account_type    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status = 'pending' OR status = 'filled' OR status = 'cancelled'),
    reserve         INTEGER NOT NULL DEFAULT 0,
    fill_price      INTEGER,
    fee             INTEGER,
    position_id     INTEGER,
    client_order_id TEXT,
    created_at      INTEGER NOT NULL,
    filled_at       INTEGER,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS active_positions (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    symbol            TEXT    NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('long', 'short')),
    qty               INTEGER NOT NULL,
    entry_price       INTEGER NOT NULL,
    leverage          INTEGER NOT NULL,
    margin            INTEGER NOT NULL,
    sl                INTEGER,
    tp                INTEGER,
    liquidation_price INTEGER NOT NULL,
    open_fee          INTEGER NOT NULL,
    account_type      TEXT    NOT NULL,
    opened_at         INTEGER NOT NULL,
    order_id          INTEGER               -- the order that opened it (NULL before schema version 4)
);

CREATE TABLE IF NOT EXISTS trade_logs (
    id           INTEGER PRIMARY KEY,
    position_id  INTEGER NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    symbol       TEXT    NOT NULL,
    side         TEXT    NOT NULL,
    qty          INTEGER NOT NULL,
    entry_price  INTEGER NOT NULL,
    exit_price   INTEGER NOT NULL,
    open_fee     INTEGER NOT NULL,
    close_fee    INTEGER NOT NULL,
    pnl          INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    account_type TEXT    NOT NULL,
    leverage     INTEGER NOT NULL,
    opened_at    INTEGER NOT NULL,
    closed_at    INTEGER NOT NULL,
    order_id     INTEGER,                   -- the position's order_id, sl and tp when it closed
    sl           INTEGER,                   -- (NULL before schema version 4)
    tp           INTEGER
);

CREATE TABLE IF NOT EXISTS signals (
    id            INTEGER PRIMARY KEY,
    strategy      TEXT    NOT NULL,
    symbol        TEXT    NOT NULL,
    side          TEXT    NOT NULL,
    sl_pct        INTEGER,
    tp_pct        INTEGER,
    orders_placed INTEGER NOT NULL,
    skipped       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS user_licenses (
    user_id      INTEGER NOT NULL REFERENCES users(id),
    license_type TEXT    NOT NULL,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, license_type)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS promo_codes (
    id           INTEGER PRIMARY KEY,
    code         TEXT    NOT NULL UNIQUE,
    license_type TEXT    NOT NULL,
    days         INTEGER NOT NULL,
    max_uses     INTEGER NOT NULL,
    uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses <= max_uses),
    valid_until  INTEGER,
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS promo_redemptions (
    promo_id    INTEGER NOT NULL REFERENCES promo_codes(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    redeemed_at INTEGER NOT NULL,
    PRIMARY KEY (promo_id, user_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    kind         TEXT    NOT NULL,          -- 'promo' (a redemption) or 'deposit'
    amount       INTEGER NOT NULL DEFAULT 0,
    account_type TEXT,
    promo_id     INTEGER,
    license_type TEXT,
    created_at   INTEGER NOT NULL
);

-- Every order in every status. Orders and positions draw their ids from one sequence, so an
-- order with no row of its own (order_id = id on its position or trade) never shares its id
-- with a row of order_rows. SQLite pushes a WHERE on id into each arm (a primary-key or
-- trades_position lookup), so reading one order through the view is three index lookups.
CREATE VIEW IF NOT EXISTS orders AS
    SELECT id, user_id, symbol, side, type, qty, price, leverage, sl, tp, account_type, status, reserve,
           fill_price, fee, position_id, client_order_id, created_at, filled_at, updated_at
    FROM order_rows
    UNION ALL
    SELECT id, user_id, symbol, CASE side WHEN 'long' THEN 'buy' ELSE 'sell' END, 'market', qty, NULL,
           leverage, sl, tp, account_type, 'filled', 0, entry_price, open_fee, id, NULL, opened_at,
           opened_at, opened_at
    FROM active_positions WHERE order_id = id
    UNION ALL
    SELECT position_id, user_id, symbol, CASE side WHEN 'long' THEN 'buy' ELSE 'sell' END, 'market', qty,
           NULL, leverage, sl, tp, account_type, 'filled', 0, entry_price, open_fee, position_id, NULL,
           opened_at, opened_at, opened_at
    FROM trade_logs WHERE order_id = position_id;

-- @indexes: one per hot query (see src/store/hot.rs); none is a left prefix of another.
CREATE UNIQUE INDEX IF NOT EXISTS users_token_hash ON users(token_hash);
CREATE INDEX IF NOT EXISTS users_telegram ON users(telegram_id) WHERE telegram_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_pending_user ON order_rows(user_id, account_type, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS orders_pending_book ON order_rows(symbol, price) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS orders_client_id ON order_rows(user_id, client_order_id) WHERE client_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS positions_user ON active_positions(user_id, account_type, id);
CREATE INDEX IF NOT EXISTS positions_symbol ON active_positions(symbol);
CREATE INDEX IF NOT EXISTS trades_user_closed ON trade_logs(user_id, closed_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS trades_closed ON trade_logs(closed_at);
CREATE INDEX IF NOT EXISTS trades_position ON trade_logs(position_id);
CREATE INDEX IF NOT EXISTS signals_symbol_time ON signals(symbol, created_at);
CREATE INDEX IF NOT EXISTS payments_user_time ON payments(user_id, created_at);
CREATE INDEX IF NOT EXISTS user_config_strategy ON user_config(strategy) WHERE strategy IS NOT NULL;
