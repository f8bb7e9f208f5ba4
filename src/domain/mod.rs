//! Pure types and rules: exact money, symbol specs, records and the trading formulas. No I/O.

pub mod math;
pub mod model;
pub mod money;
pub mod rng;
pub mod symbol;
