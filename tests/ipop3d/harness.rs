//! harness: a fresh temp world per test and the real `ipop3d` on real 127.0.0.1 sockets.
//!
//! A [`World`] is a temp directory (mode 0755, so virtual users can traverse it) holding a
//! passwd(5)-format account file, the config, an optional disable list and one home per user
//! with `Maildir/{new,cur,tmp}`. As root the users are virtual (uids from 61000, homes chowned
//! to them); as anyone else they all carry the runner's own uid and gid, since a non-root
//! ipop3d serves only its own uid.
//!
//! A [`Server`] listens on 127.0.0.1 and runs one ipop3d per connection with the socket as
//! stdin and stdout and the variables tcpserver would set, in an empty environment as the
//! seed's `env - INTRANET=1 PATH=... tcpserver -vR -c40` does; so every server test runs on a
//! machine without ucspi-tcp. [`World::serve_tcpserver`] runs real tcpserver instead, for the
//! tests of that pairing. Either way the server collects the sessions' stderr and, when
//! dropped, kills every session and fails the test if anything in the log says "panicked".

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use apoptools::testing::accounts::Account;
use apoptools::testing::disable::{DisableList, Mark};
use apoptools::testing::store::{self, Record, ScramKeys, Secret};

use crate::client::Pop;

/// How long anything that should happen "soon" may take before the test fails (generous: the
/// machine is shared and slow; nothing asserts speed).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const IPOP3D: &str = env!("CARGO_BIN_EXE_ipop3d");

pub use crate::skip::{find_program as find_tool, is_root, need_programs, need_root};

/// `world!("test_name", "program"...)`: a fresh [`World`], or return from the test (skipped)
/// when one of the named outside programs is not installed.
macro_rules! world {
    ($test:literal $(, $program:literal)*) => {
        if crate::harness::need_programs(&[$($program),*], $test) {
            crate::harness::World::new()
        } else {
            return;
        }
    };
}

/// Virtual uids handed out to users of all worlds in this test process.
static NEXT_UID: AtomicU32 = AtomicU32::new(61000);

/// A virtual uid no other user of this test process has.
pub fn fresh_uid() -> u32 {
    NEXT_UID.fetch_add(1, Ordering::SeqCst)
}

/// A mail user of a world.
#[derive(Debug, Clone)]
pub struct User {
    pub account: Account,
    /// The secret set with [`World::set_secret`] by [`World::user`].
    pub password: String,
}

impl User {
    pub fn name(&self) -> &str {
        &self.account.name
    }
    pub fn maildir(&self) -> PathBuf {
        self.account.home.join("Maildir")
    }
    /// The path in `cur/` of the message whose file name starts with `unique`.
    pub fn cur_file(&self, unique: &str) -> PathBuf {
        std::fs::read_dir(self.maildir().join("cur"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(unique))
            .unwrap_or_else(|| panic!("{unique} is not in cur/"))
    }
}

pub struct World {
    dir: tempfile::TempDir,
    bins: crate::bins::BinDir,
    users: Vec<User>,
    settings: Vec<(String, String)>,
    delivered: u32,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("ipop3d-test.")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::set_permissions(
            dir.path().join("home"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let mut world = World {
            dir,
            bins: crate::bins::BinDir::default(),
            users: Vec::new(),
            settings: Vec::new(),
            delivered: 0,
        };
        world.set("auth_delay", "50");
        world
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("apoptools.conf")
    }

    pub fn disabled_path(&self) -> PathBuf {
        self.path().join("disabled")
    }

    /// Sets (or replaces) a config key for servers started after this call.
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
    }

    /// Adds a user with a home, an empty Maildir and the password `pw-<name>-secret`.
    pub fn user(&mut self, name: &str) -> User {
        let (uid, gid) = if is_root() {
            let uid = fresh_uid();
            (uid, uid)
        } else {
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        };
        self.user_with_ids(name, uid, gid)
    }

    /// Adds a user with the given ids (root only, unless they are the runner's own).
    pub fn user_with_ids(&mut self, name: &str, uid: u32, gid: u32) -> User {
        let home = self.path().join("home").join(name);
        let account = Account {
            name: name.to_string(),
            uid,
            gid,
            home: home.clone(),
        };
        self.mkdir_as(&account, &home, 0o700);
        for sub in ["", "/new", "/cur", "/tmp"] {
            self.mkdir_as(&account, &home.join(format!("Maildir{sub}")), 0o700);
        }
        let user = User {
            account,
            password: format!("pw-{name}-secret"),
        };
        self.users.push(user.clone());
        self.write_passwd();
        self.set_secret(&user, None, &user.password);
        user
    }

    /// Adds `name` to the account file as an alias of `user`: the same uid, gid and home.
    pub fn alias(&mut self, user: &User, name: &str) -> User {
        let mut alias = user.clone();
        alias.account.name = name.to_string();
        self.users.push(alias.clone());
        self.write_passwd();
        alias
    }

    fn write_passwd(&self) {
        let mut text = String::from("# test accounts\n");
        for u in &self.users {
            let a = &u.account;
            text.push_str(&format!(
                "{}:x:{}:{}:Test {}:{}:/usr/sbin/nologin\n",
                a.name,
                a.uid,
                a.gid,
                a.name,
                a.home.display()
            ));
        }
        write_file(&self.path().join("passwd"), text.as_bytes(), 0o644);
    }

    /// Creates `dir` owned by the account.
    pub fn mkdir_as(&self, account: &Account, dir: &Path, mode: u32) {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        chown_to(account, dir);
    }

    /// Writes `bytes` to `path` as a file owned by the account.
    pub fn write_as(&self, account: &Account, path: &Path, bytes: &[u8], mode: u32) {
        write_file(path, bytes, mode);
        chown_to(account, path);
    }

    /// Stores `secret` as the password of `user` (or of its extension `ext`).
    ///
    /// As the account itself this is the library's `store::write`. As root it writes the
    /// library's encoding of the record and chowns it: `store::write` would switch the effective
    /// uid, which on Linux is process-wide, under the feet of the other tests' threads.
    pub fn set_secret(&self, user: &User, ext: Option<&str>, secret: &str) {
        let account = &user.account;
        if nix::unistd::geteuid().as_raw() == account.uid {
            store::write(
                account,
                ext,
                secret.as_bytes(),
                "test",
                Duration::from_secs(10),
            )
            .expect("store::write");
        } else {
            let record = Record {
                secret: Secret::new(secret.as_bytes().to_vec()),
                changed: Some(0),
                by: Some("test".into()),
                // As the library writes it: SCRAM keys too, with a 16-byte salt (fixed per
                // name here, random in the library).
                scram: Some(ScramKeys::derive(
                    secret.as_bytes(),
                    &test_salt(account),
                    4096,
                )),
            };
            self.write_as(
                account,
                &store::path(account, ext),
                &store::encode(&record),
                0o600,
            );
        }
    }

    /// Marks `user` disabled in the world's disable list (through the library's writer).
    pub fn disable(&mut self, user: &User) {
        self.disable_address(user.name());
    }

    /// Marks an address (`user` or `user-EXT`) disabled in the world's disable list.
    pub fn disable_address(&mut self, address: &str) {
        let path = self.disabled_path();
        DisableList::update(&path, Duration::from_secs(10), |list| {
            list.insert(
                address,
                Mark {
                    since: 0,
                    by: "test".into(),
                },
            );
            Ok(())
        })
        .expect("disable list");
    }

    /// Delivers a message into `user`'s Maildir `new/`; returns its unique name. Messages
    /// delivered later have later names and later modification times.
    pub fn deliver(&mut self, user: &User, bytes: &[u8]) -> String {
        let maildir = user.maildir();
        self.deliver_to(user, &maildir, bytes)
    }

    /// Delivers a message into the Maildir at `maildir` (owned by `user`).
    pub fn deliver_to(&mut self, user: &User, maildir: &Path, bytes: &[u8]) -> String {
        self.delivered += 1;
        let n = self.delivered;
        let secs = 1_700_000_000 + u64::from(n);
        let unique = format!("{secs}.M{n}P4242Q{n}.test.example");
        let path = maildir.join("new").join(&unique);
        self.write_as(&user.account, &path, bytes, 0o600);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
        unique
    }

    /// Puts a message file named `name` into `maildir/sub` (as `user`), for names and places
    /// other than a fresh delivery's.
    pub fn place(&self, user: &User, maildir: &Path, sub: &str, name: &str, bytes: &[u8]) {
        self.write_as(&user.account, &maildir.join(sub).join(name), bytes, 0o600);
    }

    /// The empty directory the pre-login front is chrooted into (made when first asked for).
    pub fn login_chroot(&self) -> PathBuf {
        let dir = self.path().join("empty");
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    /// The world's SCRAM salt key file, made (32 fixed bytes, mode 0600) if missing.
    pub fn scram_salt_key(&self) -> PathBuf {
        let key = self.path().join("scram-salt-key");
        if !key.exists() {
            let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            write_file(&key, &bytes, 0o600);
        }
        key
    }

    /// Writes the config file (the servers do it when they start).
    pub fn write_config(&self) {
        let mut text = format!(
            "# written by the ipop3d integration test\npasswd_file = {}\ndisabled_file = {}\n",
            self.path().join("passwd").display(),
            self.disabled_path().display()
        );
        if is_root() && !self.settings.iter().any(|(k, _)| k == "login_chroot") {
            // As root ipop3d splits each connection; its pre-login front needs an empty
            // root-owned directory to be chrooted into.
            text.push_str(&format!(
                "login_chroot = {}\n",
                self.login_chroot().display()
            ));
        }
        if !self.settings.iter().any(|(k, _)| k == "scram_salt_key") {
            // ipop3d would make its SCRAM salt key on first use (in /etc by default): the
            // world has its own, made now, so sessions change nothing in the world.
            let key = self.scram_salt_key();
            text.push_str(&format!("scram_salt_key = {}\n", key.display()));
        }
        for (k, v) in &self.settings {
            text.push_str(&format!("{k} = {v}\n"));
        }
        write_file(&self.config_path(), text.as_bytes(), 0o644);
    }

    /// One of the package's binaries at a path every account of this world can execute
    /// (a copy beside the world when the build directory is private, as in a 0700 home).
    pub fn runnable(&self, exe: &str) -> PathBuf {
        self.bins.runnable_by_all(exe)
    }

    /// The ipop3d binary at a path every account of this world can execute.
    pub fn ipop3d(&self) -> PathBuf {
        self.bins.runnable_by_all(IPOP3D)
    }

    /// Serves ipop3d on 127.0.0.1, one session per connection, with `INTRANET=1` as the
    /// seed's start script sets it.
    pub fn serve(&self) -> Server {
        self.serve_with(&[("INTRANET", "1")], None)
    }

    /// Serves ipop3d with exactly `env` (plus PATH and the TCP variables), optionally as
    /// `run_as` (root only).
    pub fn serve_with(&self, env: &[(&str, &str)], run_as: Option<&Account>) -> Server {
        self.launch(&Launch {
            env,
            run_as,
            local_host: None,
            args: &[],
        })
    }

    /// Serves ipop3d as [`World::serve_with`] says in `launch`.
    pub fn launch(&self, launch: &Launch) -> Server {
        self.launch_program(&self.ipop3d(), launch)
    }

    /// Serves another of the package's programs (apoppassd) the way [`World::launch`] serves
    /// ipop3d: one process per connection, `--config CONFIG`, tcpserver's variables.
    pub fn serve_program(&self, exe: &str, env: &[(&str, &str)]) -> Server {
        let launch = Launch {
            env,
            run_as: None,
            local_host: None,
            args: &[],
        };
        self.launch_program(&self.runnable(exe), &launch)
    }

    fn launch_program(&self, exe: &Path, launch: &Launch) -> Server {
        self.write_config();
        Server::spawn(exe, &self.config_path(), launch)
    }

    /// A throwaway CA and a server certificate for `localhost` and 127.0.0.1 (ECDSA P-256,
    /// made by rcgen), written into the world (the key root-owned, mode 0600) and set as
    /// `tls_cert`/`tls_key`.
    pub fn tls(&mut self) -> TlsFiles {
        let files = TlsFiles::make(self.path());
        self.set("tls_cert", &files.cert.display().to_string());
        self.set("tls_key", &files.key.display().to_string());
        files
    }

    /// Serves ipop3d with `--implicit-tls` (port 995's mode) and `env`.
    pub fn serve_implicit_tls(&self, env: &[(&str, &str)]) -> Server {
        self.launch(&Launch {
            env,
            run_as: None,
            local_host: None,
            args: &["--implicit-tls"],
        })
    }

    /// Starts real tcpserver running ipop3d with `INTRANET=1` and extra tcpserver options
    /// (such as `-l NAME`); the caller has checked that tcpserver is installed.
    pub fn serve_tcpserver(&self, opts: &[&str]) -> Server {
        self.serve_tcpserver_with(&[("INTRANET", "1")], opts)
    }

    /// Real tcpserver with exactly `env` (plus PATH) and extra tcpserver options.
    pub fn serve_tcpserver_with(&self, env: &[(&str, &str)], opts: &[&str]) -> Server {
        self.write_config();
        let launch = Launch {
            env,
            run_as: None,
            local_host: None,
            args: &[],
        };
        Server::tcpserver(&self.ipop3d(), &self.config_path(), &launch, opts)
    }
}

/// The TLS files of a world: the CA's certificate (what clients trust), the server's chain
/// and key, and the key's bytes (DER and PEM) to look for in memory.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl TlsFiles {
    fn make(dir: &Path) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "apoptools test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        let files = TlsFiles {
            ca: dir.join("tls-ca.pem"),
            cert: dir.join("tls-cert.pem"),
            key: dir.join("tls-key.pem"),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        };
        write_file(&files.ca, ca.pem().as_bytes(), 0o644);
        write_file(&files.cert, leaf.pem().as_bytes(), 0o644);
        write_file(&files.key, files.key_pem.as_bytes(), 0o600);
        files
    }
}

/// The 16-byte SCRAM salt of the records the harness writes as root: the account's name,
/// padded with dots.
fn test_salt(account: &Account) -> [u8; 16] {
    let mut salt = [b'.'; 16];
    for (slot, b) in salt.iter_mut().zip(account.name.bytes()) {
        *slot = b;
    }
    salt
}

/// Writes a file (any name bytes) owned by `user`, mode 0600.
pub fn write_as_raw(user: &User, path: &Path, bytes: &[u8]) {
    write_file(path, bytes, 0o600);
    chown_to(&user.account, path);
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    use std::io::Write;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_to(account: &Account, path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// The unique parts of the messages in a Maildir's new/ and cur/: the file name before the
/// `:2,` info and before any Maildir++ `,S=`/`,W=` size field a reader may add.
pub fn uniques(maildir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let base = name.split(':').next().unwrap();
            let end = [",S=", ",W="]
                .iter()
                .filter_map(|f| base.find(f))
                .min()
                .unwrap_or(base.len());
            out.insert(base[..end].to_string());
        }
    }
    out
}

/// LF line ends to CRLF (test messages hold no CR).
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// What RETR must send after its `+OK` line for a message file: CRLF line ends, lines that
/// start with "." doubled, then the terminating ".\r\n".
pub fn retr_wire(file: &[u8]) -> Vec<u8> {
    let body = crlf(file);
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at_line_start = true;
    for &b in &body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The seed's message (2006, qmail), with lines starting with "." added.
pub fn seed_message() -> Vec<u8> {
    // One string per line: a `\` continuation would strip the calendar's leading spaces.
    [
        "Return-Path: <i2006000@itl.koeki-u.ac.jp>",
        "Delivered-To: i2006000@qm200.is.koeki-u.ac.jp",
        "Received: (qmail 9682 invoked by uid 32200); 10 Mar 2006 07:50:43 -0000",
        "Message-ID: <20060310075043.9681.qmail@qm200.is.koeki-u.ac.jp>",
        "From: i2006000@itl.koeki-u.ac.jp",
        "Date: 10 Mar 2006 16:50:43 +0900",
        "To: i2006000@qm200.is.koeki-u.ac.jp",
        "Subject: cal",
        "",
        "      3月 2006",
        "日 月 火 水 木 金 土",
        "          1  2  3  4",
        " 5  6  7  8  9 10 11",
        "12 13 14 15 16 17 18",
        "19 20 21 22 23 24 25",
        "26 27 28 29 30 31",
        ".",
        "..two dots",
        ".one dot",
        "",
        "",
    ]
    .join("\n")
    .into_bytes()
}

/// A small message number `n`, with a dot line.
pub fn small_message(n: u32) -> Vec<u8> {
    format!(
        "From: sender{n}@example.org\nTo: rcpt@example.org\nSubject: message {n}\n\
Message-ID: <m{n}@example.org>\n\nBody of message {n}.\n.\nlast line of {n}\n"
    )
    .into_bytes()
}

/// A message of about `kib` KiB with long lines, some starting with ".".
pub fn large_message(kib: usize) -> Vec<u8> {
    let mut m = b"From: big@example.org\nSubject: large\n\n".to_vec();
    let mut i = 0;
    while m.len() < kib * 1024 {
        let lead = if i % 7 == 0 { "." } else { "" };
        m.extend_from_slice(format!("{lead}{i:06} {}\n", "x".repeat(900)).as_bytes());
        i += 1;
    }
    m
}

/// A running ipop3d listener: the harness's own spawner, or real tcpserver.
pub struct Server {
    pub port: u16,
    launcher: Launcher,
    /// Everything the sessions (and tcpserver) wrote to stderr.
    log: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

enum Launcher {
    Spawner(Spawner),
    Tcpserver(Child),
}

/// How a server is started: the environment each session gets (besides PATH and the TCP
/// variables), the uid it runs as, and for real tcpserver its extra options.
pub struct Launch<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub run_as: Option<&'a Account>,
    /// `TCPLOCALHOST` for the spawner (tcpserver's `-l NAME`).
    pub local_host: Option<&'a str>,
    /// ipop3d's options after `--config CONFIG` (such as `--implicit-tls`).
    pub args: &'a [&'a str],
}

/// What the harness does in place of tcpserver: accepts on 127.0.0.1, and for each connection
/// starts ipop3d with the socket as stdin and stdout, the variables tcpserver sets (`PROTO`,
/// `TCPLOCALIP`, `TCPLOCALPORT`, `TCPREMOTEIP`, `TCPREMOTEPORT`, and `TCPLOCALHOST` when
/// given), at most [`CONCURRENCY`] at a time (tcpserver's `-c40`). Each session runs in a
/// process group of its own, with a stderr pipe of its own; when the session has ended and
/// everything it wrote to stderr is in the log, the log gets `spawner: end PID status S` with
/// the raw wait status, as tcpserver writes it.
struct Spawner {
    acceptor: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    live: Arc<(Mutex<BTreeSet<u32>>, std::sync::Condvar)>,
    reapers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Sessions at once, as the seed's `tcpserver -c40`.
pub const CONCURRENCY: usize = 40;

impl Server {
    /// Starts the harness's spawner for `exe --config CONFIG`.
    fn spawn(exe: &Path, config: &Path, launch: &Launch) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut base = Command::new(exe);
        base.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(launch.env.iter().copied())
            .env("PROTO", "TCP")
            .arg("--config")
            .arg(config)
            .args(launch.args)
            .process_group(0);
        if let Some(host) = launch.local_host {
            base.env("TCPLOCALHOST", host);
        }
        if let Some(account) = launch.run_as {
            // std drops a root parent's supplementary groups (setgroups(0)) before setuid.
            base.uid(account.uid).gid(account.gid);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = Arc::new((Mutex::new(BTreeSet::new()), std::sync::Condvar::new()));
        let reapers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, live, reapers, log) =
                (stop.clone(), live.clone(), reapers.clone(), log.clone());
            std::thread::spawn(move || accept_loop(listener, base, &stop, &live, &reapers, &log))
        };
        Server {
            port,
            launcher: Launcher::Spawner(Spawner {
                acceptor: Some(acceptor),
                stop,
                live,
                reapers,
            }),
            log,
            reader: None,
        }
    }

    /// Starts real tcpserver the seed's way (`tcpserver -vR -c40 ... ipop3d --config F`) with
    /// exactly `launch.env` plus PATH and the extra tcpserver `opts`; the caller has checked that
    /// tcpserver is installed.
    fn tcpserver(exe: &Path, config: &Path, launch: &Launch, opts: &[&str]) -> Server {
        let tcpserver = find_tool("tcpserver").expect("tcpserver is installed");
        let mut cmd = Command::new(tcpserver);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(launch.env.iter().copied())
            .args(["-vR", "-c40"])
            .args(opts)
            .args(["-p", "127.0.0.1", "0"])
            .arg(exe)
            .arg("--config")
            .arg(config)
            .args(launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(account) = launch.run_as {
            cmd.uid(account.uid).gid(account.gid);
        }
        let mut child = cmd.spawn().expect("spawn tcpserver");
        let (log, reader) = collect_log(child.stderr.take().unwrap());
        let mut server = Server {
            port: 0,
            launcher: Launcher::Tcpserver(child),
            log,
            reader: Some(reader),
        };
        let start = Instant::now();
        loop {
            let Launcher::Tcpserver(child) = &mut server.launcher else {
                unreachable!()
            };
            if let Some(status) = child.try_wait().unwrap() {
                panic!("tcpserver exited ({status}):\n{}", server.log());
            }
            let pid = child.id();
            if server.log().contains("status: 0/40") {
                if let Some(port) = listening_port(pid) {
                    server.port = port;
                    return server;
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "tcpserver did not start:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything tcpserver and the ipop3d sessions wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// The prefix of the log line the launcher writes when a session has ended.
    pub fn end_prefix(&self) -> &'static str {
        match self.launcher {
            Launcher::Spawner(_) => "spawner: end ",
            Launcher::Tcpserver(_) => "tcpserver: end ",
        }
    }

    /// Waits until the launcher has logged the end of `n` sessions; returns the log.
    pub fn wait_ends(&self, n: usize) -> String {
        self.wait_log_lines(self.end_prefix(), n)
    }

    /// The raw wait statuses of the ended sessions, in the order they ended ("0", "256"...).
    pub fn end_statuses(&self) -> Vec<String> {
        let prefix = self.end_prefix();
        self.log()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect()
    }

    /// Waits until the log holds at least `n` lines starting with `prefix` (the log is read by
    /// a thread, and a session's end is logged only after it is reaped); returns the log.
    pub fn wait_log_lines(&self, prefix: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.starts_with(prefix)).count() >= n {
                return log;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "fewer than {n} {prefix:?} lines after {PATIENCE:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens a POP3 connection and reads the greeting.
    pub fn connect(&self) -> Pop {
        Pop::connect(self.port)
    }

    /// The pids of the running sessions.
    pub fn sessions(&self) -> Vec<u32> {
        match &self.launcher {
            Launcher::Spawner(s) => s.live.0.lock().unwrap().iter().copied().collect(),
            Launcher::Tcpserver(child) => children_of(child.id()),
        }
    }

    /// Waits until no session is running (every ipop3d has exited).
    pub fn wait_idle(&self) {
        let start = Instant::now();
        while !self.sessions().is_empty() {
            assert!(
                start.elapsed() < PATIENCE,
                "sessions still running after {PATIENCE:?}: {:?}\n{}",
                self.sessions(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A thread that appends every line read from `source` to the returned log.
fn collect_log(
    source: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = append_lines(source, Arc::clone(&log));
    (log, reader)
}

/// A thread that appends every line read from `source` to `log`, until end of file.
fn append_lines(
    source: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(source);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            log.lock().unwrap().extend_from_slice(&line);
            line.clear();
        }
    })
}

fn log_line(log: &Mutex<Vec<u8>>, line: &str) {
    let mut log = log.lock().unwrap();
    log.extend_from_slice(line.as_bytes());
    log.push(b'\n');
}

/// The spawner's accept loop: one ipop3d per connection, until `stop`.
fn accept_loop(
    listener: std::net::TcpListener,
    mut base: Command,
    stop: &std::sync::atomic::AtomicBool,
    live: &Arc<(Mutex<BTreeSet<u32>>, std::sync::Condvar)>,
    reapers: &Mutex<Vec<JoinHandle<()>>>,
    log: &Arc<Mutex<Vec<u8>>>,
) {
    loop {
        {
            // tcpserver -c40: no accept while 40 sessions run.
            let (set, cond) = &**live;
            let mut set = set.lock().unwrap();
            while set.len() >= CONCURRENCY && !stop.load(Ordering::SeqCst) {
                set = cond.wait(set).unwrap();
            }
        }
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, remote)) = accepted else {
            continue;
        };
        let local = stream.local_addr().unwrap();
        let socket = std::os::fd::OwnedFd::from(stream);
        let (stderr_read, stderr) = nix::unistd::pipe().expect("stderr pipe");
        base.env("TCPLOCALIP", local.ip().to_string())
            .env("TCPLOCALPORT", local.port().to_string())
            .env("TCPREMOTEIP", remote.ip().to_string())
            .env("TCPREMOTEPORT", remote.port().to_string())
            .stdin(Stdio::from(socket.try_clone().unwrap()))
            .stdout(Stdio::from(socket))
            .stderr(Stdio::from(stderr));
        let (set, _) = &**live;
        // Hold the set while spawning, so a reaper cannot remove the pid before it is added.
        let mut guard = set.lock().unwrap();
        let mut child = match base.spawn() {
            Ok(child) => child,
            Err(e) => {
                drop(guard);
                log_line(log, &format!("spawner: cannot start ipop3d: {e}"));
                continue;
            }
        };
        // The parent's copies of the socket and the log pipe go with the Command's Stdio.
        base.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = child.id();
        guard.insert(pid);
        drop(guard);
        log_line(log, &format!("spawner: pid {pid} from {}", remote.ip()));
        let lines = append_lines(std::fs::File::from(stderr_read), log.clone());
        let (live, log) = (live.clone(), log.clone());
        let reaper = std::thread::spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let status = child.wait().expect("wait for ipop3d");
            // Its last lines first: the pipe ends when the session (and any process it forked,
            // killed with its process group at the latest) has closed it.
            let _ = lines.join();
            let (set, cond) = &*live;
            log_line(
                &log,
                &format!("spawner: end {pid} status {}", status.into_raw()),
            );
            set.lock().unwrap().remove(&pid);
            cond.notify_all();
        });
        reapers.lock().unwrap().push(reaper);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.launcher {
            Launcher::Tcpserver(child) => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                // tcpserver and its sessions share the process group made at spawn.
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
            }
            Launcher::Spawner(s) => {
                s.stop.store(true, Ordering::SeqCst);
                s.live.1.notify_all();
                // Wake the blocking accept.
                let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
                if let Some(a) = s.acceptor.take() {
                    let _ = a.join();
                }
                for pid in s.live.0.lock().unwrap().iter() {
                    let pgid = nix::unistd::Pid::from_raw(*pid as i32);
                    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                }
                for r in std::mem::take(&mut *s.reapers.lock().unwrap()) {
                    let _ = r.join();
                }
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let log = self.log();
        if !std::thread::panicking() && log.contains("panicked") {
            panic!("ipop3d panicked; its log:\n{log}");
        }
    }
}

/// The pids of the live children of `parent`, found by scanning /proc (works without
/// CONFIG_PROC_CHILDREN).
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        // A zombie has finished its session; tcpserver reaps it.
        if ppid == Some(parent) && state != Some("Z") {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// The TCP port process `pid` listens on, found through its socket inodes and /proc/net/tcp.
fn listening_port(pid: u32) -> Option<u16> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let link = std::fs::read_link(entry.ok()?.path()).ok()?;
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // f[1] local "0100007F:1F90", f[3] state ("0A" = LISTEN), f[9] inode.
        if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
            let port = f[1].rsplit(':').next()?;
            return u16::from_str_radix(port, 16).ok();
        }
    }
    None
}

/// The peak resident set size (`VmHWM:`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// The `Uid:`/`Gid:`/`Groups:` lines of `/proc/<pid>/status`, as numbers.
pub fn proc_ids(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// The `Name:` line of /proc/PID/status, without its name.
pub fn proc_status(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Asserts, from /proc, that `front` is the split's confined front: `nobody` (the default
/// login_user) with no groups, no capabilities, no new privileges, two seccomp filters (the
/// allow-list and the one refusing file opens), its root `w`'s empty login_chroot, and no
/// processes, file writes, cores or spare descriptors.
pub fn assert_front_confined(front: u32, w: &World) {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (n, g) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    assert_eq!(proc_status(front, "Uid:"), format!("{n}\t{n}\t{n}\t{n}"));
    assert_eq!(proc_status(front, "Gid:"), format!("{g}\t{g}\t{g}\t{g}"));
    assert_eq!(proc_status(front, "Groups:"), "");
    assert_eq!(proc_status(front, "CapEff:"), "0000000000000000");
    assert_eq!(proc_status(front, "CapPrm:"), "0000000000000000");
    assert_eq!(proc_status(front, "NoNewPrivs:"), "1");
    assert_eq!(proc_status(front, "Seccomp:"), "2");
    assert_eq!(proc_status(front, "Seccomp_filters:"), "2");
    let root = std::fs::read_link(format!("/proc/{front}/root")).unwrap();
    assert_eq!(root, w.login_chroot());
    let limits = std::fs::read_to_string(format!("/proc/{front}/limits")).unwrap();
    for (limit, want) in [
        ("Max processes", "0"),
        ("Max file size", "0"),
        ("Max core file size", "0"),
        ("Max open files", "16"),
    ] {
        let line = limits.lines().find(|l| l.starts_with(limit)).unwrap();
        let soft = line[limit.len()..].split_whitespace().next().unwrap();
        assert_eq!(soft, want, "{line}");
    }
}
