//! Symbol specifications: steps, limits and fee/margin rates of one tradable pair.

use super::money::Dec;
use serde::{Deserialize, Serialize};

/// A rate in basis points, exact to 1/100 of a basis point (`5.5` bps is `Bps(550)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bps(pub i64);

/// Hundredths of a basis point in one whole (1 = 10_000 bps = 1_000_000 centi-bps).
pub const CENTI_BPS_PER_ONE: i128 = 1_000_000;

impl Bps {
    /// Converts a decimal basis-point figure; at most two fractional digits.
    pub fn from_dec(d: Dec) -> Option<Bps> {
        let per_cbps = super::money::SCALE / 100;
        (d.raw() % per_cbps == 0).then(|| Bps(d.raw() / per_cbps))
    }

    /// The same rate as a decimal number of basis points.
    pub fn to_dec(self) -> Dec {
        Dec(self.0 * (super::money::SCALE / 100))
    }
}

impl Serialize for Bps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_dec().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Dec::deserialize(d)?;
        Bps::from_dec(v).ok_or_else(|| {
            serde::de::Error::custom("basis points take at most 2 fractional digits")
        })
    }
}

/// The trading rules of one symbol (API.md §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolSpec {
    /// Name, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Price step.
    pub tick_size: Dec,
    /// Quantity step.
    pub lot_size: Dec,
    /// Smallest order quantity.
    pub min_qty: Dec,
    /// Highest allowed leverage.
    pub max_leverage: u32,
    /// Fee for resting limit fills.
    pub maker_fee_bps: Bps,
    /// Fee for immediate fills and closes.
    pub taker_fee_bps: Bps,
    /// Maintenance margin rate.
    pub mmr_bps: Bps,
}

/// A partial update of a [`SymbolSpec`] (`PUT /symbols/{symbol}`): fields left out keep their
/// current value, or the default for a new symbol.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolPatch {
    /// Price step.
    pub tick_size: Option<Dec>,
    /// Quantity step.
    pub lot_size: Option<Dec>,
    /// Smallest quantity.
    pub min_qty: Option<Dec>,
    /// Highest leverage.
    pub max_leverage: Option<u32>,
    /// Maker fee.
    pub maker_fee_bps: Option<Bps>,
    /// Taker fee.
    pub taker_fee_bps: Option<Bps>,
    /// Maintenance margin rate.
    pub mmr_bps: Option<Bps>,
}

impl SymbolPatch {
    /// `base` with this patch's fields put in.
    pub fn apply_to(&self, base: SymbolSpec) -> SymbolSpec {
        SymbolSpec {
            tick_size: self.tick_size.unwrap_or(base.tick_size),
            lot_size: self.lot_size.unwrap_or(base.lot_size),
            min_qty: self.min_qty.unwrap_or(base.min_qty),
            max_leverage: self.max_leverage.unwrap_or(base.max_leverage),
            maker_fee_bps: self.maker_fee_bps.unwrap_or(base.maker_fee_bps),
            taker_fee_bps: self.taker_fee_bps.unwrap_or(base.taker_fee_bps),
            mmr_bps: self.mmr_bps.unwrap_or(base.mmr_bps),
            symbol: base.symbol,
        }
    }
}

impl SymbolSpec {
    /// The defaults of API.md §1 for a fresh database.
    pub fn default_for(symbol: &str) -> SymbolSpec {
        SymbolSpec {
            symbol: symbol.to_string(),
            tick_size: Dec(1_000_000),
            lot_size: Dec(100_000),
            min_qty: Dec(100_000),
            max_leverage: 100,
            maker_fee_bps: Bps(200),
            taker_fee_bps: Bps(550),
            mmr_bps: Bps(5000),
        }
    }

    /// Checks that the spec is internally consistent; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.symbol.is_empty()
            && self.symbol.len() <= 20
            && self
                .symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !name_ok {
            return Err("symbol must be 1-20 characters A-Z or 0-9".into());
        }
        if !self.tick_size.is_positive() || !self.lot_size.is_positive() {
            return Err("tick_size and lot_size must be > 0".into());
        }
        if self.tick_size > super::math::MAX_PRICE {
            // no price, limit, stop or target could be a multiple of it
            return Err(format!(
                "tick_size must be at most the largest price, {}",
                super::math::MAX_PRICE
            ));
        }
        if !self.min_qty.is_positive() || !self.min_qty.is_multiple_of(self.lot_size) {
            return Err("min_qty must be > 0 and a multiple of lot_size".into());
        }
        if !(1..=1000).contains(&self.max_leverage) {
            return Err("max_leverage must be 1..=1000".into());
        }
        let max_fee = Bps(100_000); // 1000 bps = 10 %
        for (name, b) in [
            ("maker_fee_bps", self.maker_fee_bps),
            ("taker_fee_bps", self.taker_fee_bps),
        ] {
            if b.0 < 0 || b > max_fee {
                return Err(format!("{name} must be within 0..=1000"));
            }
        }
        if self.maker_fee_bps > self.taker_fee_bps {
            return Err("maker_fee_bps must not exceed taker_fee_bps (a limit order's reserve covers the taker fee)".into());
        }
        if self.mmr_bps.0 < 0
            || self.mmr_bps.0 as i128 * self.max_leverage as i128 >= CENTI_BPS_PER_ONE
        {
            return Err("mmr_bps must be >= 0 and below 1/max_leverage (else a position is born liquidated)".into());
        }
        Ok(())
    }
}

/// The symbols a fresh database holds.
pub const DEFAULT_SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];
