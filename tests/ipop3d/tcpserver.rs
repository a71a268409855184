//! Real tcpserver (Debian ucspi-tcp) in front of ipop3d, as the seed's start script runs it:
//! the pairing itself, which the harness's own spawner only imitates. These tests need
//! tcpserver and say `SKIPPED (needs tcpserver)` without it; every other server test runs
//! without it.

use crate::harness::{crlf, small_message};

/// The seed's `env - INTRANET=1 PATH=... tcpserver -vR -c40 ... ipop3d`: a session with USER/PASS
/// (allowed by `INTRANET`), one with APOP; tcpserver logs both ends with status 0.
#[test]
fn tcpserver_runs_the_seeds_start_script() {
    let mut w = world!("tcpserver_runs_the_seeds_start_script", "tcpserver");
    let alice = w.user("alice");
    let message = small_message(1);
    w.deliver(&alice, &message);
    let server = w.serve_tcpserver(&[]);
    assert!(server.end_prefix().starts_with("tcpserver:"));

    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    pop.ok(&format!("PASS {}", alice.password));
    let stat = pop.ok("STAT");
    assert_eq!(stat, format!("+OK 1 {}", crlf(&message).len()));
    pop.ok("QUIT");
    pop.expect_closed();

    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
    server.wait_ends(2);
    assert_eq!(server.end_statuses(), vec!["0", "0"], "{}", server.log());
    let log = server.log();
    assert!(log.contains("tcpserver: status: 0/40"), "{log}");
    assert!(!log.contains(&alice.password), "{log}");
}

/// tcpserver's `-l NAME` reaches the greeting through `TCPLOCALHOST`.
#[test]
fn tcpserver_local_host_names_the_timestamp() {
    let mut w = world!("tcpserver_local_host_names_the_timestamp", "tcpserver");
    w.user("alice");
    let server = w.serve_tcpserver(&["-l", "pop.tcplocal.test"]);
    let pop = server.connect();
    assert!(
        pop.timestamp().ends_with("@pop.tcplocal.test>"),
        "{}",
        pop.greeting
    );
}

/// The log line of a session that ended after three failed logins carries exit status 1
/// (tcpserver's raw wait status 256), and `TCPREMOTEIP` from tcpserver names the client.
#[test]
fn tcpserver_sees_the_exit_status_of_a_closed_brute_force() {
    let mut w = world!(
        "tcpserver_sees_the_exit_status_of_a_closed_brute_force",
        "tcpserver"
    );
    let alice = w.user("alice");
    let server = w.serve_tcpserver(&["-H"]);
    let mut pop = server.connect();
    let bad = pop.apop_line(alice.name(), "wrong-password");
    for _ in 0..3 {
        pop.err(&bad);
    }
    pop.expect_closed();
    let log = server.wait_ends(1);
    assert_eq!(server.end_statuses(), vec!["256"], "{log}");
    assert!(log.contains("remote=127.0.0.1"), "{log}");
}

/// The README's and ipop3d(8)'s recommended setup: no global `INTRANET`, but tcprules giving
/// it to the local network only (`tcpserver -x rules.cdb`). From a listed address USER/PASS
/// works; from any other, only APOP.
#[test]
fn tcprules_give_intranet_to_the_local_network_only() {
    let mut w = world!(
        "tcprules_give_intranet_to_the_local_network_only",
        "tcpserver",
        "tcprules"
    );
    let alice = w.user("alice");
    let rules = |name: &str, text: &str| -> String {
        let cdb = w.path().join(format!("{name}.cdb"));
        let mut child = std::process::Command::new("tcprules")
            .arg(&cdb)
            .arg(w.path().join(format!("{name}.tmp")))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "tcprules {name}");
        cdb.display().to_string()
    };
    // Here the local network is 127.0.0.: the client's address is in it.
    let local = rules("local", "127.0.0.:allow,INTRANET=\"1\"\n:allow\n");
    let server = w.serve_tcpserver_with(&[], &["-x", &local]);
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
    drop(server);
    // A local network the client is not in: USER is refused, APOP still works.
    let elsewhere = rules("elsewhere", "192.0.2.:allow,INTRANET=\"1\"\n:allow\n");
    let server = w.serve_tcpserver_with(&[], &["-x", &elsewhere]);
    let mut pop = server.connect();
    let reply = pop.err(&format!("USER {}", alice.name()));
    assert!(reply.contains("Plaintext"), "{reply}");
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
}
