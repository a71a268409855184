//! Configuration errors: exit 8, naming the file and line; a missing --config file is an error.

use crate::harness::{Run, World, APOPPASSWD, DEAPOP};

#[test]
fn a_bad_line_names_file_and_line() {
    let mut world = World::with_config("min_length = 8\nplaintext = sometimes\n");
    let alice = world.me("alice");
    let config = world.config.display().to_string();
    // The passwd_file, disabled_file and lock_wait lines come first (see the harness).
    let want = format!("{config}:6: plaintext must be intranet, tls, always or never");
    world
        .apoppasswd()
        .arg("--status")
        .user(&alice)
        .run()
        .fails(8, &format!("apoppasswd: {want}"));
    if crate::harness::is_root() {
        world
            .deapop()
            .arg("--list")
            .run()
            .fails(8, &format!("deapop: {want}"));
    }
    let unknown = World::with_config("bogus_key = 1\n");
    unknown
        .apoppasswd()
        .arg("--status")
        .run()
        .fails(8, ":5: unknown key \"bogus_key\"");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let world = World::new();
    let missing = world.path().join("no-such.conf");
    let mut runs = vec![(APOPPASSWD, "--status")];
    // deapop refuses a non-root caller before it reads any configuration.
    if crate::harness::is_root() {
        runs.push((DEAPOP, "--list"));
    }
    for (bin, mode) in runs {
        let out = Run::new(bin)
            .args(["--config", missing.to_str().unwrap(), mode])
            .run();
        assert_eq!(out.code, 8, "{out:#?}");
        assert!(
            out.stderr.contains("no-such.conf: No such file"),
            "{out:#?}"
        );
    }
}

#[test]
fn a_broken_passwd_file_is_a_config_error() {
    let world = World::with_config("");
    std::fs::write(world.path().join("passwd"), "alice:x:60001\n").unwrap();
    world
        .apoppasswd()
        .arg("--status")
        .run()
        .fails(8, "passwd:1: expected 7 colon-separated fields");
}
