//! A real system account for one test: made with `useradd -m`, given a known login password
//! with `chpasswd`, and removed with its home (`userdel -r`) when dropped, even when the test
//! fails. The shadow tools lock /etc/passwd and /etc/shadow and give up when another holds
//! the lock, so the tests of one process take turns with them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static ACCOUNT_TOOLS: Mutex<()> = Mutex::new(());
static NEXT_ACCOUNT: AtomicU32 = AtomicU32::new(0);

/// A system account made for one test (see the module comment).
pub struct SystemAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// `Login-NAME-pw`.
    pub login_password: String,
}

/// The path of a shadow-suite program (in /usr/sbin, wherever PATH points).
fn sbin(program: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed (Debian's passwd package)"))
}

/// Runs `program` with `args`, `stdin` written to it and closed; what it printed and how it
/// ended.
pub fn run_with_input(program: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn run_tool(program: &str, args: &[&str], stdin: &str) {
    let out = run_with_input(&sbin(program), args, stdin);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SystemAccount {
    /// A new account `PREFIXpidxN` with a home, a shell and the login password
    /// `Login-NAME-pw`.
    pub fn new(prefix: &str) -> SystemAccount {
        let n = NEXT_ACCOUNT.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}{}x{n}", std::process::id());
        let _turn = ACCOUNT_TOOLS.lock().unwrap_or_else(|e| e.into_inner());
        run_tool("useradd", &["-m", "-s", "/bin/sh", &name], "");
        // From here on the guard removes the account, whatever fails next.
        let mut account = SystemAccount {
            login_password: format!("Login-{name}-pw"),
            name,
            uid: 0,
            gid: 0,
            home: PathBuf::new(),
        };
        let line = format!("{}:{}\n", account.name, account.login_password);
        run_tool("chpasswd", &[], &line);
        let pw = nix::unistd::User::from_name(&account.name)
            .unwrap()
            .expect("the new account");
        account.uid = pw.uid.as_raw();
        account.gid = pw.gid.as_raw();
        account.home = pw.dir;
        assert_ne!(account.uid, 0);
        account
    }
}

impl Drop for SystemAccount {
    fn drop(&mut self) {
        let _turn = ACCOUNT_TOOLS.lock().unwrap_or_else(|e| e.into_inner());
        // Never panics here (a panic while unwinding would abort): report and go on.
        match Command::new(sbin("userdel"))
            .args(["-r", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("userdel -r {}: {other:?}", self.name),
        }
    }
}
