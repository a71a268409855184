//! seccomp: the system calls ipop3d's pre-login front may make once it is confined, as
//! OpenSSH's pre-auth sandbox does: an allow-list, one reason per call. Anything unlisted kills
//! the front (the back logs `killed by SIGSYS` and ends the connection); a file open is refused
//! with EACCES instead, so nothing can even probe the chroot. The filter is built by the
//! `seccompiler` crate for this build's architecture and installed after no-new-privs.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::error::{Error, Result};

/// Every system call the front makes after [`super::sandbox::confine`], and why.
const ALLOWED: &[(i64, &str)] = &[
    (
        nix::libc::SYS_read,
        "client bytes (one line at a time) and verdicts from the back",
    ),
    (
        nix::libc::SYS_recvfrom,
        "peeking at the client's next line (MSG_PEEK); verdicts",
    ),
    (nix::libc::SYS_write, "replies to the client"),
    (nix::libc::SYS_sendto, "requests and log lines to the back"),
    #[cfg(target_arch = "x86_64")]
    (
        nix::libc::SYS_poll,
        "the idle timeout and login deadline on standard input",
    ),
    (
        nix::libc::SYS_ppoll,
        "the same, where libc implements poll with ppoll (and on aarch64, which has no poll)",
    ),
    (
        nix::libc::SYS_clock_gettime,
        "the login deadline and the delay (when the vDSO is not used)",
    ),
    (
        nix::libc::SYS_clock_nanosleep,
        "the remainder of a failed login's delay",
    ),
    (nix::libc::SYS_nanosleep, "the same, on older libc"),
    (nix::libc::SYS_mmap, "heap growth for large buffers"),
    (nix::libc::SYS_munmap, "their release"),
    (nix::libc::SYS_mremap, "their growth"),
    (nix::libc::SYS_brk, "the small-object heap"),
    (nix::libc::SYS_madvise, "the allocator returning memory"),
    (
        nix::libc::SYS_fcntl,
        "std checking a descriptor's flags before closing it",
    ),
    (nix::libc::SYS_close, "closing the pipe at the end"),
    (
        nix::libc::SYS_getrandom,
        "TLS handshake secrets and nonces (ring reads the kernel's generator)",
    ),
    (
        nix::libc::SYS_shutdown,
        "the TLS relay passing on the client's end of input to the back",
    ),
    (
        nix::libc::SYS_rt_sigreturn,
        "returning from a signal handler",
    ),
    (nix::libc::SYS_exit, "the end"),
    (nix::libc::SYS_exit_group, "the end"),
];

/// File opens: refused with EACCES rather than fatal.
const REFUSED: &[(i64, &str)] = &[
    (
        nix::libc::SYS_openat,
        "no file may be opened, and probing is harmless",
    ),
    #[cfg(target_arch = "x86_64")]
    (nix::libc::SYS_open, "the same, for the old call"),
];

fn arch() -> Result<TargetArch> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| Error::NotPermitted("no seccomp filter for this architecture".into()))
}

fn filter(
    calls: &[(i64, &str)],
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        calls.iter().map(|&(nr, _)| (nr, Vec::new())).collect();
    let bad = |e: seccompiler::BackendError| {
        Error::NotPermitted(format!("cannot build the seccomp filter: {e}"))
    };
    SeccompFilter::new(rules, mismatch, matched, arch()?)
        .map_err(bad)?
        .try_into()
        .map_err(bad)
}

/// Installs the front's filters (the process must already have no-new-privs). Of two filters
/// the kernel applies the stricter verdict: the allow-list kills on anything unlisted, and the
/// second turns a file open into EACCES.
pub fn install_front_filter() -> Result<()> {
    let mut allowed = ALLOWED.to_vec();
    allowed.extend_from_slice(REFUSED);
    let allow_list = filter(&allowed, SeccompAction::KillProcess, SeccompAction::Allow)?;
    let opens = filter(
        REFUSED,
        SeccompAction::Allow,
        SeccompAction::Errno(nix::libc::EACCES as u32),
    )?;
    // The allow-list goes last: installing a filter takes prctl and seccomp, which it forbids.
    for program in [&opens, &allow_list] {
        seccompiler::apply_filter(program)
            .map_err(|e| Error::NotPermitted(format!("cannot install the seccomp filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    const CHILD: &str = "APOPTOOLS_SECCOMP_TEST_CHILD";

    /// In a process of its own (this test binary again, running only
    /// [`filtered_process`]): after the filter, a file open fails with EACCES and an unlisted
    /// call (getpid) kills the process with SIGSYS.
    #[test]
    fn opens_are_refused_and_anything_unlisted_kills() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "system::seccomp::tests::filtered_process",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("open: EACCES"), "{stdout}");
        assert_eq!(out.status.signal(), Some(nix::libc::SIGSYS), "{stdout}");
        assert!(!stdout.contains("getpid returned"), "{stdout}");
    }

    #[test]
    fn filtered_process() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        nix::sys::prctl::set_no_new_privs().unwrap();
        super::install_front_filter().unwrap();
        let open = std::fs::File::open("/etc/hostname");
        let mut out = std::io::stdout();
        let errno = open.err().and_then(|e| e.raw_os_error());
        let _ = writeln!(
            out,
            "open: {}",
            if errno == Some(nix::libc::EACCES) {
                "EACCES"
            } else {
                "allowed?"
            }
        );
        let _ = out.flush();
        let pid = nix::unistd::getpid();
        let _ = writeln!(out, "getpid returned {pid}");
    }
}
