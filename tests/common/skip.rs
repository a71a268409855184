//! skip: the one way a test says it did not run, and the guard that makes a skip fail in CI.
//!
//! A test that cannot run here (it needs root, or an outside program that is not installed)
//! prints `SKIPPED (<why>): <test>` straight to fd 2, past the test runner's capture, and
//! returns. With `APOPTOOLS_REQUIRE_ALL` set non-empty (`.ci/run` sets it), a skip panics
//! instead: CI runs as root with every program installed, so a skip there is a defect.
//! Root-only tests carry `_root` in their names, so `cargo test _root` selects them; asking
//! for root from a test not so named panics here, wherever it runs.

use std::io::Write as _;
use std::path::PathBuf;

/// Says that `test` is skipped and why; panics instead under `APOPTOOLS_REQUIRE_ALL`.
pub fn skipped(why: &str, test: &str) {
    if std::env::var_os("APOPTOOLS_REQUIRE_ALL").is_some_and(|v| !v.is_empty()) {
        panic!("{test} would be skipped ({why}), and APOPTOOLS_REQUIRE_ALL forbids skips");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED ({why}): {test}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether root-only `test` may go on; if not, says it is skipped.
pub fn need_root(test: &str) -> bool {
    assert!(
        test.contains("_root"),
        "root-only test {test:?} must carry `_root` in its name"
    );
    if !is_root() {
        skipped("needs root", test);
    }
    is_root()
}

/// The path of `program` on `PATH`, if installed.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether every program in `programs` is installed; if not, says which one `test` lacks.
pub fn need_programs(programs: &[&str], test: &str) -> bool {
    match programs.iter().find(|p| find_program(p).is_none()) {
        Some(missing) => {
            skipped(&format!("needs {missing}"), test);
            false
        }
        None => true,
    }
}
