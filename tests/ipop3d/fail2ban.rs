//! The fail2ban filter ipop3d prints (`--fail2ban-filter`), checked with Debian's
//! `fail2ban-regex` against log lines these sessions produce, behind a syslog prefix: it
//! matches failed logins and sessions ended on a bound before login, never successful logins,
//! a right password refused [IN-USE], outages or ordinary ends.

use std::process::Command;

use crate::harness::World;

#[test]
fn fail2ban_filter_matches_failures_and_nothing_else() {
    let test = "fail2ban_filter_matches_failures_and_nothing_else";
    if !crate::harness::need_programs(&["fail2ban-regex"], test) {
        return;
    }
    let mut log = String::new();
    {
        // Two wrong logins, then a right one; a client that sends only junk before login.
        let mut w = World::new();
        let alice = w.user("alice");
        w.set("max_login_commands", "4");
        let server = w.serve();
        let mut pop = server.connect();
        pop.err(&pop.apop_line(alice.name(), "wrong password"));
        pop.ok(&format!("USER {}", alice.name()));
        pop.err("PASS wrong password");
        pop.ok("QUIT");
        let mut pop = server.connect();
        pop.apop(alice.name(), &alice.password);
        // The right password while the first session holds the mailbox: [IN-USE], logged
        // `result=fail mailbox="in-use"`, which is no attack.
        let mut second = server.connect();
        let busy = second.err(&second.apop_line(alice.name(), &alice.password));
        assert!(busy.contains("[IN-USE]"), "{busy}");
        pop.ok("QUIT");
        let mut pop = server.connect();
        pop.send_raw("JUNK\r\n".repeat(5).as_bytes());
        while pop.try_line().is_some() {}
        log += &server.wait_ends(4);
    }
    {
        // An outage: the disable list cannot be read.
        let mut w = World::new();
        let alice = w.user("alice");
        std::fs::create_dir(w.disabled_path()).unwrap();
        let server = w.serve();
        let mut pop = server.connect();
        pop.err(&pop.apop_line(alice.name(), &alice.password));
        pop.ok("QUIT");
        log += &server.wait_ends(1);
    }
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("ipop3d: ")).collect();
    let want = lines
        .iter()
        .filter(|l| {
            (l.starts_with("ipop3d: login ")
                && l.contains(" result=fail ")
                && !l.contains(" result=fail mailbox="))
                || l.contains(" result=too-many-commands ")
        })
        .count();
    assert!(want >= 3, "{log}");
    assert!(
        lines.iter().any(|l| l.contains("result=unavailable")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("result=fail mailbox=\"in-use\"")),
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let syslog: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("Dec  1 18:00:{i:02} mx ipop3d[4242]: {l}\n"))
        .collect();
    std::fs::write(dir.path().join("ipop3d.log"), &syslog).unwrap();
    let filter = Command::new(crate::harness::IPOP3D)
        .arg("--fail2ban-filter")
        .output()
        .unwrap();
    assert!(filter.status.success());
    let filter_path = dir.path().join("ipop3d.conf");
    std::fs::write(&filter_path, &filter.stdout).unwrap();
    // The filter includes fail2ban's own common.conf, found beside it as in filter.d/.
    std::os::unix::fs::symlink(
        "/etc/fail2ban/filter.d/common.conf",
        dir.path().join("common.conf"),
    )
    .unwrap();
    let out = Command::new("fail2ban-regex")
        .arg(dir.path().join("ipop3d.log"))
        .arg(&filter_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let expected = format!(
        "Lines: {} lines, 0 ignored, {want} matched, {} missed",
        lines.len(),
        lines.len() - want
    );
    assert!(
        summary.starts_with(&expected),
        "{summary}\n{syslog}\n{text}"
    );
    assert!(text.contains("127.0.0.1"), "{text}");
}
