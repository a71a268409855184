//! The maildrop as the server shows it: odd message files and names, messages other programs
//! put in cur/, delivery order, dot-stuffing at read-chunk boundaries, bounded memory, big
//! maildrops, mail arriving mid-session, the per-maildrop lock, extension Maildirs.

use crate::client::{pairs, Pop};
use crate::harness::{crlf, large_message, retr_wire, small_message, uniques, World};

/// The message bytes a multi-line reply carries: terminator taken off, dot-stuffing undone.
fn unstuffed(raw: &[u8]) -> Vec<u8> {
    let body = raw.strip_suffix(b".\r\n").expect("terminator");
    let mut out = Vec::with_capacity(body.len());
    let mut at_line_start = true;
    for (i, &b) in body.iter().enumerate() {
        if at_line_start && b == b'.' && body.get(i + 1) == Some(&b'.') {
            at_line_start = false;
            continue;
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// Files without a final newline, empty, with CRLF already, ending in a lone ".": LIST's size
/// is exactly what RETR sends before dot-stuffing, and what it sends is the file with CRLF
/// line ends (plus a final CRLF where the file had no final newline).
#[test]
fn odd_message_files_size_what_retr_sends() {
    let mut w = world!("odd_message_files_size_what_retr_sends");
    let alice = w.user("alice");
    let files: [&[u8]; 5] = [
        b"Subject: no final newline\n\nlast line",
        b"",
        b"Subject: crlf\r\n\r\nline one\r\n.dot\r\n",
        b"Subject: ends in a dot line\n\nx\n.",
        b"Subject: lone dots\n\n.\n..\n...\n",
    ];
    for f in files {
        w.deliver(&alice, f);
    }
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let list = pairs(&pop.ok_lines("LIST"));
    assert_eq!(list.len(), files.len());
    let mut total = 0;
    for (i, f) in files.iter().enumerate() {
        let n = i + 1;
        pop.ok(&format!("RETR {n}"));
        let raw = pop.multiline_raw();
        let sent = unstuffed(&raw);
        assert_eq!(
            list[i].1,
            sent.len().to_string(),
            "message {n}: LIST size vs octets RETR sent {:?}",
            String::from_utf8_lossy(&sent)
        );
        assert_eq!(
            pop.ok(&format!("LIST {n}")),
            format!("+OK {n} {}", sent.len())
        );
        total += sent.len();
        let want = if f.contains(&b'\r') {
            f.to_vec()
        } else if f.is_empty() || f.ends_with(b"\n") {
            crlf(f)
        } else {
            [crlf(f), b"\r\n".to_vec()].concat()
        };
        if f.is_empty() {
            assert!(
                sent.is_empty() || sent == b"\r\n",
                "empty file sent {sent:?}"
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(&sent),
                String::from_utf8_lossy(&want),
                "message {n}"
            );
        }
    }
    assert_eq!(pop.ok("STAT"), format!("+OK {} {total}", files.len()));
    // TOP of a message whose body has no final newline.
    pop.ok("TOP 1 0");
    assert_eq!(
        pop.multiline_raw(),
        retr_wire(b"Subject: no final newline\n\n")
    );
    pop.ok("QUIT");
}

/// A message another reader already moved to cur/ (with flags, without size fields) is served
/// with the right size and the unique part as UIDL, in this session and the next.
#[test]
fn message_already_in_cur() {
    let mut w = world!("message_already_in_cur");
    let alice = w.user("alice");
    let seen = small_message(1);
    w.place(
        &alice,
        &alice.maildir(),
        "cur",
        "1700000000.M7P77.other.example:2,S",
        &seen,
    );
    let fresh = small_message(2);
    let fresh_name = w.deliver(&alice, &fresh);
    let server = w.serve();
    for _ in 0..2 {
        let mut pop = server.connect();
        pop.login(alice.name(), &alice.password);
        assert_eq!(
            pairs(&pop.ok_lines("UIDL")),
            vec![
                (1, "1700000000.M7P77.other.example".to_string()),
                (2, fresh_name.clone())
            ]
        );
        assert_eq!(
            pairs(&pop.ok_lines("LIST")),
            vec![
                (1, crlf(&seen).len().to_string()),
                (2, crlf(&fresh).len().to_string())
            ]
        );
        pop.ok("RETR 1");
        assert_eq!(pop.multiline_raw(), retr_wire(&seen));
        pop.ok("QUIT");
        pop.expect_closed();
        server.wait_idle();
    }
}

/// Delivery order is the delivery time a qmail name starts with, compared as a number (a
/// 9-digit time is older than a 10-digit one though it sorts after it as text).
#[test]
fn delivery_order_is_by_time_not_text() {
    let mut w = world!("delivery_order_is_by_time_not_text");
    let alice = w.user("alice");
    let md = alice.maildir();
    let order = [
        "999999999.M1P1.host",
        "1000000000.M2P2.host",
        "1000000001.M3P3.host",
    ];
    // Placed in an order unlike delivery order, so neither creation nor readdir order helps.
    for i in [2, 0, 1] {
        w.place(&alice, &md, "new", order[i], &small_message(i as u32 + 1));
    }
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let uidl: Vec<String> = pairs(&pop.ok_lines("UIDL"))
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    assert_eq!(uidl, order);
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&small_message(1)));
    pop.ok("QUIT");
}

/// Names that cannot be a UIDL as they are (too long, a space, a control byte, not UTF-8) get
/// a valid, stable UIDL all the same; dot files are not messages.
#[test]
fn odd_file_names() {
    use std::os::unix::ffi::OsStrExt;
    let mut w = world!("odd_file_names");
    let alice = w.user("alice");
    let md = alice.maildir();
    let long = format!("1700000001.{}.host", "x".repeat(80));
    w.place(&alice, &md, "new", &long, &small_message(1));
    w.place(
        &alice,
        &md,
        "new",
        "1700000002.with space.host",
        &small_message(2),
    );
    w.place(
        &alice,
        &md,
        "new",
        "1700000003.ctl\u{1}.host",
        &small_message(3),
    );
    let raw = std::ffi::OsStr::from_bytes(b"1700000004.bad\xff.host");
    crate::harness::write_as_raw(&alice, &md.join("new").join(raw), &small_message(4));
    w.place(&alice, &md, "new", ".hidden", b"Subject: not a message\n\n");
    w.place(
        &alice,
        &md,
        "cur",
        ".also-hidden:2,",
        b"Subject: not a message\n\n",
    );
    let server = w.serve();
    let mut first = Vec::new();
    for round in 0..2 {
        let mut pop = server.connect();
        pop.login(alice.name(), &alice.password);
        let uidl = pairs(&pop.ok_lines("UIDL"));
        assert_eq!(uidl.len(), 4, "{uidl:?}");
        let mut seen = std::collections::BTreeSet::new();
        for (n, u) in &uidl {
            assert!(
                (1..=70).contains(&u.len()) && u.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "UIDL {n} {u:?}"
            );
            assert!(seen.insert(u.clone()), "duplicate UIDL {u}");
            pop.ok(&format!("RETR {n}"));
            assert_eq!(pop.multiline_raw(), retr_wire(&small_message(*n as u32)));
        }
        if round == 0 {
            first = uidl;
        } else {
            assert_eq!(uidl, first, "UIDLs are stable across sessions");
        }
        pop.ok("QUIT");
        pop.expect_closed();
        server.wait_idle();
    }
    assert!(
        md.join("new/.hidden").exists(),
        "dot files stay where they are"
    );
}

/// Dot-stuffing, CRLF and TOP's line count are right wherever a line starts relative to the
/// server's read chunks: lines starting with "." at every offset around several 64 KiB
/// boundaries, in LF files and in files that already have CRLF.
#[test]
fn dot_stuffing_across_chunk_boundaries() {
    let mut w = world!("dot_stuffing_across_chunk_boundaries");
    let alice = w.user("alice");
    let mut msgs = Vec::new();
    for (eol, pads) in [("\n", 2..=4), ("\r\n", 3..=6)] {
        for pad in pads {
            let mut m = format!("Subject: dots{eol}{eol}").into_bytes();
            m.extend(std::iter::repeat_n(b'p', pad - eol.len()));
            m.extend_from_slice(eol.as_bytes());
            while m.len() < 200 * 1024 {
                m.extend_from_slice(format!(".x{eol}").as_bytes());
            }
            msgs.push(m);
        }
    }
    for m in &msgs {
        w.deliver(&alice, m);
    }
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    for (i, m) in msgs.iter().enumerate() {
        let n = i + 1;
        let crlf_form = if m.contains(&b'\r') {
            m.clone()
        } else {
            crlf(m)
        };
        assert_eq!(
            pop.ok(&format!("LIST {n}")),
            format!("+OK {n} {}", crlf_form.len())
        );
        pop.ok(&format!("RETR {n}"));
        let lf_form: Vec<u8> = String::from_utf8(m.clone())
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        assert!(
            pop.multiline_raw() == retr_wire(&lf_form),
            "RETR {n} differs"
        );
        // TOP with enough lines to cross two chunk boundaries.
        let lines = 40_000;
        pop.ok(&format!("TOP {n} {lines}"));
        let text = String::from_utf8(lf_form).unwrap();
        let (header, body) = text.split_once("\n\n").unwrap();
        let top: String = body.split_inclusive('\n').take(lines).collect();
        assert!(
            pop.multiline_raw() == retr_wire(format!("{header}\n\n{top}").as_bytes()),
            "TOP {n} {lines} differs"
        );
    }
    pop.ok("QUIT");
}

/// RETR and TOP stream: serving a 48 MiB message (twice in one pipeline, a copy in cur/ whose
/// size must be measured, and TOP) leaves the server's peak resident memory far below it.
#[test]
fn large_retr_in_bounded_memory() {
    let mut w = world!("large_retr_in_bounded_memory");
    let alice = w.user("alice");
    let big = large_message(48 * 1024);
    w.deliver(&alice, &big);
    w.place(
        &alice,
        &alice.maildir(),
        "cur",
        "1600000000.M1P1.elsewhere:2,S",
        &big,
    );
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let size = crlf(&big).len();
    assert_eq!(pop.ok("LIST 1"), format!("+OK 1 {size}"));
    assert_eq!(pop.ok("LIST 2"), format!("+OK 2 {size}"));
    pop.send_raw(b"RETR 1\r\nRETR 2\r\nTOP 1 100000\r\n");
    let wire = retr_wire(&big);
    for i in 0..3 {
        pop.line();
        assert!(pop.multiline_raw() == wire, "reply {i} differs");
    }
    let pid = server.sessions()[0];
    let peak = crate::harness::peak_rss_kib(pid);
    assert!(
        peak < 24 * 1024,
        "ipop3d peaked at {peak} KiB serving a {} KiB message",
        size / 1024
    );
    pop.ok("QUIT");
}

/// A big maildrop: thousands of messages are all listed, in order, and all deleted at QUIT.
#[test]
fn thousands_of_messages() {
    let mut w = world!("thousands_of_messages");
    let alice = w.user("alice");
    let count = 3000u32;
    let names: Vec<String> = (1..=count)
        .map(|n| w.deliver(&alice, &small_message(n)))
        .collect();
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let total: usize = (1..=count).map(|n| crlf(&small_message(n)).len()).sum();
    assert_eq!(pop.ok("STAT"), format!("+OK {count} {total}"));
    let uidl: Vec<String> = pairs(&pop.ok_lines("UIDL"))
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    assert_eq!(uidl, names);
    pop.ok(&format!("RETR {count}"));
    assert_eq!(pop.multiline_raw(), retr_wire(&small_message(count)));
    let dele: String = (1..=count).map(|n| format!("DELE {n}\r\n")).collect();
    pop.send_raw(dele.as_bytes());
    for n in 1..=count {
        let reply = pop.line();
        assert!(reply.starts_with("+OK"), "DELE {n}: {reply:?}");
    }
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert!(uniques(&alice.maildir()).is_empty());
}

/// Mail delivered during a session shows up in the next one, and the first one's QUIT does
/// not delete it.
#[test]
fn mail_arriving_during_a_session() {
    let mut w = world!("mail_arriving_during_a_session");
    let alice = w.user("alice");
    let first = w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    let late = w.deliver(&alice, &small_message(2));
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("1"));
    pop.ok("DELE 1");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert_eq!(
        uniques(&alice.maildir()),
        [late.clone()].into_iter().collect()
    );
    assert!(!uniques(&alice.maildir()).contains(&first));
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    assert_eq!(pop.ok("UIDL 1"), format!("+OK 1 {late}"));
    pop.ok("QUIT");
}

/// Every message deleted: LIST is empty, STAT is 0 0, QUIT empties the Maildir.
#[test]
fn delete_everything() {
    let mut w = world!("delete_everything");
    let alice = w.user("alice");
    for n in 1..=3 {
        w.deliver(&alice, &small_message(n));
    }
    let server = w.serve();
    let mut pop = server.connect();
    pop.login(alice.name(), &alice.password);
    for n in 1..=3 {
        pop.ok(&format!("DELE {n}"));
    }
    assert!(pop.ok_lines("LIST").is_empty());
    assert!(pop.ok_lines("UIDL").is_empty());
    assert_eq!(pop.ok("STAT"), "+OK 0 0");
    pop.ok("QUIT");
    pop.expect_closed();
    server.wait_idle();
    assert!(uniques(&alice.maildir()).is_empty());
}

/// Many sessions racing to log in to one maildrop while all stay open: exactly one wins, the
/// others get `-ERR [IN-USE]`.
#[test]
fn racing_logins_exactly_one_wins() {
    let mut w = world!("racing_logins_exactly_one_wins");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut sessions: Vec<Pop> = (0..12).map(|_| server.connect()).collect();
    let barrier = std::sync::Barrier::new(sessions.len());
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|pop| {
                let (barrier, alice) = (&barrier, &alice);
                s.spawn(move || {
                    let line = pop.apop_line(alice.name(), &alice.password);
                    barrier.wait();
                    pop.cmd(&line)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = replies.iter().filter(|r| r.starts_with("+OK")).count();
    assert_eq!(winners, 1, "{replies:#?}");
    for r in replies.iter().filter(|r| !r.starts_with("+OK")) {
        assert!(r.starts_with("-ERR [IN-USE]"), "{r:?}");
    }
}

fn make_maildir(w: &World, user: &crate::harness::User, dir: &std::path::Path) {
    w.mkdir_as(&user.account, dir, 0o700);
    for sub in ["new", "cur", "tmp"] {
        w.mkdir_as(&user.account, &dir.join(sub), 0o700);
    }
}

/// An extension whose `.qmail-EXT` delivers to the account's own Maildir shares its lock: one
/// session at a time for the maildrop, whichever address logged in.
#[test]
fn extension_on_the_same_maildir_shares_the_lock() {
    let mut w = world!("extension_on_the_same_maildir_shares_the_lock");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let home = alice.account.home.clone();
    w.write_as(
        &alice.account,
        &home.join(".qmail-same"),
        b"./Maildir/\n",
        0o644,
    );
    w.set_secret(&alice, Some("same"), "pw-alice-same-secret");
    let server = w.serve();
    let mut first = server.connect();
    first.apop("alice-same", "pw-alice-same-secret");
    let mut second = server.connect();
    let line = second.apop_line(alice.name(), &alice.password);
    let reply = second.cmd(&line);
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply:?}");
    first.ok("QUIT");
}

/// A `.qmail-EXT` whose maildir line climbs out with `..` is not followed; the other
/// account's mail is untouched.
#[test]
fn dot_qmail_with_dotdot_is_refused() {
    let mut w = world!("dot_qmail_with_dotdot_is_refused");
    let alice = w.user("alice");
    let bob = w.user("bob");
    let bob_mail = w.deliver(&bob, &small_message(1));
    let home = alice.account.home.clone();
    w.write_as(
        &alice.account,
        &home.join(".qmail-sneak"),
        b"./../bob/Maildir/\n",
        0o644,
    );
    w.set_secret(&alice, Some("sneak"), "pw-alice-sneak-secret");
    let server = w.serve();
    let mut pop = server.connect();
    let line = pop.apop_line("alice-sneak", "pw-alice-sneak-secret");
    let reply = pop.cmd(&line);
    assert!(reply.starts_with("-ERR"), "{reply:?}");
    drop(pop);
    server.wait_idle();
    let new: Vec<_> = std::fs::read_dir(bob.maildir().join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(new, vec![bob_mail]);
}

/// Postfix-style extensions: `ext_delimiter = +`, `dotqmail = .forward`; and `maildir` naming
/// another Maildir path in the home.
#[test]
fn postfix_style_extensions_and_maildir_setting() {
    let mut w = world!("postfix_style_extensions_and_maildir_setting");
    let alice = w.user("alice");
    w.set("ext_delimiter", "+");
    w.set("dotqmail", ".forward");
    w.set("maildir", "Mail/inbox");
    let home = alice.account.home.clone();
    w.mkdir_as(&alice.account, &home.join("Mail"), 0o700);
    let inbox = home.join("Mail/inbox");
    make_maildir(&w, &alice, &inbox);
    let lists = home.join("Lists");
    make_maildir(&w, &alice, &lists);
    let in_inbox = small_message(1);
    let in_lists = small_message(2);
    w.deliver_to(&alice, &inbox, &in_inbox);
    w.deliver_to(&alice, &lists, &in_lists);
    w.deliver(&alice, &small_message(3)); // ~/Maildir is not used
    w.write_as(
        &alice.account,
        &home.join(".forward+lists"),
        b"./Lists/\n",
        0o644,
    );
    w.set_secret(&alice, Some("lists"), "pw-alice-lists-secret");
    let server = w.serve();

    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&in_inbox));
    assert_eq!(pop.ok("STAT").split(' ').nth(1), Some("1"));
    pop.ok("QUIT");

    let mut pop = server.connect();
    pop.apop("alice+lists", "pw-alice-lists-secret");
    pop.ok("RETR 1");
    assert_eq!(pop.multiline_raw(), retr_wire(&in_lists));
    pop.ok("QUIT");

    let mut pop = server.connect();
    let reply = pop.cmd(&pop.apop_line("alice-lists", "pw-alice-lists-secret"));
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
}
