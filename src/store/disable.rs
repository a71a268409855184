//! disable: the administrator's disable list (config `disabled_file`).
//!
//! A file users cannot write: it is used only when, checked on the opened handle, it is a
//! regular file owned by root (or by the running uid, for unprivileged test setups) and not
//! writable by group or others. A missing file means nobody is disabled. One account a line:
//! `name changed-unix-seconds by`. Edits take the sibling lock `<file>.lock` and go through
//! [`atomic::replace`] (mode 0644, so a user's apoppasswd can read and honour it).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result, Unsafe};
use crate::store::atomic::{self, check_regular, open_nofollow, unsafe_file, Lock};

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
        let Some((file, meta)) = open_nofollow(path)? else {
            return Ok(DisableList::default());
        };
        check_regular(path, &meta)?;
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(unsafe_file(
                path,
                Unsafe::Owner {
                    found: meta.uid(),
                    expected: 0,
                },
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unsafe_file(path, Unsafe::Mode(meta.mode() & 0o7777)));
        }
        let mut bytes = Vec::new();
        file.take(MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        if bytes.len() as u64 > MAX_LEN {
            return Err(unsafe_file(path, Unsafe::TooLarge(bytes.len() as u64)));
        }
        Ok(DisableList::parse(&bytes))
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
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode_0755()
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
        }
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

trait Mode0755 {
    fn mode_0755(&mut self) -> &mut Self;
}

impl Mode0755 for std::fs::DirBuilder {
    fn mode_0755(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o755)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    why: Unsafe::Mode(0o664),
                    ..
                }
            ),
            "{err}"
        );
    }
}
