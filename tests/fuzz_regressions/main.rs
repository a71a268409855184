//! Every input kept under tests/corpus/<target>/ (the minimised fuzz corpora and any input that
//! once crashed) runs through the same property checks as the fuzz targets in fuzz/.

use std::path::PathBuf;

fn run(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks a property",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "no corpus for {target} in {}", dir.display());
    eprintln!("{target}: {n} corpus inputs hold");
}

#[test]
fn config_corpus() {
    run("config", apoptools::testing::fuzzing::config);
}

#[test]
fn store_file_corpus() {
    run("store_file", apoptools::testing::fuzzing::store_file);
}

#[test]
fn pop3_parser_corpus() {
    run("pop3_parser", apoptools::testing::fuzzing::pop3_parser);
}

#[test]
fn proxy_header_corpus() {
    run("proxy_header", apoptools::testing::fuzzing::proxy_header);
}

#[test]
fn checkpassword_request_corpus() {
    run(
        "checkpassword_request",
        apoptools::testing::fuzzing::checkpassword_request,
    );
}

#[test]
fn poppassd_dialogue_corpus() {
    run(
        "poppassd_dialogue",
        apoptools::testing::fuzzing::poppassd_dialogue,
    );
}

#[test]
fn pipe_frames_corpus() {
    run("pipe_frames", apoptools::testing::fuzzing::pipe_frames);
}

/// In a temp directory of its own, removed afterwards (the fuzz target keeps one on tmpfs).
#[test]
fn session_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    run("session", |data| {
        apoptools::testing::fuzzing::session_in(root, data)
    });
}

#[test]
fn sasl_corpus() {
    run("sasl", apoptools::testing::fuzzing::sasl);
}

#[test]
fn uidl_import_corpus() {
    run("uidl_import", apoptools::testing::fuzzing::uidl_import);
}
