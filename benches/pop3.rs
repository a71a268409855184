//! pop3: ipop3d against Dovecot's POP3 server, same machine, same Maildirs, same client.
//!
//! `cargo bench --bench pop3` generates deterministic Maildirs (see `data`), starts ipop3d under
//! `tcpserver -D` (and, as a note, without `-D`) and a private Dovecot instance, runs the
//! scenarios of issue #5 against each, and prints a markdown table: the median of `BENCH_RUNS`
//! runs (min–max), the ratio ipop3d/Dovecot and whether ipop3d meets its target. It installs
//! nothing: a missing tool is named with its Debian package and the bench exits non-zero.
//!
//! Scenarios (BENCH_ONLY=a,b,c,d,e,s,t picks some; d needs a or c and is added with them):
//! - a: APOP login + STAT + LIST + UIDL + QUIT on 100,000 messages: first session on a fresh
//!   copy with the messages in cur/, the second session on that copy, and a first session on
//!   a fresh copy with the messages in new/ (as qmail delivers them); also one such session on
//!   1,000 messages. Every LIST size and the STAT total are checked against the files.
//! - b: sessions per second (connect, login, STAT, QUIT, server closes), USER/PASS and APOP,
//!   1 and 8 concurrent clients, each client its own mailbox of 1,000 messages (both servers
//!   lock a maildrop for the session), back to back for BENCH_SECONDS.
//! - c: RETR of one 50 MB message, MB/s, every octet checked against the file as it arrives.
//! - d: peak RSS (VmHWM) of the process serving the session (tcpserver's ipop3d child,
//!   Dovecot's `pop3` process), read just before QUIT, in a and c; also its RssAnon then
//!   (VmHWM counts the shared library pages too, the same in every process).
//!   Also the peak RSS summed over every process serving the connection (ipop3d's front has
//!   exited after a plain login; Dovecot's pop3-login too), for the 1k session and RETR, and
//!   those processes' private written memory before QUIT (smaps_rollup's Private_Dirty: heap,
//!   stack, written data pages), what each further connection costs. Not USS: with one
//!   connection at a time, the program's text is mapped by one process only and counts as
//!   private (Private_Clean), though a second connection would share it.
//! - e: wall time and peak RSS (wait4) of `apoppasswd --batch` setting 10,000 accounts' secrets
//!   (fresh homes each run; root only). Run first, while the bench process is small.
//! - t: TLS (root only), each server with one throwaway CA and ECDSA P-256 leaf made here with
//!   rcgen: ipop3d `--implicit-tls` and ipop3d offering STLS, each under its own `tcpserver
//!   -D`, with `plaintext = tls`; Dovecot as a second private instance with `ssl = required`,
//!   a pop3s listener and STLS on its pop3 listener. A rustls client (ring, resumption off:
//!   a full handshake every session) connects from 127.0.0.2, as Dovecot counts 127.0.0.1 to
//!   127.0.0.1 as secured. Sessions per second as b (APOP and USER/PASS over implicit TLS,
//!   c=1 and 8; STLS then APOP, c=1), the 1k session and RETR of the 50 MB message over
//!   implicit TLS (with the client's CPU from getrusage), and the peak RSS summed over every
//!   process serving the connection: ipop3d's back (tcpserver's child) and its front (the
//!   back's child, the TLS relay), Dovecot's pop3 and the pop3-login holding the TLS socket.
//! - s: SASL logins (RFC 5034), sessions per second as b: AUTH PLAIN (initial response),
//!   AUTH CRAM-MD5 and AUTH SCRAM-SHA-256 (client-first as initial response) + STAT + QUIT at
//!   c=1, SCRAM also at c=8, plain TCP; and AUTH PLAIN over implicit TLS at c=1 and c=8 (rows
//!   t_splain_*, run with s or t; root only, as t). The client (see `sasl`) checks every reply
//!   and SCRAM's server signature, and caches SCRAM's SaltedPassword per (password, salt,
//!   iterations) as real clients do, so its own PBKDF2 does not dominate; the report says how
//!   many logins had to derive it. A failed SASL login aborts the run, the server's reply and
//!   log shown. Dovecot gets `auth_mechanisms = plain login cram-md5 scram-sha-256 apop` over
//!   its `{PLAIN}` passwd-file (it derives SCRAM's keys from the password at each login).
//!
//! Before each timed first session and before (e) the bench calls sync(), so a server's first
//! fsync does not pay for the bench's own set-up writes. Message files are hard links to the
//! pristine set (BENCH_COPY=1 copies them): renames and unlinks by a server never reach it.
//!
//! Knobs: BENCH_RUNS (3), BENCH_QUICK=1 (small sizes, for a smoke run), BENCH_ONLY,
//! BENCH_SECONDS (duration of each b measurement, 3), BENCH_SEED (1), BENCH_DATA_DIR
//! (default target/bench-data; data sets are kept there and reused), BENCH_COPY=1 (copy
//! message files instead of hard-linking them), BENCH_DOVECOT_FAST=1 (Dovecot login processes
//! kept alive, as PEERS.md's "fast-login"), BENCH_NO_D=0 (skip ipop3d without -D),
//! BENCH_SERVERS=ipop3d,dovecot (which to run), BENCH_KEEP=1 (keep the work directory),
//! BENCH_SMAPS=DIR (a copy of each serving process's /proc/PID/smaps there, at each look),
//! APOPTOOLS_BIN_DIR (where ipop3d and apoppasswd are; default: the ones cargo built for this
//! package, found at compile time with option_env!, so the bench builds before they exist).

#[path = "pop3/client.rs"]
mod client;
#[path = "pop3/data.rs"]
mod data;
#[path = "pop3/sasl.rs"]
mod sasl;
#[path = "pop3/servers.rs"]
mod servers;
#[path = "pop3/stats.rs"]
mod stats;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use client::Pop3;
use data::{Fill, Place, Set};
use sasl::{Mech, ScramCache};
use servers::Server;
use stats::Better::{Higher, Lower};
use stats::Target::{Below, RatioAtLeast, RatioAtMost};
use stats::{process_cpu, Better, Results, Row, Target};

/// Column index of each server in [`stats::SERVERS`].
const IPOP3D: usize = 0;
const DOVECOT: usize = 1;
const IPOP3D_NO_D: usize = 2;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    row("a_first", "(a) 100k msgs in cur/, first session (fresh copy)", "ms", Lower, RatioAtMost(1.0), true),
    row("a_second", "(a) 100k msgs, second session", "ms", Lower, RatioAtMost(0.5), true),
    row("a_first_new", "(a) 100k msgs in new/, first session (fresh copy)", "ms", Lower, RatioAtMost(0.5), true),
    row("a_small", "(a) 1k msgs, login+STAT+LIST+UIDL+QUIT", "ms", Lower, Target::None, true),
    row("a_first_cpu", "(a) serving process CPU, 100k in cur/ first session", "ms", Lower, Target::None, false),
    row("a_second_cpu", "(a) serving process CPU, 100k second session", "ms", Lower, Target::None, false),
    row("a_first_new_cpu", "(a) serving process CPU, 100k in new/ first session", "ms", Lower, Target::None, false),
    row("b_user_1", "(b) USER/PASS+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(1.0), true),
    row("b_user_8", "(b) USER/PASS+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(1.0), true),
    row("b_apop_1", "(b) APOP+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(3.0), true),
    row("b_apop_8", "(b) APOP+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(3.0), true),
    row("c_retr", "(c) RETR of one 50 MB message", "MB/s", Higher, RatioAtLeast(1.5), true),
    row("d_rss_first", "(d) peak RSS, 100k msgs in cur/, first session", "MB", Lower, RatioAtMost(0.5), false),
    row("d_rss_second", "(d) peak RSS, 100k msgs, second session", "MB", Lower, RatioAtMost(0.5), false),
    row("d_rss_first_new", "(d) peak RSS, 100k msgs in new/, first session", "MB", Lower, RatioAtMost(0.5), false),
    row("d_rss_small", "(d) peak RSS, 1k msgs session", "MB", Lower, RatioAtMost(0.5), false),
    row("d_rss_retr", "(d) peak RSS, RETR 50 MB", "MB", Lower, RatioAtMost(0.5), false),
    row("d_anon_first", "(d) RssAnon before QUIT, 100k msgs in cur/, first session", "MB", Lower, Target::None, false),
    row("d_anon_second", "(d) RssAnon before QUIT, 100k msgs, second session", "MB", Lower, Target::None, false),
    row("d_anon_first_new", "(d) RssAnon before QUIT, 100k msgs in new/, first session", "MB", Lower, Target::None, false),
    row("d_anon_small", "(d) RssAnon before QUIT, 1k msgs session", "MB", Lower, Target::None, false),
    row("d_anon_retr", "(d) RssAnon before QUIT, RETR 50 MB", "MB", Lower, Target::None, false),
    row("d_all_small", "(d) peak RSS, all processes serving the connection, 1k msgs session", "MB", Lower, RatioAtMost(0.5), false),
    row("d_all_retr", "(d) peak RSS, all processes serving the connection, RETR 50 MB", "MB", Lower, RatioAtMost(0.5), false),
    row("d_priv_small", "(d) private written memory (Private_Dirty) before QUIT, all processes, 1k msgs session", "MB", Lower, Target::None, false),
    row("d_priv_retr", "(d) private written memory (Private_Dirty) before QUIT, all processes, RETR 50 MB", "MB", Lower, Target::None, false),
    row("e_wall", "(e) apoppasswd --batch, 10k accounts, wall", "s", Lower, Below(2.0), true),
    row("e_rss", "(e) apoppasswd --batch, 10k accounts, peak RSS", "MB", Lower, Target::None, false),
    row("s_plain_1", "(s) AUTH PLAIN (initial response)+STAT+QUIT, c=1", "sessions/s", Higher, Target::None, true),
    row("s_cram_1", "(s) AUTH CRAM-MD5+STAT+QUIT, c=1", "sessions/s", Higher, Target::None, true),
    row("s_scram_1", "(s) AUTH SCRAM-SHA-256+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("s_scram_8", "(s) AUTH SCRAM-SHA-256+STAT+QUIT, c=8", "sessions/s", Higher, Target::None, true),
    row("t_apop_1", "(t) implicit TLS: handshake+APOP+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("t_apop_8", "(t) implicit TLS: handshake+APOP+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("t_plain_1", "(t) implicit TLS: handshake+USER/PASS+STAT+QUIT, c=1", "sessions/s", Higher, Target::None, true),
    row("t_plain_8", "(t) implicit TLS: handshake+USER/PASS+STAT+QUIT, c=8", "sessions/s", Higher, Target::None, true),
    row("t_splain_1", "(t, s) implicit TLS: handshake+AUTH PLAIN+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("t_splain_8", "(t, s) implicit TLS: handshake+AUTH PLAIN+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("t_stls_1", "(t) STLS: greeting+STLS+handshake+APOP+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(2.0), true),
    row("t_small", "(t) implicit TLS: 1k msgs, login+STAT+LIST+UIDL+QUIT", "ms", Lower, Target::None, true),
    row("t_retr", "(t) implicit TLS: RETR of one 50 MB message", "MB/s", Higher, RatioAtLeast(1.5), true),
    row("t_retr_client", "(t) the client's CPU during that RETR (getrusage)", "% of a core", Lower, Target::None, false),
    row("t_rss_small", "(t) peak RSS, all processes serving the connection, 1k msgs session under TLS", "MB", Lower, RatioAtMost(0.5), false),
    row("t_rss_retr", "(t) peak RSS, all processes serving the connection, RETR 50 MB under TLS", "MB", Lower, RatioAtMost(0.5), false),
    row("t_anon_small", "(t) RssAnon before QUIT, all processes, 1k msgs session under TLS", "MB", Lower, Target::None, false),
    row("t_priv_small", "(t) private written memory (Private_Dirty) before QUIT, all processes, 1k msgs session under TLS", "MB", Lower, Target::None, false),
    row("t_priv_retr", "(t) private written memory (Private_Dirty) before QUIT, all processes, RETR 50 MB under TLS", "MB", Lower, Target::None, false),
    row("t_anon_retr", "(t) RssAnon before QUIT, all processes, RETR 50 MB under TLS", "MB", Lower, Target::None, false),
];

const fn row(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    target: Target,
    timed: bool,
) -> Row {
    Row {
        key,
        label,
        unit,
        better,
        target,
        timed,
    }
}

/// Sizes, from the environment.
struct Knobs {
    runs: usize,
    quick: bool,
    only: BTreeSet<char>,
    seconds: f64,
    seed: u64,
    data_dir: PathBuf,
    fill: Fill,
    dovecot_fast: bool,
    no_d: bool,
    /// Which servers to run (BENCH_SERVERS=ipop3d,dovecot; default both).
    servers: BTreeSet<String>,
    big_count: usize,
    small_count: usize,
    single_bytes: usize,
    batch_accounts: usize,
}

impl Knobs {
    fn from_env() -> Result<Knobs> {
        let var = |k: &str| env::var(k).ok().filter(|v| !v.is_empty());
        let quick = var("BENCH_QUICK").is_some_and(|v| v != "0");
        let runs = match var("BENCH_RUNS") {
            Some(v) => v.parse().context("BENCH_RUNS must be a number")?,
            None => 3,
        };
        if runs == 0 {
            bail!("BENCH_RUNS must be at least 1");
        }
        let mut only: BTreeSet<char> = match var("BENCH_ONLY") {
            Some(v) => v
                .split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| match s {
                    "a" | "b" | "c" | "d" | "e" | "s" | "t" => Ok(s.chars().next().unwrap_or('a')),
                    _ => bail!("BENCH_ONLY takes a,b,c,d,e,s,t, not {s:?}"),
                })
                .collect::<Result<_>>()?,
            None => "abcdest".chars().collect(),
        };
        if only.contains(&'d') && !only.contains(&'a') && !only.contains(&'c') {
            only.insert('a');
            only.insert('c');
        }
        let seconds = match var("BENCH_SECONDS") {
            Some(v) => v.parse().context("BENCH_SECONDS must be a number")?,
            None if quick => 1.0,
            None => 3.0,
        };
        let seed = match var("BENCH_SEED") {
            Some(v) => v.parse().context("BENCH_SEED must be a number")?,
            None => 1,
        };
        let data_dir = match var("BENCH_DATA_DIR") {
            Some(v) => PathBuf::from(v),
            None => match var("CARGO_TARGET_DIR") {
                Some(t) => PathBuf::from(t).join("bench-data"),
                None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
            },
        };
        let data_dir = if data_dir.is_absolute() {
            data_dir
        } else {
            env::current_dir()?.join(data_dir)
        };
        Ok(Knobs {
            runs,
            quick,
            only,
            seconds,
            seed,
            data_dir,
            fill: if var("BENCH_COPY").is_some_and(|v| v != "0") {
                Fill::Copy
            } else {
                Fill::HardLink
            },
            dovecot_fast: var("BENCH_DOVECOT_FAST").is_some_and(|v| v != "0"),
            no_d: var("BENCH_NO_D").is_none_or(|v| v != "0"),
            servers: match var("BENCH_SERVERS") {
                Some(v) => v
                    .split(',')
                    .map(|s| match s.trim() {
                        s @ ("ipop3d" | "dovecot") => Ok(s.to_string()),
                        s => bail!("BENCH_SERVERS takes ipop3d,dovecot, not {s:?}"),
                    })
                    .collect::<Result<_>>()?,
                None => ["ipop3d", "dovecot"].map(String::from).into(),
            },
            big_count: if quick { 2_000 } else { 100_000 },
            small_count: if quick { 200 } else { 1_000 },
            single_bytes: if quick { 5_000_000 } else { 50_000_000 },
            batch_accounts: if quick { 500 } else { 10_000 },
        })
    }

    fn wants(&self, s: char) -> bool {
        self.only.contains(&s)
    }

    /// Whether the TLS listeners run: for t, and for s's AUTH PLAIN over TLS.
    fn wants_tls(&self) -> bool {
        self.wants('t') || self.wants('s')
    }
}

/// One of our binaries: `$APOPTOOLS_BIN_DIR/NAME`, else the one cargo built for this package.
fn our_binary(name: &str, built: Option<&'static str>) -> Result<PathBuf> {
    if let Some(dir) = env::var_os("APOPTOOLS_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if !p.is_file() {
            bail!(
                "APOPTOOLS_BIN_DIR is set but {} does not exist",
                p.display()
            );
        }
        return Ok(p);
    }
    match built {
        Some(p) => Ok(PathBuf::from(p)),
        None => bail!(
            "this build has no `{name}` binary; build it (cargo build --release --bin {name}) \
             and set APOPTOOLS_BIN_DIR to its directory"
        ),
    }
}

/// A system tool, or an error naming the Debian package that has it.
fn system_tool(candidates: &[&str], package: &str) -> Result<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() && p.is_file() {
            return Ok(p.to_path_buf());
        }
        if !p.is_absolute() {
            for dir in env::var("PATH").unwrap_or_default().split(':') {
                let full = Path::new(dir).join(c);
                if full.is_file() {
                    return Ok(full);
                }
            }
        }
    }
    bail!(
        "{} not found: install it with `apt-get install {package}`",
        candidates[0]
    )
}

/// An account of the benchmark: the same names and secrets on every server.
#[derive(Clone)]
struct User {
    name: String,
    secret: String,
}

impl User {
    fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            secret: format!("bench-{name}-secret"),
        }
    }
}

/// One server's private world: its directory, accounts and homes.
struct Site {
    column: usize,
    dir: PathBuf,
    server: Option<Server>,
    /// The TLS listeners of (t), when it runs.
    tls: Option<TlsServer>,
}

impl Site {
    fn home(&self, user: &User) -> PathBuf {
        self.dir.join("home").join(&user.name)
    }
}

/// Everything a run needs.
struct World {
    knobs: Knobs,
    work: PathBuf,
    /// uid, gid of every POP account (virtual users share one, as a vmail uid would).
    owner: (u32, u32),
    root: bool,
    big: Option<Set>,
    small: Option<Set>,
    single: Option<(Set, Vec<u8>)>,
    big_user: User,
    small_users: Vec<User>,
    single_user: User,
    /// The certificate, key and client configuration of (t), when it runs.
    tls: Option<TlsKit>,
    /// The SCRAM client's derived keys, kept across sessions as a real client keeps them.
    scram: ScramCache,
    /// (row, server) -> (SCRAM logins, PBKDF2 derivations) over all runs, for the notes.
    scram_counts: std::collections::BTreeMap<(&'static str, usize), (u64, u64)>,
    results: Results,
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; nothing else to parse.
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench pop3: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    // The client's RETR check relies on this transformation; make sure it is right.
    assert_eq!(data::wire_form(b"a\n.\n..b\n"), b"a\r\n..\r\n...b\r\n.\r\n");
    let mut knobs = Knobs::from_env()?;
    let tcpserver = system_tool(&["tcpserver"], "ucspi-tcp")?;
    let dovecot = system_tool(&["/usr/sbin/dovecot", "dovecot"], "dovecot-pop3d")?;
    if !Path::new("/usr/lib/dovecot/pop3").exists() {
        bail!("Dovecot's pop3 service is missing: install it with `apt-get install dovecot-pop3d`");
    }
    let with_ipop3d = knobs.servers.contains("ipop3d");
    let ipop3d = if with_ipop3d {
        our_binary("ipop3d", option_env!("CARGO_BIN_EXE_ipop3d"))?
    } else {
        PathBuf::new()
    };
    let load_before = loadavg();
    let root = nix::unistd::geteuid().is_root();
    let mut skipped = Vec::new();
    let apoppasswd = if knobs.wants('e') && root {
        Some(our_binary(
            "apoppasswd",
            option_env!("CARGO_BIN_EXE_apoppasswd"),
        )?)
    } else {
        if knobs.wants('e') {
            let msg = "(e) skipped: `apoppasswd --batch` is for root only; run the bench as root";
            eprintln!("bench: {msg}");
            skipped.push(msg.to_string());
        }
        None
    };
    let owner = if root {
        (60_001, 60_001)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };

    data::mkdir_public(&knobs.data_dir)?;
    check_traversable(&knobs.data_dir, root)?;
    let work = knobs.data_dir.join(format!("work-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    data::mkdir_public(&work)?;
    eprintln!(
        "bench: work directory {} ({})",
        work.display(),
        if env::var_os("BENCH_KEEP").is_some() {
            "kept: BENCH_KEEP is set"
        } else {
            "removed at the end; BENCH_KEEP=1 keeps it"
        }
    );

    if knobs.wants_tls() && !root {
        let msg = "(t) and s's TLS rows skipped: ipop3d's TLS (its front holds the key) and \
                   Dovecot need root; run the bench as root";
        eprintln!("bench: {msg}");
        skipped.push(msg.to_string());
        knobs.only.remove(&'t');
    }
    let tls = if root && knobs.wants_tls() {
        Some(make_tls(&work.join("tls"))?)
    } else {
        None
    };
    let mut w = World {
        big: None,
        small: None,
        single: None,
        big_user: User::new("box100k"),
        small_users: (1..=8).map(|i| User::new(&format!("box1k{i}"))).collect(),
        single_user: User::new("bigmsg"),
        tls,
        scram: ScramCache::default(),
        scram_counts: Default::default(),
        results: Results::default(),
        knobs,
        work,
        owner,
        root,
    };
    // (e) first, while this process is small: a child's peak RSS (wait4's ru_maxrss) also
    // counts the memory it had before exec, which is this process's (Rust spawns with vfork).
    if let Some(bin) = &apoppasswd {
        for run in 1..=w.knobs.runs {
            eprintln!("bench: (e) run {run} of {}", w.knobs.runs);
            let (wall, rss) = batch(&w, bin, run)?;
            eprintln!("bench:   apoppasswd --batch: {wall:.2} s, {rss:.1} MB");
            w.results.add("e_wall", IPOP3D, wall);
            w.results.add("e_rss", IPOP3D, rss);
        }
    }
    w.results.notes.extend(skipped);
    let seed = w.knobs.seed;
    if w.knobs.wants('a') {
        w.big = Some(data::ensure(
            &w.knobs.data_dir,
            data::Kind::Mixed {
                count: w.knobs.big_count,
            },
            seed,
            owner,
        )?);
    }
    if ['a', 'b', 's', 't'].iter().any(|s| w.knobs.wants(*s)) {
        w.small = Some(data::ensure(
            &w.knobs.data_dir,
            data::Kind::Mixed {
                count: w.knobs.small_count,
            },
            seed,
            owner,
        )?);
    }
    if w.knobs.wants('c') || w.knobs.wants('t') {
        let set = data::ensure(
            &w.knobs.data_dir,
            data::Kind::Single {
                bytes: w.knobs.single_bytes,
            },
            seed,
            owner,
        )?;
        let file = fs::read(set.path_of(&set.entries[0]))?;
        let wire = data::wire_form(&file);
        w.single = Some((set, wire));
    }

    let mut sites = Vec::new();
    if with_ipop3d {
        sites.push(Site {
            column: IPOP3D,
            dir: w.work.join("ipop3d"),
            server: None,
            tls: None,
        });
    }
    if !w.knobs.servers.contains("dovecot") {
    } else if root {
        sites.push(Site {
            column: DOVECOT,
            dir: w.work.join("dovecot"),
            server: None,
            tls: None,
        });
    } else {
        let msg = "Dovecot needs root (its master starts services as other users): skipped; \
                   run the bench as root to compare";
        eprintln!("bench: {msg}");
        w.results.notes.push(msg.into());
    }
    if w.knobs.no_d && with_ipop3d {
        sites.push(Site {
            column: IPOP3D_NO_D,
            dir: w.work.join("ipop3d-no-D"),
            server: None,
            tls: None,
        });
    }
    let any_server = ['a', 'b', 'c', 's', 't'].iter().any(|s| w.knobs.wants(*s));
    if any_server {
        for site in &mut sites {
            setup_site(&w, site, &tcpserver, &ipop3d, &dovecot)?;
            warm_up(&w, site)?;
            if let Some(tls) = &site.tls {
                let note = tls_warm_up(&w, tls)?;
                w.results.notes.push(note);
            }
        }
    }

    for run in 1..=w.knobs.runs {
        eprintln!("bench: run {run} of {}", w.knobs.runs);
        if any_server {
            // Each run starts with the next server, so no server always follows the same one.
            let n = sites.len();
            for site in sites.iter().cycle().skip((run - 1) % n).take(n) {
                measure_site(&mut w, site)
                    .with_context(|| format!("{} (run {run})", stats::SERVERS[site.column]))?;
            }
        }
    }
    drop(sites);
    for ((key, col), (logins, derived)) in &w.scram_counts {
        let iterations: Vec<String> = w
            .scram
            .iterations
            .lock()
            .unwrap()
            .iter()
            .map(u32::to_string)
            .collect();
        w.results.notes.push(format!(
            "(s) {} {key}: the client derived SaltedPassword (PBKDF2-HMAC-SHA-256, i = {} as \
             the servers asked) for {derived} of {logins} SCRAM logins, all runs; {}",
            stats::SERVERS[*col],
            iterations.join(", "),
            if *derived * 2 > *logins {
                "the server sent a new salt nearly every login, so the client's cache missed"
            } else {
                "the rest came from its cache (one derivation per account's salt, box1k1's in the \
                 warm-up)"
            }
        ));
    }

    let mut header = header(&w);
    header.push_str(&format!(
        "Load average (1, 5, 15 min) at the start: {load_before}; at the end: {} (other work on \
         the machine inflates the spreads).\n",
        loadavg()
    ));
    let report = w.results.report(&sized_rows(&w.knobs), &header);
    println!("{report}");
    let out = w.knobs.data_dir.join("last-report.md");
    fs::write(&out, &report)?;
    eprintln!("bench: report also written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The rows with their labels' sizes ("100k", "1k", "50 MB", "10k") as actually run.
fn sized_rows(k: &Knobs) -> Vec<Row> {
    let count = |n: usize| {
        if n.is_multiple_of(1000) {
            format!("{}k", n / 1000)
        } else {
            n.to_string()
        }
    };
    let (big, small, batch) = (
        count(k.big_count),
        count(k.small_count),
        count(k.batch_accounts),
    );
    let single = format!("{} MB", k.single_bytes / 1_000_000);
    ROWS.iter()
        .map(|r| {
            let label = r
                .label
                .replace("100k", &big)
                .replace("1k msgs", &format!("{small} msgs"))
                .replace("10k accounts", &format!("{batch} accounts"))
                .replace("50 MB", &single);
            Row {
                label: Box::leak(label.into_boxed_str()),
                ..*r
            }
        })
        .collect()
}

/// Removes the run's work directory at the end, also on error or panic.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if env::var_os("BENCH_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Virtual users' servers must reach their homes: every ancestor needs o+x.
fn check_traversable(dir: &Path, root: bool) -> Result<()> {
    if !root {
        return Ok(());
    }
    for a in dir.ancestors() {
        let mode = fs::metadata(a)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} is not searchable by others (mode {:o}), so virtual users cannot reach \
                 their homes under it; set BENCH_DATA_DIR to a directory under e.g. /var/tmp",
                a.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

fn all_users(w: &World) -> Vec<User> {
    let mut v = vec![w.big_user.clone(), w.single_user.clone()];
    v.extend(w.small_users.iter().cloned());
    v
}

/// Writes the site's accounts, homes, config and secrets, fills the mailboxes of b and c, and
/// starts its server.
fn setup_site(
    w: &World,
    site: &mut Site,
    tcpserver: &Path,
    ipop3d: &Path,
    dovecot: &Path,
) -> Result<()> {
    let (uid, gid) = w.owner;
    data::mkdir_public(&site.dir)?;
    data::mkdir_public(&site.dir.join("home"))?;
    let users = all_users(w);
    for u in &users {
        let home = site.home(u);
        fs::create_dir_all(&home)?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
        std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
    }
    if let Some(small) = &w.small {
        if ['a', 'b', 's', 't'].iter().any(|s| w.knobs.wants(*s)) {
            for u in &w.small_users {
                data::install(small, &site.home(u), w.owner, w.knobs.fill, Place::Cur)?;
            }
        }
    }
    if let Some((single, _)) = &w.single {
        data::install(
            single,
            &site.home(&w.single_user),
            w.owner,
            w.knobs.fill,
            Place::Cur,
        )?;
    }
    if site.column == DOVECOT {
        let passwd = site.dir.join("passwd");
        let mut text = String::new();
        for u in &users {
            text.push_str(&format!(
                "{}:{{PLAIN}}{}:{uid}:{gid}::{}::\n",
                u.name,
                u.secret,
                site.home(u).display()
            ));
        }
        data::write_file(&passwd, text.as_bytes(), 0o640)?;
        let group = nix::unistd::Group::from_name("dovecot")?
            .context("the group `dovecot` does not exist (is dovecot-core installed?)")?;
        std::os::unix::fs::chown(&passwd, Some(0), Some(group.gid.as_raw()))?;
        let port = servers::free_port()?;
        let conf = site.dir.join("dovecot.conf");
        let text = dovecot_conf(
            w,
            &site.dir,
            &passwd,
            "",
            "ssl = no\ndisable_plaintext_auth = no\n",
            &format!("  inet_listener pop3 {{\n    port = {port}\n  }}\n"),
        );
        data::write_file(&conf, text.as_bytes(), 0o644)?;
        site.server = Some(Server::dovecot(
            dovecot,
            &conf,
            port,
            &site.dir.join("dovecot.stderr"),
        )?);
        if let Some(kit) = &w.tls {
            // A second instance on the same accounts and Maildirs, so the plain rows keep a
            // Dovecot without TLS loaded.
            let dir = site.dir.join("tls");
            data::mkdir_public(&dir)?;
            let (implicit, stls) = (servers::free_port()?, servers::free_port()?);
            let text = dovecot_conf(
                w,
                &dir,
                &passwd,
                "-tls",
                &format!(
                    "ssl = required\nssl_cert = <{}\nssl_key = <{}\ndisable_plaintext_auth = yes\n",
                    kit.cert.display(),
                    kit.key.display()
                ),
                &format!(
                    "  inet_listener pop3 {{\n    port = {stls}\n  }}\n  \
                     inet_listener pop3s {{\n    port = {implicit}\n    ssl = yes\n  }}\n"
                ),
            );
            let conf = dir.join("dovecot.conf");
            data::write_file(&conf, text.as_bytes(), 0o644)?;
            let mut cmd = Command::new(dovecot);
            cmd.arg("-F").arg("-c").arg(&conf);
            site.tls = Some(TlsServer::start(
                "Dovecot (TLS)",
                vec![(cmd, dir.join("dovecot.stderr"))],
                vec![dir.join("dovecot.log")],
                (implicit, stls),
                "pop3",
                kit,
            )?);
        }
    } else {
        let passwd = site.dir.join("passwd");
        let mut text = String::new();
        for u in &users {
            text.push_str(&format!(
                "{}:x:{uid}:{gid}:bench:{}:/bin/false\n",
                u.name,
                site.home(u).display()
            ));
        }
        data::write_file(&passwd, text.as_bytes(), 0o644)?;
        let conf = site.dir.join("apoptools.conf");
        // As root ipop3d splits each connection; its front is chrooted into an empty dir.
        let empty = site.dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let common = format!(
            "# Written by the apoptools benchmark (benches/pop3.rs).\n\
             passwd_file = {}\n\
             disabled_file = {}\n\
             login_chroot = {}\n\
             scram_salt_key = {}\n",
            passwd.display(),
            site.dir.join("disabled").display(),
            empty.display(),
            site.dir.join("scram-salt-key").display()
        );
        let text = format!("{common}plaintext = always\nhostname = localhost\n");
        data::write_file(&conf, text.as_bytes(), 0o644)?;
        let accounts = apoptools::testing::accounts::Accounts::open(Some(&passwd))?;
        for u in &users {
            let account = accounts.by_name(&u.name)?;
            apoptools::testing::store::write(
                &account,
                None,
                u.secret.as_bytes(),
                "bench",
                Duration::from_secs(10),
            )
            .with_context(|| format!("storing the secret of {}", u.name))?;
        }
        let (label, nodelay) = if site.column == IPOP3D {
            ("ipop3d", true)
        } else {
            ("ipop3d w/o -D", false)
        };
        site.server = Some(Server::ipop3d(
            label,
            tcpserver,
            ipop3d,
            &conf,
            nodelay,
            &site.dir.join("tcpserver.log"),
        )?);
        if let (Some(kit), IPOP3D) = (&w.tls, site.column) {
            // USER/PASS only under TLS, as Dovecot's ssl = required.
            let conf = site.dir.join("apoptools-tls.conf");
            let text = format!(
                "{common}plaintext = tls\nhostname = localhost\ntls_cert = {}\ntls_key = {}\n",
                kit.cert.display(),
                kit.key.display()
            );
            data::write_file(&conf, text.as_bytes(), 0o644)?;
            let (implicit, stls) = (servers::free_port()?, servers::free_port()?);
            let listener = |port: u16, implicit: bool| {
                let mut cmd = Command::new(tcpserver);
                cmd.args(["-D", "-H", "-R", "-l", "localhost", "-c100", "127.0.0.1"])
                    .arg(port.to_string())
                    .arg(ipop3d);
                if implicit {
                    cmd.arg("--implicit-tls");
                }
                cmd.arg("--config").arg(&conf);
                cmd
            };
            site.tls = Some(TlsServer::start(
                "ipop3d (TLS)",
                vec![
                    (listener(implicit, true), site.dir.join("tcpserver-tls.log")),
                    (listener(stls, false), site.dir.join("tcpserver-stls.log")),
                ],
                Vec::new(),
                (implicit, stls),
                "ipop3d",
                kit,
            )?);
        }
    }
    Ok(())
}

/// A private Dovecot instance's configuration: `suffix` tells the instances apart, `ssl` holds
/// the TLS settings and `listeners` the pop3-login service's listeners.
fn dovecot_conf(
    w: &World,
    dir: &Path,
    passwd: &Path,
    suffix: &str,
    ssl: &str,
    listeners: &str,
) -> String {
    let fast = if w.knobs.dovecot_fast {
        "  service_count = 0\n  process_min_avail = 2\n"
    } else {
        ""
    };
    let (uid, d) = (w.owner.0, dir.display());
    format!(
        "# Written by the apoptools benchmark (benches/pop3.rs).\n\
         instance_name = apoptools-bench-{pid}{suffix}\n\
         base_dir = {d}/run\n\
         state_dir = {d}/state\n\
         log_path = {d}/dovecot.log\n\
         protocols = pop3\n\
         listen = 127.0.0.1\n\
         {ssl}\
         auth_mechanisms = plain login cram-md5 scram-sha-256 apop\n\
         passdb {{\n  driver = passwd-file\n  args = {pw}\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = {pw}\n}}\n\
         mail_location = maildir:~/Maildir\n\
         pop3_lock_session = yes\n\
         first_valid_uid = {uid}\n\
         mail_max_userip_connections = 100\n\
         service pop3-login {{\n{listeners}{fast}}}\n",
        pid = std::process::id(),
        pw = passwd.display(),
    )
}

fn server(site: &Site) -> &Server {
    site.server.as_ref().expect("the site's server is started")
}

/// One session per mailbox of b and c, so every measured session finds a known mailbox
/// (Dovecot builds its index files on the first).
fn warm_up(w: &World, site: &Site) -> Result<()> {
    let port = server(site).port;
    let mut users: Vec<&User> = Vec::new();
    if w.small.is_some() {
        users.extend(w.small_users.iter());
    }
    if w.single.is_some() {
        users.push(&w.single_user);
    }
    for u in users {
        let mut c = Pop3::connect(port)?;
        c.login_apop(&u.name, &u.secret)
            .with_context(|| format!("warm-up login of {} on {}", u.name, server(site).label))
            .with_context(|| server(site).log_tail())?;
        c.stat()?;
        c.quit()?;
    }
    // One session per SASL mechanism of s, so a mechanism a server refuses stops the bench
    // here with the dialogue; SCRAM's first login also fills the client's key cache.
    if w.knobs.wants('s') {
        let u = &w.small_users[0];
        for login in [Login::Plain, Login::Cram, Login::Scram] {
            let mut c = Pop3::connect(port)?;
            login.run(&mut c, u, &w.scram).map_err(|e| {
                anyhow::anyhow!(
                    "warm-up login on {}: {e}\n{}",
                    server(site).label,
                    server(site).log_tail()
                )
            })?;
            c.stat()?;
            c.quit()?;
        }
    }
    // The first big copy of a process ran about twice as slow as the later ones, whichever
    // server served it (file system state after the set-up); one untimed round absorbs it.
    if let Some(big) = &w.big {
        let home = site.home(&w.big_user);
        data::install(big, &home, w.owner, w.knobs.fill, Place::New)?;
        nix::unistd::sync();
        list_session(server(site), &w.big_user, big)?;
    }
    Ok(())
}

/// One APOP session per mailbox over implicit TLS, so the TLS instance has seen each, then one
/// STLS session, one USER/PASS login and (with s) one AUTH PLAIN login; a note naming what the
/// handshake settled on.
fn tls_warm_up(w: &World, tls: &TlsServer) -> Result<String> {
    let mut users: Vec<&User> = w.small_users.iter().collect();
    if w.single.is_some() {
        users.push(&w.single_user);
    }
    let u0 = users[0];
    let mut logins: Vec<(&User, Via, Login)> = users
        .iter()
        .map(|u| (*u, Via::Implicit, Login::Apop))
        .collect();
    logins.push((u0, Via::Stls, Login::Apop));
    logins.push((u0, Via::Implicit, Login::User));
    if w.knobs.wants('s') {
        logins.push((u0, Via::Implicit, Login::Plain));
    }
    let mut negotiated = String::new();
    for (u, via, login) in logins {
        let what = format!(
            "warm-up {login:?} login of {} on {} ({via:?})",
            u.name, tls.label
        );
        let mut c = tls.connect(via).with_context(|| what.clone())?;
        negotiated = c.negotiated();
        login
            .run(&mut c, u, &w.scram)
            .map_err(|e| anyhow::anyhow!("{what}: {e}\n{}", tls.tail()))?;
        c.stat()?;
        c.quit().with_context(|| what.clone())?;
    }
    Ok(format!(
        "(t) {}: {negotiated}, a full handshake every session",
        tls.label
    ))
}

fn measure_site(w: &mut World, site: &Site) -> Result<()> {
    let col = site.column;
    if w.knobs.wants('a') {
        let big = w.big.as_ref().expect("set generated");
        let home = site.home(&w.big_user);
        data::install(big, &home, w.owner, w.knobs.fill, Place::New)?;
        // Flush the copy's metadata first, so a server's first fsync does not pay for it.
        nix::unistd::sync();
        let first_new = list_session(server(site), &w.big_user, big)?;
        data::install(big, &home, w.owner, w.knobs.fill, Place::Cur)?;
        nix::unistd::sync();
        let first = list_session(server(site), &w.big_user, big)?;
        let second = list_session(server(site), &w.big_user, big)?;
        let small = list_session(server(site), &w.small_users[0], w.small.as_ref().unwrap())?;
        #[rustfmt::skip]
        let sessions = [
            ("a_first_new", Some("a_first_new_cpu"), "d_rss_first_new", "d_anon_first_new", &first_new),
            ("a_first", Some("a_first_cpu"), "d_rss_first", "d_anon_first", &first),
            ("a_second", Some("a_second_cpu"), "d_rss_second", "d_anon_second", &second),
            ("a_small", None, "d_rss_small", "d_anon_small", &small),
        ];
        for (key, cpu_key, rss_key, anon_key, s) in sessions {
            w.results.add(key, col, s.wall.as_secs_f64() * 1e3);
            w.results.add_cpu(key, col, s.client_cpu, s.wall);
            if let (Some(k), Some(c)) = (cpu_key, s.server_cpu) {
                w.results.add(k, col, c * 1e3);
            }
            if let Some((hwm, anon)) = s.rss_kib {
                w.results.add(rss_key, col, hwm as f64 / 1024.0);
                w.results.add(anon_key, col, anon as f64 / 1024.0);
            }
        }
        if let Some((hwm, _)) = small.all_kib {
            w.results.add("d_all_small", col, hwm as f64 / 1024.0);
        }
        if let Some(private) = small.private_kib {
            w.results.add("d_priv_small", col, private as f64 / 1024.0);
        }
        eprintln!(
            "bench:   {}: big Maildir: first in new/ {:.0} ms, first {:.0} ms, second {:.0} ms; small: {:.1} ms",
            stats::SERVERS[col],
            first_new.wall.as_secs_f64() * 1e3,
            first.wall.as_secs_f64() * 1e3,
            second.wall.as_secs_f64() * 1e3,
            small.wall.as_secs_f64() * 1e3
        );
    }
    if w.knobs.wants('b') {
        for (key, login, clients) in [
            ("b_user_1", Login::User, 1),
            ("b_user_8", Login::User, 8),
            ("b_apop_1", Login::Apop, 1),
            ("b_apop_8", Login::Apop, 8),
        ] {
            let r = session_rate(
                server(site),
                &w.small_users[..clients],
                login,
                &w.scram,
                Duration::from_secs_f64(w.knobs.seconds),
            )?;
            add_rate(w, key, col, &r);
        }
    }
    if w.knobs.wants('s') {
        for (key, login, clients) in [
            ("s_plain_1", Login::Plain, 1),
            ("s_cram_1", Login::Cram, 1),
            ("s_scram_1", Login::Scram, 1),
            ("s_scram_8", Login::Scram, 8),
        ] {
            let before = w.scram.counts();
            let r = session_rate(
                server(site),
                &w.small_users[..clients],
                login,
                &w.scram,
                Duration::from_secs_f64(w.knobs.seconds),
            )?;
            add_rate(w, key, col, &r);
            if login == Login::Scram {
                let after = w.scram.counts();
                let e = w.scram_counts.entry((key, col)).or_default();
                e.0 += after.0 - before.0;
                e.1 += after.1 - before.1;
            }
        }
    }
    if w.knobs.wants('c') {
        let (set, wire) = w.single.as_ref().expect("set generated");
        let s = retr_session(server(site), &w.single_user, set, wire)?;
        let mbps = set.entries[0].size as f64 / s.wall.as_secs_f64() / 1e6;
        w.results.add("c_retr", col, mbps);
        w.results.add_cpu("c_retr", col, s.client_cpu, s.wall);
        if let Some((hwm, anon)) = s.rss_kib {
            w.results.add("d_rss_retr", col, hwm as f64 / 1024.0);
            w.results.add("d_anon_retr", col, anon as f64 / 1024.0);
        }
        if let Some(private) = s.private_kib {
            w.results.add("d_priv_retr", col, private as f64 / 1024.0);
        }
        if let Some((hwm, _)) = s.all_kib {
            w.results.add("d_all_retr", col, hwm as f64 / 1024.0);
            note_once(
                w,
                format!(
                    "(d) {}: the processes summed for a plain connection: {}",
                    stats::SERVERS[col],
                    s.procs.join(" + ")
                ),
            );
        }
        eprintln!("bench:   {}: RETR {mbps:.0} MB/s", stats::SERVERS[col]);
    }
    if let (true, Some(tls)) = (w.knobs.wants_tls(), &site.tls) {
        measure_tls(w, col, tls)?;
    }
    Ok(())
}

/// (t): the TLS rows of one server; with s only, just the AUTH PLAIN rows.
fn measure_tls(w: &mut World, col: usize, tls: &TlsServer) -> Result<()> {
    let t = w.knobs.wants('t');
    for (key, via, login, clients) in [
        ("t_apop_1", Via::Implicit, Login::Apop, 1),
        ("t_apop_8", Via::Implicit, Login::Apop, 8),
        ("t_plain_1", Via::Implicit, Login::User, 1),
        ("t_plain_8", Via::Implicit, Login::User, 8),
        ("t_splain_1", Via::Implicit, Login::Plain, 1),
        ("t_splain_8", Via::Implicit, Login::Plain, 8),
        ("t_stls_1", Via::Stls, Login::Apop, 1),
    ] {
        if !t && login != Login::Plain {
            continue;
        }
        let r = session_rate(
            &Tls(tls, via),
            &w.small_users[..clients],
            login,
            &w.scram,
            Duration::from_secs_f64(w.knobs.seconds),
        )?;
        add_rate(w, key, col, &r);
    }
    if !t {
        return Ok(());
    }
    let implicit = Tls(tls, Via::Implicit);
    let small = list_session(&implicit, &w.small_users[0], w.small.as_ref().unwrap())?;
    w.results
        .add("t_small", col, small.wall.as_secs_f64() * 1e3);
    w.results
        .add_cpu("t_small", col, small.client_cpu, small.wall);
    let (set, wire) = w.single.as_ref().expect("set generated");
    let retr = retr_session(&implicit, &w.single_user, set, wire)?;
    let mbps = set.entries[0].size as f64 / retr.wall.as_secs_f64() / 1e6;
    w.results.add("t_retr", col, mbps);
    w.results.add_cpu("t_retr", col, retr.client_cpu, retr.wall);
    let share = retr.client_rusage.as_secs_f64() / retr.wall.as_secs_f64();
    w.results.add("t_retr_client", col, share * 100.0);
    for (rss_key, anon_key, private_key, s) in [
        ("t_rss_small", "t_anon_small", "t_priv_small", &small),
        ("t_rss_retr", "t_anon_retr", "t_priv_retr", &retr),
    ] {
        if let Some((hwm, anon)) = s.all_kib {
            w.results.add(rss_key, col, hwm as f64 / 1024.0);
            w.results.add(anon_key, col, anon as f64 / 1024.0);
        }
        if let Some(private) = s.private_kib {
            w.results.add(private_key, col, private as f64 / 1024.0);
        }
    }
    note_once(
        w,
        format!(
            "(t) {}: the processes summed for a TLS connection: {}",
            stats::SERVERS[col],
            retr.procs.join(" + ")
        ),
    );
    eprintln!(
        "bench:   {}: TLS: 1k session {:.1} ms, RETR {mbps:.0} MB/s (client {:.0} % of a core)",
        stats::SERVERS[col],
        small.wall.as_secs_f64() * 1e3,
        share * 100.0
    );
    Ok(())
}

/// Adds a note to the report unless an earlier run did.
fn note_once(w: &mut World, note: String) {
    if !w.results.notes.contains(&note) {
        w.results.notes.push(note);
    }
}

/// Records one sessions-per-second figure (b, t).
fn add_rate(w: &mut World, key: &'static str, col: usize, r: &Rate) {
    w.results.add(key, col, r.rate);
    w.results.add_cpu(key, col, r.client_cpu, r.wall);
    eprintln!(
        "bench:   {}: {key} {:.1} sessions/s",
        stats::SERVERS[col],
        r.rate
    );
    if r.errors > 0 {
        w.results.notes.push(format!(
            "{} {key}: {} failed sessions (first: {})",
            stats::SERVERS[col],
            r.errors,
            r.first_error
        ));
    }
}

/// What one timed session measured.
struct Session {
    wall: Duration,
    client_cpu: Duration,
    /// The client's user + system time (getrusage) over the same span as `client_cpu`.
    client_rusage: Duration,
    /// (VmHWM, RssAnon) of the serving process just before QUIT.
    rss_kib: Option<(u64, u64)>,
    /// The same, summed over every process serving the connection.
    all_kib: Option<(u64, u64)>,
    /// Those processes' names, main one first.
    procs: Vec<String>,
    /// Their private written memory summed, before QUIT: smaps_rollup's Private_Dirty.
    private_kib: Option<u64>,
    server_cpu: Option<f64>,
}

/// What [`probe`] saw of the serving processes, and how long looking took (to be taken out of
/// the session's times).
struct Probe {
    rss_kib: Option<(u64, u64)>,
    all_kib: Option<(u64, u64)>,
    procs: Vec<String>,
    private_kib: Option<u64>,
    server_cpu: Option<f64>,
    wall: Duration,
    cpu: Duration,
}

/// Peak RSS and CPU of the process serving the session, and the peak RSS of all of them.
fn probe<E: Endpoint>(e: &E, c: &E::Client) -> Probe {
    let (t, c0) = (Instant::now(), process_cpu());
    let serving = e.serving(c);
    let rss_kib = serving.main.and_then(servers::memory_kib);
    let server_cpu = serving.main.and_then(servers::cpu_seconds);
    let mut all_kib = None;
    let mut private_kib = None;
    let mut procs = Vec::new();
    for (pid, comm) in &serving.all {
        if let Some((hwm, anon)) = servers::memory_kib(*pid) {
            let (h, a) = all_kib.unwrap_or((0, 0));
            all_kib = Some((h + hwm, a + anon));
            procs.push(comm.clone());
        }
        if let Some(p) = servers::private_kib(*pid) {
            private_kib = Some(private_kib.unwrap_or(0) + p);
        }
    }
    Probe {
        rss_kib,
        all_kib,
        procs,
        private_kib,
        server_cpu,
        wall: t.elapsed(),
        cpu: process_cpu().saturating_sub(c0),
    }
}

/// APOP + STAT + LIST + UIDL + QUIT, timed from connect to the server's close; then checks
/// what came back against the set's manifest.
fn list_session<E: Endpoint>(e: &E, user: &User, set: &Set) -> Result<Session> {
    let (t0, c0, r0) = (Instant::now(), process_cpu(), rusage_cpu());
    let mut c = e
        .connect()
        .with_context(|| format!("connecting to {}", e.label()))?;
    c.login_apop(&user.name, &user.secret)
        .with_context(|| format!("login of {} on {}", user.name, e.label()))
        .with_context(|| e.tail())?;
    let (n, octets) = c.stat()?;
    let mut sizes = Vec::with_capacity(set.entries.len());
    let mut list_bad = 0usize;
    c.multi(b"LIST", |l| {
        match std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.split_once(' '))
            .and_then(|(_, sz)| sz.parse::<u64>().ok())
        {
            Some(sz) => sizes.push(sz),
            None => list_bad += 1,
        }
    })?;
    let mut uids = Vec::with_capacity(set.entries.len());
    let mut uid_bad = 0usize;
    c.multi(b"UIDL", |l| match l.iter().position(|&b| b == b' ') {
        Some(sp) => {
            let uid = &l[sp + 1..];
            if uid.is_empty() || uid.len() > 70 || uid.iter().any(|&b| !(0x21..=0x7e).contains(&b))
            {
                uid_bad += 1;
            }
            uids.push(fnv64(uid));
        }
        None => uid_bad += 1,
    })?;
    let p = probe(e, &c);
    c.quit().with_context(|| format!("QUIT on {}", e.label()))?;
    let wall = t0.elapsed().saturating_sub(p.wall);
    let client_cpu = process_cpu().saturating_sub(c0).saturating_sub(p.cpu);
    let client_rusage = rusage_cpu().saturating_sub(r0).saturating_sub(p.cpu);

    let want_n = set.entries.len() as u64;
    if n != want_n || octets != set.total_wire() {
        bail!(
            "{}: STAT says {n} {octets}, the Maildir has {want_n} messages of {} octets (CRLF)",
            e.label(),
            set.total_wire()
        );
    }
    let mut want: Vec<u64> = set.entries.iter().map(|e| e.wire_size).collect();
    want.sort_unstable();
    sizes.sort_unstable();
    if list_bad > 0 || sizes != want {
        bail!(
            "{}: LIST sizes differ from the files' CRLF sizes ({list_bad} bad lines)",
            e.label()
        );
    }
    uids.sort_unstable();
    uids.dedup();
    if uid_bad > 0 || uids.len() as u64 != want_n {
        bail!(
            "{}: UIDL gave {} distinct valid ids for {want_n} messages ({uid_bad} bad)",
            e.label(),
            uids.len()
        );
    }
    Ok(Session {
        wall,
        client_cpu,
        client_rusage,
        rss_kib: p.rss_kib,
        all_kib: p.all_kib,
        private_kib: p.private_kib,
        procs: p.procs,
        server_cpu: p.server_cpu,
    })
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// APOP + STAT + RETR 1 + QUIT; times RETR alone (command sent to last octet checked).
fn retr_session<E: Endpoint>(e: &E, user: &User, set: &Set, wire: &[u8]) -> Result<Session> {
    let mut c = e
        .connect()
        .with_context(|| format!("connecting to {}", e.label()))?;
    c.login_apop(&user.name, &user.secret)
        .with_context(|| format!("login of {} on {}", user.name, e.label()))?;
    let (n, octets) = c.stat()?;
    if n != 1 || octets != set.entries[0].wire_size {
        bail!(
            "{}: STAT says {n} {octets}, expected 1 {}",
            e.label(),
            set.entries[0].wire_size
        );
    }
    let (t0, c0, r0) = (Instant::now(), process_cpu(), rusage_cpu());
    c.retr_expect(1, wire)
        .with_context(|| format!("RETR from {}", e.label()))
        .with_context(|| e.tail())?;
    let (wall, client_cpu, client_rusage) = (
        t0.elapsed(),
        process_cpu().saturating_sub(c0),
        rusage_cpu().saturating_sub(r0),
    );
    let p = probe(e, &c);
    c.quit().with_context(|| format!("QUIT on {}", e.label()))?;
    Ok(Session {
        wall,
        client_cpu,
        client_rusage,
        rss_kib: p.rss_kib,
        all_kib: p.all_kib,
        private_kib: p.private_kib,
        procs: p.procs,
        server_cpu: p.server_cpu,
    })
}

/// User + system CPU time of this process so far, from getrusage(RUSAGE_SELF).
fn rusage_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000)
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

struct Rate {
    rate: f64,
    wall: Duration,
    client_cpu: Duration,
    errors: u64,
    first_error: String,
}

/// How a session logs in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Login {
    User,
    Apop,
    /// AUTH PLAIN with an initial response.
    Plain,
    Cram,
    Scram,
}

impl Login {
    fn mech(self) -> Option<Mech> {
        match self {
            Login::User | Login::Apop => None,
            Login::Plain => Some(Mech::Plain),
            Login::Cram => Some(Mech::CramMd5),
            Login::Scram => Some(Mech::ScramSha256),
        }
    }

    /// Logs `u` in on `c`; a SASL failure quotes the step and the server's reply.
    fn run<C: Client>(self, c: &mut C, u: &User, scram: &ScramCache) -> Result<(), String> {
        match self.mech() {
            None if self == Login::Apop => {
                c.login_apop(&u.name, &u.secret).map_err(|e| e.to_string())
            }
            None => c.login_user(&u.name, &u.secret).map_err(|e| e.to_string()),
            Some(m) => sasl::login(m, &u.name, &u.secret, scram, |l| c.exchange(l))
                .map_err(|e| e.to_string()),
        }
    }
}

/// `users.len()` clients, each on its own mailbox, run connect + login + STAT + QUIT sessions
/// back to back for `duration`; the rate counts sessions that completed without error. A
/// failed SASL login stops every client and is the error, with the server's log.
fn session_rate<E: Endpoint>(
    e: &E,
    users: &[User],
    login: Login,
    scram: &ScramCache,
    duration: Duration,
) -> Result<Rate> {
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let first_error = Mutex::new(String::new());
    let fatal = Mutex::new(None::<String>);
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(users.len() + 1);
    // Err((fatal, message)).
    let one = |u: &User| -> Result<(), (bool, String)> {
        let mut c = e.connect().map_err(|e| (false, e.to_string()))?;
        login
            .run(&mut c, u, scram)
            .map_err(|m| (login.mech().is_some(), m))?;
        c.stat().map_err(|e| (false, e.to_string()))?;
        c.quit().map_err(|e| (false, e.to_string()))
    };
    let (wall, client_cpu) = std::thread::scope(|s| {
        for u in users {
            let (done, errors, first_error, fatal, stop, barrier, one) =
                (&done, &errors, &first_error, &fatal, &stop, &barrier, &one);
            s.spawn(move || {
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    match one(u) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err((true, m)) => {
                            stop.store(true, Ordering::Relaxed);
                            fatal.lock().unwrap().get_or_insert(m);
                        }
                        Err((false, e)) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                *first_error.lock().unwrap() = e;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            });
        }
        let (t0, c0) = (Instant::now(), process_cpu());
        barrier.wait();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        // The scope joins the clients; sessions in flight finish and count.
        (t0, c0)
    });
    let (wall, client_cpu) = (wall.elapsed(), process_cpu().saturating_sub(client_cpu));
    if let Some(m) = fatal.into_inner().unwrap() {
        bail!(
            "{}: a {login:?} login failed, run aborted: {m}\n{}",
            e.label(),
            e.tail()
        );
    }
    let n = done.load(Ordering::Relaxed);
    Ok(Rate {
        rate: n as f64 / wall.as_secs_f64(),
        wall,
        client_cpu,
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error.into_inner().unwrap(),
    })
}

/// `apoppasswd --config CONF --batch` for N fresh accounts; (wall seconds, peak RSS MB).
fn batch(w: &World, apoppasswd: &Path, run: usize) -> Result<(f64, f64)> {
    let n = w.knobs.batch_accounts;
    // A new directory per run, all removed at the end with the work directory: deleting
    // 10,000 homes right before creating 10,000 more would time ext4's inode allocator
    // skipping the recently deleted inodes, not apoppasswd.
    let dir = w.work.join(format!("batch-{run}"));
    data::mkdir_public(&dir)?;
    data::mkdir_public(&dir.join("home"))?;
    let mut passwd = String::new();
    let mut input = String::new();
    for i in 0..n {
        let name = format!("batch{i:05}");
        let (uid, gid) = if w.root {
            (70_000 + i as u32, 70_000 + i as u32)
        } else {
            w.owner
        };
        let home = dir.join("home").join(&name);
        fs::create_dir(&home)?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
        std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
        passwd.push_str(&format!(
            "{name}:x:{uid}:{gid}:bench:{}:/bin/false\n",
            home.display()
        ));
        input.push_str(&format!(
            "{name}:pw-{i:05}-{:x}\n",
            data::Rng::new(i as u64).next_u64()
        ));
    }
    let passwd_path = dir.join("passwd");
    data::write_file(&passwd_path, passwd.as_bytes(), 0o644)?;
    let conf = dir.join("apoptools.conf");
    let text = format!(
        "passwd_file = {}\ndisabled_file = {}\n",
        passwd_path.display(),
        dir.join("disabled").display()
    );
    data::write_file(&conf, text.as_bytes(), 0o644)?;
    // Flush the 10,000 new homes first, so apoppasswd's first fsync does not pay for them.
    nix::unistd::sync();

    let t0 = Instant::now();
    let mut child = Command::new(apoppasswd)
        .arg("--config")
        .arg(&conf)
        .arg("--batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", apoppasswd.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut s);
        s
    });
    let mut err_text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stderr, &mut err_text);
    let (status, rusage) = wait4(child.id())?;
    let wall = t0.elapsed().as_secs_f64();
    let _ = feeder.join();
    let _ = out_reader.join();
    if status != 0 {
        bail!(
            "apoppasswd --batch exited with status {status}: {}",
            String::from_utf8_lossy(&err_text)
        );
    }
    let stored = (0..n)
        .filter(|i| dir.join(format!("home/batch{i:05}/.apop")).exists())
        .count();
    if stored != n {
        bail!("apoppasswd --batch stored {stored} of {n} secrets");
    }
    Ok((wall, rusage as f64 / 1024.0))
}

/// Waits for `pid` (our child) and returns (exit status, peak RSS in KiB).
fn wait4(pid: u32) -> Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value and wait4 overwrites it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers are valid for the call.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| {
            t.split_ascii_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn header(w: &World) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dovecot = Command::new("/usr/sbin/dovecot")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut h = format!(
        "### POP3 benchmark: ipop3d vs Dovecot {dovecot}\n\n\
         {cores} cores ({cpu}), Linux {}, loopback, data in the page cache, {} run(s){}, \
         `tcpserver -D -H -R -l localhost -c100` for ipop3d{}.\n",
        kernel.trim(),
        w.knobs.runs,
        if w.knobs.quick { ", QUICK sizes" } else { "" },
        if w.knobs.dovecot_fast {
            "; Dovecot with login processes kept alive (service_count = 0, process_min_avail = 2)"
        } else {
            "; Dovecot with its default service settings"
        },
    );
    let knobs: Vec<String> = env::vars()
        .filter(|(k, _)| k.starts_with("BENCH_") || k == "APOPTOOLS_BIN_DIR")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    h.push_str(&format!(
        "Command: `{}cargo bench --bench pop3`{}.\n",
        knobs.concat(),
        if w.root { ", as root" } else { ", not as root" }
    ));
    if let Some(b) = &w.big {
        h.push_str(&format!(
            "(a) Maildir: {} messages, {:.0} MB (1-200 KB, most under 10 KB; some lines start \
             with a dot), in cur/ named `<unique>:2,`, and for one row in new/ as qmail delivers.\n",
            b.entries.len(),
            b.total_size() as f64 / 1e6,
        ));
    }
    // Which scenarios a data set serves, for its line.
    let used_by = |letters: &[char]| {
        let v: Vec<String> = letters
            .iter()
            .filter(|l| w.knobs.wants(**l))
            .map(char::to_string)
            .collect();
        v.join(", ")
    };
    if let Some(s) = &w.small {
        h.push_str(&format!(
            "({}) Maildir: {} messages, {:.1} MB, one copy per client.\n",
            used_by(&['a', 'b', 's', 't']),
            s.entries.len(),
            s.total_size() as f64 / 1e6
        ));
    }
    if let Some((s, _)) = &w.single {
        h.push_str(&format!(
            "({}) one message of {} octets ({:.0} MB).\n",
            used_by(&['c', 't']),
            s.entries[0].size,
            s.entries[0].size as f64 / 1e6
        ));
    }
    if ['b', 's', 't'].iter().any(|s| w.knobs.wants(*s)) {
        h.push_str(&format!(
            "(b, s, t) each sessions/s figure is {} s of back-to-back sessions.\n",
            w.knobs.seconds
        ));
    }
    if w.knobs.wants('s') {
        h.push_str(
            "(s) SASL (RFC 5034): AUTH PLAIN with an initial response; CRAM-MD5; SCRAM-SHA-256 \
             with client-first as initial response, no channel binding, the server's nonce and \
             signature checked, the empty line after server-final; every reply checked. The \
             client caches SCRAM's SaltedPassword per (password, salt, iterations), as real \
             clients do (counts in the notes). ipop3d: the bench's store records carry SCRAM \
             keys (salt and 4096 rounds fixed per account). Dovecot: `auth_mechanisms = plain \
             login cram-md5 scram-sha-256 apop` over its `{PLAIN}` passwd-file. The t_splain \
             rows run under (t)'s TLS set-up, `plaintext = tls` and `ssl = required`.\n",
        );
    }
    if w.tls.is_some() {
        h.push_str(
            "(t) TLS: one throwaway CA and ECDSA P-256 leaf for localhost (rcgen), the same \
             certificate and key files for both servers. ipop3d: `ipop3d --implicit-tls` and \
             `ipop3d` offering STLS, each under its own `tcpserver -D`, `plaintext = tls`; \
             Dovecot: a second private instance, `ssl = required` (a pop3s listener, STLS on \
             its pop3 listener). Client: rustls (ring), session resumption off (a full \
             handshake every session), connecting from 127.0.0.2. The (t) and \"all \
             processes\" memory rows sum VmHWM (RssAnon) over every process serving the \
             connection, shared library pages counted in each.\n",
        );
    }
    h
}

// (t)'s TLS and the endpoints: how a scenario reaches a server, plain or under TLS.

/// The TLS material of (t): one throwaway CA and an ECDSA P-256 leaf for `localhost` (rcgen),
/// the same chain and key files for both servers, and the client configuration trusting that
/// CA, with session resumption off so that every session is a full handshake.
struct TlsKit {
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn make_tls(dir: &Path) -> Result<TlsKit> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    data::mkdir_public(dir)?;
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let ca_key = KeyPair::generate_for(p256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "apoptools bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate_for(p256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = params.signed_by(&key, &ca, &ca_key)?;
    let kit_cert = dir.join("cert.pem");
    let kit_key = dir.join("key.pem");
    data::write_file(&kit_cert, leaf.pem().as_bytes(), 0o644)?;
    // ipop3d wants the key owned by root (the bench is) with no permission for others.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&kit_key)
        .and_then(|mut f| f.write_all(key.serialize_pem().as_bytes()))
        .with_context(|| format!("writing {}", kit_key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    Ok(TlsKit {
        cert: kit_cert,
        key: kit_key,
        client: Arc::new(client),
    })
}

/// How a (t) session starts TLS: at once (port 995's mode) or with STLS after the greeting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Implicit,
    Stls,
}

/// A site's TLS listeners on 127.0.0.1, implicit TLS and STLS on a plain port: ipop3d's two
/// tcpservers (`ipop3d --implicit-tls`, `ipop3d`) or the master of Dovecot's TLS instance.
/// Its `Drop` stops them as [`Server`]'s does.
struct TlsServer {
    label: &'static str,
    implicit: u16,
    stls: u16,
    listeners: Vec<Child>,
    /// The comm of the process tcpserver or Dovecot's master starts for a session.
    serving_comm: &'static str,
    logs: Vec<PathBuf>,
    client: Arc<rustls::ClientConfig>,
}

impl TlsServer {
    /// Starts `listeners` (each with its output file) and waits until both ports greet;
    /// `logs` are more files to show when something fails.
    fn start(
        label: &'static str,
        listeners: Vec<(Command, PathBuf)>,
        logs: Vec<PathBuf>,
        (implicit, stls): (u16, u16),
        serving_comm: &'static str,
        kit: &TlsKit,
    ) -> Result<TlsServer> {
        let mut server = TlsServer {
            label,
            implicit,
            stls,
            listeners: Vec::new(),
            serving_comm,
            logs: Vec::new(),
            client: Arc::clone(&kit.client),
        };
        for (mut cmd, log) in listeners {
            let f =
                fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
            let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
            server.listeners.push(child);
            server.logs.push(log);
        }
        server.logs.extend(logs);
        let deadline = Instant::now() + Duration::from_secs(15);
        for via in [Via::Implicit, Via::Stls] {
            loop {
                match server.connect(via).and_then(Client::quit) {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => bail!(
                        "{} did not answer ({via:?}) on port {}: {e}; its logs say:\n{}",
                        label,
                        server.port(via),
                        server.tail()
                    ),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(server)
    }

    fn port(&self, via: Via) -> u16 {
        match via {
            Via::Implicit => self.implicit,
            Via::Stls => self.stls,
        }
    }

    fn connect(&self, via: Via) -> io::Result<TlsPop3> {
        TlsPop3::connect(&self.client, self.port(via), via)
    }

    /// The last lines of each log.
    fn tail(&self) -> String {
        let mut out = String::new();
        for log in &self.logs {
            let text = fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("== {}\n", log.display()));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The processes serving the session whose client port is `client_port`: the newest
    /// session process a listener started (ipop3d's back, Dovecot's pop3), its descendants
    /// (ipop3d's front), and any process under the listeners holding the connection's socket
    /// (Dovecot's pop3-login, relaying the TLS).
    fn serving(&self, via: Via, client_port: u16) -> Serving {
        let procs = processes();
        let roots: Vec<u32> = self.listeners.iter().map(Child::id).collect();
        let main = procs
            .iter()
            .filter(|p| p.live && roots.contains(&p.ppid) && p.comm == self.serving_comm)
            .max_by_key(|p| p.start)
            .map(|p| p.pid);
        let mut all = main.map_or_else(Vec::new, |m| tree(&procs, &[m]));
        let inodes = socket_inodes(self.port(via), client_port);
        for (pid, comm) in tree(&procs, &roots) {
            if !all.iter().any(|(p, _)| *p == pid) && holds_socket(pid, &inodes) {
                all.push((pid, comm));
            }
        }
        Serving { main, all }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        for child in &self.listeners {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.listeners {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// How a scenario reaches a server: new sessions, and the processes serving one.
trait Endpoint: Sync {
    type Client: Client;
    fn label(&self) -> &'static str;
    fn connect(&self) -> io::Result<Self::Client>;
    /// The processes serving `c`, the only session in progress.
    fn serving(&self, c: &Self::Client) -> Serving;
    /// The end of the server's logs, for errors.
    fn tail(&self) -> String;
}

/// The processes serving one connection: the main one (tcpserver's ipop3d child, Dovecot's
/// pop3), and all of them with their names, the main one first.
struct Serving {
    main: Option<u32>,
    all: Vec<(u32, String)>,
}

impl Endpoint for Server {
    type Client = Pop3;

    fn label(&self) -> &'static str {
        self.label
    }

    fn connect(&self) -> io::Result<Pop3> {
        Pop3::connect(self.port)
    }

    /// The main process and its descendants: the plain client does not expose its socket,
    /// and after a plain login ipop3d's front and Dovecot's pop3-login are gone anyway.
    fn serving(&self, _: &Pop3) -> Serving {
        let main = self.serving_pid();
        let all = main.map_or_else(Vec::new, |m| tree(&processes(), &[m]));
        Serving { main, all }
    }

    fn tail(&self) -> String {
        self.log_tail()
    }
}

/// A TLS server reached one way.
struct Tls<'a>(&'a TlsServer, Via);

impl Endpoint for Tls<'_> {
    type Client = TlsPop3;

    fn label(&self) -> &'static str {
        self.0.label
    }

    fn connect(&self) -> io::Result<TlsPop3> {
        self.0.connect(self.1)
    }

    fn serving(&self, c: &TlsPop3) -> Serving {
        self.0.serving(self.1, c.local_port)
    }

    fn tail(&self) -> String {
        self.0.tail()
    }
}

/// What the scenarios ask of a session, plain ([`Pop3`]) or under TLS ([`TlsPop3`]).
trait Client: Sized {
    /// Sends `line` and returns the reply line (CRLF removed), whatever it is.
    fn exchange(&mut self, line: &[u8]) -> io::Result<Vec<u8>>;
    fn login_apop(&mut self, user: &str, secret: &str) -> io::Result<()>;
    fn login_user(&mut self, user: &str, pass: &str) -> io::Result<()>;
    fn stat(&mut self) -> io::Result<(u64, u64)>;
    fn multi(&mut self, cmd: &[u8], each: impl FnMut(&[u8])) -> io::Result<usize>;
    fn retr_expect(&mut self, n: u64, expected: &[u8]) -> io::Result<u64>;
    fn quit(self) -> io::Result<()>;
}

impl Client for Pop3 {
    fn exchange(&mut self, line: &[u8]) -> io::Result<Vec<u8>> {
        Pop3::exchange(self, line)
    }
    fn login_apop(&mut self, user: &str, secret: &str) -> io::Result<()> {
        Pop3::login_apop(self, user, secret)
    }
    fn login_user(&mut self, user: &str, pass: &str) -> io::Result<()> {
        Pop3::login_user(self, user, pass)
    }
    fn stat(&mut self) -> io::Result<(u64, u64)> {
        Pop3::stat(self)
    }
    fn multi(&mut self, cmd: &[u8], each: impl FnMut(&[u8])) -> io::Result<usize> {
        Pop3::multi(self, cmd, each)
    }
    fn retr_expect(&mut self, n: u64, expected: &[u8]) -> io::Result<u64> {
        Pop3::retr_expect(self, n, expected)
    }
    fn quit(self) -> io::Result<()> {
        Pop3::quit(self)
    }
}

/// The (t) client: [`Pop3`]'s protocol and checks over rustls, from 127.0.0.2. One write per
/// command; reads come straight from rustls's plaintext buffer.
struct TlsPop3 {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    timestamp: Option<Vec<u8>>,
    line: Vec<u8>,
    local_port: u16,
}

impl TlsPop3 {
    /// Connects to 127.0.0.1:`port`, runs the handshake (after the greeting and STLS with
    /// [`Via::Stls`]) and reads the greeting.
    fn connect(config: &Arc<rustls::ClientConfig>, port: u16, via: Via) -> io::Result<TlsPop3> {
        let mut tcp = tcp_from(Ipv4Addr::new(127, 0, 0, 2), port)?;
        let local_port = tcp.local_addr()?.port();
        let mut timestamp = None;
        if via == Via::Stls {
            let mut plain = BufReader::new(&tcp);
            let mut line = Vec::new();
            read_status(&mut plain, &mut line)?;
            timestamp = apop_timestamp(&line);
            (&tcp).write_all(b"STLS\r\n")?;
            read_status(&mut plain, &mut line)?;
            if !plain.buffer().is_empty() {
                return Err(client::err(format!(
                    "{} octets after STLS's +OK, before the handshake: {:?}",
                    plain.buffer().len(),
                    show(plain.buffer())
                )));
            }
        }
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
        let mut conn =
            rustls::ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        let mut c = TlsPop3 {
            stream: rustls::StreamOwned::new(conn, tcp),
            timestamp,
            line: Vec::with_capacity(256),
            local_port,
        };
        if via == Via::Implicit {
            read_status(&mut c.stream, &mut c.line)?;
            c.timestamp = apop_timestamp(&c.line);
        }
        Ok(c)
    }

    /// The TLS version, suite and key exchange the handshake settled on.
    fn negotiated(&self) -> String {
        let c = &self.stream.conn;
        let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        format!(
            "{}, {}, {}",
            show(c.protocol_version().map(|v| format!("{v:?}"))),
            show(
                c.negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
            ),
            show(
                c.negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
            ),
        )
    }

    fn send(&mut self, cmd: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(cmd.len() + 2);
        buf.extend_from_slice(cmd);
        buf.extend_from_slice(b"\r\n");
        self.stream.write_all(&buf)?;
        self.stream.flush()
    }

    /// Sends `cmd` and returns the `+OK` line's text.
    fn simple(&mut self, cmd: &[u8]) -> io::Result<Vec<u8>> {
        self.send(cmd)?;
        read_status(&mut self.stream, &mut self.line)?;
        Ok(self.line[..self.line.len() - 2].to_vec())
    }
}

impl Client for TlsPop3 {
    fn exchange(&mut self, line: &[u8]) -> io::Result<Vec<u8>> {
        self.send(line)?;
        read_line(&mut self.stream, &mut self.line)?;
        Ok(self.line[..self.line.len() - 2].to_vec())
    }

    fn login_apop(&mut self, user: &str, secret: &str) -> io::Result<()> {
        let ts = self
            .timestamp
            .clone()
            .ok_or_else(|| client::err("the greeting has no APOP timestamp"))?;
        let d = apoptools::testing::apop::digest(&ts, secret.as_bytes());
        let mut cmd = format!("APOP {user} ").into_bytes();
        cmd.extend_from_slice(&d);
        self.simple(&cmd)?;
        Ok(())
    }

    fn login_user(&mut self, user: &str, pass: &str) -> io::Result<()> {
        self.simple(format!("USER {user}").as_bytes())?;
        self.simple(format!("PASS {pass}").as_bytes())?;
        Ok(())
    }

    fn stat(&mut self) -> io::Result<(u64, u64)> {
        let l = self.simple(b"STAT")?;
        let text = String::from_utf8_lossy(&l);
        let mut f = text.split_ascii_whitespace().skip(1);
        let parse = |s: Option<&str>| -> io::Result<u64> {
            s.and_then(|s| s.parse().ok())
                .ok_or_else(|| client::err(format!("bad STAT reply {text:?}")))
        };
        Ok((parse(f.next())?, parse(f.next())?))
    }

    fn multi(&mut self, cmd: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<usize> {
        self.simple(cmd)?;
        let mut n = 0;
        loop {
            read_line(&mut self.stream, &mut self.line)?;
            let l = &self.line[..self.line.len() - 2];
            if l == b"." {
                return Ok(n);
            }
            each(l.strip_prefix(b".").unwrap_or(l));
            n += 1;
        }
    }

    fn retr_expect(&mut self, n: u64, expected: &[u8]) -> io::Result<u64> {
        self.simple(format!("RETR {n}").as_bytes())?;
        let mut at = 0usize;
        while at < expected.len() {
            let buf = self.stream.fill_buf()?;
            if buf.is_empty() {
                return Err(client::err(format!(
                    "EOF after {at} of {} octets of RETR",
                    expected.len()
                )));
            }
            let take = buf.len().min(expected.len() - at);
            if buf[..take] != expected[at..at + take] {
                let off = buf[..take]
                    .iter()
                    .zip(&expected[at..at + take])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(client::err(format!(
                    "RETR body differs from the file at wire octet {}",
                    at + off
                )));
            }
            self.stream.consume(take);
            at += take;
        }
        Ok(at as u64)
    }

    /// QUIT: expects `+OK`, then the server's close_notify and close.
    fn quit(mut self) -> io::Result<()> {
        self.simple(b"QUIT")?;
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).map_err(|e| {
            client::err(format!(
                "after QUIT's +OK: {e} (no TLS close_notify before the close?)"
            ))
        })?;
        if !rest.is_empty() {
            return Err(client::err(format!("data after QUIT: {:?}", show(&rest))));
        }
        Ok(())
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `local` (any port).
fn tcp_from(local: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let [a, b, c, d] = local.octets();
    bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0))?;
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))?;
    let tcp = TcpStream::from(fd);
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(120)))?;
    Ok(tcp)
}

/// Reads one line (CRLF included) into `line`; EOF or a line without CRLF is an error.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    let n = r.read_until(b'\n', line)?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(client::err(format!(
            "connection closed or line without CRLF: {:?}",
            show(line)
        )));
    }
    Ok(())
}

/// Reads a status line into `line`; anything but `+OK ...` is an error.
fn read_status(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    read_line(r, line)?;
    if line.starts_with(b"+OK") {
        Ok(())
    } else {
        Err(client::err(format!("server said {:?}", show(line))))
    }
}

/// The `<...>` of a greeting, if it has one.
fn apop_timestamp(greeting: &[u8]) -> Option<Vec<u8>> {
    let a = greeting.iter().position(|&x| x == b'<')?;
    let b = greeting.iter().rposition(|&x| x == b'>')?;
    (a < b).then(|| greeting[a..=b].to_vec())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .trim_end()
        .to_string()
}

/// One process of /proc.
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    live: bool,
    start: u64,
}

/// Every process, from /proc/PID/stat.
fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let rest: Vec<&str> = text[close + 2..].split(' ').collect();
        // rest[0] = state (field 3), rest[1] = ppid (4), rest[19] = starttime (22)
        let state = rest.first().and_then(|s| s.chars().next()).unwrap_or('X');
        let (Some(ppid), Some(start)) = (
            rest.get(1).and_then(|s| s.parse().ok()),
            rest.get(19).and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        out.push(Proc {
            pid,
            ppid,
            comm: text[open + 1..close].to_string(),
            live: state != 'Z' && state != 'X',
            start,
        });
    }
    out
}

/// The live processes among `roots` and their descendants, with their names, roots first.
fn tree(procs: &[Proc], roots: &[u32]) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut queue: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < queue.len() {
        let pid = queue[i];
        i += 1;
        if let Some(p) = procs.iter().find(|p| p.pid == pid && p.live) {
            out.push((pid, p.comm.clone()));
            queue.extend(procs.iter().filter(|c| c.ppid == pid).map(|c| c.pid));
        }
    }
    out
}

/// The inodes of the server's end of the loopback connection from `client_port` to
/// `server_port`, from /proc/net/tcp.
fn socket_inodes(server_port: u16, client_port: u16) -> Vec<u64> {
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let (local, remote, inode) = (f.get(1)?, f.get(2)?, f.get(9)?);
            (port(local)? == server_port && port(remote)? == client_port)
                .then(|| inode.parse().ok())?
        })
        .collect()
}

/// Whether `pid` has one of the sockets `inodes` open.
fn holds_socket(pid: u32, inodes: &[u64]) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten().any(|e| {
        fs::read_link(e.path()).is_ok_and(|t| {
            t.to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|i| inodes.contains(&i))
        })
    })
}
