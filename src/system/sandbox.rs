//! sandbox: what confines the pre-login front of ipop3d's privilege split.
//!
//! Guarantees:
//! - [`check_chroot`] accepts only an empty directory owned by root and writable by no one
//!   else, checked on the opened handle: the front's root can hold nothing to read or plant.
//! - [`confine`] puts the calling process in that directory (chroot, chdir), gives it the login
//!   user's uid and gid with no supplementary groups (verified, and setuid(0) must fail), sets
//!   no-new-privs and RLIMIT_NPROC, RLIMIT_FSIZE and RLIMIT_CORE to 0 and RLIMIT_NOFILE small.
//!   Last, on Linux, the system-call allow-list of [`super::seccomp`]. The process is already
//!   non-dumpable ([`super::process::forbid_core_dumps`]). Only a
//!   process that went through all of it holds a [`Confined`] token; any failure is an error
//!   and the caller must end the process.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{self, Gid, Uid};

use crate::error::{Error, Result, Unsafe};

/// The file descriptors the front may have open at once (its stdio, the pipe to the back,
/// and room for poll).
const FRONT_NOFILE: u64 = 16;

/// Proof that the process is confined (see the module comment); only [`confine`] makes one.
#[derive(Debug)]
pub struct Confined(());

/// The login user's ids, resolved before the chroot hides the account database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginUser {
    pub uid: u32,
    pub gid: u32,
}

impl LoginUser {
    /// Looks up `name` (never root, never gid 0).
    pub fn lookup(name: &str) -> Result<LoginUser> {
        let user = unistd::User::from_name(name)
            .map_err(|e| Error::io("getpwnam", e.into()))?
            .ok_or_else(|| Error::UnknownUser(name.to_string()))?;
        if user.uid.is_root() || user.gid.as_raw() == 0 {
            return Err(Error::NotPermitted(format!(
                "the login user {name} must not be root or in group 0"
            )));
        }
        Ok(LoginUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

/// Refuses a chroot directory that is not empty, not a directory, not owned by root, or
/// writable by group or others.
pub fn check_chroot(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    let meta = handle.metadata().map_err(|e| Error::io(dir, e))?;
    let refuse = |why| Error::Unsafe {
        path: dir.to_path_buf(),
        why,
    };
    if !meta.is_dir() {
        return Err(refuse(Unsafe::NotRegular("file, not a directory")));
    }
    if meta.uid() != 0 {
        return Err(refuse(Unsafe::Owner {
            found: meta.uid(),
            expected: 0,
        }));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(Unsafe::Writable(meta.mode() & 0o7777)));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_some() {
        return Err(refuse(Unsafe::Malformed("the login chroot is not empty")));
    }
    Ok(())
}

/// Confines the calling process (see the module comment). Call as root, after every lookup the
/// chroot would hide.
pub fn confine(dir: &Path, user: LoginUser) -> Result<Confined> {
    let sys = |what: &'static str| move |e: nix::errno::Errno| Error::io(what, e.into());
    unistd::chroot(dir).map_err(sys("chroot"))?;
    unistd::chdir("/").map_err(sys("chdir"))?;
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    unistd::setgroups(&[]).map_err(sys("setgroups"))?;
    unistd::setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    unistd::setresuid(uid, uid, uid).map_err(sys("setresuid"))?;
    let u = unistd::getresuid().map_err(sys("getresuid"))?;
    let g = unistd::getresgid().map_err(sys("getresgid"))?;
    let groups = unistd::getgroups().map_err(sys("getgroups"))?;
    if [u.real, u.effective, u.saved] != [uid; 3]
        || [g.real, g.effective, g.saved] != [gid; 3]
        || !groups.is_empty()
    {
        return Err(Error::NotPermitted(
            "the login process's identity did not change as asked".into(),
        ));
    }
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::NotPermitted(
            "root could be regained in the login process".into(),
        ));
    }
    nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    for (resource, limit) in [
        (Resource::RLIMIT_NPROC, 0),
        (Resource::RLIMIT_FSIZE, 0),
        (Resource::RLIMIT_CORE, 0),
        (Resource::RLIMIT_NOFILE, FRONT_NOFILE),
    ] {
        setrlimit(resource, limit, limit).map_err(sys("setrlimit"))?;
    }
    super::seccomp::install_front_filter()?;
    Ok(Confined(()))
}
