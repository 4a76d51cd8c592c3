//! Arbitrary bytes as a gateway config: parse and validation must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = auth_core::Gateway::from_json(data);
});
