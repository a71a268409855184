//! A fresh temp world per test: a config file naming a passwd_file and a disabled_file inside a
//! temp dir, accounts with homes in it, and the real binaries run as root or as an account.
//!
//! As root, accounts are virtual users (uid >= 60000, homes chowned to them). As a non-root
//! runner, [`World::me`] is an account with the runner's own uid and a home in the temp dir, so
//! the self-service tests run there too.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

pub const APOPPASSWD: &str = env!("CARGO_BIN_EXE_apoppasswd");
pub const DEAPOP: &str = env!("CARGO_BIN_EXE_deapop");

/// How long any child may run before the test kills it and fails.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);

pub use crate::skip::{is_root, need_root};

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl User {
    pub fn apop(&self) -> PathBuf {
        self.home.join(".apop")
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    bins: crate::bins::BinDir,
    pub config: PathBuf,
    pub disabled: PathBuf,
    passwd: PathBuf,
    extra_config: String,
    users: Vec<User>,
    /// The config names no passwd_file: accounts are the system's (NSS).
    system_accounts: bool,
}

impl World {
    pub fn new() -> World {
        World::with_config("")
    }

    /// A world whose config file also has `extra` lines.
    pub fn with_config(extra: &str) -> World {
        World::configured(extra, false)
    }

    /// A world of the system's own accounts (its config names no passwd_file), whose config
    /// file also has `extra` lines.
    pub fn with_system_accounts(extra: &str) -> World {
        World::configured(extra, true)
    }

    fn configured(extra: &str, system_accounts: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        // Virtual users must be able to traverse it to their homes.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().to_path_buf();
        let world = World {
            config: root.join("apoptools.conf"),
            disabled: root.join("etc/disabled"),
            passwd: root.join("passwd"),
            extra_config: extra.to_string(),
            users: Vec::new(),
            system_accounts,
            dir,
            bins: crate::bins::BinDir::default(),
        };
        world.write_files();
        world
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_files(&self) {
        let passwd: String = self
            .users
            .iter()
            .map(|u| {
                format!(
                    "{}:x:{}:{}::{}:/bin/false\n",
                    u.name,
                    u.uid,
                    u.gid,
                    u.home.display()
                )
            })
            .collect();
        std::fs::write(&self.passwd, passwd).unwrap();
        let passwd_file = if self.system_accounts {
            String::new()
        } else {
            format!("passwd_file = {}\n", self.passwd.display())
        };
        let config = format!(
            "# test world\n{passwd_file}disabled_file = {}\nlock_wait = 20000\n{}",
            self.disabled.display(),
            self.extra_config
        );
        std::fs::write(&self.config, config).unwrap();
        for f in [&self.passwd, &self.config] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    /// Adds an account `name` with `uid`, home `<dir>/home/<name>` owned by it, mode 0755.
    pub fn add_user_with_uid(&mut self, name: &str, uid: u32) -> User {
        let home = self.path().join("home").join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(self.path().join("home"), perm(0o755)).unwrap();
        std::fs::set_permissions(&home, perm(0o755)).unwrap();
        if is_root() {
            nix::unistd::chown(&home, Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid))).unwrap();
        }
        let user = User {
            name: name.to_string(),
            uid,
            gid: uid,
            home,
        };
        self.users.push(user.clone());
        self.write_files();
        user
    }

    /// Adds `name` to the account file as an alias of `user`: the same uid, gid and home.
    pub fn alias(&mut self, user: &User, name: &str) -> User {
        let alias = User {
            name: name.to_string(),
            ..user.clone()
        };
        self.users.push(alias.clone());
        self.write_files();
        alias
    }

    /// Adds a virtual user (root only): uid 60000 + its index.
    pub fn add_user(&mut self, name: &str) -> User {
        assert!(is_root(), "virtual users need root");
        let uid = 60_000 + self.users.len() as u32 + 1;
        self.add_user_with_uid(name, uid)
    }

    /// Adds many virtual users at once (one passwd file write).
    pub fn add_users(&mut self, names: &[String]) -> Vec<User> {
        assert!(is_root(), "virtual users need root");
        let home_root = self.path().join("home");
        std::fs::create_dir_all(&home_root).unwrap();
        std::fs::set_permissions(&home_root, perm(0o755)).unwrap();
        let mut out = Vec::new();
        for name in names {
            let uid = 60_000 + self.users.len() as u32 + 1;
            let home = home_root.join(name);
            std::fs::create_dir(&home).unwrap();
            std::fs::set_permissions(&home, perm(0o755)).unwrap();
            nix::unistd::chown(&home, Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid))).unwrap();
            let user = User {
                name: name.clone(),
                uid,
                gid: uid,
                home,
            };
            self.users.push(user.clone());
            out.push(user);
        }
        self.write_files();
        out
    }

    /// A user the tests can act as: a virtual user as root, the runner itself otherwise.
    pub fn me(&mut self, name: &str) -> User {
        if is_root() {
            self.add_user(name)
        } else {
            self.add_user_with_uid(name, nix::unistd::getuid().as_raw())
        }
    }

    /// The binary `exe` (such as [`APOPPASSWD`]) at a path every account of this world can
    /// execute.
    pub fn bin(&self, exe: &str) -> PathBuf {
        self.bins.runnable_by_all(exe)
    }

    /// `apoppasswd --config <world> args...`
    pub fn apoppasswd(&self) -> Run {
        Run::new(self.bin(APOPPASSWD)).args(["--config", self.config.to_str().unwrap()])
    }

    /// `deapop --config <world> args...`
    pub fn deapop(&self) -> Run {
        Run::new(self.bin(DEAPOP)).args(["--config", self.config.to_str().unwrap()])
    }

    /// `apoppasswd --stdin args...` run by `user`, with `password` as the line on stdin.
    pub fn set_by(&self, user: &User, args: &[&str], password: &str) -> Output {
        self.apoppasswd()
            .arg("--stdin")
            .args(args)
            .stdin(format!("{password}\n"))
            .user(user)
            .run()
    }

    /// `apoppasswd --check --stdin USER` with `password`: did it match (exit 0)?
    pub fn verifies(&self, user: &str, password: &str) -> bool {
        let out = self
            .apoppasswd()
            .args(["--check", "--stdin", user])
            .stdin(format!("{password}\n"))
            .run();
        match out.code {
            0 => true,
            1 => false,
            other => panic!("--check exited {other}: {}", out.stderr),
        }
    }

    /// Whether `deapop --list --json` shows `user` disabled.
    pub fn is_disabled(&self, user: &str) -> bool {
        let out = self.deapop().args(["--list", "--json"]).run().success();
        let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["user"] == user && r["state"] == "disabled")
    }
}

pub fn perm(mode: u32) -> std::fs::Permissions {
    std::fs::Permissions::from_mode(mode)
}

/// A command to run, as root or as an account, with bytes on stdin.
pub struct Run {
    command: Command,
    stdin: Vec<u8>,
    /// Where the child's stdout goes instead of a pipe the test reads.
    stdout: Option<Stdio>,
}

/// What a finished child did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(self) -> Output {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts the exit status and that stderr contains `text`.
    pub fn fails(self, code: i32, text: &str) -> Output {
        assert_eq!(self.code, code, "exit status: {self:#?}");
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }
}

impl Run {
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> Run {
        let mut command = Command::new(program);
        command.env_clear().env("PATH", "/usr/bin:/bin");
        // SAFETY: runs in the forked child before exec and only makes the async-signal-safe
        // setsid system call. A new session has no controlling terminal, so a tool that opens
        // /dev/tty fails instead of reading the terminal `cargo test` was started from.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        Run {
            command,
            stdin: Vec::new(),
            stdout: None,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Run {
        self.command.args(args);
        self
    }

    pub fn arg(self, arg: &str) -> Run {
        self.args([arg])
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = bytes.into();
        self
    }

    /// Runs the child as `user` (only when that changes anything: as root, another uid).
    pub fn user(mut self, user: &User) -> Run {
        if is_root() && user.uid != 0 {
            become_in_child(&mut self.command, user.uid, user.gid);
        }
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Sends the child's stdout to `to` (such as /dev/full) instead of the test; the output's
    /// `stdout` is then empty.
    pub fn stdout_to(mut self, to: impl Into<Stdio>) -> Run {
        self.stdout = Some(to.into());
        self
    }

    pub fn spawn(mut self) -> Running {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let bytes = std::mem::take(&mut self.stdin);
        // The child may exit without reading (a refusal): a broken pipe here is fine.
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        Running { child, feeder }
    }

    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

pub struct Running {
    child: Child,
    feeder: std::thread::JoinHandle<()>,
}

impl Running {
    /// Waits for the child (killing it and failing past [`CHILD_DEADLINE`]).
    pub fn wait(mut self) -> Output {
        let out = self.child.stdout.take();
        let mut err = self.child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut out) = out {
                out.read_to_end(&mut s).unwrap();
            }
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            err.read_to_end(&mut s).unwrap();
            s
        });
        let status = wait_deadline(&mut self.child);
        self.feeder.join().unwrap();
        Output {
            code: status.code().expect("exited, not killed by a signal"),
            stdout: String::from_utf8_lossy(&reader.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        }
    }
}

/// Waits for `child`, killing it and failing the test past [`CHILD_DEADLINE`] (a hang, such
/// as blocking on a planted FIFO, must fail rather than stall the suite).
pub fn wait_deadline(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not finish in {CHILD_DEADLINE:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes the child drop to `uid`/`gid` with no supplementary groups, before exec.
pub fn become_in_child(command: &mut Command, uid: u32, gid: u32) {
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe setgroups/setresgid/setresuid system calls on values captured by copy;
    // it allocates nothing and touches no lock. Groups and gid go first, while still root.
    unsafe {
        command.pre_exec(move || {
            let gid = Gid::from_raw(gid);
            let uid = Uid::from_raw(uid);
            nix::unistd::setgroups(&[gid])?;
            nix::unistd::setresgid(gid, gid, gid)?;
            nix::unistd::setresuid(uid, uid, uid)?;
            Ok(())
        });
    }
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
