//! The interactive prompts, through a real pseudo-terminal that is the child's controlling
//! terminal (rpassword opens /dev/tty). Runs as root (child dropped to a virtual user) and as
//! a non-root runner (its own account in the world).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::termios::{tcgetattr, LocalFlags};

use crate::harness::{wait_deadline, User, World};

const PASSWORD: &str = "correct horse battery";

/// A child whose stdin, stdout, stderr and controlling terminal are a pty's slave side.
pub(crate) struct Terminal {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Terminal {
    /// `apoppasswd args...` run by `user` on a new pty.
    pub(crate) fn spawn(world: &World, user: &User, args: &[&str]) -> Terminal {
        Terminal::spawn_in(world, user, args, None)
    }

    /// [`Terminal::spawn`], optionally allowed unlimited core dumps (`ulimit -c unlimited`) in
    /// the working directory `cores`.
    fn spawn_in(world: &World, user: &User, args: &[&str], cores: Option<&Path>) -> Terminal {
        let pty = nix::pty::openpty(None, None).unwrap();
        if crate::harness::is_root() {
            // The slave is created for the opener; give it to the user who will use it.
            nix::unistd::fchown(
                pty.slave.as_raw_fd(),
                Some(nix::unistd::Uid::from_raw(user.uid)),
                None,
            )
            .unwrap();
        }
        let mut run = world.apoppasswd().args(args).user(user);
        let command = run.command();
        let slave: OwnedFd = pty.slave;
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: runs in the forked child before exec, after std has made fd 0 the pty slave
        // and after the harness's setsid (and any identity drop), which TIOCSCTTY allows: the
        // child leads a new session without a terminal. Only the async-signal-safe ioctl
        // system call is made; nothing is allocated.
        unsafe {
            command.pre_exec(|| {
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(dir) = cores {
            command.current_dir(dir);
            crate::cores::allow_cores(command);
        }
        let child = command.spawn().unwrap();
        // Only the child may hold the slave now, so the master sees EOF (EIO) when it exits.
        drop(run);
        drop(slave);
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().unwrap();
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                // EIO once the last slave descriptor closes: that is the end.
                while let Ok(n @ 1..) = master.read(&mut buf) {
                    output.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Terminal {
            child,
            master,
            output,
            reader,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `prompt` has appeared `nth` times, then until the terminal's echo is off
    /// (rpassword prints the prompt first and then switches echo off: typing before that would
    /// be echoed by the terminal itself, not by the program).
    pub(crate) fn wait_for_prompt(&self, prompt: &str, nth: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.text().matches(prompt).count() < nth {
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} (#{nth}); terminal so far: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        while tcgetattr(&self.master)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ECHO)
        {
            assert!(Instant::now() < deadline, "echo never switched off");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn type_line(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
    }

    /// Waits for the child to exit and the terminal to drain; exit code and everything shown.
    pub(crate) fn finish(self) -> (i32, String) {
        let (status, text, _) = self.finish_status();
        (status.code().expect("exited, not killed"), text)
    }

    /// The child's whole exit status, what it showed, and whether the terminal it left behind
    /// echoes again.
    fn finish_status(mut self) -> (std::process::ExitStatus, String, bool) {
        let status = wait_deadline(&mut self.child);
        self.reader.join().unwrap();
        let text = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        let echo = tcgetattr(&self.master)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ECHO);
        (status, text, echo)
    }
}

#[test]
fn prompts_twice_without_echo_and_sets_the_password() {
    let mut world = World::new();
    let alice = world.me("alice");
    let mut term = Terminal::spawn(&world, &alice, &[]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line(PASSWORD);
    term.wait_for_prompt("Again APOP Password: ", 1);
    term.type_line(PASSWORD);
    let (status, shown, echo) = term.finish_status();
    assert_eq!(status.code(), Some(0), "terminal showed: {shown:?}");
    assert!(echo, "the terminal was left without echo");
    assert!(
        shown.contains("Updated APOP password successfully."),
        "{shown:?}"
    );
    assert!(
        !shown.contains("correct"),
        "the password was echoed: {shown:?}"
    );
    let enter = shown.find("Enter APOP Password: ").unwrap();
    let again = shown.find("Again APOP Password: ").unwrap();
    assert!(enter < again, "{shown:?}");
    assert!(world.verifies("alice", PASSWORD));
    assert!(!world.verifies("alice", "correct horse battery staple"));
}

#[test]
fn mismatch_changes_nothing() {
    let mut world = World::new();
    let alice = world.me("alice");
    world
        .apoppasswd()
        .args(["--stdin"])
        .stdin("the old password\n")
        .user(&alice)
        .run()
        .success();
    let before = std::fs::read(alice.apop()).unwrap();
    let mut term = Terminal::spawn(&world, &alice, &["alice"]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line(PASSWORD);
    term.wait_for_prompt("Again APOP Password: ", 1);
    term.type_line("something else entirely");
    let (code, shown) = term.finish();
    assert_ne!(code, 0, "{shown:?}");
    assert!(shown.contains("differ"), "{shown:?}");
    assert!(!shown.contains("Updated APOP password"), "{shown:?}");
    assert!(
        !shown.contains("correct") && !shown.contains("something"),
        "{shown:?}"
    );
    assert_eq!(std::fs::read(alice.apop()).unwrap(), before);
    assert!(world.verifies("alice", "the old password"));
}

#[test]
fn check_prompts_on_the_terminal() {
    let mut world = World::new();
    let alice = world.me("alice");
    world
        .apoppasswd()
        .args(["--stdin"])
        .stdin(format!("{PASSWORD}\n"))
        .user(&alice)
        .run()
        .success();
    for (typed, want) in [(PASSWORD, 0), ("correct horse", 1)] {
        let mut term = Terminal::spawn(&world, &alice, &["--check"]);
        term.wait_for_prompt("APOP Password: ", 1);
        term.type_line(typed);
        let (code, shown) = term.finish();
        assert_eq!(code, want, "{shown:?}");
        assert!(!shown.contains("correct"), "{shown:?}");
    }
}

#[test]
fn a_too_short_password_is_refused_after_the_first_prompt() {
    let mut world = World::new();
    let alice = world.me("alice");
    let mut term = Terminal::spawn(&world, &alice, &[]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line("short");
    let (code, shown) = term.finish();
    assert_eq!(code, 7, "{shown:?}");
    assert!(shown.contains("shorter than 8"), "{shown:?}");
    assert!(!shown.contains("Again"), "{shown:?}");
    assert!(!alice.apop().exists());
}

#[test]
fn ctrl_c_at_the_prompt_restores_the_terminal_and_changes_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let mut world = World::new();
    let alice = world.me("alice");
    let mut term = Terminal::spawn(&world, &alice, &[]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.master.write_all(b"half typed\x03").unwrap();
    let (status, shown, echo) = term.finish_status();
    assert_eq!(
        status.signal(),
        Some(nix::libc::SIGINT),
        "{status:?}: {shown:?}"
    );
    assert!(echo, "the terminal was left without echo");
    assert!(!shown.contains("half"), "{shown:?}");
    assert!(!alice.apop().exists());
}

#[test]
fn root_sets_another_users_password_at_its_terminal_root() {
    use std::os::unix::fs::MetadataExt;
    if !crate::harness::need_root("root_sets_another_users_password_at_its_terminal_root") {
        return;
    }
    let mut world = World::new();
    let alice = world.add_user("alice");
    let root = User {
        name: "root".into(),
        uid: 0,
        gid: 0,
        home: world.path().to_path_buf(),
    };
    let mut term = Terminal::spawn(&world, &root, &["--ext", "pop", "alice"]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line(PASSWORD);
    term.wait_for_prompt("Again APOP Password: ", 1);
    term.type_line(PASSWORD);
    let (code, shown) = term.finish();
    assert_eq!(code, 0, "{shown:?}");
    assert!(!shown.contains("correct"), "{shown:?}");
    let file = alice.home.join(".apop-pop");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), alice.uid);
    assert!(world.verifies("alice-pop", PASSWORD));
    assert!(!alice.apop().exists());
}

/// While apoppasswd holds the first password (at the second prompt) it cannot dump core: its
/// RLIMIT_CORE is 0 though the parent allowed unlimited cores, and SIGABRT then leaves no core
/// file in its working directory (the kernel's pattern here is a plain `core`), so no file
/// can ever hold the password.
#[test]
fn a_crash_at_the_prompt_leaves_no_core() {
    let mut world = World::new();
    let alice = world.me("alice");
    let cores = world.path().join("cores");
    std::fs::create_dir(&cores).unwrap();
    std::fs::set_permissions(&cores, crate::harness::perm(0o777)).unwrap();
    let mut term = Terminal::spawn_in(&world, &alice, &[], Some(&cores));
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line(PASSWORD);
    term.wait_for_prompt("Again APOP Password: ", 1);
    let pid = term.child.id();
    assert_eq!(crate::cores::core_limit(pid), ["0", "0"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        // Not SIGSEGV: Rust's runtime catches a SIGSEGV that no fault raised (its stack
        // overflow handler) and the interrupted prompt then ends as Ctrl-C would.
        nix::sys::signal::Signal::SIGABRT,
    )
    .unwrap();
    let (status, _, _) = term.finish_status();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    assert!(!status.core_dumped(), "{status}");
    if let Some(entry) = std::fs::read_dir(&cores).unwrap().next() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let holds = bytes
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes());
        panic!("a core file was written (holding the password: {holds})");
    }
    assert!(!alice.apop().exists());
}
