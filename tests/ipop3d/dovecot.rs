//! A private Dovecot 2.3 (Debian's dovecot-imapd and dovecot-pop3d) for the tests that run
//! ipop3d's programs beside it or after it: its own directories, log and instance name, on
//! free 127.0.0.1 ports, started as root and stopped (and waited for) when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{World, PATIENCE};

/// A private Dovecot instance; stopped (and waited for) when dropped.
pub struct Dovecot {
    pub dir: PathBuf,
    pub imap: u16,
    pub pop3: u16,
    /// Its instance name, unique to this test process and `start` call.
    instance: String,
}

/// Two free TCP ports on 127.0.0.1 (held together while chosen, so they differ).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

impl Dovecot {
    /// Writes a configuration under `w`'s directory (`dovecot-NAME`) and starts Dovecot as
    /// root: its own directories, log and instance name, IMAP and POP3 on free 127.0.0.1
    /// ports, no TLS, then `settings` (protocols, auth, passdb, userdb, mail settings).
    pub fn start(w: &World, name: &str, settings: &str) -> Dovecot {
        w.write_config();
        let dir = w.path().join(format!("dovecot-{name}"));
        std::fs::create_dir(&dir).unwrap();
        let (imap, pop3) = free_ports();
        let d = dir.display();
        let instance = format!("apoptools-{name}-{}", std::process::id());
        let conf = format!(
            "# Written by tests/ipop3d/dovecot.rs.\n\
             instance_name = {instance}\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
             inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
             {settings}\n",
        );
        std::fs::write(dir.join("dovecot.conf"), conf).unwrap();
        let dovecot = Dovecot {
            dir,
            imap,
            pop3,
            instance,
        };
        // Dovecot's daemon keeps its standard output and error: a file, not a pipe.
        let stderr = std::fs::File::create(dovecot.dir.join("dovecot.stderr")).unwrap();
        let status = Command::new("dovecot")
            .arg("-c")
            .arg(dovecot.conf())
            .stdin(std::process::Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "dovecot -c: {status}: {}\n{}",
            std::fs::read_to_string(dovecot.dir.join("dovecot.stderr")).unwrap_or_default(),
            dovecot.log()
        );
        // Ready once the listeners of its protocols greet.
        let started = Instant::now();
        let imap_too = settings
            .lines()
            .any(|l| l.starts_with("protocols") && l.contains("imap"));
        let ports: &[u16] = if imap_too { &[imap, pop3] } else { &[pop3] };
        for &port in ports {
            loop {
                if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
                    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut line = String::new();
                    if BufReader::new(tcp).read_line(&mut line).is_ok() && !line.is_empty() {
                        break;
                    }
                }
                assert!(
                    started.elapsed() < PATIENCE,
                    "Dovecot does not answer on port {port}:\n{}",
                    dovecot.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        dovecot
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The live processes whose title names `service` serving `user` (`verbose_proctitle`).
    pub fn serving(&self, service: &str, user: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let instance = format!("dovecot-{}/{service} ", self.instance);
            if title.starts_with(&instance) && title.contains(&format!("[{user} ")) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(pid) = self.master_pid() else {
            return;
        };
        let mut family = crate::harness::children_of(pid);
        family.push(pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let started = Instant::now();
        while family
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            if started.elapsed() > PATIENCE {
                for p in &family {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*p as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
