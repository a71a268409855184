//! checkapop under a real Dovecot 2.3 (issue #12): a private Dovecot on 127.0.0.1 (IMAP and
//! POP3) with `passdb { driver = checkpassword  args = checkapop --dovecot --config ... }` and
//! `userdb { driver = prefetch }`. IMAP LOGIN and POP3 USER/PASS log in with the store's
//! password and the mail is served as the account's uid; POP3 APOP and AUTH CRAM-MD5 work
//! through checkapop's credentials lookup; a wrong password, and every way in once the account
//! is disabled, are refused. Each refused attempt comes from its own loopback address, so
//! Dovecot's per-address auth penalty does not slow the test down.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

use crate::client::{tcp_from, Pop};
use crate::dovecot::Dovecot;
use crate::harness::{proc_ids, small_message, User, World, PATIENCE};

const CHECKAPOP: &str = env!("CARGO_BIN_EXE_checkapop");
const DOVECOT_POP3: &str = "/usr/lib/dovecot/pop3";
const DOVECOT_IMAP: &str = "/usr/lib/dovecot/imap";

/// A private Dovecot serving IMAP and POP3 with checkapop as its passdb.
fn start_dovecot(w: &World) -> Dovecot {
    assert!(
        !CHECKAPOP.contains(' ') && !w.config_path().display().to_string().contains(' '),
        "Dovecot splits the passdb args on spaces"
    );
    let settings = format!(
        "protocols = imap pop3\n\
         disable_plaintext_auth = no\n\
         auth_mechanisms = plain login cram-md5 apop\n\
         auth_verbose = yes\n\
         auth_failure_delay = 0\n\
         mail_debug = yes\n\
         verbose_proctitle = yes\n\
         passdb {{\n  driver = checkpassword\n  args = {checkapop} --dovecot --config {config}\n}}\n\
         userdb {{\n  driver = prefetch\n}}\n\
         mail_location = maildir:~/Maildir\n\
         first_valid_uid = 1000\n\
         service auth {{\n  user = root\n}}\n",
        checkapop = CHECKAPOP,
        config = w.config_path().display(),
    );
    Dovecot::start(w, "checkpassword", &settings)
}

/// A tiny IMAP client: tagged commands, the untagged lines read as text.
struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    fn connect_from(local: Ipv4Addr, port: u16) -> Imap {
        let tcp = tcp_from(local, port);
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut imap = Imap {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
            tag: 0,
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "IMAP greeting {greeting:?}");
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("reading from Dovecot");
        assert!(n > 0, "Dovecot closed the IMAP connection");
        line.trim_end_matches("\r\n").to_string()
    }

    /// Sends `command`; everything before the tagged reply, and the tagged reply.
    fn cmd(&mut self, command: &str) -> (String, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").unwrap();
        let mut untagged = String::new();
        loop {
            let line = self.line();
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return (untagged, status.to_string());
            }
            untagged.push_str(&line);
            untagged.push('\n');
        }
    }
}

/// An IMAP quoted string (the test's passwords need no escapes).
fn quoted(s: &str) -> String {
    assert!(!s.contains(['"', '\\']), "{s:?}");
    format!("\"{s}\"")
}

/// `AUTH CRAM-MD5` as `user` with `password`; the server's final reply.
fn cram_md5(pop: &mut Pop, user: &str, password: &str) -> String {
    let line = pop.cmd("AUTH CRAM-MD5");
    let challenge = line
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("AUTH CRAM-MD5 got {line:?}"));
    let challenge = STANDARD.decode(challenge).unwrap();
    let mut mac = Hmac::<md5::Md5>::new_from_slice(password.as_bytes()).unwrap();
    mac.update(&challenge);
    let hex = u128::from_be_bytes(mac.finalize().into_bytes().into());
    pop.cmd(&STANDARD.encode(format!("{user} {hex:032x}")))
}

/// A fresh loopback address for each refused attempt (Dovecot's auth penalty is per address).
fn next_addr(n: &mut u8) -> Ipv4Addr {
    *n += 1;
    Ipv4Addr::new(127, 0, 0, *n)
}

/// Every way in must fail for `user` with `password` (the store's or a wrong one).
fn all_refused(d: &Dovecot, user: &User, password: &str, n: &mut u8, why: &str) {
    let name = user.name();
    let log = || d.log();
    let mut imap = Imap::connect_from(next_addr(n), d.imap);
    let (_, status) = imap.cmd(&format!("LOGIN {name} {}", quoted(password)));
    assert!(
        status.starts_with("NO"),
        "{why}: IMAP LOGIN got {status:?}\n{}",
        log()
    );
    let _ = imap.cmd("LOGOUT");

    let mut pop = Pop::connect_from(next_addr(n), d.pop3);
    pop.ok(&format!("USER {name}"));
    let reply = pop.cmd(&format!("PASS {password}"));
    assert!(
        reply.starts_with("-ERR"),
        "{why}: PASS got {reply:?}\n{}",
        log()
    );
    pop.cmd("QUIT");

    let mut pop = Pop::connect_from(next_addr(n), d.pop3);
    let line = pop.apop_line(name, password);
    let reply = pop.cmd(&line);
    assert!(
        reply.starts_with("-ERR"),
        "{why}: APOP got {reply:?}\n{}",
        log()
    );
    pop.cmd("QUIT");

    let mut pop = Pop::connect_from(next_addr(n), d.pop3);
    let reply = cram_md5(&mut pop, name, password);
    assert!(
        reply.starts_with("-ERR"),
        "{why}: CRAM-MD5 got {reply:?}\n{}",
        log()
    );
    pop.cmd("QUIT");
}

/// Asserts that a process of `service` serving `user` runs as the account's uid and gid.
fn served_as(d: &Dovecot, service: &str, user: &User) {
    let pids = d.serving(service, user.name());
    assert!(
        !pids.is_empty(),
        "no Dovecot {service} process serves {}:\n{}",
        user.name(),
        d.log()
    );
    for pid in pids {
        let (uids, gids, _) = proc_ids(pid);
        assert!(
            uids.iter().all(|&u| u == user.account.uid),
            "{service} pid {pid} uids {uids:?}, want {}",
            user.account.uid
        );
        assert!(
            gids.iter().all(|&g| g == user.account.gid),
            "{service} pid {pid} gids {gids:?}, want {}",
            user.account.gid
        );
    }
}

#[test]
fn dovecot_checkpassword_logs_in_imap_and_pop3_root() {
    let test = "dovecot_checkpassword_logs_in_imap_and_pop3_root";
    if !crate::harness::need_root(test) {
        return;
    }
    let mut w = world!(
        "dovecot_checkpassword_logs_in_imap_and_pop3_root",
        "dovecot"
    );
    for program in [DOVECOT_IMAP, DOVECOT_POP3] {
        if !Path::new(program).exists() {
            crate::skip::skipped(&format!("needs {program}"), test);
            return;
        }
    }
    let alice = w.user("alice");
    let bob = w.user("bob");
    w.deliver(&alice, &small_message(1));
    w.deliver(&alice, &small_message(2));
    w.deliver(&bob, &small_message(3));
    // alice-lists: its own password and the Maildir its .qmail-lists names.
    let lists = alice.account.home.join("Lists");
    for sub in ["", "new", "cur", "tmp"] {
        w.mkdir_as(&alice.account, &lists.join(sub), 0o700);
    }
    w.deliver_to(&alice, &lists, &small_message(4));
    w.write_as(
        &alice.account,
        &alice.account.home.join(".qmail-lists"),
        b"./Lists/\n",
        0o644,
    );
    let lists_secret = "pw-alice-lists-dovecot";
    w.set_secret(&alice, Some("lists"), lists_secret);
    let d = start_dovecot(&w);
    let log = || d.log();
    let mut addr = 1u8;

    // IMAP LOGIN with the store's password: alice's two messages, as alice's uid.
    let mut imap = Imap::connect_from(Ipv4Addr::LOCALHOST, d.imap);
    let (_, status) = imap.cmd(&format!("LOGIN alice {}", quoted(&alice.password)));
    assert!(
        status.starts_with("OK"),
        "IMAP LOGIN got {status:?}\n{}",
        log()
    );
    let (untagged, status) = imap.cmd("SELECT INBOX");
    assert!(status.starts_with("OK"), "SELECT got {status:?}");
    assert!(untagged.contains("* 2 EXISTS"), "{untagged}");
    let (untagged, status) = imap.cmd("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    assert!(status.starts_with("OK"), "FETCH got {status:?}");
    assert!(
        untagged.contains("<m1@example.org>") && untagged.contains("<m2@example.org>"),
        "{untagged}"
    );
    assert!(!untagged.contains("<m3@example.org>"), "{untagged}");
    served_as(&d, "imap", &alice);
    let _ = imap.cmd("LOGOUT");

    // POP3 USER/PASS: the same two messages; RETR of the first.
    let mut pop = Pop::connect(d.pop3);
    pop.login("alice", &alice.password);
    assert!(pop.ok("STAT").starts_with("+OK 2 "), "STAT");
    pop.ok("RETR 1");
    let body = pop.multiline().join("\n");
    assert!(body.contains("Message-ID: <m1@example.org>"), "{body}");
    served_as(&d, "pop3", &alice);
    pop.ok("QUIT");

    // APOP and AUTH CRAM-MD5 through checkapop's credentials lookup.
    let mut pop = Pop::connect(d.pop3);
    pop.apop("alice", &alice.password);
    assert!(pop.ok("STAT").starts_with("+OK 2 "), "STAT after APOP");
    pop.ok("QUIT");
    let mut pop = Pop::connect(d.pop3);
    let reply = cram_md5(&mut pop, "bob", &bob.password);
    assert!(
        reply.starts_with("+OK"),
        "CRAM-MD5 got {reply:?}\n{}",
        log()
    );
    assert!(pop.ok("STAT").starts_with("+OK 1 "), "bob's STAT");
    pop.ok("RETR 1");
    let body = pop.multiline().join("\n");
    assert!(body.contains("Message-ID: <m3@example.org>"), "{body}");
    served_as(&d, "pop3", &bob);
    pop.ok("QUIT");

    // An extension address: its own password, the Maildir its .qmail-EXT names (IMAP and
    // POP3), never the account's own.
    let mut imap = Imap::connect_from(Ipv4Addr::LOCALHOST, d.imap);
    let (_, status) = imap.cmd(&format!("LOGIN alice-lists {}", quoted(lists_secret)));
    assert!(
        status.starts_with("OK"),
        "IMAP LOGIN alice-lists got {status:?}\n{}",
        log()
    );
    let (untagged, status) = imap.cmd("SELECT INBOX");
    assert!(status.starts_with("OK"), "SELECT got {status:?}");
    assert!(untagged.contains("* 1 EXISTS"), "{untagged}");
    let (untagged, _) = imap.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    assert!(untagged.contains("<m4@example.org>"), "{untagged}");
    let _ = imap.cmd("LOGOUT");
    let mut pop = Pop::connect(d.pop3);
    pop.apop("alice-lists", lists_secret);
    assert!(pop.ok("STAT").starts_with("+OK 1 "), "alice-lists' STAT");
    pop.ok("RETR 1");
    let body = pop.multiline().join("\n");
    assert!(body.contains("Message-ID: <m4@example.org>"), "{body}");
    pop.ok("QUIT");
    // The account's own password does not open the extension.
    let mut pop = Pop::connect_from(next_addr(&mut addr), d.pop3);
    pop.ok("USER alice-lists");
    let reply = pop.cmd(&format!("PASS {}", alice.password));
    assert!(
        reply.starts_with("-ERR"),
        "alice's password for alice-lists: {reply:?}"
    );
    pop.cmd("QUIT");

    // Dovecot's log: the mail processes ran as the accounts.
    let text = log();
    for user in [&alice, &bob] {
        let uid = format!(
            "Effective uid={}, gid={},",
            user.account.uid, user.account.gid
        );
        assert!(text.contains(&uid), "no {uid:?} in Dovecot's log:\n{text}");
    }

    // A wrong password is refused every way; so is everything once alice is disabled (bob,
    // untouched, still logs in).
    all_refused(&d, &alice, "wrong-password", &mut addr, "wrong password");
    w.disable(&alice);
    all_refused(&d, &alice, &alice.password.clone(), &mut addr, "disabled");
    let mut pop = Pop::connect(d.pop3);
    pop.apop("bob", &bob.password);
    pop.ok("QUIT");

    let text = log();
    assert!(
        !text.contains(&alice.password),
        "a secret in Dovecot's log:\n{text}"
    );
    eprintln!("Dovecot's log:\n{text}");
}
