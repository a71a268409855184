//! fuzzing: the properties the fuzz targets (fuzz/) and their regression tests (tests/corpus)
//! check, in one place so both run exactly the same code. Each function takes arbitrary bytes
//! and panics only if a property is broken.

use std::path::Path;

use crate::config::Config;
use crate::store::{decode, encode};

/// Any bytes give a Config, or an error that names the file and line.
pub fn config(data: &[u8]) {
    match Config::parse(data, Path::new("/fuzz.conf")) {
        Ok(cfg) => assert!(cfg.min_length >= 1 && cfg.max_auth_failures >= 1),
        Err(e) => assert!(e.to_string().starts_with("/fuzz.conf:"), "{e}"),
    }
}

/// Any bytes decode to a non-empty secret without NUL or newline, or to a "malformed" reason;
/// a decoded record re-encodes to bytes that decode the same.
pub fn store_file(data: &[u8]) {
    if let Ok(rec) = decode(data) {
        let s = rec.secret.as_bytes();
        assert!(!s.is_empty() && !s.contains(&0) && !s.contains(&b'\n'));
        let again = decode(&encode(&rec)).expect("a re-encoded record decodes");
        assert_eq!(again.secret.as_bytes(), s);
        assert_eq!(again.changed, rec.changed);
        assert_eq!(again.by, rec.by);
    }
}
