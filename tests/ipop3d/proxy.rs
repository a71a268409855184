//! The PROXY protocol through real HAProxy (Debian `haproxy`, on 127.0.0.1 only): two ipop3d
//! listeners on one Maildir tree behind it, one sent version 2 headers, the other version 1.
//! Logins work through either and the log shows the client's own address, not HAProxy's; a
//! forged header from an address not in `proxy_from` is only a bad command, and a listed
//! address that sends no header gets no greeting.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Pop;
use crate::harness::{small_message, PATIENCE};

/// A private HAProxy, killed when dropped.
struct Haproxy {
    child: Child,
    port: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy on a free 127.0.0.1 port, round robin over `v2_port` (send-proxy-v2) and `v1_port`
/// (send-proxy).
fn haproxy(dir: &std::path::Path, v2_port: u16, v1_port: u16) -> Haproxy {
    let port = free_port();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\n\
             defaults\n  mode tcp\n  timeout connect 10s\n  timeout client 60s\n  timeout server 60s\n\
             frontend pop3\n  bind 127.0.0.1:{port}\n  default_backend ipop3d\n\
             backend ipop3d\n  balance roundrobin\n\
             \x20 server v2 127.0.0.1:{v2_port} send-proxy-v2\n\
             \x20 server v1 127.0.0.1:{v1_port} send-proxy\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let proxy = Haproxy { child, port };
    // Ready once a whole session goes through: a probe that only connected and hung up could
    // reach a listener before HAProxy had sent any header, and be refused there.
    let start = Instant::now();
    loop {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut pop = Pop::over_unchecked(stream);
            if pop.greeting.starts_with("+OK") {
                pop.ok("QUIT");
                pop.expect_closed();
                break;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "haproxy did not pass a session on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy
}

#[test]
fn haproxy_headers_name_the_client_and_forgeries_are_refused() {
    let mut w = world!(
        "haproxy_headers_name_the_client_and_forgeries_are_refused",
        "haproxy"
    );
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    w.set("proxy_from", "127.0.0.1");
    let a = w.serve();
    let b = w.serve();
    let proxy = haproxy(w.path(), a.port, b.port);

    // The client comes from 127.0.0.3; HAProxy reaches ipop3d from 127.0.0.1.
    let client = Ipv4Addr::new(127, 0, 0, 3);
    for _ in 0..4 {
        let mut pop = Pop::connect_from(client, proxy.port);
        pop.apop(alice.name(), &alice.password);
        assert!(pop.ok("STAT").starts_with("+OK 1 "));
        pop.ok("QUIT");
    }
    // Round robin: both listeners served logins (HAProxy's readiness probe above was one more
    // connection), each logged with the client's address.
    let mut logins = 0;
    for server in [&a, &b] {
        // Every session has ended, so all its lines are in the log.
        server.wait_idle();
        let log = server.wait_log_lines("ipop3d: login ", 1);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("ipop3d: login "))
            .collect();
        assert!(
            lines.iter().all(|l| l.contains("remote=127.0.0.3 ")),
            "{log}"
        );
        logins += lines.len();
    }
    assert_eq!(logins, 4);

    // A forged header straight from 127.0.0.2, not a listed balancer: never read as one.
    let mut pop = Pop::connect_from(Ipv4Addr::new(127, 0, 0, 2), a.port);
    let reply = pop.err("PROXY TCP4 192.0.2.66 127.0.0.1 4242 110");
    assert!(!reply.starts_with("+OK"), "{reply}");
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
    let log = a.wait_log_lines("ipop3d: end remote=127.0.0.2 ", 1);
    assert!(!log.contains("192.0.2.66"), "{log}");
    assert!(log.contains("remote=127.0.0.2 "), "{log}");

    // From the listed address itself, without a header: no greeting, a log line.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"CAPA\r\n").unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // Every session has ended (each end is logged before the spawner forgets it).
    a.wait_idle();
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("ipop3d: refused ") && l.contains("PROXY header")),
        "{log}"
    );
    // Exit status 1, as tcpserver would print it (raw wait status 256), for that one session.
    let statuses = a.end_statuses();
    assert_eq!(
        statuses.iter().filter(|s| *s == "256").count(),
        1,
        "{statuses:?}\n{log}"
    );
}
