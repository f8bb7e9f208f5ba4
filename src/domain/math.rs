//! The money formulas of API.md §1. Each amount is computed exactly in `i128` and rounded once,
//! half away from zero, to 8 fractional digits (liquidation prices: to the tick, long up, short
//! down). Inputs are bounded by [`MAX_NOTIONAL`] so no product can overflow.

use super::model::PositionSide;
use super::money::{Dec, SCALE, div_ceil, div_floor, div_round_half_away};
use super::symbol::{Bps, CENTI_BPS_PER_ONE};

/// Largest notional (price × qty) an order may open, in whole quote units: 10^10.
pub const MAX_NOTIONAL: i128 = 10_000_000_000;
/// Largest price a tick, a limit, a stop loss or a take profit may carry: 10^9.
pub const MAX_PRICE: Dec = Dec(1_000_000_000 * SCALE);
const S: i128 = SCALE as i128;

/// price × qty in raw² units (10^-16), or `None` when beyond [`MAX_NOTIONAL`].
pub fn notional_raw(price: Dec, qty: Dec) -> Option<i128> {
    let n = price.raw() as i128 * qty.raw() as i128;
    (n.abs() <= MAX_NOTIONAL * S * S).then_some(n)
}

/// Converts to `Dec`, saturating at the representable range (±92,233,720,368.54775807). Only
/// reachable after extreme price moves on a position; order entry is bounded by [`MAX_NOTIONAL`].
pub fn to_dec(v: i128) -> Dec {
    Dec(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// margin = price × qty / leverage.
pub fn margin(price: Dec, qty: Dec, leverage: u32) -> Option<Dec> {
    let n = notional_raw(price, qty)?;
    Some(to_dec(div_round_half_away(n, S * leverage as i128)))
}

/// fee = price × qty × bps / 10000.
pub fn fee(price: Dec, qty: Dec, bps: Bps) -> Option<Dec> {
    let n = notional_raw(price, qty)?;
    Some(to_dec(div_round_half_away(
        n * bps.0 as i128,
        S * CENTI_BPS_PER_ONE,
    )))
}

/// The fee of closing at any price (no notional bound; saturates instead).
pub fn close_fee(price: Dec, qty: Dec, bps: Bps) -> Dec {
    let n = price.raw() as i128 * qty.raw() as i128;
    match n.checked_mul(bps.0 as i128) {
        Some(x) => to_dec(div_round_half_away(x, S * CENTI_BPS_PER_ONE)),
        None => to_dec(div_round_half_away(n, S * CENTI_BPS_PER_ONE) * bps.0 as i128),
    }
}

/// A resting limit order's reserve: its margin plus its taker fee, each rounded on its own.
pub fn reserve(limit: Dec, qty: Dec, leverage: u32, taker: Bps) -> Option<Dec> {
    Some(Dec(
        margin(limit, qty, leverage)?.raw() + fee(limit, qty, taker)?.raw()
    ))
}

/// Gross PnL of closing `qty` opened at `entry` at `exit`.
pub fn gross_pnl(side: PositionSide, entry: Dec, exit: Dec, qty: Dec) -> Dec {
    let diff = match side {
        PositionSide::Long => exit.raw() as i128 - entry.raw() as i128,
        PositionSide::Short => entry.raw() as i128 - exit.raw() as i128,
    };
    to_dec(div_round_half_away(diff * qty.raw() as i128, S))
}

/// The gross PnL and the close fee a close actually charges, given the most the account can
/// lose (`most_loss`: its available balance plus the position's margin) and the most its wallet
/// can still gain (`most_gain`). Nothing may go below zero (API.md §1), so what the account
/// cannot pay is waived: first the close fee, then the loss. A gain beyond what a wallet can
/// hold (only after absurd price moves) is capped.
pub fn chargeable(gross: Dec, fee: Dec, most_loss: Dec, most_gain: Dec) -> (Dec, Dec) {
    let floor = -(most_loss.raw() as i128).max(0);
    let gross = (gross.raw() as i128).max(floor);
    let fee = (fee.raw() as i128).min(gross - floor);
    let gross = gross.min((most_gain.raw() as i128).max(0) + fee);
    (to_dec(gross), to_dec(fee))
}

/// Isolated-margin liquidation price, rounded to `tick` (long: up, short: down).
///
/// Rounding to the tick never crosses an entry that lies on the tick grid, since the exact
/// price lies on the losing side of the entry. A feed's tick may lie off the grid, though (tick
/// prices are taken as given), and then that rounding could put the price on the winning side
/// of the entry, so a liquidation would pay out a profit. In that case alone the price is
/// rounded the same way to 8 fractional digits instead, which stays on the losing side.
pub fn liquidation_price(
    side: PositionSide,
    entry: Dec,
    leverage: u32,
    mmr: Bps,
    tick: Dec,
) -> Dec {
    let l = leverage as i128;
    let one = CENTI_BPS_PER_ONE;
    let m = mmr.0 as i128;
    let (num, den) = match side {
        PositionSide::Long => (l * one - one + m * l, l * one),
        PositionSide::Short => (l * one + one - m * l, l * one),
    };
    let exact_num = entry.raw() as i128 * num;
    let rounded_to = |step: i128| {
        step * match side {
            PositionSide::Long => div_ceil(exact_num, den * step),
            PositionSide::Short => div_floor(exact_num, den * step),
        }
    };
    let on_tick = rounded_to(tick.raw() as i128);
    let entry = entry.raw() as i128;
    let crosses = match side {
        PositionSide::Long => on_tick > entry,
        PositionSide::Short => on_tick < entry,
    };
    to_dec(if crosses { rounded_to(1) } else { on_tick })
}

/// `price × (1 + pct/100)` (use a negative `pct` for minus), rounded to the nearest tick.
pub fn offset_to_tick(price: Dec, pct: Dec, tick: Dec) -> Dec {
    let hundred = 100 * S;
    let num = price.raw() as i128 * (hundred + pct.raw() as i128);
    let t = tick.raw() as i128;
    to_dec(div_round_half_away(num, hundred * t) * t)
}

/// A signal's order size: available × risk_pct/100 × leverage / price, floored to `lot`.
pub fn signal_qty(available: Dec, risk_pct: Dec, leverage: u32, price: Dec, lot: Dec) -> Dec {
    if !price.is_positive() || !lot.is_positive() || available.raw() <= 0 || risk_pct.raw() <= 0 {
        return Dec::ZERO;
    }
    let num = available.raw() as i128 * risk_pct.raw() as i128 * leverage as i128;
    let qty_raw = num / (100 * price.raw() as i128);
    let lot_raw = lot.raw() as i128;
    let q = (qty_raw / lot_raw) * lot_raw;
    Dec(i64::try_from(q).unwrap_or(i64::MAX / lot.raw() * lot.raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PositionSide::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn worked_numbers_from_the_contract() {
        let taker = Bps(550);
        let maker = Bps(200);
        let mmr = Bps(5000);
        let tick = d("0.01");
        // market buy 1 @ 100 x10
        assert_eq!(margin(d("100"), d("1"), 10), Some(d("10")));
        assert_eq!(fee(d("100"), d("1"), taker), Some(d("0.055")));
        assert_eq!(liquidation_price(Long, d("100"), 10, mmr, tick), d("90.5"));
        assert_eq!(liquidation_price(Long, d("100"), 50, mmr, tick), d("98.5"));
        // resting buy 2 @ 95 x5
        assert_eq!(reserve(d("95"), d("2"), 5, taker), Some(d("38.1045")));
        assert_eq!(fee(d("95"), d("2"), maker), Some(d("0.038")));
        // stop loss exit at 92.9: pnl = gross - open fee - close fee
        let gross = gross_pnl(Long, d("95"), d("92.9"), d("2"));
        let close_fee = fee(d("92.9"), d("2"), taker).unwrap();
        assert_eq!(
            Dec(gross.raw() - d("0.038").raw() - close_fee.raw()),
            d("-4.34019")
        );
        // short tp at 90 from 100
        let g = gross_pnl(Short, d("100"), d("90"), d("1"));
        let pnl = g.raw() - d("0.055").raw() - fee(d("90"), d("1"), taker).unwrap().raw();
        assert_eq!(Dec(pnl), d("9.8955"));
    }

    #[test]
    fn liquidation_rounds_to_the_tick_outward_and_never_past_the_entry() {
        // (side, entry, leverage, expected), at mmr 0.5 % and tick 0.01
        let cases = [
            // 33.33 × (1 − 1/3 + 0.005) = 22.38665 → up 22.39
            (Long, "33.33", 3, "22.39"),
            // 33.33 × (1 + 1/3 − 0.005) = 44.27335 → down 44.27
            (Short, "33.33", 3, "44.27"),
            // an on-grid entry keeps the tick rounding, even when it reaches the entry itself
            (Short, "0.52", 100, "0.52"),
            // an off-grid entry whose tick rounding stays on the losing side keeps it
            (Long, "100.005", 10, "90.51"),
            // off the grid, the tick would cross the entry: 8 digits instead
            // 0.5237 × 1.005 = 0.5263185 (down to the tick: 0.52, below the entry)
            (Short, "0.5237", 100, "0.5263185"),
            // 0.005 × 0.005 = 0.000025 (up to the tick: 0.01, above the entry)
            (Long, "0.005", 1, "0.000025"),
            // 0.00333333 × 0.005 = 0.0000166666665 → up 0.00001667
            (Long, "0.00333333", 1, "0.00001667"),
        ];
        for (side, entry, lev, want) in cases {
            assert_eq!(
                liquidation_price(side, d(entry), lev, Bps(5000), d("0.01")),
                d(want),
                "{side:?} {entry} x{lev}"
            );
        }
    }

    #[test]
    fn a_close_charges_only_what_the_account_holds() {
        let (g, f) = (d("-1"), d("9.9"));
        // enough to pay everything: charged as computed
        assert_eq!(chargeable(g, f, d("20"), d("1000")), (g, f));
        // 1 to lose: the loss is paid, the fee waived
        assert_eq!(chargeable(g, f, d("1"), d("1000")), (g, d("0")));
        // 5 to lose: the loss, then 4 of the fee
        assert_eq!(chargeable(g, f, d("5"), d("1000")), (g, d("4")));
        // 0.4 to lose: part of the loss too
        assert_eq!(chargeable(g, f, d("0.4"), d("1000")), (d("-0.4"), d("0")));
        // a gain beyond the wallet's room is capped, net of the whole fee
        assert_eq!(
            chargeable(d("500"), d("1"), d("0"), d("100")),
            (d("101"), d("1"))
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_once() {
        // 0.00000001 * 0.5 = 0.000000005 -> 0.00000001
        assert_eq!(
            gross_pnl(Long, d("0"), d("0.00000001"), d("0.5")),
            d("0.00000001")
        );
        assert_eq!(
            gross_pnl(Short, d("0"), d("0.00000001"), d("0.5")),
            d("-0.00000001")
        );
        // fee 1 * 0.001 * 5.5 bps = 0.00000055
        assert_eq!(fee(d("1"), d("0.001"), Bps(550)), Some(d("0.00000055")));
        // 0.00000001 * 1 * 5.5bps rounds to 0
        assert_eq!(fee(d("0.00000001"), d("1"), Bps(550)), Some(d("0")));
        // ties of a fee and a margin go up, not to even and not down:
        // 0.01 * 0.001 * 5 bps = 0.000000005
        assert_eq!(fee(d("0.01"), d("0.001"), Bps(500)), Some(d("0.00000001")));
        // 0.00000001 / 2 = 0.000000005, 0.00000003 / 2 = 0.000000015
        assert_eq!(margin(d("0.00000001"), d("1"), 2), Some(d("0.00000001")));
        assert_eq!(margin(d("0.00000003"), d("1"), 2), Some(d("0.00000002")));
        // a reserve rounds each of its two parts (API.md): 0.00000001 / 2 and
        // 0.00000001 * 5000 bps are both 0.000000005, so 2 units, where rounding the sum once
        // would give 1
        assert_eq!(
            reserve(d("0.00000001"), d("1"), 2, Bps(500_000)),
            Some(d("0.00000002"))
        );
    }

    #[test]
    fn signal_sizing_and_offsets() {
        // 1000 available, 10 % risk, x5, price 100 -> 5 units
        assert_eq!(
            signal_qty(d("1000"), d("10"), 5, d("100"), d("0.001")),
            d("5")
        );
        assert_eq!(
            signal_qty(d("1"), d("1"), 1, d("30000"), d("0.001")),
            d("0")
        );
        assert_eq!(offset_to_tick(d("100"), d("-2"), d("0.01")), d("98"));
        assert_eq!(offset_to_tick(d("123.45"), d("1.5"), d("0.01")), d("125.3"));
    }

    #[test]
    fn notional_is_bounded() {
        assert!(margin(d("10000000"), d("1001"), 1).is_none());
        assert_eq!(margin(d("10000000"), d("1000"), 1), Some(d("10000000000")));
        // far beyond the bounds, the PnL and the close fee saturate instead of failing
        let huge = gross_pnl(
            PositionSide::Long,
            d("0.00000001"),
            d("90000000000"),
            d("90000000000"),
        );
        assert_eq!(huge, Dec(i64::MAX));
        assert_eq!(
            close_fee(d("90000000000"), d("90000000000"), Bps(550)),
            Dec(i64::MAX)
        );
        assert_eq!(close_fee(d("100"), d("1"), Bps(550)), d("0.055"));
    }
}
