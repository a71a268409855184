//! Generated files: man pages under man/ and shell completions under completions/ are built
//! by the library (`apoptools::testing::manual`, the one place their prose lives), committed,
//! and checked here. Run with UPDATE_GENERATED=1 to rewrite them after changing a command line.

use std::path::{Path, PathBuf};

use apoptools::testing::config::KEYS;
use apoptools::testing::manual;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated text of one file, by its path relative to the repository root.
fn page(rel: &str) -> String {
    let (_, bytes) = manual::generated()
        .into_iter()
        .find(|(path, _)| path == rel)
        .unwrap_or_else(|| panic!("{rel} is not generated"));
    String::from_utf8(bytes).unwrap()
}

#[test]
fn man_pages_and_completions_match_the_code() {
    let files = manual::generated();
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        for (rel, want) in &files {
            let path = root().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, want).unwrap();
        }
        return;
    }
    let stale: Vec<&str> = files
        .iter()
        .filter(|(rel, want)| std::fs::read(root().join(rel)).unwrap_or_default() != *want)
        .map(|(rel, _)| rel.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "generated files differ from the code: {stale:?}; run `UPDATE_GENERATED=1 cargo test --test generated` and commit"
    );
}

#[test]
fn every_config_key_and_option_is_documented() {
    let conf = page("man/apoptools.conf.5");
    for key in KEYS {
        assert!(
            conf.contains(&format!("\\fB{}\\fR", key.name)),
            "{} missing",
            key.name
        );
    }
    let page = page("man/apoppasswd.1");
    for opt in [
        "\\-\\-stdin",
        "\\-\\-batch",
        "\\-\\-generate",
        "\\-\\-check",
        "\\-\\-status",
        "\\-\\-delete",
        "\\-\\-ext",
        "\\-\\-config",
    ] {
        assert!(page.contains(opt), "apoppasswd(1) lacks {opt}");
    }
    assert!(Path::new(&root().join("man")).is_dir());
}
