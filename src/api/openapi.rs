//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of every route in [`super::ROUTES`]
//! (a test keeps the two in step).

use serde_json::{Value, json};

fn dec() -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": "exact decimal, at most 8 fractional digits"})
}
fn dec_in() -> Value {
    json!({"oneOf": [{"type": "string"}, {"type": "number"}], "description": "decimal as a string or a number"})
}
fn nullable(mut v: Value) -> Value {
    v["nullable"] = json!(true);
    v
}
fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn schemas() -> Value {
    let side = json!({"type": "string", "enum": ["buy", "sell"]});
    let pside = json!({"type": "string", "enum": ["long", "short"]});
    let acct = json!({"type": "string", "enum": ["demo", "real"]});
    json!({
        "Error": obj(json!({"error": obj(json!({"code": {"type": "string"}, "message": {"type": "string"}}), &["code", "message"])}), &["error"]),
        "Balance": obj(json!({"account_type": acct, "currency": {"type": "string"}, "wallet": dec(), "margin_used": dec(),
            "order_reserved": dec(), "available": dec(), "unrealized_pnl": dec(), "equity": dec()}),
            &["account_type", "currency", "wallet", "margin_used", "order_reserved", "available", "unrealized_pnl", "equity"]),
        "Order": obj(json!({"id": int(), "user_id": int(), "symbol": {"type": "string"}, "side": side,
            "type": {"type": "string", "enum": ["market", "limit"]}, "qty": dec(), "price": nullable(dec()), "leverage": int(),
            "sl": nullable(dec()), "tp": nullable(dec()), "account_type": acct,
            "status": {"type": "string", "enum": ["pending", "filled", "cancelled"]}, "fill_price": nullable(dec()),
            "fee": nullable(dec()), "position_id": nullable(int()), "client_order_id": {"type": "string", "nullable": true},
            "created_at": int(), "filled_at": nullable(int())}),
            &["id", "user_id", "symbol", "side", "type", "qty", "leverage", "account_type", "status", "created_at"]),
        "Position": obj(json!({"id": int(), "user_id": int(), "symbol": {"type": "string"}, "side": pside, "qty": dec(),
            "entry_price": dec(), "leverage": int(), "margin": dec(), "sl": nullable(dec()), "tp": nullable(dec()),
            "liquidation_price": dec(), "open_fee": dec(), "unrealized_pnl": dec(), "account_type": acct, "opened_at": int()}),
            &["id", "user_id", "symbol", "side", "qty", "entry_price", "leverage", "margin", "liquidation_price", "open_fee", "unrealized_pnl", "account_type", "opened_at"]),
        "Trade": obj(json!({"id": int(), "position_id": int(), "user_id": int(), "symbol": {"type": "string"}, "side": pside,
            "qty": dec(), "entry_price": dec(), "exit_price": dec(), "open_fee": dec(), "close_fee": dec(), "pnl": dec(),
            "reason": {"type": "string", "enum": ["manual", "stop_loss", "take_profit", "liquidation"]}, "account_type": acct,
            "opened_at": int(), "closed_at": int()}),
            &["id", "position_id", "user_id", "symbol", "side", "qty", "entry_price", "exit_price", "open_fee", "close_fee", "pnl", "reason", "account_type", "opened_at", "closed_at"]),
        "User": obj(json!({"id": int(), "name": {"type": "string"}, "telegram_id": nullable(int()), "created_at": int()}), &["id", "name", "created_at"]),
        "Config": obj(json!({"strategy": {"type": "string", "nullable": true}, "leverage": nullable(int()), "risk_pct": nullable(dec()),
            "sl_pct": nullable(dec()), "tp_pct": nullable(dec()), "account_type": acct}), &["account_type"]),
        "License": obj(json!({"license_type": {"type": "string"}, "end_date": int(), "active": {"type": "boolean"}}), &["license_type", "end_date", "active"]),
        "Symbol": obj(json!({"symbol": {"type": "string"}, "tick_size": dec(), "lot_size": dec(), "min_qty": dec(), "max_leverage": int(),
            "maker_fee_bps": dec(), "taker_fee_bps": dec(), "mmr_bps": dec()}),
            &["symbol", "tick_size", "lot_size", "min_qty", "max_leverage", "maker_fee_bps", "taker_fee_bps", "mmr_bps"]),
        "NewOrder": obj(json!({"symbol": {"type": "string"}, "side": side, "type": {"type": "string", "enum": ["market", "limit"]},
            "qty": dec_in(), "price": dec_in(), "leverage": {"type": "integer", "minimum": 1}, "sl": dec_in(), "tp": dec_in(),
            "account_type": acct, "client_order_id": {"type": "string", "maxLength": 64}}), &["symbol", "side", "type", "qty"]),
    })
}

fn op(summary: &str, ok: &str, body: Option<Value>, resp: Value, public: bool) -> Value {
    let mut responses = json!({
        ok: {"description": "success", "content": {"application/json": {"schema": resp}}},
        "default": {"description": "error", "content": {"application/json": {"schema": r("Error")}}},
    });
    if ok == "sse" {
        responses = json!({"200": {"description": "text/event-stream of the user's events"}, "default": {"description": "error", "content": {"application/json": {"schema": r("Error")}}}});
    }
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(b) = body {
        o["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": b}}});
    }
    if public {
        o["security"] = json!([]);
    }
    o
}

fn param(name: &str, kind: &str) -> Value {
    let schema = if kind == "int" {
        json!({"type": "integer", "format": "int64", "minimum": 1})
    } else {
        json!({"type": "string"})
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

/// The OpenAPI document.
pub fn document() -> Value {
    let any = json!({"type": "object"});
    let acct_q = json!([{"name": "account_type", "in": "query", "required": false, "schema": {"type": "string", "enum": ["demo", "real"]}}]);
    let list = |key: &str, item: Value| obj(json!({key: {"type": "array", "items": item}}), &[key]);
    let mut paths = serde_json::Map::new();
    let mut add = |path: &str, method: &str, mut o: Value| {
        let mut params: Vec<Value> = Vec::new();
        for (n, k) in [
            ("id", "int"),
            ("oid", "int"),
            ("pid", "int"),
            ("exchange", "str"),
            ("symbol", "str"),
        ] {
            if path.contains(&format!("{{{n}}}")) {
                params.push(param(n, k));
            }
        }
        if let Some(extra) = o.get("parameters").and_then(|p| p.as_array()).cloned() {
            params.extend(extra);
        }
        if !params.is_empty() {
            o["parameters"] = Value::Array(params);
        }
        let e = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        e[method] = o;
    };
    let u = "/api/v1/users/{id}";
    add(
        "/api/v1/health",
        "get",
        op(
            "liveness",
            "200",
            None,
            obj(json!({"status": {"type": "string"}}), &["status"]),
            true,
        ),
    );
    add(
        "/api/v1/users",
        "post",
        op(
            "create a user (admin); the token is returned only here",
            "201",
            Some(obj(
                json!({"name": {"type": "string", "minLength": 1, "maxLength": 128}, "telegram_id": nullable(int())}),
                &["name"],
            )),
            any.clone(),
            false,
        ),
    );
    let mut find = op(
        "the users created with a Telegram id, oldest first (admin)",
        "200",
        None,
        list("users", r("User")),
        false,
    );
    find["parameters"] =
        json!([{"name": "telegram_id", "in": "query", "required": true, "schema": int()}]);
    add("/api/v1/users", "get", find);
    add(u, "get", op("a user", "200", None, r("User"), false));
    add(
        &format!("{u}/config"),
        "get",
        op("a user's config", "200", None, r("Config"), false),
    );
    add(
        &format!("{u}/config"),
        "put",
        op(
            "change a user's config (absent fields stay, null clears)",
            "200",
            Some(json!({"type": "object"})),
            r("Config"),
            false,
        ),
    );
    let bot = obj(json!({"enabled": {"type": "boolean"}}), &["enabled"]);
    add(
        &format!("{u}/bot"),
        "get",
        op(
            "whether the bot is on (a new user's is off)",
            "200",
            None,
            bot.clone(),
            false,
        ),
    );
    add(
        &format!("{u}/bot"),
        "put",
        op("switch the bot", "200", Some(bot.clone()), bot, false),
    );
    add(
        &format!("{u}/deposit"),
        "post",
        op(
            "deposit demo funds (admin: also real)",
            "200",
            Some(obj(
                json!({"amount": dec_in(), "account_type": {"type": "string", "enum": ["demo", "real"]}}),
                &["amount"],
            )),
            r("Balance"),
            false,
        ),
    );
    let mut bal = op("balance of one account", "200", None, r("Balance"), false);
    bal["parameters"] = acct_q.clone();
    add(&format!("{u}/balance"), "get", bal);
    let mut place = op(
        "place an order; a repeated client_order_id answers the first order",
        "201",
        Some(r("NewOrder")),
        r("Order"),
        false,
    );
    place["responses"]["201"]["headers"] = json!({"Idempotent-Replayed": {
        "description": "`true` when the order is an earlier request's (a repeated client_order_id)",
        "schema": {"type": "string", "enum": ["true"]}}});
    add(&format!("{u}/orders"), "post", place);
    let mut lo = op(
        "pending orders, oldest first",
        "200",
        None,
        list("orders", r("Order")),
        false,
    );
    lo["parameters"] = acct_q.clone();
    add(&format!("{u}/orders"), "get", lo);
    add(
        &format!("{u}/orders/{{oid}}"),
        "get",
        op("an order, any status", "200", None, r("Order"), false),
    );
    add(
        &format!("{u}/orders/{{oid}}"),
        "delete",
        op("cancel a pending order", "200", None, r("Order"), false),
    );
    let mut lp = op(
        "open positions, oldest first",
        "200",
        None,
        list("positions", r("Position")),
        false,
    );
    lp["parameters"] = acct_q;
    add(&format!("{u}/positions"), "get", lp);
    add(
        &format!("{u}/positions/{{pid}}/close"),
        "post",
        op(
            "close a position at the last price",
            "200",
            None,
            r("Trade"),
            false,
        ),
    );
    let mut tr = op("trades, newest first", "200", None, any.clone(), false);
    tr["parameters"] = json!([
        {"name": "page", "in": "query", "required": false, "description": "default 1; any whole number, clamped to at least 1", "schema": {"type": "integer"}},
        {"name": "limit", "in": "query", "required": false, "description": "default 100; any whole number, clamped to 1..=1000", "schema": {"type": "integer"}},
        {"name": "account_type", "in": "query", "required": false, "description": "one account only (default: both)", "schema": {"type": "string", "enum": ["demo", "real"]}}]);
    add(&format!("{u}/trades"), "get", tr);
    let masked = obj(
        json!({"exchange": {"type": "string"}, "api_key_masked": {"type": "string"}}),
        &["exchange", "api_key_masked"],
    );
    add(
        &format!("{u}/credentials/{{exchange}}"),
        "put",
        op(
            "store exchange credentials (encrypted)",
            "200",
            Some(obj(
                json!({"api_key": {"type": "string"}, "api_secret": {"type": "string"}}),
                &["api_key", "api_secret"],
            )),
            masked.clone(),
            false,
        ),
    );
    add(
        &format!("{u}/credentials/{{exchange}}"),
        "get",
        op("masked credentials", "200", None, masked, false),
    );
    add(
        &format!("{u}/redeem"),
        "post",
        op(
            "redeem a promo code",
            "200",
            Some(obj(json!({"code": {"type": "string"}}), &["code"])),
            r("License"),
            false,
        ),
    );
    add(
        &format!("{u}/license"),
        "get",
        op("the user's license", "200", None, r("License"), false),
    );
    add(
        &format!("{u}/events"),
        "get",
        op(
            "Server-Sent Events of the user's orders, positions, balances",
            "sse",
            None,
            any.clone(),
            false,
        ),
    );
    add(
        "/api/v1/market/ticks",
        "post",
        op(
            "ingest price ticks (admin)",
            "200",
            Some(obj(
                json!({"ticks": {"type": "array", "items": obj(json!({"symbol": {"type": "string"}, "price": dec_in(), "ts": int()}), &["symbol", "price"])}}),
                &["ticks"],
            )),
            obj(json!({"accepted": int()}), &["accepted"]),
            false,
        ),
    );
    add(
        "/api/v1/market/{symbol}/ticker",
        "get",
        op(
            "last price",
            "200",
            None,
            obj(
                json!({"symbol": {"type": "string"}, "last": nullable(dec()), "ts": nullable(int())}),
                &["symbol", "last", "ts"],
            ),
            false,
        ),
    );
    add(
        "/api/v1/symbols",
        "get",
        op(
            "symbol specs",
            "200",
            None,
            list("symbols", r("Symbol")),
            false,
        ),
    );
    add(
        "/api/v1/symbols/{symbol}",
        "put",
        op(
            "create or change a symbol (admin)",
            "200",
            Some(json!({"type": "object"})),
            r("Symbol"),
            false,
        ),
    );
    add(
        "/api/v1/signals",
        "post",
        op(
            "fan a strategy signal out (admin)",
            "200",
            Some(obj(
                json!({"strategy": {"type": "string"}, "symbol": {"type": "string"}, "side": {"type": "string", "enum": ["buy", "sell"]}, "sl_pct": dec_in(), "tp_pct": dec_in()}),
                &["strategy", "symbol", "side"],
            )),
            obj(
                json!({"signal_id": int(), "orders_placed": int(), "skipped": int()}),
                &["signal_id", "orders_placed", "skipped"],
            ),
            false,
        ),
    );
    add(
        "/api/v1/promo-codes",
        "post",
        op(
            "create a promo code (admin)",
            "201",
            Some(obj(
                json!({"code": {"type": "string"}, "license_type": {"type": "string"}, "days": {"type": "integer", "minimum": 1}, "max_uses": {"type": "integer", "minimum": 1}, "valid_until": nullable(int())}),
                &["code", "license_type", "days", "max_uses"],
            )),
            any.clone(),
            false,
        ),
    );
    add(
        "/api/v1/admin/dashboard",
        "get",
        op(
            "24 h dashboard (admin; may lag by the api_response TTL)",
            "200",
            None,
            any.clone(),
            false,
        ),
    );
    add(
        "/api/v1/stats/cache",
        "get",
        op(
            "the nine caches' counters (admin)",
            "200",
            None,
            any.clone(),
            false,
        ),
    );
    add(
        "/api/v1/health/db-pool",
        "get",
        op(
            "pool and writer counters (admin)",
            "200",
            None,
            any.clone(),
            false,
        ),
    );
    add(
        "/api/v1/openapi.json",
        "get",
        op("this document", "200", None, any.clone(), false),
    );
    let mut metrics = op("Prometheus metrics", "200", None, any, true);
    metrics["responses"]["200"] = json!({"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}});
    add("/metrics", "get", metrics);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "litetrade", "version": env!("CARGO_PKG_VERSION"), "description": "Paper trading venue API (see API.md)."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    })
}

/// `GET /api/v1/openapi.json` (any valid token: only `/health` and `/metrics` are public).
pub async fn handler(_caller: super::auth::Caller) -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        documented.sort();
        let mut routes: Vec<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
