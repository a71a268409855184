//! disable: the administrator's disable list (config `disabled_file`).
//!
//! A file users cannot write: it is used only when, checked on the opened handle, it is a
//! regular file owned by root (or by the running uid, for unprivileged test setups) and not
//! writable by group or others. A missing file means nobody is disabled. One account a line:
//! `name changed-unix-seconds by`. Edits take the sibling lock `<file>.lock` and go through
//! [`atomic::replace`] (mode 0644, so a user's apoppasswd can read and honour it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::atomic::{self, Lock, Symlinks};
use crate::system::accounts::{Accounts, Login};

const MAX_LEN: u64 = 64 << 20;

/// When and by whom an account was disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub since: u64,
    pub by: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DisableList {
    marks: BTreeMap<String, Mark>,
}

impl DisableList {
    /// Reads the list at `path`; missing means empty.
    pub fn load(path: &Path) -> Result<DisableList> {
        match atomic::read_admin_file(path, MAX_LEN, Symlinks::Refuse)? {
            Some(bytes) => Ok(DisableList::parse(&bytes)),
            None => Ok(DisableList::default()),
        }
    }

    /// Parses the list's text; lines that are not `name [since [by]]` are ignored.
    pub fn parse(bytes: &[u8]) -> DisableList {
        let mut marks = BTreeMap::new();
        for line in String::from_utf8_lossy(bytes).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut f = line.split_whitespace();
            let Some(name) = f.next() else { continue };
            let since = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let by = f.next().unwrap_or("").to_string();
            marks.insert(name.to_string(), Mark { since, by });
        }
        DisableList { marks }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from(
            "# apoptools disable list: account since-unix-seconds by (edit with deapop)\n",
        );
        for (name, m) in &self.marks {
            out.push_str(&format!("{name} {} {}\n", m.since, m.by));
        }
        out.into_bytes()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.marks.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Mark> {
        self.marks.get(name)
    }

    /// The mark that keeps `login` out, if any: one on its account (which covers its
    /// extensions), one on the address itself (`user-EXT`), or one on another name of the same
    /// account, an alias with the same uid and home (so a second name is no way around a
    /// mark). Marks on names that are no account are passed over; an account lookup that
    /// fails for another reason (NSS down) is an error, never "not disabled".
    pub fn mark_for(
        &self,
        accounts: &Accounts,
        login: &Login,
        delimiter: char,
    ) -> Result<Option<(&str, &Mark)>> {
        let account = &login.account;
        let address = login.address(delimiter);
        for (name, mark) in &self.marks {
            if *name == account.name || *name == address {
                return Ok(Some((name, mark)));
            }
        }
        for (name, mark) in &self.marks {
            let other = match accounts.resolve_login(name, delimiter) {
                Ok(other) => other,
                Err(Error::UnknownUser(_) | Error::BadName(_)) => continue,
                Err(e) => return Err(e),
            };
            let same = other.account.uid == account.uid && other.account.home == account.home;
            if same && (other.ext.is_none() || other.ext == login.ext) {
                return Ok(Some((name, mark)));
            }
        }
        Ok(None)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.marks.keys().map(String::as_str)
    }

    /// Marks `name`; false if it was already marked (the first mark is kept).
    pub fn insert(&mut self, name: &str, mark: Mark) -> bool {
        if self.marks.contains_key(name) {
            return false;
        }
        self.marks.insert(name.to_string(), mark);
        true
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.marks.remove(name).is_some()
    }

    /// Locks the list at `path`, loads it, lets `edit` change it, and atomically writes it back
    /// if `edit` returned `Ok` and changed anything. Creates the list's directory if missing.
    pub fn update<T>(
        path: &Path,
        wait: Duration,
        edit: impl FnOnce(&mut DisableList) -> Result<T>,
    ) -> Result<T> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        atomic::create_dirs(dir, 0o755)?;
        let _lock = Lock::acquire(&lock_path(path), wait)?;
        let mut list = DisableList::load(path)?;
        let before = list.clone();
        let out = edit(&mut list)?;
        if list != before {
            atomic::replace(path, &list.encode(), 0o644)?;
        }
        Ok(out)
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Unsafe;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/disabled");
        assert!(!DisableList::load(&path).unwrap().contains("alice"));
        DisableList::update(&path, Duration::ZERO, |l| {
            assert!(l.insert(
                "alice",
                Mark {
                    since: 5,
                    by: "root".into()
                }
            ));
            assert!(!l.insert(
                "alice",
                Mark {
                    since: 6,
                    by: "x".into()
                }
            ));
            Ok(())
        })
        .unwrap();
        let l = DisableList::load(&path).unwrap();
        assert_eq!(
            l.get("alice"),
            Some(&Mark {
                since: 5,
                by: "root".into()
            })
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn group_writable_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disabled");
        std::fs::write(&path, "alice\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = DisableList::load(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsafe {
                    why: Unsafe::Writable(0o664),
                    ..
                }
            ),
            "{err}"
        );
    }
}
