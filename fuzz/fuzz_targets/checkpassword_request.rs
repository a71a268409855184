#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| apoptools::testing::fuzzing::checkpassword_request(data));
