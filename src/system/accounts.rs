//! accounts: the one account lookup all three tools use, and what a name may be.
//!
//! Accounts come from the system (NSS: `getpwnam_r`/`getpwuid_r`, so LDAP or sssd work) or,
//! when the configuration names `passwd_file`, from that passwd(5)-format file, read once.
//! Names are validated before any lookup or path is built from them, so `/`, `..`, NUL, control
//! bytes, non-ASCII and overlong names never reach the file system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Longest account name accepted (the usual Linux limit).
pub const MAX_USER_LEN: usize = 32;
/// Longest extension accepted.
pub const MAX_EXT_LEN: usize = 64;
/// The largest passwd_file read.
const MAX_PASSWD_LEN: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// A login name resolved to an account and, for `user-EXT`, the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub account: Account,
    pub ext: Option<String>,
}

impl Login {
    /// The address as written: `user` or `user-EXT` with the configured delimiter.
    pub fn address(&self, delimiter: char) -> String {
        match &self.ext {
            Some(ext) => format!("{}{delimiter}{ext}", self.account.name),
            None => self.account.name.clone(),
        }
    }
}

/// Checks an account name: 1-32 bytes of `A-Z a-z 0-9 . _ -`, not starting with `-` or `.`.
pub fn validate_user(name: &str) -> Result<()> {
    check_name(name, "user name", MAX_USER_LEN, b"._-")
}

/// Checks an extension: 1-64 bytes of `A-Z a-z 0-9 . _ - + =`, not starting with `-` or `.`.
pub fn validate_ext(ext: &str) -> Result<()> {
    check_name(ext, "extension", MAX_EXT_LEN, b"._-+=")
}

fn check_name(name: &str, what: &str, max: usize, extra: &[u8]) -> Result<()> {
    let shown: String = name.escape_debug().take(80).collect();
    if name.is_empty() {
        return Err(Error::BadName(format!("empty {what}")));
    }
    if name.len() > max {
        return Err(Error::BadName(format!(
            "{what} \"{shown}\" is longer than {max} bytes"
        )));
    }
    if name.starts_with(['-', '.']) {
        return Err(Error::BadName(format!(
            "{what} \"{shown}\" starts with `-` or `.`"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(Error::BadName(format!(
            "{what} \"{shown}\" has a character other than letters, digits and {}",
            String::from_utf8_lossy(extra)
        )));
    }
    Ok(())
}

/// Where accounts come from.
#[derive(Debug)]
pub enum Accounts {
    /// The system's name service.
    System,
    /// A passwd(5)-format file, parsed once.
    File {
        by_name: HashMap<String, Account>,
        order: Vec<String>,
    },
}

impl Accounts {
    /// The system accounts, or those of `passwd_file` when the configuration names one.
    pub fn open(passwd_file: Option<&Path>) -> Result<Accounts> {
        let Some(path) = passwd_file else {
            return Ok(Accounts::System);
        };
        // It names every account's uid and home: only root may have written it.
        use crate::store::atomic::{read_admin_file, Symlinks};
        let bytes = read_admin_file(path, MAX_PASSWD_LEN, Symlinks::Follow)?
            .ok_or_else(|| Error::io(path, std::io::ErrorKind::NotFound.into()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Config(format!("{}: not valid UTF-8", path.display())))?;
        let mut by_name = HashMap::new();
        let mut order = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| Error::Config(format!("{}:{}: {why}", path.display(), i + 1));
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 7 {
                return Err(bad("expected 7 colon-separated fields (passwd(5))"));
            }
            let uid = f[2].parse().map_err(|_| bad("bad uid"))?;
            let gid = f[3].parse().map_err(|_| bad("bad gid"))?;
            if !f[5].starts_with('/') {
                return Err(bad("home must be an absolute path"));
            }
            let account = Account {
                name: f[0].to_string(),
                uid,
                gid,
                home: PathBuf::from(f[5]),
            };
            if by_name.insert(account.name.clone(), account).is_none() {
                order.push(f[0].to_string());
            }
        }
        Ok(Accounts::File { by_name, order })
    }

    /// The supplementary groups an account of this source gets when ipop3d becomes it.
    pub fn groups(&self) -> crate::system::privilege::Groups {
        match self {
            Accounts::System => crate::system::privilege::Groups::OfTheName,
            Accounts::File { .. } => crate::system::privilege::Groups::PrimaryOnly,
        }
    }

    /// The account named `name`, after validating the name.
    pub fn by_name(&self, name: &str) -> Result<Account> {
        validate_user(name)?;
        let found = match self {
            Accounts::System => nix::unistd::User::from_name(name)
                .map_err(|e| Error::io("getpwnam", e.into()))?
                .map(from_nix),
            Accounts::File { by_name, .. } => by_name.get(name).cloned(),
        };
        found.ok_or_else(|| Error::UnknownUser(name.to_string()))
    }

    /// The account with `uid` (the first one, as getpwuid would).
    pub fn by_uid(&self, uid: u32) -> Result<Account> {
        let found = match self {
            Accounts::System => nix::unistd::User::from_uid(uid.into())
                .map_err(|e| Error::io("getpwuid", e.into()))?
                .map(from_nix),
            Accounts::File { by_name, order, .. } => order
                .iter()
                .map(|n| &by_name[n])
                .find(|a| a.uid == uid)
                .cloned(),
        };
        found.ok_or_else(|| Error::UnknownUser(format!("uid {uid}")))
    }

    /// Resolves a login: an account named so, else `user<delim>ext` with the longest account
    /// prefix that exists (as qmail matches addresses).
    pub fn resolve_login(&self, login: &str, delimiter: char) -> Result<Login> {
        match self.by_name(login) {
            Ok(account) => return Ok(Login { account, ext: None }),
            Err(Error::UnknownUser(_) | Error::BadName(_)) => {}
            Err(e) => return Err(e),
        }
        for (at, _) in login.rmatch_indices(delimiter) {
            let (user, ext) = (&login[..at], &login[at + delimiter.len_utf8()..]);
            if validate_user(user).is_err() || validate_ext(ext).is_err() {
                continue;
            }
            match self.by_name(user) {
                Ok(account) => {
                    return Ok(Login {
                        account,
                        ext: Some(ext.to_string()),
                    })
                }
                Err(Error::UnknownUser(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        validate_user(login)?;
        Err(Error::UnknownUser(login.to_string()))
    }

    /// Every account, for `deapop --list`: the file's, or the system's through getpwent.
    pub fn all(&self) -> Vec<Account> {
        match self {
            Accounts::File { by_name, order, .. } => {
                order.iter().map(|n| by_name[n].clone()).collect()
            }
            Accounts::System => system_accounts(),
        }
    }
}

fn from_nix(u: nix::unistd::User) -> Account {
    Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }
}

fn system_accounts() -> Vec<Account> {
    use nix::libc;
    use std::ffi::CStr;
    let mut out = Vec::new();
    // SAFETY: setpwent/getpwent/endpwent are called from this single-threaded tool only; each
    // returned record is copied out before the next call can overwrite libc's static buffer.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            let pw = &*pw;
            let name = CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
            let home = CStr::from_ptr(pw.pw_dir).to_string_lossy().into_owned();
            out.push(Account {
                name,
                uid: pw.pw_uid,
                gid: pw.pw_gid,
                home: PathBuf::from(home),
            });
        }
        libc::endpwent();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_accounts(text: &str) -> (tempfile::NamedTempFile, Accounts) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let a = Accounts::open(Some(f.path())).unwrap();
        (f, a)
    }

    #[test]
    fn names() {
        for ok in ["alice", "a.b", "a_b-c", "A1"] {
            validate_user(ok).unwrap();
        }
        let long = "x".repeat(33);
        for bad in [
            "",
            "-x",
            ".x",
            "..",
            "a/b",
            "a\0b",
            "é",
            "a b",
            long.as_str(),
            "a:b",
        ] {
            assert!(
                matches!(validate_user(bad), Err(Error::BadName(_))),
                "{bad:?}"
            );
        }
        validate_ext("list+x=y").unwrap();
        assert!(validate_ext("../x").is_err());
        assert!(validate_ext(&"e".repeat(65)).is_err());
    }

    #[test]
    fn passwd_file_lookup_and_extensions() {
        let (_f, a) = file_accounts(
            "# virtual\nalice:x:60001:60001::/home/alice:/bin/false\n\
             alice-work:x:60002:60002::/home/aw:/bin/false\nbob:x:60003:60003::/home/bob:/bin/sh\n",
        );
        assert_eq!(a.by_name("alice").unwrap().uid, 60001);
        assert_eq!(a.by_uid(60003).unwrap().name, "bob");
        assert!(matches!(a.by_name("carol"), Err(Error::UnknownUser(_))));
        // An account named alice-work wins over alice's extension "work".
        let l = a.resolve_login("alice-work", '-').unwrap();
        assert_eq!((l.account.name.as_str(), l.ext), ("alice-work", None));
        let l = a.resolve_login("alice-list-x", '-').unwrap();
        assert_eq!(
            (l.account.name.as_str(), l.ext.as_deref()),
            ("alice", Some("list-x"))
        );
        let l = a.resolve_login("bob+tag", '+').unwrap();
        assert_eq!(l.ext.as_deref(), Some("tag"));
        assert_eq!(l.address('+'), "bob+tag");
        assert!(matches!(
            a.resolve_login("carol-x", '-'),
            Err(Error::UnknownUser(_))
        ));
        assert!(matches!(
            a.resolve_login("bob-../x", '-'),
            Err(Error::BadName(_))
        ));
        assert_eq!(a.all().len(), 3);
    }

    #[test]
    fn malformed_passwd_file_names_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"ok:x:1:1::/h:/s\nbroken:x:1\n").unwrap();
        let err = Accounts::open(Some(f.path())).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: expected 7 colon-separated fields (passwd(5))"),
            "{err}"
        );
    }
}
