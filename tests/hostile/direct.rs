//! direct: ipop3d run without tcpserver, one session on stdin/stdout pipes, the way inetd or
//! systemd would run it, so a test can SIGKILL it at a chosen instant or trace what it opens.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::harness::{World, IPOP3D};

/// Writes a config for direct runs of `world` (its passwd file and disable list) plus `extra`
/// lines; returns its path.
pub fn config(world: &World, name: &str, extra: &str) -> PathBuf {
    let path = world.path().join(name);
    let text = format!(
        "passwd_file = {}\ndisabled_file = {}\nlogin_chroot = {}\nscram_salt_key = {}\n{extra}",
        world.path().join("passwd").display(),
        world.disabled_path().display(),
        world.login_chroot().display(),
        world.scram_salt_key().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Direct {
    pub child: Child,
    stdin: Option<ChildStdin>,
    reader: BufReader<ChildStdout>,
    pub greeting: String,
}

impl Direct {
    /// Starts `ipop3d --config CONFIG` with an empty environment but PATH and `INTRANET=1`,
    /// stderr discarded, optionally under `wrapper` (such as strace and its options).
    pub fn start(config: &Path, wrapper: &[&str]) -> Direct {
        Direct::start_logged(config, wrapper, None)
    }

    /// [`Direct::start`] with ipop3d's stderr (its log) written to `log` when given.
    pub fn start_logged(config: &Path, wrapper: &[&str], log: Option<&Path>) -> Direct {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(IPOP3D);
                c
            }
            None => Command::new(IPOP3D),
        };
        cmd.arg("--config")
            .arg(config)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("INTRANET", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::null(),
            });
        Direct::from_command(cmd)
    }

    /// Starts `cmd` (an ipop3d command line with stdin and stdout piped) and reads the greeting.
    pub fn from_command(mut cmd: Command) -> Direct {
        let mut child = cmd.spawn().expect("spawn ipop3d");
        let stdin = child.stdin.take();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let mut d = Direct {
            child,
            stdin,
            reader,
            greeting: String::new(),
        };
        d.greeting = d.line().expect("a greeting");
        assert!(d.greeting.starts_with("+OK"), "{:?}", d.greeting);
        d
    }

    pub fn timestamp(&self) -> &str {
        let start = self.greeting.find('<').expect("timestamp");
        let end = self.greeting[start..].find('>').expect("timestamp end") + start;
        &self.greeting[start..=end]
    }

    pub fn apop_line(&self, user: &str, secret: &str) -> String {
        let digest =
            apoptools::testing::apop::digest(self.timestamp().as_bytes(), secret.as_bytes());
        format!(
            "APOP {user} {}",
            String::from_utf8(digest.to_vec()).unwrap()
        )
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let _ = stdin.write_all(bytes);
        let _ = stdin.flush();
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// The next line without CRLF, lossily decoded; `None` at end of output.
    pub fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                assert!(line.ends_with(b"\r\n"), "no CRLF: {line:?}");
                line.truncate(line.len() - 2);
                Some(String::from_utf8_lossy(&line).into_owned())
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line().expect("ipop3d closed its output")
    }

    pub fn ok(&mut self, line: &str) -> String {
        let r = self.cmd(line);
        assert!(r.starts_with("+OK"), "{line:?} got {r:?}");
        r
    }

    /// The lines of a multi-line reply, through the terminator (not included).
    pub fn multiline(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().expect("closed inside a multi-line reply");
            if l == "." {
                return out;
            }
            out.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
        }
    }

    /// Everything left on its output.
    pub fn rest(&mut self) -> String {
        let mut s = Vec::new();
        let _ = self.reader.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    }

    /// Closes stdin (the client has nothing more to say) and returns everything left on the
    /// output.
    pub fn close_and_read_rest(&mut self) -> String {
        drop(self.stdin.take());
        self.rest()
    }

    /// Closes stdin and waits for the process.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let _ = self.rest();
        self.child.wait().unwrap()
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
