//! process: core dumps, signal dispositions and worker processes, as safe functions.
//!
//! - [`forbid_core_dumps`] makes the process non-dumpable with RLIMIT_CORE 0: no secret it
//!   holds can reach a core file.
//! - [`with_sigint_ignored`] runs a closure with SIGINT ignored and puts the previous
//!   disposition back afterwards, whatever the closure returns.
//! - [`fork_worker`] runs a closure in a child process that leaves with `_exit` (no atexit
//!   handlers, no flush of stdio buffers inherited from the parent); the closure's `bool` is
//!   the child's exit status (true: 0, false: 1). Callers must be single-threaded when they
//!   fork (see its documentation).

use nix::sys::signal::{signal, SigHandler, Signal};

/// No core dump and no memory readable through /proc or ptrace by the account: RLIMIT_CORE 0
/// (soft and hard, so it cannot be raised again) and not dumpable. Every tool calls this
/// before it reads a secret; a failure stops the tool.
pub fn forbid_core_dumps() -> nix::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    nix::sys::prctl::set_dumpable(false)
}
use nix::unistd::{fork, ForkResult, Pid};

/// Runs `f` with SIGINT ignored, then restores the disposition that was in effect before.
pub fn with_sigint_ignored<T>(f: impl FnOnce() -> T) -> nix::Result<T> {
    // SAFETY: SigIgn installs no handler code, so no signal-safety rules apply to it.
    let previous = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }?;
    let result = f();
    // SAFETY: this puts back the disposition that was in effect before the call above; it was
    // already installed for this process, so installing it again adds no new handler code.
    let _ = unsafe { signal(Signal::SIGINT, previous) };
    Ok(result)
}

/// Forks. The child drops `parent_keeps`, runs `work` and leaves with `_exit(0)` when it
/// returns true, `_exit(1)` otherwise; the parent gets the child's pid and `parent_keeps`.
///
/// Call it only while the process has a single thread (apoppasswd's batch forks its writers
/// before it starts any thread): a child forked from a threaded process may inherit a lock
/// held by a thread that does not exist in the child.
pub fn fork_worker<K>(parent_keeps: K, work: impl FnOnce() -> bool) -> nix::Result<(Pid, K)> {
    // SAFETY: the only caller forks while single-threaded (see above), so the child inherits
    // no lock held by another thread; the child runs `work` and leaves with `_exit`, never
    // returning into the caller's code.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(parent_keeps);
            let ok = work();
            // SAFETY: `_exit` ends the child at once without running atexit handlers or
            // flushing stdio buffers inherited from the parent; nothing in the child needs
            // either, and the parent stays responsible for its own buffers.
            unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => Ok((child, parent_keeps)),
    }
}

/// Takes fd 3, the checkpassword interface's request (checkapop), if it is open: at most
/// once per process, so no two owners can close it.
pub fn take_fd3() -> Option<std::os::fd::OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    nix::sys::stat::fstat(3).ok()?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: fd 3 is open (fstat just succeeded), this process never opened it itself (it
    // came from the caller, as the interface says), and the flag above lets only one caller
    // ever own it, so no other OwnedFd or File closes it.
    Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(3) })
}
