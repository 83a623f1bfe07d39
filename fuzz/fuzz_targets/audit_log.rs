#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gojinn::fuzz::audit_log(data));
