//! The order-request JSON: never panics; an accepted request has the shape the engine expects.
#![no_main]
use libfuzzer_sys::fuzz_target;
use litetrade::NewOrder;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = serde_json::from_slice::<NewOrder>(data) {
        // exact decimals survive: re-reading their text gives the same values
        let again = litetrade::domain::money::Dec::parse(&o.qty.to_string()).expect("qty text");
        assert_eq!(again, o.qty);
        if let Some(p) = o.price {
            assert_eq!(litetrade::domain::money::Dec::parse(&p.to_string()), Ok(p));
        }
    }
});
