//! The privilege split, proven from /proc (root only: only root ipop3d splits): before the
//! login the process reading the client is the confined front (login_user, no groups, no
//! capabilities, no new privileges, its root the empty login_chroot) and no process serving
//! the connection runs as the account; after it, the front is gone and the back is the
//! account. Every way the split cannot be set up ends the connection without a greeting.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::harness::{
    assert_front_confined, children_of, proc_status as status, small_message, World, PATIENCE,
};

#[test]
fn the_front_is_confined_and_the_back_decides_root() {
    if !crate::harness::need_root("the_front_is_confined_and_the_back_decides_root") {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve();
    let mut pop = server.connect();
    let back = server.sessions()[0];
    let start = Instant::now();
    let front = loop {
        if let [front] = children_of(back)[..] {
            break front;
        }
        assert!(start.elapsed() < PATIENCE, "no front under {back}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Before the login: the back is root and reads nothing; the front reads the client.
    assert_eq!(status(back, "Uid:"), "0\t0\t0\t0");
    assert_front_confined(front, &w);
    // A wrong password, decided by the back; the front is still the one reading.
    pop.err(&pop.apop_line(alice.name(), "wrong password"));
    assert_eq!(children_of(back), vec![front]);
    // The login: the front exits, the back is the account and serves the mail.
    pop.apop(alice.name(), &alice.password);
    let u = alice.account.uid;
    assert_eq!(status(back, "Uid:"), format!("{u}\t{u}\t{u}\t{u}"));
    assert!(pop.ok("STAT").starts_with("+OK 1 "));
    assert!(children_of(back).is_empty(), "the front outlived the login");
    pop.ok("QUIT");
    let log = server.wait_ends(1);
    let logins = log
        .lines()
        .filter(|l| l.starts_with("ipop3d: login "))
        .count();
    assert_eq!(logins, 2, "{log}");
}

/// A connection the split cannot be set up for: nothing at all is sent to the client, the log
/// says why, and the exit status is 1.
fn refused(w: &World, why: &str) {
    let server = w.serve();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "{why}: {:?}", String::from_utf8_lossy(&got));
    let log = server.wait_ends(1);
    assert!(log.contains(why), "{log}");
    assert_eq!(server.end_statuses(), vec!["256"], "{log}");
}

#[test]
fn the_split_refuses_an_unsafe_setup_root() {
    if !crate::harness::need_root("the_split_refuses_an_unsafe_setup_root") {
        return;
    }
    let mut w = World::new();
    w.user("alice");
    let chroot = w.login_chroot();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chroot, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&w, "login_chroot: refusing to use");
    std::fs::set_permissions(&chroot, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(chroot.join("planted"), b"x").unwrap();
    refused(&w, "the login chroot is not empty");
    std::fs::remove_file(chroot.join("planted")).unwrap();
    w.set("login_chroot", "/nonexistent/apoptools-empty");
    refused(&w, "login_chroot");
    w.set("login_chroot", &chroot.display().to_string());
    w.set("login_user", "no-such-login-user");
    refused(&w, "login_user no-such-login-user");
    w.set("login_user", "root");
    refused(&w, "must not be root");
}

/// Whether the memory of process `pid` holds `needle` anywhere it can be read (every mapping
/// of /proc/PID/maps read through /proc/PID/mem, as root).
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut scanned = 0usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut region = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        scanned += region.len();
        if region.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    assert!(scanned > 0, "nothing of {pid}'s memory could be read");
    false
}

/// After a login under TLS: the back runs as the account and serves the mail through the
/// front, which stays as the relay (still login_user, still under seccomp); no process
/// running as the account has the private key in its memory: not its DER, not its PEM, not
/// its private scalar. The scan itself is shown to work: it finds all three in this test
/// process, and the account's Maildir path in the back.
#[test]
fn after_a_tls_login_no_mail_process_holds_the_key_root() {
    if !crate::harness::need_root("after_a_tls_login_no_mail_process_holds_the_key_root") {
        return;
    }
    let mut w = World::new();
    let files = w.tls();
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let server = w.serve_implicit_tls(&[]);
    let mut pop =
        crate::client::Pop::connect_tls(server.port, crate::client::tls_client(&files.ca));
    let back = server.sessions()[0];
    let [front] = children_of(back)[..] else {
        panic!("no single front under {back}");
    };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let n = nobody.uid.as_raw();
    // Before the login: the back is root, the front that runs TLS is confined.
    assert_eq!(status(back, "Uid:"), "0\t0\t0\t0");
    assert_eq!(status(front, "Uid:"), format!("{n}\t{n}\t{n}\t{n}"));
    assert_eq!(status(front, "Seccomp:"), "2");
    pop.apop(alice.name(), &alice.password);
    assert!(pop.ok("STAT").starts_with("+OK 1 "));
    let u = alice.account.uid;
    assert_eq!(status(back, "Uid:"), format!("{u}\t{u}\t{u}\t{u}"));
    // The relay: the same front, unchanged.
    assert_eq!(children_of(back), vec![front]);
    assert_eq!(status(front, "Uid:"), format!("{n}\t{n}\t{n}\t{n}"));
    assert_eq!(status(front, "Seccomp:"), "2");
    // The back's standard input and output are the relay's pipe, not the client's socket.
    for fd in [0, 1] {
        let target = std::fs::read_link(format!("/proc/{back}/fd/{fd}")).unwrap();
        let inode = target.to_string_lossy().into_owned();
        let front_sockets: Vec<String> = std::fs::read_dir(format!("/proc/{front}/fd"))
            .unwrap()
            .flatten()
            .map(|e| {
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(inode.starts_with("socket:"), "{inode}");
        let client = std::fs::read_link(format!("/proc/{front}/fd/0")).unwrap();
        assert_ne!(target, client, "the back still holds the client's socket");
        assert!(front_sockets.contains(&client.to_string_lossy().into_owned()));
    }
    // The private scalar itself (PKCS#8 of an EC key: `02 01 01 04 20` then its 32 bytes).
    let at = files
        .key_der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an EC private key")
        + 5;
    let scalar = &files.key_der[at..at + 32];
    // The scan finds the key where it is: in this test process, which made it.
    let me = std::process::id();
    assert!(memory_holds(me, &files.key_der) && memory_holds(me, scalar));
    assert!(memory_holds(
        me,
        files.key_pem.lines().nth(1).unwrap().as_bytes()
    ));
    // Every process running as the account: none holds the key.
    let mut account_pids = vec![back];
    account_pids.extend(
        children_of(back)
            .into_iter()
            .filter(|&p| status(p, "Uid:").split('\t').next() == Some(&u.to_string())),
    );
    let pem_body: String = files
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    for pid in account_pids {
        assert!(
            memory_holds(pid, alice.maildir().to_str().unwrap().as_bytes()),
            "the scan cannot see {pid}'s Maildir path"
        );
        assert!(!memory_holds(pid, &files.key_der), "key DER in {pid}");
        assert!(!memory_holds(pid, scalar), "the private scalar in {pid}");
        assert!(!memory_holds(pid, pem_body.as_bytes()), "key PEM in {pid}");
    }
    pop.ok("QUIT");
    pop.expect_closed();
    let log = server.wait_ends(1);
    assert!(
        log.contains("method=apop result=ok") && log.contains("tls=TLSv1.3/"),
        "{log}"
    );
    assert_eq!(server.end_statuses(), vec!["0"], "{log}");
}
