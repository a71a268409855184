#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| apoptools::fuzzing::session(data));
