//! apoppassd's privilege split and outages (issue #12), proven from /proc and the wire: while
//! a poppassd session is open, the process reading the client is the confined front (the
//! login_user, no groups, no capabilities, no new privileges, a seccomp filter, its root the
//! empty login_chroot, no processes, files or cores) and the back, which holds root to write
//! the store as the account, never reads the client; an account source or disable list that
//! cannot be read is `500 Service temporarily unavailable.`, never counted as a wrong password.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{
    assert_front_confined, children_of, proc_status as status, Server, World, PATIENCE,
};

const APOPPASSD: &str = env!("CARGO_BIN_EXE_apoppassd");

/// A raw poppassd connection: each `cmd` sends one CRLF line and returns the reply line.
struct Poppassd {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Poppassd {
    fn connect(server: &Server) -> Poppassd {
        let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut p = Poppassd {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
        };
        let greeting = p.line();
        assert!(greeting.starts_with("200 "), "greeting {greeting:?}");
        p
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "reply {line:?}");
        line.trim_end().to_string()
    }

    fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.line()
    }
}

/// The one child of `back` (its front), once it exists.
fn front_of(back: u32) -> u32 {
    let start = Instant::now();
    loop {
        if let [front] = children_of(back)[..] {
            return front;
        }
        assert!(start.elapsed() < PATIENCE, "no front under {back}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn apoppassd_front_is_confined_and_the_back_never_reads_the_client_root() {
    let test = "apoppassd_front_is_confined_and_the_back_never_reads_the_client_root";
    if !crate::harness::need_root(test) {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    let server = w.serve_program(APOPPASSD, &[]);
    let mut p = Poppassd::connect(&server);
    let back = server.sessions()[0];
    let front = front_of(back);
    let confined = |front: u32| assert_front_confined(front, &w);
    confined(front);
    // The back is root (it writes the store as the account later) and holds no socket: the
    // client's connection is open only in the front.
    assert_eq!(status(back, "Uid:"), "0\t0\t0\t0");
    let sockets_of = |pid: u32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|t| t.display().to_string())
            .filter(|t| t.starts_with("socket:"))
            .collect()
    };
    let inode_of_client = {
        // The server side of our connection, as the kernel lists it: find the inode whose
        // local port is the server's and remote port is ours.
        let ours = p.writer.local_addr().unwrap().port();
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        tcp.lines()
            .skip(1)
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
                (port(f[1]) == Some(server.port) && port(f[2]) == Some(ours))
                    .then(|| format!("socket:[{}]", f[9]))
            })
            .expect("our connection in /proc/net/tcp")
    };
    assert!(
        sockets_of(front).contains(&inode_of_client),
        "the front does not hold the client's socket: {:?}",
        sockets_of(front)
    );
    assert!(
        !sockets_of(back).contains(&inode_of_client),
        "the back holds the client's socket {inode_of_client}"
    );
    // Through a whole change the front stays confined and the same process.
    assert_eq!(
        p.cmd(&format!("user {}", alice.name())),
        "200 Your password please."
    );
    assert_eq!(
        p.cmd(&format!("pass {}", alice.password)),
        "200 Your new password please."
    );
    confined(front);
    assert_eq!(
        p.cmd("newpass a-new-mail-password-42"),
        "200 Password changed."
    );
    assert_eq!(children_of(back), vec![front]);
    confined(front);
    assert_eq!(status(back, "Uid:"), "0\t0\t0\t0");
    assert_eq!(p.cmd("quit"), "200 Bye.");
    server.wait_ends(1);
}

#[test]
fn apoppassd_outage_is_temporary_and_never_counted_root() {
    let test = "apoppassd_outage_is_temporary_and_never_counted_root";
    if !crate::harness::need_root(test) {
        return;
    }
    let mut w = World::new();
    let alice = w.user("alice");
    // The disable list is a directory: it cannot be read, so nobody can be let in.
    std::fs::create_dir(w.disabled_path()).unwrap();
    let before = std::fs::read(apoptools::testing::store::path(&alice.account, None)).unwrap();
    let server = w.serve_program(APOPPASSD, &[]);
    let mut p = Poppassd::connect(&server);
    assert_eq!(
        p.cmd(&format!("user {}", alice.name())),
        "200 Your password please."
    );
    // Four tries, more than the failure limit (3): each is an outage, none closes.
    for _ in 0..4 {
        assert_eq!(
            p.cmd(&format!("pass {}", alice.password)),
            "500 Service temporarily unavailable."
        );
    }
    // Not verified, so no change is possible.
    assert_eq!(p.cmd("newpass another-password-77"), "500 Send pass first.");
    assert_eq!(p.cmd("quit"), "200 Bye.");
    let log = server.wait_ends(1);
    assert!(log.contains("result=unavailable"), "{log}");
    assert!(
        log.contains(&w.disabled_path().display().to_string()),
        "the log does not name the disable list:\n{log}"
    );
    assert!(!log.contains(&alice.password), "{log}");
    let after = std::fs::read(apoptools::testing::store::path(&alice.account, None)).unwrap();
    assert_eq!(before, after, "an outage changed the store");
    // Once the list is readable again the same password works (nothing was counted).
    std::fs::remove_dir(w.disabled_path()).unwrap();
    let mut p = Poppassd::connect(&server);
    assert_eq!(
        p.cmd(&format!("user {}", alice.name())),
        "200 Your password please."
    );
    assert_eq!(
        p.cmd(&format!("pass {}", alice.password)),
        "200 Your new password please."
    );
    assert_eq!(p.cmd("quit"), "200 Bye.");
}
