//! The hot queries, in one place: every read the engine and the API run often, with sample
//! parameters. The EXPLAIN QUERY PLAN test and `litetrade optimize` walk this list.

use super::tables::{
    analytics, balances, config, credentials, licenses, orders, positions, signals, symbols,
    trades, users,
};
use rusqlite::types::Value;

/// A hot query and sample parameters for planning and timing it.
pub struct HotQuery {
    /// Short name.
    pub name: &'static str,
    /// The SQL the store runs.
    pub sql: &'static str,
    /// Sample bound parameters.
    pub params: Vec<Value>,
}

fn q(name: &'static str, sql: &'static str, params: Vec<Value>) -> HotQuery {
    HotQuery { name, sql, params }
}

/// Every hot query with representative parameters (user 1, BTCUSDT, the last 24 h).
pub fn hot_queries() -> Vec<HotQuery> {
    let u = || Value::Integer(1);
    let demo = || Value::Text("demo".into());
    let sym = || Value::Text("BTCUSDT".into());
    let day_ago = || Value::Integer(crate::domain::model::now_ms() - 86_400_000);
    vec![
        q(
            "balance_by_user_account",
            balances::BY_USER_ACCOUNT,
            vec![u(), demo()],
        ),
        q(
            "positions_by_user_account",
            positions::BY_USER,
            vec![u(), demo()],
        ),
        q("positions_by_symbol", positions::BY_SYMBOL, vec![sym()]),
        q(
            "pending_orders_by_user",
            orders::PENDING_BY_USER,
            vec![u(), demo()],
        ),
        q(
            "pending_orders_by_symbol_price",
            orders::PENDING_BY_SYMBOL,
            vec![sym()],
        ),
        q("order_by_id", orders::BY_ID, vec![u()]),
        q(
            "order_by_client_id",
            orders::BY_CLIENT_ID,
            vec![u(), Value::Text("cid".into())],
        ),
        q(
            "trades_page_by_user",
            trades::PAGE_BY_USER,
            vec![u(), Value::Integer(100), Value::Integer(0)],
        ),
        q("trades_count_by_user", trades::COUNT_BY_USER, vec![u()]),
        q(
            "trades_page_by_account",
            trades::PAGE_BY_USER_ACCOUNT,
            vec![
                u(),
                Value::Integer(100),
                Value::Integer(0),
                Value::Text("demo".into()),
            ],
        ),
        q(
            "trades_count_by_account",
            trades::COUNT_BY_USER_ACCOUNT,
            vec![u(), Value::Text("demo".into())],
        ),
        q("trade_totals_by_user", trades::TOTALS_BY_USER, vec![u()]),
        q(
            "trade_totals_by_account",
            trades::TOTALS_BY_USER_ACCOUNT,
            vec![u(), demo()],
        ),
        q("trade_by_position", trades::BY_POSITION, vec![u()]),
        q(
            "trades_closed_24h",
            analytics::TRADES_SINCE,
            vec![day_ago()],
        ),
        q("config_by_user", config::BY_USER, vec![u()]),
        q("user_by_id", users::BY_ID, vec![u()]),
        q("users_by_telegram_id", users::BY_TELEGRAM, vec![u()]),
        q(
            "user_by_token_hash",
            users::BY_TOKEN,
            vec![Value::Blob(vec![0; 32])],
        ),
        q(
            "credentials_by_user_exchange",
            credentials::BY_USER_EXCHANGE,
            vec![u(), Value::Text("binance".into())],
        ),
        q("symbol_by_name", symbols::BY_SYMBOL, vec![sym()]),
        q("license_by_user", licenses::BY_USER, vec![u()]),
        q(
            "promo_by_code",
            licenses::PROMO_BY_CODE,
            vec![Value::Text("WELCOME".into())],
        ),
        q(
            "payments_by_user_time",
            licenses::PAYMENTS_BY_USER,
            vec![u(), day_ago()],
        ),
        q(
            "signals_by_symbol_time",
            signals::BY_SYMBOL_TIME,
            vec![sym(), day_ago()],
        ),
    ]
}

/// The `EXPLAIN QUERY PLAN` of a query, its detail lines joined with `; `.
pub fn plan(conn: &rusqlite::Connection, h: &HotQuery) -> rusqlite::Result<String> {
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", h.sql))?;
    let rows = st.query_map(rusqlite::params_from_iter(h.params.iter()), |r| {
        r.get::<_, String>(3)
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("; "))
}

/// True when the plan reads a table without an index (a `SCAN` that is not over an index).
/// Reading the rows a view's co-routine yields (`CO-ROUTINE orders` … `SCAN orders`) is not a
/// table scan: the steps inside the co-routine say how each table is read.
pub fn plan_scans_table(plan: &str) -> bool {
    let steps: Vec<&str> = plan.split("; ").collect();
    let coroutines: Vec<&str> = steps
        .iter()
        .filter_map(|s| s.strip_prefix("CO-ROUTINE "))
        .collect();
    steps.iter().any(|step| {
        step.strip_prefix("SCAN ").is_some_and(|what| {
            !coroutines.contains(&what)
                && !what.contains("USING INDEX")
                && !what.contains("USING COVERING INDEX")
                && !what.contains("CONSTANT ROW")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::plan_scans_table;

    #[test]
    fn a_scan_counts_unless_over_an_index_or_a_co_routine() {
        assert!(plan_scans_table("SCAN trade_logs"));
        assert!(!plan_scans_table(
            "SEARCH trade_logs USING INDEX trades_position (position_id=?)"
        ));
        assert!(!plan_scans_table(
            "SCAN order_rows USING COVERING INDEX orders_pending_book"
        ));
        // a view's rows, read from the co-routine that searched each table
        let view = "CO-ROUTINE orders; COMPOUND QUERY; LEFT-MOST SUBQUERY; \
                    SEARCH order_rows USING INTEGER PRIMARY KEY (rowid=?); SCAN orders";
        assert!(!plan_scans_table(view));
        // a co-routine that itself scans a table
        assert!(plan_scans_table(
            "CO-ROUTINE orders; SCAN active_positions; SCAN orders"
        ));
        // a scan of a table that only shares a prefix with a co-routine's name
        assert!(plan_scans_table("CO-ROUTINE orders; SCAN orders_archive"));
    }
}
