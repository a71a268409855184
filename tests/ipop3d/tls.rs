//! TLS (root only: only a root ipop3d has the split whose front holds the key): implicit TLS
//! (`--implicit-tls`, port 995) and STLS (RFC 2595) with this suite's rustls client trusting
//! a throwaway CA, byte-exact dialogues, STLS injection, the plaintext rule under TLS, the
//! log line's version and suite, TLS 1.1 refused, and the key's checks.

use crate::client::{tls_client, tls_client_versions, Pop};
use crate::harness::{crlf, retr_wire, small_message, World};

/// The CAPA lines between the `+OK` and the `.`.
fn capa(pop: &mut Pop) -> Vec<String> {
    pop.ok_lines("CAPA")
}

#[test]
fn implicit_tls_serves_a_whole_session_root() {
    if !crate::harness::need_root("implicit_tls_serves_a_whole_session_root") {
        return;
    }
    let mut w = World::new();
    let files = w.tls();
    let alice = w.user("alice");
    let msg = small_message(7);
    w.deliver(&alice, &msg);
    let server = w.serve_implicit_tls(&[]);
    let mut pop = Pop::connect_tls(server.port, tls_client(&files.ca));
    assert_eq!(pop.tls_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    // Under TLS: no STLS, and USER (plaintext = intranet allows it over TLS, with no INTRANET).
    let caps = capa(&mut pop);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "USER"), "{caps:?}");
    pop.login(alice.name(), &alice.password);
    assert_eq!(pop.ok("STAT"), format!("+OK 1 {}", crlf(&msg).len()));
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&msg));
    pop.ok("QUIT");
    pop.expect_closed();
    let log = server.wait_ends(1);
    assert!(
        log.contains("login remote=127.0.0.1 user=alice method=user result=ok")
            && log.contains(" tls=TLSv1.3/TLS13_"),
        "{log}"
    );
}

#[test]
fn stls_upgrades_and_forgets_what_came_before_root() {
    if !crate::harness::need_root("stls_upgrades_and_forgets_what_came_before_root") {
        return;
    }
    let mut w = World::new();
    let files = w.tls();
    w.set("plaintext", "tls");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve_with(&[], None);
    let mut pop = server.connect();
    let caps = capa(&mut pop);
    assert!(caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "USER"), "{caps:?}");
    // plaintext = tls: USER before TLS is refused, and the reply says what to do.
    assert_eq!(
        pop.cmd(&format!("USER {}", alice.name())),
        "-ERR Plaintext login needs TLS first (STLS); or use APOP"
    );
    pop.stls(tls_client(&files.ca)).unwrap();
    let caps = capa(&mut pop);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "USER"), "{caps:?}");
    // A second STLS is refused, under TLS.
    assert_eq!(pop.cmd("STLS"), "-ERR TLS is not available here");
    pop.login(alice.name(), &alice.password);
    // STLS after the login: the wrong state.
    assert_eq!(pop.cmd("STLS"), "-ERR Command not valid in this state");
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("1"));
    pop.ok("QUIT");
    pop.expect_closed();
    let log = server.wait_ends(1);
    assert!(
        log.contains("result=ok") && log.contains("tls=TLSv1.3/"),
        "{log}"
    );
}

/// RFC 2595 §4 and CVE-2011-0411: `STLS\r\nCAPA\r\n` in one write. The CAPA is never
/// answered, neither in the clear nor under the TLS that follows.
#[test]
fn stls_discards_what_was_sent_after_it_root() {
    if !crate::harness::need_root("stls_discards_what_was_sent_after_it_root") {
        return;
    }
    let mut w = World::new();
    let files = w.tls();
    w.user("alice");
    let server = w.serve();
    let mut pop = server.connect();
    pop.send_raw(b"STLS\r\nCAPA\r\n");
    assert_eq!(pop.line(), "+OK Begin TLS negotiation");
    // The injected CAPA was discarded with the rest of the segment; the handshake works,
    // and the first reply under TLS is the one to our own NOOP-like command.
    pop.start_tls(tls_client(&files.ca)).unwrap();
    assert_eq!(pop.cmd("STLS"), "-ERR TLS is not available here");
    pop.ok("QUIT");
    pop.expect_closed();
}

/// Without tls_cert, STLS is neither listed nor accepted.
#[test]
fn stls_without_tls_configured_is_refused() {
    let mut w = world!("stls_without_tls_configured_is_refused");
    w.user("alice");
    let server = w.serve();
    let mut pop = server.connect();
    let caps = capa(&mut pop);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert_eq!(pop.cmd("STLS"), "-ERR TLS is not available here");
    pop.ok("QUIT");
}

/// rustls offers nothing older than TLS 1.2: a client limited to TLS 1.1 (openssl) gets no
/// session, and the log says why.
#[test]
fn tls_1_1_is_refused_root() {
    let mut w = world!("tls_1_1_is_refused_root", "openssl");
    if !crate::harness::need_root("tls_1_1_is_refused_root") {
        return;
    }
    let files = w.tls();
    w.user("alice");
    let server = w.serve_implicit_tls(&[]);
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_1", "-CAfile"])
        .arg(&files.ca)
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", server.port))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("+OK POP3"), "{stdout}");
    let log = server.wait_ends(1);
    assert!(
        log.contains("ipop3d: tls remote=127.0.0.1 result=fail"),
        "{log}"
    );
    // A TLS 1.2 client is served.
    let mut pop = Pop::connect_tls(
        server.port,
        tls_client_versions(&files.ca, &[&rustls::version::TLS12]),
    );
    assert_eq!(pop.tls_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    pop.ok("QUIT");
}

/// A key that others may read, or that is not root's, refuses the connection before any
/// greeting, with a log line naming the file; an unreadable one too.
#[test]
fn a_key_others_can_read_refuses_the_connection_root() {
    if !crate::harness::need_root("a_key_others_can_read_refuses_the_connection_root") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut w = World::new();
    let files = w.tls();
    w.user("alice");
    let server = w.serve_implicit_tls(&[]);
    type Break<'a> = Box<dyn Fn() + 'a>;
    let cases: [(&str, Break); 3] = [
        (
            "lets others read or change the key",
            Box::new(|| {
                std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644))
                    .unwrap()
            }),
        ),
        (
            "not root",
            Box::new(|| {
                std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::os::unix::fs::chown(&files.key, Some(12345), None).unwrap();
            }),
        ),
        (
            "No such file",
            Box::new(|| std::fs::rename(&files.key, files.key.with_extension("gone")).unwrap()),
        ),
    ];
    for (n, (why, break_it)) in cases.iter().enumerate() {
        break_it();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(crate::harness::PATIENCE))
            .unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tcp, &mut got);
        assert!(got.is_empty(), "{why}: {:?}", String::from_utf8_lossy(&got));
        let log = server.wait_ends(n + 1);
        assert!(
            log.contains("fatal remote=127.0.0.1") && log.contains(why),
            "{log}"
        );
        assert!(log.contains("tls_key"), "{log}");
    }
    for status in server.end_statuses() {
        assert_ne!(status, "0", "{}", server.log());
    }
}

/// Renewal without a restart: a new certificate written over the old one is served by the
/// next connection.
#[test]
fn a_renewed_certificate_is_served_at_once_root() {
    if !crate::harness::need_root("a_renewed_certificate_is_served_at_once_root") {
        return;
    }
    let mut w = World::new();
    let old = w.tls();
    w.user("alice");
    let server = w.serve_implicit_tls(&[]);
    Pop::connect_tls(server.port, tls_client(&old.ca)).ok("QUIT");
    let old_ca = old.ca.with_extension("old");
    std::fs::copy(&old.ca, &old_ca).unwrap();
    // A new CA and certificate in the same files: a client trusting only the old CA fails.
    let new = w.tls();
    assert!(Pop::try_connect_tls(server.port, tls_client(&old_ca)).is_err());
    Pop::connect_tls(server.port, tls_client(&new.ca)).ok("QUIT");
}
