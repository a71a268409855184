//! Hostile clients: a line that never ends, a thousand commands in one write, a reader too
//! slow for a 50 MB message, and brute force against the auth delay and the failure cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{crlf, large_message, retr_wire, small_message, PATIENCE};

/// The largest VmRSS (KiB) of the processes serving the one session on `config`: as root its
/// back and, before the login, its front (the privilege split), else the one process.
fn session_rss(config: &std::path::Path) -> u64 {
    let pids = crate::ipop3d_pids(config);
    assert!(
        (1..=2).contains(&pids.len()),
        "one session (back, and front before login) expected: {pids:?}"
    );
    pids.iter()
        .filter_map(|&p| crate::status_kib(p, "VmRSS:"))
        .max()
        .expect("session alive")
}

/// Sends `prefix` and 10 MB without a newline, then CRLF; returns the reply to that line and
/// the server's VmRSS sampled every MB.
fn ten_megabyte_line(
    pop: &mut crate::client::Pop,
    config: &std::path::Path,
    prefix: &[u8],
) -> (String, Vec<u64>) {
    let chunk = vec![b'A'; 64 * 1024];
    pop.send_raw(prefix);
    let mut rss = Vec::new();
    let total = 10 * 1024 * 1024;
    let mut sent = 0;
    while sent < total {
        pop.send_raw(&chunk);
        sent += chunk.len();
        if sent % (1024 * 1024) == 0 {
            rss.push(session_rss(config));
        }
    }
    pop.send_raw(b"\r\n");
    (pop.line(), rss)
}

/// 10 MB without a newline, before login (USER) and after it (NOOP): the server neither
/// buffers it nor dies; the line is refused with one -ERR when it ends, it does not count as
/// a login failure, and the session goes on.
#[test]
fn ten_megabytes_without_a_newline() {
    let mut w = world!("ten_megabytes_without_a_newline");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    w.set("max_auth_failures", "1");
    let server = crate::serve(&w);
    let config = w.config_path();
    let mut pop = server.connect();
    let (before, mut rss) = ten_megabyte_line(&mut pop, &config, b"USER ");
    assert!(
        before.starts_with("-ERR"),
        "overlong USER line got {before:?}"
    );
    pop.ok("CAPA");
    pop.multiline();
    // With max_auth_failures = 1, a login now shows the long line was no failure.
    pop.login(alice.name(), &alice.password);
    let (after, more) = ten_megabyte_line(&mut pop, &config, b"NOOP ");
    rss.extend(more);
    assert!(
        after.starts_with("-ERR"),
        "overlong NOOP line got {after:?}"
    );
    pop.ok("NOOP");
    assert_eq!(
        pop.ok("STAT"),
        format!("+OK 1 {}", crlf(&small_message(1)).len())
    );
    rss.push(session_rss(&config));
    let max = *rss.iter().max().unwrap();
    crate::report(&format!(
        "10 MB lines: ipop3d VmRSS samples (KiB) {rss:?}; replies {before:?}, {after:?}"
    ));
    assert!(max < 16 * 1024, "ipop3d grew to {max} KiB reading one line");
    pop.ok("QUIT");
}

/// 1,000 different commands in one write: 1,000 replies, in order, each the right one.
#[test]
fn thousand_commands_in_one_write() {
    let mut w = world!("thousand_commands_in_one_write");
    let alice = w.user("alice");
    let msgs: Vec<Vec<u8>> = (1..=3).map(small_message).collect();
    for m in &msgs {
        w.deliver(&alice, m);
    }
    let server = crate::serve(&w);
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let uidl = crate::client::pairs(&pop.ok_lines("UIDL"));
    let sizes: Vec<usize> = msgs.iter().map(|m| crlf(m).len()).collect();
    let total: usize = sizes.iter().sum();

    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000usize {
        let n = 1 + i % 3;
        match i % 6 {
            0 => {
                batch.push(format!("LIST {n}"));
                expected.push((format!("+OK {n} {}", sizes[n - 1]), None));
            }
            1 => {
                batch.push(format!("UIDL {n}"));
                expected.push((format!("+OK {n} {}", uidl[n - 1].1), None));
            }
            2 => {
                batch.push("STAT".to_string());
                expected.push((format!("+OK 3 {total}"), None));
            }
            3 => {
                batch.push(format!("XYZZY{i}"));
                expected.push(("-ERR".to_string(), None));
            }
            4 => {
                batch.push(format!("RETR {n}"));
                expected.push(("+OK".to_string(), Some(retr_wire(&msgs[n - 1]))));
            }
            _ => {
                batch.push(format!("LIST {}", 4 + i));
                expected.push(("-ERR".to_string(), None));
            }
        }
    }
    let wire: String = batch.iter().map(|c| format!("{c}\r\n")).collect();
    pop.send_raw(wire.as_bytes());
    for (i, (want, body)) in expected.iter().enumerate() {
        let got = pop.line();
        if want.len() > 4 {
            assert_eq!(&got, want, "reply {i} to {:?}", batch[i]);
        } else {
            assert!(
                got.starts_with(want.as_str()),
                "reply {i} to {:?}: {got:?}",
                batch[i]
            );
        }
        if let Some(body) = body {
            assert!(&pop.multiline_raw() == body, "reply {i}: RETR body differs");
        }
    }
    pop.ok("QUIT");
    pop.expect_closed();
}

/// A 50 MB RETR to a client reading a byte per 100 ms, then nothing: the server's memory does
/// not grow, others are served meanwhile, and the whole message arrives when it reads again.
#[test]
fn slow_reader_of_fifty_megabytes() {
    let mut w = world!("slow_reader_of_fifty_megabytes");
    let alice = w.user("alice");
    let bob = w.user("bob");
    let big = large_message(50 * 1024);
    w.deliver(&alice, &big);
    w.deliver(&bob, &small_message(2));
    let server = crate::serve(&w);
    let config = w.config_path();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut greeting = [0u8; 512];
    let n = stream.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"+OK"));
    stream
        .write_all(format!("USER alice\r\nPASS {}\r\nRETR 1\r\n", alice.password).as_bytes())
        .unwrap();

    let slow_pid = {
        let start = Instant::now();
        loop {
            let pids = crate::ipop3d_pids(&config);
            if let [pid] = pids[..] {
                break pid;
            }
            assert!(start.elapsed() < PATIENCE, "sessions: {pids:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let rss_now = || crate::status_kib(slow_pid, "VmRSS:").expect("the slow session is alive");
    let mut got = Vec::new();
    let mut rss = Vec::new();
    let slow = Instant::now();
    let mut byte = [0u8; 1];
    while slow.elapsed() < Duration::from_secs(5) {
        stream.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
        if got.len() % 10 == 0 {
            rss.push(rss_now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Now read nothing for a while; another client is served meanwhile.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(750));
        rss.push(rss_now());
    }
    let mut other = server.connect();
    other.login(bob.name(), &bob.password);
    other.ok("STAT");
    other.ok("QUIT");
    let stalled_rss = rss_now();
    rss.push(stalled_rss);

    // Then everything, fast.
    let mut rest = Vec::new();
    let want_lines = 3; // +OK USER, +OK PASS, +OK RETR before the body
    let wire = retr_wire(&big);
    let mut buf = vec![0u8; 1 << 16];
    let head_and_body = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed after {} bytes",
            got.len() + rest.len()
        );
        rest.extend_from_slice(&buf[..n]);
        let all_len = got.len() + rest.len();
        if all_len >= wire.len() && rest.ends_with(b"\r\n.\r\n") {
            let mut all = std::mem::take(&mut got);
            all.extend_from_slice(&rest);
            break all;
        }
    };
    let mut at = 0;
    for _ in 0..want_lines {
        let end = head_and_body[at..]
            .windows(2)
            .position(|p| p == b"\r\n")
            .unwrap()
            + at
            + 2;
        assert!(head_and_body[at..end].starts_with(b"+OK"));
        at = end;
    }
    let body = &head_and_body[at..];
    assert_eq!(body.len(), wire.len(), "RETR length");
    assert!(body == wire.as_slice(), "RETR body differs");
    stream.write_all(b"NOOP\r\n").unwrap();
    let n = stream.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"+OK"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let max = *rss.iter().max().unwrap();
    crate::report(&format!(
        "slow reader: {} KiB message, ipop3d VmRSS samples (KiB) {rss:?}",
        wire.len() / 1024
    ));
    assert!(
        max < 16 * 1024,
        "ipop3d grew to {max} KiB for a slow reader"
    );
    stream.write_all(b"QUIT\r\n").unwrap();
}

/// Three failures close the connection: a fourth attempt written in the same burst (even with
/// the right password) is never answered, and each failure waits `auth_delay`.
#[test]
fn brute_force_is_capped_and_delayed() {
    let mut w = world!("brute_force_is_capped_and_delayed");
    let alice = w.user("alice");
    w.set("auth_delay", "300");
    let server = crate::serve(&w);
    for round in 0..2 {
        let mut pop = server.connect();
        let good = pop.apop_line(alice.name(), &alice.password);
        let mut burst = String::new();
        for i in 0..3 {
            if round == 0 {
                burst.push_str(&format!("USER alice\r\nPASS guess-{i}\r\n"));
            } else {
                burst.push_str(&pop.apop_line(alice.name(), &format!("guess-{i}")));
                burst.push_str("\r\n");
            }
        }
        burst.push_str(&good);
        burst.push_str("\r\nUSER alice\r\nPASS ");
        burst.push_str(&alice.password);
        burst.push_str("\r\n");
        let start = Instant::now();
        pop.send_raw(burst.as_bytes());
        let mut failures = Vec::new();
        let mut lines = Vec::new();
        while let Some(line) = pop.try_line() {
            if line.starts_with("-ERR") {
                failures.push(start.elapsed());
            }
            lines.push(line.split(' ').next().unwrap().to_string());
        }
        crate::report(&format!(
            "brute force round {round}: failures answered at {failures:?}, then closed"
        ));
        let want: &[&str] = if round == 0 {
            &["+OK", "-ERR", "+OK", "-ERR", "+OK", "-ERR"]
        } else {
            &["-ERR", "-ERR", "-ERR"]
        };
        assert_eq!(
            lines, want,
            "round {round}: the fourth attempt must go unanswered"
        );
        assert_eq!(failures.len(), 3, "round {round}: {failures:?}");
        for (i, t) in failures.iter().enumerate() {
            assert!(
                *t >= Duration::from_millis(300 * (i as u64 + 1)),
                "round {round}: failure {i} answered after {t:?}"
            );
        }
    }
    // The right password on a fresh connection works: nothing was locked for good.
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
}

/// Unknown user, disabled account and wrong password: the same reply text, each after the
/// delay, with medians within noise of each other.
#[test]
fn auth_failures_indistinguishable_in_text_and_timing() {
    let mut w = world!("auth_failures_indistinguishable_in_text_and_timing");
    let alice = w.user("alice");
    let bob = w.user("bob");
    w.disable(&bob);
    w.set("auth_delay", "300");
    let server = crate::serve(&w);
    let kinds: [(&str, &str, &str); 3] = [
        ("unknown user", "nosuchuser", "some-password"),
        ("disabled account", bob.name(), &bob.password),
        ("wrong password", alice.name(), "wrong-password"),
    ];
    let mut times: Vec<Vec<u128>> = vec![Vec::new(); 3];
    let mut texts = std::collections::BTreeSet::new();
    for attempt in 0..8 {
        for (k, (_, user, pass)) in kinds.iter().enumerate() {
            let mut pop = server.connect();
            let start;
            let reply = if attempt % 2 == 0 {
                let line = pop.apop_line(user, pass);
                start = Instant::now();
                pop.cmd(&line)
            } else {
                texts.insert(pop.ok(&format!("USER {user}")));
                start = Instant::now();
                pop.cmd(&format!("PASS {pass}"))
            };
            let t = start.elapsed();
            assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
            assert!(t >= Duration::from_millis(300), "answered after {t:?}");
            texts.insert(reply);
            times[k].push(t.as_millis());
            pop.ok("QUIT");
        }
    }
    let medians: Vec<u128> = times.iter_mut().map(|t| crate::median(t)).collect();
    crate::report(&format!(
        "auth failure timing (ms), medians {:?} for {:?}; all: {times:?}",
        medians,
        kinds.iter().map(|k| k.0).collect::<Vec<_>>()
    ));
    assert_eq!(
        texts.len(),
        2,
        "one USER reply and one failure text: {texts:#?}"
    );
    let spread = medians.iter().max().unwrap() - medians.iter().min().unwrap();
    assert!(
        spread < 100,
        "median failure times differ by {spread} ms: {medians:?}"
    );
}
