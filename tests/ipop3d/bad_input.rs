//! Bad input and bad clients: every malformed, misplaced or out-of-range command gets `-ERR`
//! and the session lives on; messages removed or renamed behind the server's back; clients
//! that vanish, half-close or stop reading. Nothing panics (the harness fails any test whose
//! server log says "panicked") and nothing is deleted without QUIT.

use crate::client::Pop;
use crate::harness::{large_message, retr_wire, small_message, uniques};

/// Sends `bytes` (a whole command line with its CRLF) and expects exactly one `-ERR` line,
/// then shows the session is alive with `alive` (CAPA before login, NOOP after).
fn refused(pop: &mut Pop, bytes: &[u8], alive: &str) {
    pop.send_raw(bytes);
    let reply = pop.line();
    assert!(
        reply.starts_with("-ERR"),
        "{:?} got {reply:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
    );
    let reply = pop.cmd(alive);
    assert!(
        reply.starts_with("+OK"),
        "after {:?}, {alive} got {reply:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
    );
    if alive == "CAPA" {
        pop.multiline();
    }
}

fn garbage_lines() -> Vec<Vec<u8>> {
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 300));
    long.extend_from_slice(b"\r\n");
    let mut longer = b"LIST ".to_vec();
    longer.extend(std::iter::repeat_n(b'9', 100_000));
    longer.extend_from_slice(b"\r\n");
    vec![
        long,
        longer,
        b"NO\0OP\r\n".to_vec(),
        b"NOOP\0\r\n".to_vec(),
        b"USER \xff\xfe\xc3\x28\r\n".to_vec(),
        b"\xc3\x28\r\n".to_vec(),
        b"XYZZY\r\n".to_vec(),
        b"\r\n".to_vec(),
        b"   \r\n".to_vec(),
    ]
}

#[test]
fn bad_input_before_login() {
    let mut w = world!("bad_input_before_login");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    // Every garbage line is a command before login: room for all of them (the cap itself is
    // fail_closed::commands_before_login_are_capped).
    w.set("max_login_commands", "10000");
    let server = w.serve();
    let mut pop = server.connect();
    for line in garbage_lines() {
        refused(&mut pop, &line, "CAPA");
    }
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0", "RSET", "NOOP",
    ] {
        refused(&mut pop, format!("{cmd}\r\n").as_bytes(), "CAPA");
    }
    // None of that counted as a failed login.
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
}

#[test]
fn bad_input_after_login() {
    let mut w = world!("bad_input_after_login");
    let alice = w.user("alice");
    let msgs: Vec<Vec<u8>> = (1..=3).map(small_message).collect();
    let names: Vec<String> = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 2");

    for line in garbage_lines() {
        refused(&mut pop, &line, "NOOP");
    }
    let apop = pop.apop_line(alice.name(), &alice.password);
    let wrong_state = [
        format!("USER {}", alice.name()),
        format!("PASS {}", alice.password),
        apop,
    ];
    let numbers = [
        "RETR 0",
        "RETR 4",
        "RETR 99999999999999999999",
        "RETR 18446744073709551617",
        "RETR 4294967297",
        "RETR -1",
        "RETR 1x",
        "RETR",
        "LIST 0",
        "LIST 99999999999999999999",
        "UIDL 0",
        "UIDL 4",
        "DELE 0",
        "DELE 99999999999999999999",
        "TOP 0 1",
        "TOP 1",
        "TOP 1 -1",
        "TOP 99999999999999999999 1",
        // Message 2 is marked deleted.
        "RETR 2",
        "LIST 2",
        "UIDL 2",
        "TOP 2 0",
        "DELE 2",
    ];
    for cmd in wrong_state.iter().map(String::as_str).chain(numbers) {
        refused(&mut pop, format!("{cmd}\r\n").as_bytes(), "NOOP");
    }

    // A line count past the end (even one that overflows) is not an error worth dying for:
    // the whole message, or -ERR, and the session goes on.
    for cmd in ["TOP 1 1000000", "TOP 1 99999999999999999999"] {
        let reply = pop.cmd(cmd);
        if reply.starts_with("+OK") {
            assert_eq!(pop.multiline_raw(), retr_wire(&msgs[0]), "{cmd}");
        } else {
            assert!(reply.starts_with("-ERR"), "{cmd}: {reply:?}");
        }
        pop.ok("NOOP");
    }

    // Lower-case commands are commands (RFC 1939: case-insensitive keywords).
    pop.ok("noop");
    pop.ok("stat");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [names[0].clone(), names[2].clone()].into_iter().collect(),
        "only the DELE'd message went"
    );
}

/// A message file removed behind the server's back: RETR gets -ERR, the session goes on, and
/// QUIT still deletes what was marked.
#[test]
fn message_removed_meanwhile() {
    let mut w = world!("message_removed_meanwhile");
    let alice = w.user("alice");
    let msgs: Vec<Vec<u8>> = (1..=3).map(small_message).collect();
    let names: Vec<String> = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);

    let victim = alice.cur_file(&names[1]);
    std::fs::remove_file(victim).unwrap();

    pop.err("RETR 2");
    pop.ok("NOOP");
    let top = pop.cmd("TOP 2 0");
    assert!(top.starts_with("-ERR"), "{top:?}");
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&msgs[0]));
    pop.ok("DELE 3");
    let dele2 = pop.cmd("DELE 2");
    assert!(
        dele2.starts_with("+OK") || dele2.starts_with("-ERR"),
        "{dele2:?}"
    );
    let quit = pop.cmd("QUIT");
    assert!(quit.starts_with("+OK"), "{quit:?}");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [names[0].clone()].into_iter().collect()
    );
}

/// A message another program renames meanwhile (a mail reader setting a flag) is found again
/// by its unique part: RETR serves it and QUIT deletes it under its new name.
#[test]
fn message_renamed_meanwhile() {
    let mut w = world!("message_renamed_meanwhile");
    let alice = w.user("alice");
    let msgs: Vec<Vec<u8>> = (1..=2).map(small_message).collect();
    let names: Vec<String> = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);

    let old = alice.cur_file(&names[0]);
    let old_name = old.file_name().unwrap().to_string_lossy().into_owned();
    let base = old_name.split(':').next().unwrap();
    std::fs::rename(&old, old.with_file_name(format!("{base}:2,RS"))).unwrap();

    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&msgs[0]));
    pop.ok("DELE 1");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [names[1].clone()].into_iter().collect()
    );
}

/// Clients that connect and vanish at once (before or during the greeting) harm nothing.
#[test]
fn connections_closed_at_once() {
    let mut w = world!("connections_closed_at_once");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();
    for _ in 0..20 {
        let s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        drop(s);
    }
    server.wait_idle();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("QUIT");
}

/// A scripted client (`printf ... | nc`) sends everything and half-closes: every command that
/// arrived before the end of input is carried out, QUIT's deletions included.
#[test]
fn commands_before_end_of_input_are_honoured() {
    let mut w = world!("commands_before_end_of_input_are_honoured");
    let alice = w.user("alice");
    let names: Vec<String> = (1..=2)
        .map(|n| w.deliver(&alice, &small_message(n)))
        .collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.send_raw(
        format!(
            "USER {}\r\nPASS {}\r\nDELE 1\r\nQUIT\r\n",
            alice.name(),
            alice.password
        )
        .as_bytes(),
    );
    pop.finish_sending();
    for command in ["USER", "PASS", "DELE", "QUIT"] {
        let reply = pop.line();
        assert!(reply.starts_with("+OK"), "{command}: {reply:?}");
    }
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [names[1].clone()].into_iter().collect()
    );
}

/// RFC 2449's limit: a command line of 255 octets with its CRLF is a command; 256 is not.
#[test]
fn line_length_limit_is_255_octets_with_crlf() {
    let mut w = world!("line_length_limit_is_255_octets_with_crlf");
    let alice = w.user("alice");
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let at_limit = format!("NOOP{}\r\n", " ".repeat(255 - 6));
    assert_eq!(at_limit.len(), 255);
    pop.send_raw(at_limit.as_bytes());
    let reply = pop.line();
    assert!(reply.starts_with("+OK"), "255 octets: {reply:?}");
    refused(
        &mut pop,
        format!("NOOP{}\r\n", " ".repeat(256 - 6)).as_bytes(),
        "NOOP",
    );
    pop.ok("QUIT");
}

/// A client that drops the connection in the middle of a large RETR: the server ends quietly
/// (no panic on the broken pipe) and deletes nothing.
#[test]
fn client_vanishes_mid_retr() {
    let mut w = world!("client_vanishes_mid_retr");
    let alice = w.user("alice");
    let big = large_message(4 * 1024);
    let names: Vec<String> = (0..2).map(|_| w.deliver(&alice, &big)).collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 2");
    pop.ok("RETR 1");
    pop.line();
    pop.drop_connection();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
    let log = server.wait_ends(1);
    assert!(!log.contains("panicked"), "{log}");
}

/// A command line cut off by the end of the stream deletes nothing.
#[test]
fn eof_inside_a_command_line() {
    let mut w = world!("eof_inside_a_command_line");
    let alice = w.user("alice");
    let name = w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 1");
    pop.send_raw(b"QUI");
    pop.drop_connection();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), [name].into_iter().collect());
}

/// A client that stops reading in the middle of a large RETR is dropped once the send has
/// been stuck for `timeout`, and nothing is deleted.
#[test]
fn client_that_stops_reading_is_dropped() {
    let mut w = world!("client_that_stops_reading_is_dropped");
    let alice = w.user("alice");
    w.set("timeout", "1");
    let names: Vec<String> = [large_message(16 * 1024), small_message(2)]
        .iter()
        .map(|m| w.deliver(&alice, m))
        .collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.send_raw(
        format!(
            "USER {}\r\nPASS {}\r\nDELE 2\r\nRETR 1\r\n",
            alice.name(),
            alice.password
        )
        .as_bytes(),
    );
    // Read nothing more, keep the connection open: the server must give up by itself.
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.into_iter().collect());
    drop(pop);
}
