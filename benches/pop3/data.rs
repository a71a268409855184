//! data: deterministic Maildirs for the benchmark, generated once and reused.
//!
//! A data set is a pristine Maildir under the data directory, named after its kind, its size,
//! the seed and [`FORMAT`]; a `manifest` (one `name size wire_size` line per message) is written
//! last, so a set with a manifest is complete and is reused by later runs. Every byte comes from
//! [`Rng`] (SplitMix64) seeded with the set's seed: the same seed gives the same files on every
//! machine. Messages have LF line ends, no CR, and end with LF, so the bytes a POP3 server sends
//! for one (LF -> CRLF) are `size + number of LFs` (the `wire_size`), before dot-stuffing.
//!
//! Servers rename files and write index files into the Maildir, so a run never serves the
//! pristine set: [`install`] builds a fresh Maildir for an account whose files are hard links to
//! the pristine ones (rename-safe, and neither server writes into a message file) or, with
//! `BENCH_COPY=1`, full copies.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Bumped whenever the generator changes, so stale sets are not reused.
pub const FORMAT: u32 = 1;

/// SplitMix64: small, fast, and good enough to make realistic-looking mail.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in [lo, hi): many small values, a few large ones.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One message of a set, as the manifest lists it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// Octets after LF -> CRLF: what LIST and STAT must report.
    pub wire_size: u64,
}

/// A complete pristine Maildir.
pub struct Set {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

impl Set {
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
    pub fn total_wire(&self) -> u64 {
        self.entries.iter().map(|e| e.wire_size).sum()
    }
    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join("cur").join(&entry.name)
    }
}

/// What a set holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `count` messages of realistic sizes (see [`realistic_size`]).
    Mixed { count: usize },
    /// One message of exactly `bytes` octets, mostly a base64 attachment.
    Single { bytes: usize },
}

impl Kind {
    fn label(&self) -> String {
        match self {
            Kind::Mixed { count } => format!("mixed-{count}"),
            Kind::Single { bytes } => format!("single-{bytes}"),
        }
    }
}

/// The pristine set of `kind` under `data_dir`, generated unless a complete one is there.
/// Files are chowned to `owner` (uid, gid), mode 0600, so hard links to them are the account's.
pub fn ensure(data_dir: &Path, kind: Kind, seed: u64, owner: (u32, u32)) -> Result<Set> {
    let dir = data_dir.join(format!("{}-seed{seed}-v{FORMAT}", kind.label()));
    let manifest = dir.join("manifest");
    if manifest.exists() {
        let entries = read_manifest(&manifest)?;
        let set = Set { dir, entries };
        chown_set(&set, owner)?;
        return Ok(set);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing partial {}", dir.display()))?;
    }
    let started = std::time::Instant::now();
    eprintln!("bench: generating {} ...", dir.display());
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let mut rng = Rng::new(seed ^ kind_salt(kind));
    let mut entries = Vec::new();
    let mut time: u64 = 1_790_000_000;
    let count = match kind {
        Kind::Mixed { count } => count,
        Kind::Single { .. } => 1,
    };
    for q in 0..count {
        time += 1 + rng.below(60);
        let name = format!(
            "{time}.M{}P{}Q{}.bench:2,",
            rng.below(1_000_000),
            1000 + rng.below(59_000),
            q + 1
        );
        let body = match kind {
            Kind::Mixed { .. } => {
                let target = realistic_size(&mut rng);
                message(&mut rng, q, time, target)
            }
            Kind::Single { bytes } => {
                let mut m = message(&mut rng, q, time, bytes);
                fit_exactly(&mut m, bytes);
                m
            }
        };
        let path = dir.join("cur").join(&name);
        fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        let lfs = body.iter().filter(|&&b| b == b'\n').count() as u64;
        entries.push(Entry {
            name,
            size: body.len() as u64,
            wire_size: body.len() as u64 + lfs,
        });
    }
    let set = Set {
        dir: dir.clone(),
        entries,
    };
    chown_set(&set, owner)?;
    let mut text = String::new();
    for e in &set.entries {
        text.push_str(&format!("{} {} {}\n", e.name, e.size, e.wire_size));
    }
    let tmp = dir.join("manifest.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &manifest)?;
    eprintln!(
        "bench: generated {} messages, {:.1} MB, in {:.1} s",
        set.entries.len(),
        set.total_size() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(set)
}

fn kind_salt(kind: Kind) -> u64 {
    match kind {
        Kind::Mixed { count } => 0x6d69_7865_6400_0000 ^ count as u64,
        Kind::Single { bytes } => 0x7369_6e67_6c65_0000 ^ bytes as u64,
    }
}

fn read_manifest(path: &Path) -> Result<Vec<Entry>> {
    let text = fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 3 {
            bail!("{}: bad line {line:?}", path.display());
        }
        out.push(Entry {
            name: f[0].to_string(),
            size: f[1].parse()?,
            wire_size: f[2].parse()?,
        });
    }
    Ok(out)
}

fn chown_set(set: &Set, (uid, gid): (u32, u32)) -> Result<()> {
    let Some(first) = set.entries.first() else {
        return Ok(());
    };
    let meta = fs::metadata(set.path_of(first))?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    for e in &set.entries {
        std::os::unix::fs::chown(set.path_of(e), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// A message size in octets: 93 % log-uniform 1-10 KB, 6.5 % 10-60 KB, 0.5 % 60-200 KB.
/// Mean about 6 KB, so 100,000 messages are about 0.6 GB.
pub fn realistic_size(rng: &mut Rng) -> usize {
    let p = rng.unit();
    let kb = if p < 0.93 {
        rng.log_uniform(1.0, 10.0)
    } else if p < 0.995 {
        rng.log_uniform(10.0, 60.0)
    } else {
        rng.log_uniform(60.0, 200.0)
    };
    (kb * 1024.0) as usize
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "meeting",
    "server",
    "mailbox",
    "report",
    "schedule",
    "invoice",
    "attached",
    "please",
    "thanks",
    "regards",
    "tomorrow",
    "project",
    "release",
    "build",
    "deadline",
    "budget",
    "review",
    "minutes",
    "quarterly",
    "update",
    "customer",
    "delivery",
    "network",
    "password",
    "account",
    "office",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter",
];
const DAYS: &[&str] = &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Lines that start with a dot, which a server must dot-stuff (the lone "." above all).
const DOT_LINES: &[&str] = &[
    ".",
    "..",
    "...",
    ". -- indented with a dot",
    ".signature follows",
    "..double dot",
    ".\t.",
];

fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}

/// A plausible message (qmail-delivered headers, text body, a base64 attachment when large) of
/// about `target` octets, LF line ends, ending with LF.
pub fn message(rng: &mut Rng, q: usize, time: u64, target: usize) -> Vec<u8> {
    let from = rng.pick(NAMES).to_string();
    let mut m = String::with_capacity(target + 1024);
    m.push_str(&format!("Return-Path: <{from}@example.org>\n"));
    m.push_str("Delivered-To: bench@example.net\n");
    m.push_str(&format!(
        "Received: (qmail {} invoked from network); {time}\n",
        rng.below(99_999)
    ));
    m.push_str(&format!(
        "Received: from mx{}.example.org (HELO mx.example.org) (192.0.2.{})\n  by mail.example.net with SMTP; {time}\n",
        rng.below(9),
        rng.below(254) + 1
    ));
    m.push_str(&format!("From: {from} <{from}@example.org>\n"));
    m.push_str("To: bench@example.net\n");
    let nwords = 2 + rng.below(7) as usize;
    m.push_str(&format!("Subject: {}\n", words(rng, nwords)));
    m.push_str(&format!(
        "Date: {}, {} Nov 2026 {:02}:{:02}:{:02} +0000\n",
        rng.pick(DAYS),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    ));
    m.push_str(&format!(
        "Message-ID: <{time}.{q}.{}@example.org>\n",
        rng.below(1 << 40)
    ));
    m.push_str("MIME-Version: 1.0\n");
    // Huge messages are always mostly attachment; large ones usually.
    let attach = target > 16 * 1024 && (target > 1 << 24 || rng.unit() < 0.7);
    let text_target = if attach { 1024 + target / 20 } else { target };
    if attach {
        m.push_str("Content-Type: multipart/mixed; boundary=\"=_bench_boundary\"\n\n");
        m.push_str("--=_bench_boundary\nContent-Type: text/plain; charset=us-ascii\n\n");
    } else {
        m.push_str("Content-Type: text/plain; charset=us-ascii\n\n");
    }
    while m.len() < text_target {
        if rng.below(30) == 0 {
            m.push_str(rng.pick(DOT_LINES));
        } else if rng.below(12) == 0 {
            // paragraph break
        } else {
            let n = 6 + rng.below(8) as usize;
            m.push_str(&words(rng, n));
        }
        m.push('\n');
    }
    if attach {
        m.push_str("\n--=_bench_boundary\nContent-Type: application/octet-stream\n");
        m.push_str("Content-Transfer-Encoding: base64\n");
        m.push_str("Content-Disposition: attachment; filename=\"report.bin\"\n\n");
        let mut line = String::with_capacity(80);
        while m.len() + 40 < target {
            line.clear();
            for _ in 0..19 {
                let v = rng.next_u64();
                for k in 0..4 {
                    line.push(B64[((v >> (6 * k)) & 63) as usize] as char);
                }
            }
            m.push_str(&line);
            m.push('\n');
        }
        m.push_str("--=_bench_boundary--\n");
    }
    m.into_bytes()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Trims or pads (with a text line and dot lines) `m` to exactly `bytes` octets ending in LF.
fn fit_exactly(m: &mut Vec<u8>, bytes: usize) {
    if m.len() > bytes {
        m.truncate(bytes - 1);
        m.push(b'\n');
        return;
    }
    while m.len() < bytes {
        let room = bytes - m.len();
        if room >= 3 && m.len().is_multiple_of(7) {
            m.extend_from_slice(b".\n");
        } else {
            let take = room.min(72);
            m.extend(std::iter::repeat_n(b'x', take - 1));
            m.push(b'\n');
        }
    }
}

/// Bytes a correct server sends after `+OK` for RETR of a message with these file bytes:
/// LF -> CRLF, dot-stuffed, then the `.` terminator line.
pub fn wire_form(file: &[u8]) -> Vec<u8> {
    let lfs = file.iter().filter(|&&b| b == b'\n').count();
    let mut out = Vec::with_capacity(file.len() + lfs + lfs / 8 + 8);
    let mut at_line_start = true;
    for &b in file {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// How [`install`] fills a Maildir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    HardLink,
    Copy,
}

/// Where [`install`] puts the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// cur/, named `<unique>:2,` (seen by a mail client before).
    Cur,
    /// new/, named `<unique>` (just delivered by qmail).
    New,
}

/// Builds `home/Maildir` (cur, new, tmp) owned by `owner` holding `set`'s messages in cur/ or
/// new/, replacing whatever was there.
pub fn install(set: &Set, home: &Path, owner: (u32, u32), fill: Fill, place: Place) -> Result<()> {
    let md = home.join("Maildir");
    if md.exists() {
        fs::remove_dir_all(&md).with_context(|| format!("removing {}", md.display()))?;
    }
    for sub in ["", "cur", "new", "tmp"] {
        let d = md.join(sub);
        fs::create_dir_all(&d)?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700))?;
        std::os::unix::fs::chown(&d, Some(owner.0), Some(owner.1))?;
    }
    let cur = md.join("cur");
    let new = md.join("new");
    for e in &set.entries {
        let from = set.path_of(e);
        let to = match place {
            Place::Cur => cur.join(&e.name),
            Place::New => new.join(e.name.strip_suffix(":2,").unwrap_or(&e.name)),
        };
        match fill {
            Fill::HardLink => fs::hard_link(&from, &to)
                .with_context(|| format!("linking {} to {}", from.display(), to.display()))?,
            Fill::Copy => {
                fs::copy(&from, &to)?;
                std::os::unix::fs::chown(&to, Some(owner.0), Some(owner.1))?;
            }
        }
    }
    Ok(())
}

/// Creates `dir` (and parents) with mode 0755.
pub fn mkdir_public(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Writes `bytes` to `path` with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}
