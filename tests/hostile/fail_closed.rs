//! Fail closed under injected faults (issue #9): a privilege drop that fails ends the
//! connection (never a "wrong password" with a half-changed identity), and no process that
//! holds a secret can leave a core dump.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::small_message;

/// The 1-based index, among the `syscall` lines of an strace log, of the first call that sets
/// all three ids to `id` (the permanent drop to the account; the temporary switches pass -1,
/// and the pre-login front's drop is to another user).
fn drop_call_index(trace: &Path, syscall: &str, id: u32) -> usize {
    let text = std::fs::read_to_string(trace).unwrap();
    // strace -f lines start with the pid, and `inject=...:when=N` counts per process.
    let calls: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let (pid, rest) = l.split_once(' ')?;
            let (_, args) = rest.split_once(&format!("{syscall}("))?;
            Some((pid, args))
        })
        .collect();
    let is_drop = |args: &str| {
        let ids: Vec<&str> = args.split(')').next().unwrap().split(", ").collect();
        ids.len() == 3 && ids.iter().all(|i| *i == id.to_string())
    };
    let at = calls
        .iter()
        .position(|(_, args)| is_drop(args))
        .unwrap_or_else(|| panic!("no permanent {syscall} to {id} in:\n{text}"));
    let pid = calls[at].0;
    calls[..=at].iter().filter(|(p, _)| *p == pid).count()
}

/// setresuid or setresgid failing at the permanent drop (strace's fault injection) ends the
/// connection at once, logged; the client is never told its password was wrong, and no
/// further command is served.
#[test]
fn a_failed_privilege_drop_ends_the_connection_root() {
    let test = "a_failed_privilege_drop_ends_the_connection_root";
    if !crate::need_root(test) || !crate::need_programs(&["strace"], test) {
        return;
    }
    let mut w = crate::harness::World::new();
    let alice = w.user("alice");
    w.deliver(&alice, &small_message(1));
    let config = crate::direct::config(&w, "direct.conf", "auth_delay = 0\n");
    for syscall in ["setresuid", "setresgid"] {
        // A clean run, traced, to find which call is the drop.
        let trace = w.path().join(format!("{syscall}.trace"));
        let trace_arg = trace.to_str().unwrap().to_string();
        let trace_set = format!("trace={syscall}");
        let mut d = crate::direct::Direct::start(
            &config,
            &["strace", "-f", "-qq", "-e", &trace_set, "-o", &trace_arg],
        );
        let line = d.apop_line(alice.name(), &alice.password);
        d.ok(&line);
        d.ok("QUIT");
        assert!(d.finish().success());
        let id = match syscall {
            "setresuid" => alice.account.uid,
            _ => alice.account.gid,
        };
        let n = drop_call_index(&trace, syscall, id);

        let log = w.path().join(format!("{syscall}.log"));
        let inject = format!("inject={syscall}:error=EPERM:when={n}");
        let mut d = crate::direct::Direct::start_logged(
            &config,
            &[
                "strace",
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                &trace_set,
                "-e",
                &inject,
            ],
            Some(&log),
        );
        let line = d.apop_line(alice.name(), &alice.password);
        d.send(&line);
        d.send("STAT");
        let rest = d.close_and_read_rest();
        assert!(!rest.contains("+OK"), "{syscall} failed, yet: {rest:?}");
        assert!(
            !rest.contains("[AUTH]"),
            "a failed drop is no wrong password: {rest:?}"
        );
        let status = d.finish();
        assert!(!status.success(), "{syscall}: {status}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("cannot drop privileges"), "{syscall}: {text}");
        crate::report(&format!(
            "{syscall} failing at call {n}: replies {rest:?}, {status}"
        ));
    }
}

/// A session that has logged in (its store was read, its password held) cannot dump core:
/// RLIMIT_CORE is 0 and SIGABRT leaves no core file, though the parent allowed unlimited cores
/// (`ulimit -c unlimited`) and the kernel writes `core` in the working directory.
#[test]
fn ipop3d_never_dumps_core_root() {
    if !crate::need_root("ipop3d_never_dumps_core_root") {
        return;
    }
    let mut w = crate::harness::World::new();
    let alice = w.user("alice");
    let config = crate::direct::config(&w, "direct.conf", "auth_delay = 0\n");
    let cwd = w.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::set_permissions(&cwd, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut cmd = Command::new(w.ipop3d());
    cmd.arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    crate::cores::allow_cores(&mut cmd);
    let mut d = crate::direct::Direct::from_command(cmd);
    let line = d.apop_line(alice.name(), &alice.password);
    d.ok(&line);
    let pid = d.child.id();
    assert_eq!(crate::cores::core_limit(pid), ["0", "0"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGABRT,
    )
    .unwrap();
    let status = d.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    assert!(!status.core_dumped(), "{status}");
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(left.is_empty(), "core files: {left:?}");
}
