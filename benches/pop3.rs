//! pop3: ipop3d against Dovecot's POP3 server, same machine, same Maildirs, same client.
//!
//! `cargo bench --bench pop3` generates deterministic Maildirs (see `data`), starts ipop3d under
//! `tcpserver -D` (and, as a note, without `-D`) and a private Dovecot instance, runs the
//! scenarios of issue #5 against each, and prints a markdown table: the median of `BENCH_RUNS`
//! runs (min–max), the ratio ipop3d/Dovecot and whether ipop3d meets its target. It installs
//! nothing: a missing tool is named with its Debian package and the bench exits non-zero.
//!
//! Scenarios (BENCH_ONLY=a,b,c,d,e picks some; d needs a or c and is added with them):
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
//! - e: wall time and peak RSS (wait4) of `apoppasswd --batch` setting 10,000 accounts' secrets
//!   (fresh homes each run; root only). Run first, while the bench process is small.
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
//! APOPTOOLS_BIN_DIR (where ipop3d and apoppasswd are; default: the ones cargo built for this
//! package, found at compile time with option_env!, so the bench builds before they exist).

#[path = "pop3/client.rs"]
mod client;
#[path = "pop3/data.rs"]
mod data;
#[path = "pop3/servers.rs"]
mod servers;
#[path = "pop3/stats.rs"]
mod stats;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use client::Pop3;
use data::{Fill, Place, Set};
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
    row("a_first_new", "(a) 100k msgs in new/, first session (fresh copy)", "ms", Lower, RatioAtMost(1.0), true),
    row("a_small", "(a) 1k msgs, login+STAT+LIST+UIDL+QUIT", "ms", Lower, Target::None, true),
    row("a_first_cpu", "(a) serving process CPU, 100k in cur/ first session", "ms", Lower, Target::None, false),
    row("a_second_cpu", "(a) serving process CPU, 100k second session", "ms", Lower, Target::None, false),
    row("a_first_new_cpu", "(a) serving process CPU, 100k in new/ first session", "ms", Lower, Target::None, false),
    row("b_user_1", "(b) USER/PASS+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(1.0), true),
    row("b_user_8", "(b) USER/PASS+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(1.0), true),
    row("b_apop_1", "(b) APOP+STAT+QUIT, c=1", "sessions/s", Higher, RatioAtLeast(1.0), true),
    row("b_apop_8", "(b) APOP+STAT+QUIT, c=8", "sessions/s", Higher, RatioAtLeast(1.0), true),
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
    row("e_wall", "(e) apoppasswd --batch, 10k accounts, wall", "s", Lower, Below(2.0), true),
    row("e_rss", "(e) apoppasswd --batch, 10k accounts, peak RSS", "MB", Lower, Target::None, false),
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
                    "a" | "b" | "c" | "d" | "e" => Ok(s.chars().next().unwrap_or('a')),
                    _ => bail!("BENCH_ONLY takes a,b,c,d,e, not {s:?}"),
                })
                .collect::<Result<_>>()?,
            None => "abcde".chars().collect(),
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
    let knobs = Knobs::from_env()?;
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

    let mut w = World {
        big: None,
        small: None,
        single: None,
        big_user: User::new("box100k"),
        small_users: (1..=8).map(|i| User::new(&format!("box1k{i}"))).collect(),
        single_user: User::new("bigmsg"),
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
    if w.knobs.wants('a') || w.knobs.wants('b') {
        w.small = Some(data::ensure(
            &w.knobs.data_dir,
            data::Kind::Mixed {
                count: w.knobs.small_count,
            },
            seed,
            owner,
        )?);
    }
    if w.knobs.wants('c') {
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
        });
    }
    if !w.knobs.servers.contains("dovecot") {
    } else if root {
        sites.push(Site {
            column: DOVECOT,
            dir: w.work.join("dovecot"),
            server: None,
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
        });
    }
    let any_server = ['a', 'b', 'c'].iter().any(|s| w.knobs.wants(*s));
    if any_server {
        for site in &mut sites {
            setup_site(&w, site, &tcpserver, &ipop3d, &dovecot)?;
            warm_up(&w, site)?;
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
        if w.knobs.wants('a') || w.knobs.wants('b') {
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
        let fast = if w.knobs.dovecot_fast {
            "  service_count = 0\n  process_min_avail = 2\n"
        } else {
            ""
        };
        let d = site.dir.display();
        let text = format!(
            "# Written by the apoptools benchmark (benches/pop3.rs).\n\
             instance_name = apoptools-bench-{pid}\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             protocols = pop3\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain apop\n\
             passdb {{\n  driver = passwd-file\n  args = {pw}\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {pw}\n}}\n\
             mail_location = maildir:~/Maildir\n\
             pop3_lock_session = yes\n\
             first_valid_uid = {uid}\n\
             mail_max_userip_connections = 100\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {port}\n  }}\n{fast}}}\n",
            pid = std::process::id(),
            pw = passwd.display(),
        );
        data::write_file(&conf, text.as_bytes(), 0o644)?;
        site.server = Some(Server::dovecot(
            dovecot,
            &conf,
            port,
            &site.dir.join("dovecot.stderr"),
        )?);
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
        let text = format!(
            "# Written by the apoptools benchmark (benches/pop3.rs).\n\
             passwd_file = {}\n\
             disabled_file = {}\n\
             login_chroot = {}\n\
             plaintext = always\n\
             hostname = localhost\n",
            passwd.display(),
            site.dir.join("disabled").display(),
            empty.display()
        );
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
    }
    Ok(())
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
        for (key, apop, clients) in [
            ("b_user_1", false, 1),
            ("b_user_8", false, 8),
            ("b_apop_1", true, 1),
            ("b_apop_8", true, 8),
        ] {
            let r = session_rate(
                server(site),
                &w.small_users[..clients],
                apop,
                Duration::from_secs_f64(w.knobs.seconds),
            )?;
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
        eprintln!("bench:   {}: RETR {mbps:.0} MB/s", stats::SERVERS[col]);
    }
    Ok(())
}

/// What one timed session measured.
struct Session {
    wall: Duration,
    client_cpu: Duration,
    /// (VmHWM, RssAnon) of the serving process just before QUIT.
    rss_kib: Option<(u64, u64)>,
    server_cpu: Option<f64>,
}

/// Peak RSS and CPU of the process serving the session, and how long looking took (to be
/// taken out of the session's times).
fn probe(server: &Server) -> (Option<(u64, u64)>, Option<f64>, Duration, Duration) {
    let (t, c) = (Instant::now(), process_cpu());
    let pid = server.serving_pid();
    let rss = pid.and_then(servers::memory_kib);
    let cpu = pid.and_then(servers::cpu_seconds);
    (rss, cpu, t.elapsed(), process_cpu().saturating_sub(c))
}

/// APOP + STAT + LIST + UIDL + QUIT, timed from connect to the server's close; then checks
/// what came back against the set's manifest.
fn list_session(server: &Server, user: &User, set: &Set) -> Result<Session> {
    let (t0, c0) = (Instant::now(), process_cpu());
    let mut c = Pop3::connect(server.port)?;
    c.login_apop(&user.name, &user.secret)
        .with_context(|| format!("login of {} on {}", user.name, server.label))
        .with_context(|| server.log_tail())?;
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
    let (rss_kib, server_cpu, probe_wall, probe_cpu) = probe(server);
    c.quit()?;
    let wall = t0.elapsed().saturating_sub(probe_wall);
    let client_cpu = process_cpu().saturating_sub(c0).saturating_sub(probe_cpu);

    let want_n = set.entries.len() as u64;
    if n != want_n || octets != set.total_wire() {
        bail!(
            "{}: STAT says {n} {octets}, the Maildir has {want_n} messages of {} octets (CRLF)",
            server.label,
            set.total_wire()
        );
    }
    let mut want: Vec<u64> = set.entries.iter().map(|e| e.wire_size).collect();
    want.sort_unstable();
    sizes.sort_unstable();
    if list_bad > 0 || sizes != want {
        bail!(
            "{}: LIST sizes differ from the files' CRLF sizes ({list_bad} bad lines)",
            server.label
        );
    }
    uids.sort_unstable();
    uids.dedup();
    if uid_bad > 0 || uids.len() as u64 != want_n {
        bail!(
            "{}: UIDL gave {} distinct valid ids for {want_n} messages ({uid_bad} bad)",
            server.label,
            uids.len()
        );
    }
    Ok(Session {
        wall,
        client_cpu,
        rss_kib,
        server_cpu,
    })
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// APOP + STAT + RETR 1 + QUIT; times RETR alone (command sent to last octet checked).
fn retr_session(server: &Server, user: &User, set: &Set, wire: &[u8]) -> Result<Session> {
    let mut c = Pop3::connect(server.port)?;
    c.login_apop(&user.name, &user.secret)
        .with_context(|| format!("login of {} on {}", user.name, server.label))?;
    let (n, octets) = c.stat()?;
    if n != 1 || octets != set.entries[0].wire_size {
        bail!(
            "{}: STAT says {n} {octets}, expected 1 {}",
            server.label,
            set.entries[0].wire_size
        );
    }
    let (t0, c0) = (Instant::now(), process_cpu());
    c.retr_expect(1, wire)
        .with_context(|| format!("RETR from {}", server.label))?;
    let (wall, client_cpu) = (t0.elapsed(), process_cpu().saturating_sub(c0));
    let (rss_kib, server_cpu, _, _) = probe(server);
    c.quit()?;
    Ok(Session {
        wall,
        client_cpu,
        rss_kib,
        server_cpu,
    })
}

struct Rate {
    rate: f64,
    wall: Duration,
    client_cpu: Duration,
    errors: u64,
    first_error: String,
}

/// `users.len()` clients, each on its own mailbox, run connect + login + STAT + QUIT sessions
/// back to back for `duration`; the rate counts sessions that completed without error.
fn session_rate(server: &Server, users: &[User], apop: bool, duration: Duration) -> Result<Rate> {
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let first_error = Mutex::new(String::new());
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(users.len() + 1);
    let port = server.port;
    let one = |u: &User| -> std::io::Result<()> {
        let mut c = Pop3::connect(port)?;
        if apop {
            c.login_apop(&u.name, &u.secret)?;
        } else {
            c.login_user(&u.name, &u.secret)?;
        }
        c.stat()?;
        c.quit()
    };
    let (wall, client_cpu) = std::thread::scope(|s| {
        for u in users {
            let (done, errors, first_error, stop, barrier, one) =
                (&done, &errors, &first_error, &stop, &barrier, &one);
            s.spawn(move || {
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    match one(u) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                *first_error.lock().unwrap() = e.to_string();
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
    if let Some(s) = &w.small {
        h.push_str(&format!(
            "(b) Maildir: {} messages, {:.1} MB, one copy per client.\n",
            s.entries.len(),
            s.total_size() as f64 / 1e6
        ));
    }
    if let Some((s, _)) = &w.single {
        h.push_str(&format!(
            "(c) one message of {} octets ({:.0} MB).\n",
            s.entries[0].size,
            s.entries[0].size as f64 / 1e6
        ));
    }
    if w.knobs.wants('b') {
        h.push_str(&format!(
            "(b) each figure is {} s of back-to-back sessions.\n",
            w.knobs.seconds
        ));
    }
    h
}
