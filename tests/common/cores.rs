//! cores: what the no-core-dump tests share: a child allowed unlimited core dumps, as after
//! `ulimit -c unlimited`, and the core limit a running process has.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Lets the child of `cmd` dump core without limit (before exec).
pub fn allow_cores(cmd: &mut Command) {
    // SAFETY: setrlimit(2) in the forked child before exec is async-signal-safe; the struct
    // lives on the child's stack for the call.
    unsafe {
        cmd.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `Max core file size` of process `pid`, soft and hard, from /proc/PID/limits.
pub fn core_limit(pid: u32) -> [String; 2] {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in {limits}"));
    let mut f = line.split_whitespace().skip(4);
    [f.next().unwrap().to_string(), f.next().unwrap().to_string()]
}
