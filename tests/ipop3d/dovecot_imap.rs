//! Real Dovecot IMAP (Debian `dovecot-imapd`, its `imap` binary run pre-authenticated on a
//! pipe, driven by Python's imaplib) on the same Maildir as ipop3d: after ipop3d sessions
//! (new/ to cur/, DELE, QUIT) every remaining message keeps its IMAP UID and flags, and none
//! appears twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::harness::{small_message, User, World};

const DOVECOT_IMAP: &str = "/usr/lib/dovecot/imap";

/// Selects (or, read-only, examines) INBOX, optionally adds `\Flagged` to one message, and
/// prints one `UID FLAGS... <Message-ID>` line per message.
const IMAP_SCRIPT: &str = r#"
import imaplib, re, sys
conf, mode, flag = sys.argv[1], sys.argv[2], sys.argv[3]
m = imaplib.IMAP4_stream("exec " + sys.argv[4] + " -c " + conf)
typ, _ = m.select("INBOX", readonly=(mode == "examine"))
assert typ == "OK"
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
assert typ == "OK", data
for item in data:
    if not isinstance(item, tuple):
        continue
    meta, header = item[0].decode(), item[1].decode()
    uid = re.search(r"UID (\d+)", meta).group(1)
    flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1).replace("\\Recent", "").split()
    mid = re.search(r"<([^>]+)>", header).group(1)
    if mid == flag:
        m.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
        flags.append("\\Flagged")
    print(uid, mid, " ".join(sorted(flags)))
m.logout()
"#;

/// One IMAP session as `user`: Message-ID to (UID, flags).
fn imap(
    w: &World,
    user: &User,
    conf: &Path,
    mode: &str,
    flag: &str,
) -> BTreeMap<String, (u32, String)> {
    let mut cmd = Command::new("python3");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("USER", user.name())
        .env("HOME", &user.account.home)
        .current_dir(w.path())
        .args(["-c", IMAP_SCRIPT])
        .arg(conf)
        .args([mode, flag, DOVECOT_IMAP]);
    if crate::harness::is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.account.uid).gid(user.account.gid);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "imap: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(w.path().join("dovecot.log")).unwrap_or_default()
    );
    let mut seen = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut f = line.splitn(3, ' ');
        let uid: u32 = f.next().unwrap().parse().unwrap();
        let mid = f.next().unwrap().to_string();
        let flags = f.next().unwrap_or("").to_string();
        let earlier = seen.insert(mid.clone(), (uid, flags));
        assert!(earlier.is_none(), "{mid} appears twice: {line}");
    }
    seen
}

#[test]
fn dovecot_imap_keeps_uids_and_flags_across_ipop3d_sessions() {
    let test = "dovecot_imap_keeps_uids_and_flags_across_ipop3d_sessions";
    if !crate::harness::need_programs(&["python3"], test) {
        return;
    }
    if !Path::new(DOVECOT_IMAP).exists() {
        crate::skip::skipped("needs dovecot-imapd", test);
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let conf = w.path().join("dovecot.conf");
    let d = w.path().display().to_string();
    std::fs::write(
        &conf,
        format!(
            "base_dir = {d}/dovecot-run\nstate_dir = {d}/dovecot-state\n\
             log_path = {d}/dovecot.log\nssl = no\nmail_location = maildir:~/Maildir\n"
        ),
    )
    .unwrap();
    for dir in ["dovecot-run", "dovecot-state"] {
        w.mkdir_as(&alice.account, &w.path().join(dir), 0o700);
    }
    w.write_as(&alice.account, &w.path().join("dovecot.log"), b"", 0o600);
    let mid = |n: u32| format!("m{n}@example.org");

    // Two messages seen and moved to cur/ by IMAP (one flagged), two only indexed (EXAMINE
    // leaves them in new/).
    w.deliver(&alice, &small_message(1));
    w.deliver(&alice, &small_message(2));
    imap(&w, &alice, &conf, "select", &mid(2));
    w.deliver(&alice, &small_message(3));
    w.deliver(&alice, &small_message(4));
    let before = imap(&w, &alice, &conf, "examine", "-");
    assert_eq!(before.len(), 4, "{before:?}");
    assert_eq!(
        std::fs::read_dir(alice.maildir().join("new"))
            .unwrap()
            .count(),
        2,
        "EXAMINE moved messages"
    );

    // ipop3d: new/ to cur/, DELE of the first message, QUIT; then a session that only lists.
    let server = w.serve();
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    assert!(pop.ok("STAT").starts_with("+OK 4 "));
    pop.ok("DELE 1");
    pop.ok("QUIT");
    let mut pop = server.connect();
    pop.apop(alice.name(), &alice.password);
    assert!(pop.ok("STAT").starts_with("+OK 3 "));
    pop.ok("QUIT");

    let after = imap(&w, &alice, &conf, "examine", "-");
    let mut want = before.clone();
    want.remove(&mid(1));
    assert_eq!(after, want, "IMAP's view changed beyond the deletion");
    assert!(after[&mid(2)].1.contains("\\Flagged"), "{after:?}");
}
