//! Money parsing: never panics; whatever parses formats back to text that parses to the same
//! value, and agrees with the JSON string and number forms.
#![no_main]
use libfuzzer_sys::fuzz_target;
use litetrade::domain::money::Dec;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Dec::parse(s) {
        let text = d.to_string();
        assert_eq!(Dec::parse(&text), Ok(d), "round trip of {s:?} via {text:?}");
        let from_json: Dec = serde_json::from_str(&format!("\"{text}\"")).expect("string form");
        assert_eq!(from_json, d);
        if let Ok(n) = serde_json::from_str::<Dec>(&text) {
            assert_eq!(n, d, "number form of {text}");
        }
    }
});
