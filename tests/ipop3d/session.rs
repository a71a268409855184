//! The POP3 session over a real socket: the seed's telnet dialogue, the greeting's timestamp,
//! UIDL and TOP, UPDATE semantics, QUIT before login, pipelining (also deep, and commands split
//! across writes), the idle timeout before and after login.

use crate::client::{pairs, Pop};
use crate::harness::{
    crlf, large_message, retr_wire, seed_message, small_message, uniques, Launch, World,
};

/// The seed's telnet dialogue, command for command, checking what each reply means.
#[test]
fn seed_telnet_dialogue() {
    let mut w = world!("seed_telnet_dialogue");
    let alice = w.user("alice");
    let first = seed_message();
    let second = small_message(2);
    let u1 = w.deliver(&alice, &first);
    let u2 = w.deliver(&alice, &second);
    let server = w.serve();

    let mut pop = server.connect();
    // "+OK POP3 2004.89 server ready <25d7.44112fe3@qm200.is.koeki-u.ac.jp>": <pid.nanos@host>.
    let ts = pop.timestamp().to_string();
    let inner = &ts[1..ts.len() - 1];
    let (pid_nanos, host) = inner.split_once('@').expect("timestamp has @");
    let (pid, nanos) = pid_nanos.split_once('.').expect("timestamp has pid.nanos");
    assert!(!host.is_empty(), "{ts}");
    assert!(
        nanos.bytes().all(|b| b.is_ascii_digit()) && !nanos.is_empty(),
        "{ts}"
    );
    let pid: u32 = pid.parse().expect("pid is a number");
    assert_eq!(
        server.sessions(),
        vec![pid],
        "the timestamp names the session's pid"
    );

    pop.ok(&format!("USER {}", alice.name()));
    pop.ok(&format!("PASS {}", alice.password));

    let list = pairs(&pop.ok_lines("LIST"));
    let sizes = [
        crlf(&first).len().to_string(),
        crlf(&second).len().to_string(),
    ];
    assert_eq!(
        list,
        vec![(1, sizes[0].clone()), (2, sizes[1].clone())],
        "LIST sizes are the octets after LF->CRLF"
    );

    let head = pop.ok("RETR 1");
    let body = pop.multiline_raw();
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&retr_wire(&first)),
        "RETR sends the file with CRLF and dot-stuffing"
    );
    assert!(
        head.contains(&sizes[0]),
        "RETR's +OK names the size: {head:?}"
    );

    assert_eq!(pairs(&pop.ok_lines("LIST")), list, "RETR changes nothing");
    pop.ok("DELE 1");
    assert_eq!(
        pairs(&pop.ok_lines("LIST")),
        vec![(2, sizes[1].clone())],
        "a deleted message leaves the listing, the others keep their numbers"
    );
    assert_eq!(pop.ok("STAT"), format!("+OK 1 {}", sizes[1]));
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();

    assert!(
        !uniques(&alice.maildir()).contains(&u1),
        "message 1 is gone"
    );
    assert_eq!(uniques(&alice.maildir()), [u2].into_iter().collect());
}

/// Two connections get different timestamps; a configured hostname is the timestamp's host.
#[test]
fn greeting_timestamps_are_unique_and_name_the_host() {
    let mut w = world!("greeting_timestamps_are_unique_and_name_the_host");
    w.user("alice");
    w.set("hostname", "pop.example.test");
    let server = w.serve();
    let a = server.connect();
    let b = server.connect();
    assert_ne!(a.timestamp(), b.timestamp());
    for p in [&a, &b] {
        assert!(
            p.timestamp().ends_with("@pop.example.test>"),
            "{}",
            p.greeting
        );
    }
}

/// Messages are numbered in delivery order; UIDL is the unique part of the file name and is
/// the same in the next session; new/ moves to cur/ at login; TOP sends headers, the blank
/// line and n body lines.
#[test]
fn order_uidl_new_to_cur_and_top() {
    let mut w = world!("order_uidl_new_to_cur_and_top");
    let alice = w.user("alice");
    // Delivered in this order; the file names sort the same way, the mtimes too.
    let msgs: Vec<Vec<u8>> = (1..=4).map(small_message).collect();
    let names: Vec<String> = msgs.iter().map(|m| w.deliver(&alice, m)).collect();
    let server = w.serve();

    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let new_left = std::fs::read_dir(alice.maildir().join("new"))
        .unwrap()
        .count();
    assert_eq!(new_left, 0, "new/ is moved to cur/ at login");
    let uidl = pairs(&pop.ok_lines("UIDL"));
    let want: Vec<(u64, String)> = (1..).zip(names.iter().cloned()).collect();
    assert_eq!(
        uidl, want,
        "UIDL is the unique part of the name, in delivery order"
    );
    for (_, u) in &uidl {
        assert!(
            (1..=70).contains(&u.len()) && u.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{u:?}"
        );
    }
    assert_eq!(pop.ok("UIDL 3"), format!("+OK 3 {}", names[2]));
    for (i, m) in msgs.iter().enumerate() {
        pop.ok(&format!("RETR {}", i + 1));
        assert_eq!(pop.multiline_raw(), retr_wire(m), "message {}", i + 1);
    }

    // TOP 2 1: the header, the blank line, one body line.
    pop.ok("TOP 2 1");
    let text = String::from_utf8(msgs[1].clone()).unwrap();
    let (header, body) = text.split_once("\n\n").unwrap();
    let first_body_line = body.lines().next().unwrap();
    let want_top = format!("{header}\n\n{first_body_line}\n");
    assert_eq!(pop.multiline_raw(), retr_wire(want_top.as_bytes()));
    // TOP n 0: the header and the blank line only.
    pop.ok("TOP 1 0");
    let header1 = String::from_utf8(msgs[0].clone()).unwrap();
    let header1 = header1.split_once("\n\n").unwrap().0;
    assert_eq!(
        pop.multiline_raw(),
        retr_wire(format!("{header1}\n\n").as_bytes())
    );
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();

    let mut again = server.connect();
    again.login(alice.name(), &alice.password);
    assert_eq!(
        pairs(&again.ok_lines("UIDL")),
        want,
        "UIDL is stable across sessions"
    );
    again.ok("QUIT");
}

/// A large message comes through intact (the server streams it).
#[test]
fn large_message_retr_is_exact() {
    let mut w = world!("large_message_retr_is_exact");
    let alice = w.user("alice");
    let big = large_message(3 * 1024);
    w.deliver(&alice, &big);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    assert_eq!(pop.ok("LIST 1"), format!("+OK 1 {}", crlf(&big).len()));
    pop.ok("RETR 1");
    let got = pop.multiline_raw();
    assert!(got == retr_wire(&big), "3 MiB message differs");
    pop.ok("QUIT");
}

fn three_messages(w: &mut World) -> (crate::harness::User, Vec<String>) {
    let alice = w.user("alice");
    let names = (1..=3)
        .map(|n| w.deliver(&alice, &small_message(n)))
        .collect();
    (alice, names)
}

#[test]
fn dele_then_dropped_connection_deletes_nothing() {
    let mut w = world!("dele_then_dropped_connection_deletes_nothing");
    let (alice, names) = three_messages(&mut w);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 1");
    pop.ok("DELE 2");
    pop.drop_connection();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
    // The maildrop lock went with the session: a new one logs in and sees all three.
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("3"));
    pop.ok("QUIT");
}

#[test]
fn dele_rset_quit_deletes_nothing() {
    let mut w = world!("dele_rset_quit_deletes_nothing");
    let (alice, names) = three_messages(&mut w);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 1");
    pop.ok("DELE 3");
    pop.ok("RSET");
    assert_eq!(pairs(&pop.ok_lines("LIST")).len(), 3, "RSET unmarks");
    pop.ok("RETR 1");
    pop.multiline_raw();
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
}

#[test]
fn dele_quit_deletes_exactly_those() {
    let mut w = world!("dele_quit_deletes_exactly_those");
    let (alice, names) = three_messages(&mut w);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 1");
    pop.ok("DELE 3");
    pop.err("DELE 3");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [names[1].clone()].into_iter().collect()
    );
}

/// Many commands in one write (RFC 2449 PIPELINING) get all their replies, in order.
#[test]
fn pipelined_commands_answered_in_order() {
    let mut w = world!("pipelined_commands_answered_in_order");
    let alice = w.user("alice");
    let m1 = seed_message();
    let m2 = small_message(2);
    w.deliver(&alice, &m1);
    w.deliver(&alice, &m2);
    let server = w.serve();
    let mut pop = server.connect();
    let batch = format!(
        "USER {}\r\nPASS {}\r\nSTAT\r\nLIST\r\nRETR 2\r\nNOOP\r\nBOGUS\r\nRETR 1\r\nTOP 2 0\r\n\
         DELE 2\r\nLIST 2\r\nUIDL 1\r\nRSET\r\nSTAT\r\nNOOP\r\n",
        alice.name(),
        alice.password
    );
    pop.send_raw(batch.as_bytes());
    let (s1, s2) = (crlf(&m1).len(), crlf(&m2).len());
    let ok = |l: String| assert!(l.starts_with("+OK"), "{l:?}");
    ok(pop.line()); // USER
    ok(pop.line()); // PASS
    assert_eq!(pop.line(), format!("+OK 2 {}", s1 + s2));
    ok(pop.line());
    assert_eq!(
        pairs(&pop.multiline()),
        vec![(1, s1.to_string()), (2, s2.to_string())]
    );
    ok(pop.line());
    assert_eq!(pop.multiline_raw(), retr_wire(&m2));
    ok(pop.line()); // NOOP
    assert!(pop.line().starts_with("-ERR"), "BOGUS");
    ok(pop.line());
    assert_eq!(pop.multiline_raw(), retr_wire(&m1));
    ok(pop.line()); // TOP 2 0
    pop.multiline_raw();
    ok(pop.line()); // DELE 2
    assert!(pop.line().starts_with("-ERR"), "LIST of a deleted message");
    assert!(pop.line().starts_with("+OK 1 "), "UIDL 1");
    ok(pop.line()); // RSET
    assert_eq!(pop.line(), format!("+OK 2 {}", s1 + s2));
    ok(pop.line()); // NOOP
    pop.ok("QUIT");
}

/// With `timeout = 1` an idle session is closed with -ERR and deletes nothing.
#[test]
fn idle_timeout_closes_and_deletes_nothing() {
    let mut w = world!("idle_timeout_closes_and_deletes_nothing");
    let (alice, names) = three_messages(&mut w);
    w.set("timeout", "1");
    let server = w.serve();
    let mut pop = server.connect();
    // One write, so that no pause of ours comes before the idle time being tested.
    pop.send_raw(
        format!(
            "USER {}\r\nPASS {}\r\nDELE 1\r\n",
            alice.name(),
            alice.password
        )
        .as_bytes(),
    );
    for command in ["USER", "PASS", "DELE"] {
        let reply = pop.line();
        assert!(reply.starts_with("+OK"), "{command}: {reply:?}");
    }
    // Say nothing more: the server gives up on its own.
    let last = pop.try_line().expect("a goodbye line before the close");
    assert!(last.starts_with("-ERR"), "{last:?}");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
}

/// When the UPDATE state cannot remove a message (cur/ made read-only meanwhile), QUIT says
/// so with -ERR instead of +OK, and the message is still there.
#[test]
fn quit_reports_deletions_that_failed() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = world!("quit_reports_deletions_that_failed");
    let (alice, names) = three_messages(&mut w);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let cur = alice.maildir().join("cur");
    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o500)).unwrap();
    pop.ok("DELE 1");
    let quit = pop.cmd("QUIT");
    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(quit.starts_with("-ERR"), "{quit:?}");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(uniques(&alice.maildir()), names.iter().cloned().collect());
}

/// QUIT before login: +OK, the connection closes, the Maildir is untouched (new/ stays new/).
#[test]
fn quit_before_login() {
    let mut w = world!("quit_before_login");
    let alice = w.user("alice");
    let name = w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    let new: Vec<_> = std::fs::read_dir(alice.maildir().join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(new, vec![name]);
}

/// A command sent one byte per write is one command.
#[test]
fn command_split_across_writes() {
    let mut w = world!("command_split_across_writes");
    let alice = w.user("alice");
    let m = small_message(1);
    w.deliver(&alice, &m);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    for b in b"RETR 1\r\n" {
        pop.send_raw(&[*b]);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pop.line();
    assert_eq!(pop.multiline_raw(), retr_wire(&m));
    pop.ok("QUIT");
}

/// A deep pipeline: thousands of commands and many large RETRs in one write, all answered in
/// order, while the server's output fills the socket before we read.
#[test]
fn deep_pipeline() {
    let mut w = world!("deep_pipeline");
    let alice = w.user("alice");
    let big = large_message(256);
    w.deliver(&alice, &big);
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let mut batch = String::new();
    for i in 0..3000 {
        batch.push_str(if i % 100 == 0 {
            "RETR 1\r\n"
        } else {
            "NOOP\r\n"
        });
    }
    batch.push_str("STAT\r\n");
    pop.send_raw(batch.as_bytes());
    let wire = retr_wire(&big);
    for i in 0..3000 {
        let reply = pop.line();
        assert!(reply.starts_with("+OK"), "reply {i}: {reply:?}");
        if i % 100 == 0 {
            assert!(pop.multiline_raw() == wire, "RETR {i} differs");
        }
    }
    assert_eq!(pop.line(), format!("+OK 1 {}", crlf(&big).len()));
    pop.ok("QUIT");
}

/// The idle timeout also ends a session that never logged in.
#[test]
fn idle_timeout_before_login() {
    let mut w = world!("idle_timeout_before_login");
    w.user("alice");
    w.set("timeout", "1");
    let server = w.serve();
    let mut pop: Pop = server.connect();
    let last = pop.try_line().expect("a goodbye line");
    assert!(last.starts_with("-ERR"), "{last:?}");
    pop.expect_closed();
}

/// Without `hostname` in the config, the timestamp's host is `TCPLOCALHOST` (tcpserver's `-l`).
#[test]
fn timestamp_host_from_tcplocalhost() {
    let mut w = world!("timestamp_host_from_tcplocalhost");
    w.user("alice");
    let server = w.launch(&Launch {
        env: &[("INTRANET", "1")],
        run_as: None,
        args: &[],
        local_host: Some("pop.tcplocal.test"),
    });
    let pop = server.connect();
    assert!(
        pop.timestamp().ends_with("@pop.tcplocal.test>"),
        "{}",
        pop.greeting
    );
}

/// A `TCPLOCALHOST` that is not a host name (here with `>` and a space) never makes a
/// malformed timestamp: the greeting still ends in one well-formed `<pid.nanos@host>`.
#[test]
fn bad_tcplocalhost_keeps_the_timestamp_well_formed() {
    let mut w = world!("bad_tcplocalhost_keeps_the_timestamp_well_formed");
    let alice = w.user("alice");
    let server = w.launch(&Launch {
        env: &[("INTRANET", "1")],
        run_as: None,
        args: &[],
        local_host: Some("evil> host"),
    });
    let mut pop = server.connect();
    assert!(pop.greeting.ends_with('>'), "{}", pop.greeting);
    assert_eq!(pop.greeting.matches('<').count(), 1, "{}", pop.greeting);
    let ts = pop.timestamp().to_string();
    let (_, host) = ts[1..ts.len() - 1].split_once('@').unwrap();
    assert!(
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
        "{ts}"
    );
    pop.apop(alice.name(), &alice.password);
    pop.ok("QUIT");
}
