//! servers: the servers under test, started privately on 127.0.0.1 and always stopped.
//!
//! Each [`Server`] owns its child process (tcpserver running ipop3d, or Dovecot's master in the
//! foreground); its `Drop` sends SIGTERM, waits up to 5 s, then SIGKILLs and reaps, so a panic
//! or an early error never leaves a server behind. [`Server::serving_pid`] finds the process
//! serving the current session (tcpserver's ipop3d child, Dovecot's `pop3` child) from /proc,
//! for its peak RSS (VmHWM) and CPU time.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::Pop3;

pub struct Server {
    pub label: &'static str,
    pub port: u16,
    child: Child,
    /// The comm (/proc/PID/comm) of the process serving a session.
    serving_comm: &'static str,
    log: PathBuf,
}

/// A free port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// `tcpserver [-D] -H -R -l localhost -c100 127.0.0.1 PORT ipop3d --config CONF`.
    pub fn ipop3d(
        label: &'static str,
        tcpserver: &Path,
        ipop3d: &Path,
        conf: &Path,
        nodelay: bool,
        log: &Path,
    ) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(tcpserver);
        if nodelay {
            cmd.arg("-D");
        }
        // -H -R -l: no DNS or ident lookups, which would time the resolver, not the server.
        cmd.args(["-H", "-R", "-l", "localhost", "-c100", "127.0.0.1"])
            .arg(port.to_string())
            .arg(ipop3d)
            .arg("--config")
            .arg(conf);
        let child = spawn_logged(cmd, log)?;
        let server = Server {
            label,
            port,
            child,
            serving_comm: "ipop3d",
            log: log.to_path_buf(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// `dovecot -F -c CONF` (the config names the port).
    pub fn dovecot(dovecot: &Path, conf: &Path, port: u16, log: &Path) -> Result<Server> {
        let mut cmd = Command::new(dovecot);
        cmd.arg("-F").arg("-c").arg(conf);
        let child = spawn_logged(cmd, log)?;
        let server = Server {
            label: "Dovecot",
            port,
            child,
            serving_comm: "pop3",
            log: log.to_path_buf(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until a POP3 greeting arrives on the port (the session is closed with QUIT).
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Pop3::connect(self.port).and_then(Pop3::quit) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "{} did not answer on port {}: {e}; its log {} says:\n{}",
                        self.label,
                        self.port,
                        self.log.display(),
                        tail(&self.log)
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// The newest live child of the server with the serving comm: the process serving the
    /// session in progress (when sessions run one at a time).
    pub fn serving_pid(&self) -> Option<u32> {
        let parent = self.child.id();
        let mut best: Option<(u64, u32)> = None;
        for p in children(parent) {
            let live = p.state != 'Z' && p.state != 'X';
            if p.comm == self.serving_comm && live && best.is_none_or(|(t, _)| p.start > t) {
                best = Some((p.start, p.pid));
            }
        }
        best.map(|(_, pid)| pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let f = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let f2 = f.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
    cmd.spawn().with_context(|| format!("starting {cmd:?}"))
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

struct ProcStat {
    pid: u32,
    comm: String,
    state: char,
    start: u64,
}

fn read_stat(pid: u32) -> Option<(ProcStat, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 2..].split(' ').collect();
    // rest[0] = state (field 3), rest[1] = ppid (4), rest[19] = starttime (22)
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((
        ProcStat {
            pid,
            comm,
            state,
            start,
        },
        ppid,
    ))
}

fn children(parent: u32) -> Vec<ProcStat> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((st, ppid)) = read_stat(pid) {
            if ppid == parent {
                out.push(st);
            }
        }
    }
    out
}

/// Peak resident set (VmHWM) and current anonymous resident set (RssAnon: the process's own
/// heap and stack, not the shared library and binary pages VmHWM also counts) of `pid`, KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    keep_smaps(pid);
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_ascii_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmHWM:")?, field("RssAnon:")?))
}

/// Private written memory of `pid` in KiB: smaps_rollup's Private_Dirty (heap, stack, the
/// data pages it wrote), what no other process can share. Not Private_Clean: a program file
/// mapped by one process only (one connection at a time) counts there, though the next
/// process running it would share those pages.
pub fn private_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_ascii_whitespace().nth(1)?.parse().ok()
    };
    field("Private_Dirty:")
}

/// CPU time of `pid` (its main thread; both servers are single-threaded) so far, in
/// seconds: /proc/PID/schedstat's nanoseconds, else /proc/PID/stat's 10 ms ticks.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    if let Some(ns) = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_ascii_whitespace().next()?.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    let rest: Vec<&str> = text[close + 2..].split(' ').collect();
    // utime = field 14, stime = 15 -> rest[11], rest[12]; /proc counts USER_HZ = 100.
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// With BENCH_SMAPS=DIR, a copy of /proc/PID/smaps (one file per process and look) in DIR:
/// where a serving process's resident pages are, mapping by mapping, for the profile.
fn keep_smaps(pid: u32) {
    let Some(dir) = std::env::var_os("BENCH_SMAPS") else {
        return;
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let to = std::path::Path::new(&dir).join(format!("{}-{pid}-{stamp}.smaps", comm.trim()));
    if let Err(e) =
        fs::create_dir_all(&dir).and_then(|()| fs::copy(format!("/proc/{pid}/smaps"), &to))
    {
        eprintln!("bench: BENCH_SMAPS: {}: {e}", to.display());
    }
}
