#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| apoptools::testing::fuzzing::uidl_import(data));
