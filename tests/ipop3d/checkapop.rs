//! checkapop through its own harness (root only: on success it drops to the account): the
//! checkpassword request on fd 3, the exit status, and what PROG saw (its uid, gid, USER, HOME,
//! working directory), or that it never ran. In `--dovecot` mode PROG is a stand-in for
//! Dovecot's checkpassword-reply that prints what it was given.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::World;

const CHECKAPOP: &str = env!("CARGO_BIN_EXE_checkapop");

/// A PROG that prints its identity and environment, one `key=value` a line.
fn prog(w: &World) -> PathBuf {
    let path = w.path().join("prog.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"uid=$(id -u) gid=$(id -g) groups=$(id -G)\"\necho \"USER=$USER\"\n\
         echo \"HOME=$HOME\"\necho \"PWD=$(pwd)\"\necho \"SHELL=$SHELL\"\necho \"EXTRA=$EXTRA\"\n\
         echo \"userdb_uid=$userdb_uid userdb_gid=$userdb_gid\"\necho \"PASSWORD=$PASSWORD\"\n\
         echo \"AUTHORIZED=$AUTHORIZED\"\necho \"args=$*\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs checkapop with `request` on fd 3 (None: fd 3 closed) and `env`; its exit code, what
/// PROG printed, and checkapop's log.
fn run(
    w: &World,
    request: Option<&[u8]>,
    dovecot: bool,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    w.write_config();
    let req = w.path().join("request");
    let mut cmd = Command::new("/bin/sh");
    match request {
        Some(bytes) => {
            std::fs::write(&req, bytes).unwrap();
            cmd.arg("-c").arg("exec \"$0\" \"$@\" 3< \"$REQ\"");
        }
        None => {
            cmd.arg("-c").arg("exec \"$0\" \"$@\" 3<&-");
        }
    }
    cmd.arg(CHECKAPOP).arg("--config").arg(w.config_path());
    if dovecot {
        cmd.arg("--dovecot");
    }
    let out = cmd
        .arg(prog(w))
        .arg("first-arg")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("REQ", &req)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&req);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn request(login: &str, password: &str, timestamp: &str) -> Vec<u8> {
    format!("{login}\0{password}\0{timestamp}\0").into_bytes()
}

#[test]
fn checkapop_qmail_mode_root() {
    if !crate::harness::need_root("checkapop_qmail_mode_root") {
        return;
    }
    let mut w = World::new();
    w.set("plaintext", "always");
    let alice = w.user("alice");
    let (uid, gid) = (alice.account.uid, alice.account.gid);
    let home = alice.account.home.display().to_string();
    // Plaintext: PROG runs as alice, in her home, with USER/HOME set and its arguments.
    let (code, out, log) = run(&w, Some(&request("alice", &alice.password, "")), false, &[]);
    assert_eq!(code, Some(0), "{log}\n{out}");
    assert!(
        out.contains(&format!("uid={uid} gid={gid} groups={gid}\n")),
        "{out}"
    );
    for want in [
        "USER=alice\n".to_string(),
        format!("HOME={home}\n"),
        format!("PWD={home}\n"),
        // A passwd_file account: its uid may be a system user's, whose shell it must not get.
        "SHELL=/bin/sh\n".to_string(),
        "args=first-arg\n".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} in {out}");
    }
    assert!(
        log.contains("checkapop: login user=alice result=ok"),
        "{log}"
    );
    // The APOP digest over qmail-popup's timestamp.
    let ts = "<4242.1700000000@mx.example>";
    let digest = apoptools::testing::apop::digest(ts.as_bytes(), alice.password.as_bytes());
    let digest = String::from_utf8(digest.to_vec()).unwrap();
    let (code, out, log) = run(&w, Some(&request("alice", &digest, ts)), false, &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(out.contains(&format!("uid={uid} ")), "{out}");
    // Every refusal: its exit status, PROG never run, the password never logged.
    let mut root = w.user_with_ids("toor", 0, 0);
    root.password = "pw-toor-secret".into();
    let carol = w.user("carol");
    w.disable(&carol);
    let long = "x".repeat(600);
    let cases: Vec<(&str, Option<Vec<u8>>, i32, &str)> = vec![
        (
            "wrong password",
            Some(request("alice", "nope", "")),
            1,
            "wrong password",
        ),
        (
            "wrong digest",
            Some(request("alice", &"0".repeat(32), ts)),
            1,
            "wrong password",
        ),
        (
            "plaintext as a digest",
            Some(request("alice", &alice.password, ts)),
            1,
            "wrong password",
        ),
        (
            "disabled",
            Some(request("carol", &carol.password, "")),
            1,
            "disabled",
        ),
        (
            "uid 0",
            Some(request("toor", "pw-toor-secret", "")),
            1,
            "uid 0",
        ),
        (
            "unknown user",
            Some(request("nobody-here", "x", "")),
            1,
            "unknown user",
        ),
        (
            "over-long input",
            Some(request("alice", &long, "")),
            2,
            "longer than 512",
        ),
        (
            "missing fields",
            Some(b"alice\0pw".to_vec()),
            2,
            "lacks login",
        ),
        ("no fd 3", None, 2, "fd 3 is not open"),
    ];
    for (what, req, want, why) in cases {
        let (code, out, log) = run(&w, req.as_deref(), false, &[]);
        assert_eq!(code, Some(want), "{what}: {log}");
        assert!(out.is_empty(), "{what}: PROG ran: {out}");
        assert!(log.contains(why), "{what}: {log}");
        assert!(!log.contains(&alice.password), "{what}: {log}");
    }
    // plaintext = never refuses plaintext, not the digest; intranet wants INTRANET.
    w.set("plaintext", "never");
    let (code, _, log) = run(&w, Some(&request("alice", &alice.password, "")), false, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("plaintext not allowed"), "{log}");
    let (code, _, _) = run(&w, Some(&request("alice", &digest, ts)), false, &[]);
    assert_eq!(code, Some(0));
    w.set("plaintext", "intranet");
    let good = request("alice", &alice.password, "");
    assert_eq!(run(&w, Some(&good), false, &[]).0, Some(1));
    assert_eq!(run(&w, Some(&good), false, &[("INTRANET", "1")]).0, Some(0));
}

#[test]
fn checkapop_dovecot_mode_root() {
    if !crate::harness::need_root("checkapop_dovecot_mode_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let (uid, gid) = (alice.account.uid, alice.account.gid);
    let home = alice.account.home.display().to_string();
    // A login: no drop (checkpassword-reply runs as root), the ids in userdb fields.
    let (code, out, log) = run(&w, Some(&request("alice", &alice.password, "")), true, &[]);
    assert_eq!(code, Some(0), "{log}\n{out}");
    assert!(out.starts_with("uid=0 gid=0"), "{out}");
    for want in [
        "USER=alice\n".to_string(),
        format!("HOME={home}\n"),
        "EXTRA=userdb_uid userdb_gid\n".into(),
        format!("userdb_uid={uid} userdb_gid={gid}\n"),
        "PASSWORD=\n".into(),
        "AUTHORIZED=\n".into(),
    ] {
        assert!(out.contains(&want), "{want:?} in {out}");
    }
    // A wrong password: exit 1 (Dovecot's "login failed"), nothing run.
    let (code, out, _) = run(&w, Some(&request("alice", "nope", "")), true, &[]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    // A userdb lookup: no password, AUTHORIZED=2 for checkpassword-reply's exit 2.
    let lookup = [("AUTHORIZED", "1")];
    let (code, out, log) = run(&w, Some(&request("alice", "", "")), true, &lookup);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        out.contains("AUTHORIZED=2\n") && out.contains("PASSWORD=\n"),
        "{out}"
    );
    // A credentials lookup (Dovecot's APOP, CRAM-MD5): the plaintext-equivalent secret.
    let creds = [
        ("AUTHORIZED", "1"),
        ("CREDENTIALS_LOOKUP", "1"),
        ("SCHEME", "CRAM-MD5"),
    ];
    let (code, out, log) = run(&w, Some(&request("alice", "", "")), true, &creds);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        out.contains(&format!("PASSWORD={{PLAIN}}{}\n", alice.password)),
        "{out}"
    );
    assert!(
        out.contains("EXTRA=userdb_uid userdb_gid PASSWORD\n"),
        "{out}"
    );
    assert!(!log.contains(&alice.password), "{log}");
    // A lookup of a name that cannot log in: exit 3 (Dovecot's "user unknown").
    let carol = w.user("carol");
    w.disable(&carol);
    for name in ["nobody-here", "carol"] {
        let (code, out, _) = run(&w, Some(&request(name, "", "")), true, &creds);
        assert_eq!((code, out.as_str()), (Some(3), ""), "{name}");
    }
    // plaintext = intranet does not stop Dovecot's plaintext logins (Dovecot has its own
    // TLS rule); never does.
    w.set("plaintext", "never");
    let (code, _, _) = run(&w, Some(&request("alice", &alice.password, "")), true, &[]);
    assert_eq!(code, Some(1));
}

/// Run as anyone but root (Dovecot's auth process by default runs as `dovecot`), checkapop
/// cannot read the accounts' stores: a setup error, exit 111 with the fix in the log, never a
/// "bad login" (1) that would look like a wrong password.
#[test]
fn checkapop_not_run_as_root_is_a_setup_error_root() {
    if !crate::harness::need_root("checkapop_not_run_as_root_is_a_setup_error_root") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut w = World::new();
    let alice = w.user("alice");
    w.write_config();
    let req = w.path().join("request-as-alice");
    std::fs::write(&req, request("alice", &alice.password, "")).unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 3< \"$REQ\"")
        .arg(w.runnable(CHECKAPOP))
        .arg("--config")
        .arg(w.config_path())
        .arg("--dovecot")
        .arg(prog(&w))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("REQ", &req)
        .uid(alice.account.uid)
        .gid(alice.account.gid)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "{log}");
    assert!(log.contains("service auth { user = root }"), "{log}");
    assert!(out.stdout.is_empty());
}
