//! privilege: acting as an account, temporarily or for good.
//!
//! No binary is setuid. When root must touch a user's files it does so *as that user*:
//! [`AsAccount`] switches the effective uid, gid and supplementary groups and its `Drop` switches
//! back, so no early return leaves the process as the wrong identity (and if switching back ever
//! fails the process aborts rather than go on with the wrong one). [`drop_permanently`] is the
//! one-way switch ipop3d makes before it touches mail; it verifies that root cannot be regained.
//! A process that is not root may act only as itself.

use std::ffi::CString;

use nix::unistd::{self, Gid, Uid};

use crate::error::{Error, Result};
use crate::system::accounts::Account;

/// While alive, the process's effective identity is the account's (see the module comment).
#[must_use = "the identity switches back when the guard is dropped"]
pub struct AsAccount {
    restore: Option<(Uid, Gid, Vec<Gid>)>,
}

impl AsAccount {
    /// Switches the effective identity to `account`. As root: seteuid/setegid/setgroups. As the
    /// account itself: nothing to do. As anyone else: `NotPermitted`.
    pub fn enter(account: &Account) -> Result<AsAccount> {
        let euid = unistd::geteuid();
        if euid.as_raw() == account.uid {
            return Ok(AsAccount { restore: None });
        }
        if !euid.is_root() {
            return Err(Error::NotPermitted(format!(
                "only root may act for {} (you are uid {euid})",
                account.name
            )));
        }
        let saved = (euid, unistd::getegid(), unistd::getgroups().map_err(sys)?);
        let target_gid = Gid::from_raw(account.gid);
        // Order matters: groups and gid while still root, the uid last.
        let guard = AsAccount {
            restore: Some(saved),
        };
        unistd::setgroups(&[target_gid]).map_err(sys)?;
        unistd::setegid(target_gid).map_err(sys)?;
        unistd::seteuid(Uid::from_raw(account.uid)).map_err(sys)?;
        Ok(guard)
    }
}

impl Drop for AsAccount {
    fn drop(&mut self) {
        if let Some((uid, gid, groups)) = self.restore.take() {
            let ok = unistd::seteuid(uid).is_ok()
                && unistd::setegid(gid).is_ok()
                && unistd::setgroups(&groups).is_ok();
            if !ok {
                // Going on with a half-restored identity would be worse than stopping.
                eprintln!("apoptools: cannot restore the original identity; aborting");
                std::process::abort();
            }
        }
    }
}

/// Whether root runs the process: the real uid, which says who ran the tool (the effective uid
/// changes while an [`AsAccount`] is alive; the real uid never does).
pub fn is_root() -> bool {
    unistd::getuid().is_root()
}

/// Which supplementary groups a permanent drop gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Groups {
    /// The system's groups of the account's name (initgroups): a system account.
    OfTheName,
    /// The primary gid alone: a `passwd_file` account, whose name may also be a system user's
    /// (with that user's groups, such as ssl-cert) and must not get them.
    PrimaryOnly,
}

/// Becomes `account` for good: its groups (see [`Groups`]), setresgid, setresuid, then checks
/// that real, effective and saved ids are the account's, that the groups are as asked (for
/// [`Groups::PrimaryOnly`]) and that setuid(0) fails. Refuses uid 0 and gid 0. As a non-root
/// process, succeeds only for the process's own uid (nothing to change). Any error leaves the
/// process in an unknown identity: the caller must stop, never go on as if the login failed.
pub fn drop_permanently(account: &Account, groups: Groups) -> Result<()> {
    if account.uid == 0 {
        return Err(Error::NotPermitted("uid 0 never logs in".into()));
    }
    if account.gid == 0 {
        return Err(Error::NotPermitted("gid 0 never logs in".into()));
    }
    let (uid, gid) = (Uid::from_raw(account.uid), Gid::from_raw(account.gid));
    if !unistd::geteuid().is_root() {
        let ids = unistd::getresuid().map_err(sys)?;
        if [ids.real, ids.effective, ids.saved] != [uid; 3] {
            return Err(Error::NotPermitted(format!(
                "running as uid {}, cannot serve {} (uid {})",
                ids.effective, account.name, account.uid
            )));
        }
        return Ok(());
    }
    let name = CString::new(account.name.as_bytes())
        .map_err(|_| Error::BadName("NUL in account name".into()))?;
    match groups {
        Groups::OfTheName => unistd::initgroups(&name, gid).map_err(sys)?,
        Groups::PrimaryOnly => unistd::setgroups(&[gid]).map_err(sys)?,
    }
    unistd::setresgid(gid, gid, gid).map_err(sys)?;
    unistd::setresuid(uid, uid, uid).map_err(sys)?;
    let u = unistd::getresuid().map_err(sys)?;
    let g = unistd::getresgid().map_err(sys)?;
    if [u.real, u.effective, u.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(Error::NotPermitted(
            "identity did not change as asked".into(),
        ));
    }
    if groups == Groups::PrimaryOnly && unistd::getgroups().map_err(sys)? != [gid] {
        return Err(Error::NotPermitted(
            "supplementary groups did not change as asked".into(),
        ));
    }
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::NotPermitted(
            "root could be regained after the drop".into(),
        ));
    }
    Ok(())
}

fn sys(e: nix::errno::Errno) -> Error {
    Error::io("credentials", e.into())
}
