//! UIDL continuity (issue #13): a Maildir served first by a real Dovecot 2.3 POP3 (a private
//! instance with a passwd-file passdb), fetched by mpop with `keep on` (it remembers every
//! UIDL it has seen and downloads only messages with new ones), then served by ipop3d with
//! `uidl_compat = dovecot`: the UIDL listing is byte for byte Dovecot's, in Dovecot's order,
//! `ipop3d --uidl-report` showed it before the switch, mpop downloads nothing, and mail
//! delivered after the switch is fetched once. The same with Dovecot's `pop3_uidl_format = %f`
//! against `uidl_compat = qmail`. Then, back on `none`, the UIDLs stay.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::{pairs, Pop};
use crate::dovecot::Dovecot;
use crate::harness::{small_message, User, World};

const IPOP3D: &str = env!("CARGO_BIN_EXE_ipop3d");
const DOVECOT_POP3: &str = "/usr/lib/dovecot/pop3";

/// Whether the test can run: root, Dovecot's POP3 server and mpop.
fn can_run(test: &str) -> bool {
    if !crate::harness::need_root(test) || !crate::skip::need_programs(&["dovecot", "mpop"], test) {
        return false;
    }
    if !Path::new(DOVECOT_POP3).exists() {
        crate::skip::skipped(&format!("needs {DOVECOT_POP3}"), test);
        return false;
    }
    true
}

/// A private Dovecot POP3 for `user` (passwd-file passdb and userdb with the mail password in
/// the clear, as Dovecot's APOP needs) with `extra` settings.
fn dovecot(w: &World, name: &str, user: &User, extra: &str) -> Dovecot {
    let a = &user.account;
    let users = w.path().join(format!("dovecot-{name}.users"));
    std::fs::write(
        &users,
        format!(
            "{}:{{PLAIN}}{}:{}:{}::{}::\n",
            a.name,
            user.password,
            a.uid,
            a.gid,
            a.home.display()
        ),
    )
    .unwrap();
    // Dovecot's auth process runs as its own user: the file must be readable by it.
    let dovecot_gid = nix::unistd::Group::from_name("dovecot")
        .unwrap()
        .expect("group dovecot")
        .gid;
    nix::unistd::chown(&users, None, Some(dovecot_gid)).unwrap();
    set_mode(&users, 0o640);
    let settings = format!(
        "protocols = pop3\n\
         disable_plaintext_auth = no\n\
         auth_mechanisms = plain\n\
         passdb {{\n  driver = passwd-file\n  args = {u}\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = {u}\n}}\n\
         mail_location = maildir:~/Maildir\n\
         first_valid_uid = 1000\n\
         pop3_lock_session = yes\n\
         {extra}",
        u = users.display()
    );
    Dovecot::start(w, name, &settings)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The `UIDL` listing of a POP3 server, as `N UIDL` lines.
fn uidl_listing(port: u16, user: &User) -> Vec<String> {
    let mut pop = Pop::connect(port);
    pop.login(user.name(), &user.password);
    let lines = pop.ok_lines("UIDL");
    pop.ok("QUIT");
    lines
}

/// mpop, leaving mail on the server and remembering UIDLs in `dir/uidls`, delivering into the
/// Maildir `dir/got`. Returns how many messages this run delivered.
struct Mpop {
    dir: PathBuf,
}

impl Mpop {
    fn new(w: &World) -> Mpop {
        let dir = w.path().join("mpop");
        for sub in ["got/new", "got/cur", "got/tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Mpop { dir }
    }

    fn got(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(self.dir.join("got").join(s))
                    .unwrap()
                    .count()
            })
            .sum()
    }

    /// One mpop run against `port`: how many messages it delivered, and its debug output.
    fn fetch(&self, port: u16, user: &User) -> (usize, String) {
        let d = self.dir.display();
        let rc = self.dir.join("mpoprc");
        std::fs::write(
            &rc,
            format!(
                "account default\nhost 127.0.0.1\nport {port}\ntimeout 60\nauth user\n\
                 user {}\npassword {}\ntls off\nkeep on\nonly_new on\nreceived_header off\n\
                 uidls_file {d}/uidls\ndelivery maildir {d}/got\n",
                user.name(),
                user.password
            ),
        )
        .unwrap();
        set_mode(&rc, 0o600);
        let before = self.got();
        let out = Command::new("mpop")
            .arg("--debug")
            .arg("-C")
            .arg(&rc)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "mpop: {}\n{text}", out.status);
        (self.got() - before, text)
    }
}

/// `ipop3d --uidl-report USER` as root: its lines.
fn uidl_report(w: &World, user: &User) -> Vec<String> {
    let out = Command::new(IPOP3D)
        .arg("--config")
        .arg(w.config_path())
        .arg("--uidl-report")
        .arg(user.name())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ipop3d --uidl-report: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Files of the Maildir's root (Dovecot's and ours), with their contents.
fn root_files(maildir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(maildir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Delivers `n` messages for `user`, some with the `,S=` size field Dovecot's and other LDAs
/// add to names, and in a scrambled order of names.
fn deliver_mixed(w: &mut World, user: &User, n: u32) -> Vec<String> {
    let maildir = user.maildir();
    let mut names = Vec::new();
    for i in 0..n {
        let body = small_message(100 + i);
        let name = if i % 2 == 0 {
            let name = format!(
                "{}.M{i}P77Q{i}.mx.example,S={}",
                1_690_000_000 - i * 7,
                body.len()
            );
            w.place(user, &maildir, "new", &name, &body);
            name
        } else {
            w.deliver(user, &body)
        };
        names.push(name);
    }
    names
}

/// The whole switch for one pairing of Dovecot's `uidl_format` setting and our `compat`;
/// `imported` messages get a UIDL that is not ipop3d's own.
fn switch(test: &str, dovecot_extra: &str, compat: &str, imported: usize) {
    if !can_run(test) {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    deliver_mixed(&mut w, &alice, 6);

    // Dovecot serves the Maildir (and numbers its messages); then one more message arrives.
    let d = dovecot(&w, compat, &alice, dovecot_extra);
    assert_eq!(uidl_listing(d.pop3, &alice).len(), 6, "{}", d.log());
    if compat == "dovecot" {
        // A message whose name says 2001, seen by Dovecot after the others: last in
        // Dovecot's order (its UIDs), first in ipop3d's own (delivery time), so only the
        // order read from dovecot-uidlist lists it where Dovecot did.
        w.place(
            &alice,
            &alice.maildir(),
            "new",
            "999999999.M9P77Q9.mx.example",
            &small_message(99),
        );
    } else {
        w.deliver(&alice, &small_message(99));
    }
    let before = uidl_listing(d.pop3, &alice);
    assert_eq!(
        before.len(),
        7,
        "Dovecot's listing: {before:?}\n{}",
        d.log()
    );
    // mpop, leaving mail there, fetches all of it.
    let mpop = Mpop::new(&w);
    let (fetched, log) = mpop.fetch(d.pop3, &alice);
    assert_eq!(fetched, 7, "mpop from Dovecot:\n{log}");
    let (fetched, log) = mpop.fetch(d.pop3, &alice);
    assert_eq!(fetched, 0, "mpop from Dovecot again:\n{log}");
    drop(d);
    let dovecot_files = root_files(&alice.maildir());
    assert!(
        compat != "dovecot" || dovecot_files.iter().any(|(n, _)| n == "dovecot-uidlist"),
        "{dovecot_files:?}"
    );

    // Before any ipop3d session: the report is Dovecot's listing, and nothing changed.
    w.set("uidl_compat", compat);
    w.write_config();
    let cur_before = crate::harness::uniques(&alice.maildir());
    assert_eq!(
        uidl_report(&w, &alice),
        before,
        "the report before the switch"
    );
    assert_eq!(crate::harness::uniques(&alice.maildir()), cur_before);
    assert_eq!(root_files(&alice.maildir()), dovecot_files);

    // ipop3d: the same listing, byte for byte and in the same order; mpop fetches nothing.
    let server = w.serve();
    assert_eq!(
        uidl_listing(server.port, &alice),
        before,
        "ipop3d's listing"
    );
    let (fetched, log) = mpop.fetch(server.port, &alice);
    assert_eq!(fetched, 0, "mpop from ipop3d after the switch:\n{log}");
    // Dovecot's files were read, never written.
    for (name, bytes) in &dovecot_files {
        if name.starts_with("dovecot") || name.starts_with("courier") {
            let now = std::fs::read(alice.maildir().join(name)).unwrap();
            assert_eq!(&now, bytes, "{name} changed");
        }
    }
    let log = server.wait_ends(2);
    let field = format!("imported={imported}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("ipop3d: login ") && l.split(' ').any(|f| f == field)),
        "no login line with {field}:\n{log}"
    );

    // New mail after the switch: fetched once, with ipop3d's own UIDL.
    let new = w.deliver(&alice, &small_message(999));
    let (fetched, log) = mpop.fetch(server.port, &alice);
    assert_eq!(fetched, 1, "mpop after new mail:\n{log}");
    let (fetched, log) = mpop.fetch(server.port, &alice);
    assert_eq!(fetched, 0, "mpop again:\n{log}");
    let after = uidl_listing(server.port, &alice);
    assert_eq!(&after[..7], &before[..], "the old UIDLs and order stay");
    assert_eq!(after[7], format!("8 {new}"));

    // A message deleted through ipop3d, a new one, then back on `none`: every message that
    // had a UIDL keeps it.
    let mut pop = Pop::connect(server.port);
    pop.login(alice.name(), &alice.password);
    pop.ok("DELE 2");
    pop.ok("QUIT");
    let newer = w.deliver(&alice, &small_message(1000));
    drop(server);
    w.set("uidl_compat", "none");
    w.write_config();
    let server = w.serve();
    let last = pairs(&uidl_listing(server.port, &alice));
    let mut want: Vec<String> = pairs(&after)
        .into_iter()
        .filter(|(n, _)| *n != 2)
        .map(|(_, u)| u)
        .collect();
    want.push(newer);
    let mut got: Vec<String> = last.into_iter().map(|(_, u)| u).collect();
    // Under `none` the order is ours (delivery order); the UIDLs are what must not change.
    got.sort();
    want.sort();
    assert_eq!(got, want, "UIDLs after going back to none");
    let (fetched, log) = mpop.fetch(server.port, &alice);
    assert_eq!(fetched, 1, "mpop fetches only the newest:\n{log}");
}

#[test]
fn dovecot_default_uidls_survive_the_switch_root() {
    // Every UIDL is Dovecot's %08Xu%08Xv, none a file name.
    switch(
        "dovecot_default_uidls_survive_the_switch_root",
        "",
        "dovecot",
        7,
    );
}

#[test]
fn dovecot_f_uidls_survive_the_switch_as_qmail_root() {
    switch(
        "dovecot_f_uidls_survive_the_switch_as_qmail_root",
        "pop3_uidl_format = %f\n",
        "qmail",
        // The three names with a `,S=` field: ipop3d's own UIDL would stop before it.
        3,
    );
}

/// Courier's pop3d could not be run here (Debian's courier-pop needs courier-authdaemon and
/// its own configuration tree), so the file is written as Courier writes it: version 2 of
/// `courierpop3dsizelist`, from courier-libs imap/pop3dserver.C `savepop3dlist` (header
/// `/2 NEXTUID UIDVALIDITY`, lines `NAME SIZE UID:UIDV`) and its UIDL, `print_uidl`
/// (`UID<uid>-<uidv>`), listed in Courier's order (the number a name starts with, then the
/// name: `msglist::operator<`). A message Courier never listed gets ipop3d's own UIDL, after
/// the others.
#[test]
fn courier_uidls_and_order_are_kept() {
    let mut w = world!("courier_uidls_and_order_are_kept");
    let alice = w.user("alice");
    let maildir = alice.maildir();
    for name in [
        "1700000010.M1P1.mx.example:2,S",
        "1700000005.M2P2.mx.example:2,",
        "1700000020.M3P3.mx.example:2,RS",
    ] {
        w.place(&alice, &maildir, "cur", name, &small_message(1));
    }
    w.write_as(
        &alice.account,
        &maildir.join("courierpop3dsizelist"),
        b"/2 4 1234567\n\
          1700000010.M1P1.mx.example:2,S 140 1:1234567\n\
          1700000005.M2P2.mx.example:2, 140 2:1234567\n\
          1700000020.M3P3.mx.example:2,RS 140 3:1234567\n",
        0o600,
    );
    let newer = w.deliver(&alice, &small_message(2));
    w.set("uidl_compat", "courier");
    let server = w.serve();
    let want = [
        "1 UID2-1234567".to_string(),
        "2 UID1-1234567".to_string(),
        "3 UID3-1234567".to_string(),
        format!("4 {newer}"),
    ];
    assert_eq!(uidl_listing(server.port, &alice), want);
    // Recorded: the same under `none`, and the file may go.
    std::fs::remove_file(maildir.join("courierpop3dsizelist")).unwrap();
    drop(server);
    w.set("uidl_compat", "none");
    let server = w.serve();
    let mut got = uidl_listing(server.port, &alice);
    got.sort_by_key(|l| l.split(' ').nth(1).unwrap().to_string());
    let mut want: Vec<String> = want.iter().map(|l| l[2..].to_string()).collect();
    want.sort();
    let got: Vec<String> = got.iter().map(|l| l[2..].to_string()).collect();
    assert_eq!(got, want);
}

/// An old server's file that is there but cannot be used (a header Dovecot never wrote) is
/// no reason to present made-up UIDLs, which would be recorded for good: the login gets
/// `[SYS/TEMP]`, the log names the file, and nothing in the Maildir changes.
#[test]
fn an_unusable_old_list_refuses_the_mailbox() {
    let mut w = world!("an_unusable_old_list_refuses_the_mailbox");
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let list = alice.maildir().join("dovecot-uidlist");
    w.write_as(&alice.account, &list, b"7 garbage\n1 :x\n", 0o600);
    w.set("uidl_compat", "dovecot");
    let server = w.serve();
    let mut pop = server.connect();
    pop.ok(&format!("USER {}", alice.name()));
    let reply = pop.cmd(&format!("PASS {}", alice.password));
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply:?}");
    let log = server.wait_ends(1);
    assert!(log.contains("dovecot-uidlist"), "{log}");
    assert!(!alice.maildir().join("apoptools-sizes").exists());
    assert_eq!(
        std::fs::read_dir(alice.maildir().join("cur"))
            .unwrap()
            .count(),
        0,
        "nothing moved"
    );
}
