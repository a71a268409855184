//! deapop: the administrator disables, enables and purges POP password logins, and lists them.
//!
//! Root only (refused before anything is read). Every USER on the command line is checked
//! before anything changes: one unknown name and nothing happens to any of them. The disable
//! list is edited under its lock with one atomic replace ([`DisableList::update`]); purging a
//! home's secrets is done by [`store::purge`], as the account.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use serde::Serialize;

use crate::error::{exit, exit_code, Error, Result};
use crate::store;
use crate::store::disable::{DisableList, Mark};
use crate::system::accounts::Login;
use crate::system::privilege;
use crate::tools::cli::{self, Context};

const TOOL: &str = "deapop";
/// The exit statuses this tool can return (--help and the man page list these).
pub const EXIT_CODES: &[u8] = &[
    exit::OK,
    exit::USAGE,
    exit::DENIED,
    exit::NO_USER,
    exit::UNSAFE,
    exit::BUSY,
    exit::CONFIG,
    exit::SYSTEM,
];

/// The command line (it also feeds the man page and the shell completions).
pub fn command() -> Command {
    Command::new(TOOL)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Disable, enable or purge POP password logins (root)")
        .long_about(
            "Disable POP3 logins (APOP and USER/PASS through ipop3d) for the named accounts, \
             enable them again, or purge their stored passwords, and list which accounts have \
             a password or a disable mark.\n\n\
             A disabled account keeps its stored password but cannot log in, and its user \
             cannot set a new one with apoppasswd(1); only root can lift the mark. The marks \
             live in the root-owned disable list (config key disabled_file). --purge also \
             deletes ~/.apop and every ~/.apop-EXT of the account.\n\n\
             Every USER must be an existing account; if one is not, nothing is changed for any \
             of them. Only root may run deapop.",
        )
        .after_help(crate::error::exit_status_help(
            &crate::error::exit_statuses(EXIT_CODES),
        ))
        .arg(crate::tools::cli::config_arg())
        .arg(
            Arg::new("enable")
                .long("enable")
                .action(ArgAction::SetTrue)
                .conflicts_with("purge")
                .help("Enable POP logins again for the USERs (remove their disable marks)"),
        )
        .arg(
            Arg::new("purge")
                .long("purge")
                .action(ArgAction::SetTrue)
                .help("Disable the USERs and delete their ~/.apop and ~/.apop-* files"),
        )
        .arg(
            Arg::new("list")
                .long("list")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(["enable", "purge", "users"])
                .help("List every account with a stored password or a disable mark"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .requires("list")
                .help("With --list: print a JSON array instead of a table"),
        )
        .arg(
            Arg::new("users")
                .value_name("USER")
                .num_args(1..)
                .required_unless_present("list")
                .help("Accounts to disable (or enable, or purge)"),
        )
}

pub fn main() -> ExitCode {
    cli::start(TOOL, run)
}

fn run() -> anyhow::Result<ExitCode> {
    let m = command().get_matches();
    if !privilege::is_root() {
        return Err(Error::NotPermitted(
            "only root may disable, enable, purge or list POP accounts".into(),
        )
        .into());
    }
    let ctx = Context::load(m.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
    if m.get_flag("list") {
        return list(&ctx, m.get_flag("json"));
    }
    let users: Vec<&str> = m
        .get_many::<String>("users")
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if m.get_flag("enable") {
        enable(&ctx, &users)
    } else {
        let delimiter = ctx.config.ext_delimiter;
        let logins = users
            .iter()
            .map(|u| ctx.accounts.resolve_login(u, delimiter))
            .collect::<Result<Vec<Login>>>()?;
        let addresses: Vec<String> = logins.iter().map(|l| l.address(delimiter)).collect();
        disable(&ctx, &addresses)?;
        if m.get_flag("purge") {
            purge(&ctx, &logins)
        } else {
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Marks each address: an account (and with it all its extensions), or one extension alone
/// (`user-EXT`).
fn disable(ctx: &Context, addresses: &[String]) -> anyhow::Result<()> {
    let since = cli::now();
    let report = DisableList::update(&ctx.config.disabled_file, ctx.config.lock_wait, |list| {
        Ok(addresses
            .iter()
            .map(|a| match list.get(a) {
                Some(old) => format!(
                    "{a}: already disabled since {} by {}\n",
                    cli::utc(old.since),
                    old.by
                ),
                None => {
                    let by = ctx.caller.name.clone();
                    list.insert(a, Mark { since, by });
                    format!("{a}: disabled\n")
                }
            })
            .collect::<String>())
    })?;
    cli::print(report)?;
    Ok(())
}

/// Removes the marks of `users`: existing accounts, or names that are marked although their
/// account is gone.
fn enable(ctx: &Context, users: &[&str]) -> anyhow::Result<ExitCode> {
    // A name that can never be an address fails before the lock file is created.
    let delimiter = ctx.config.ext_delimiter;
    for user in users {
        if let Err(e @ Error::BadName(_)) = ctx.accounts.resolve_login(user, delimiter) {
            return Err(e.into());
        }
    }
    let report = DisableList::update(&ctx.config.disabled_file, ctx.config.lock_wait, |list| {
        for user in users {
            match ctx.accounts.resolve_login(user, delimiter) {
                Err(Error::UnknownUser(_)) if list.contains(user) => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        Ok(users
            .iter()
            .map(|u| match list.remove(u) {
                true => format!("{u}: enabled\n"),
                false => format!("{u}: was not disabled\n"),
            })
            .collect::<String>())
    })?;
    cli::print(report)?;
    Ok(ExitCode::SUCCESS)
}

/// Erases the secrets of each login: all of an account's, or one extension's alone.
fn purge(ctx: &Context, logins: &[Login]) -> anyhow::Result<ExitCode> {
    let mut first_failure = None;
    for login in logins {
        let (account, address) = (&login.account, login.address(ctx.config.ext_delimiter));
        let purged = match &login.ext {
            None => store::purge(account, ctx.config.lock_wait),
            Some(ext) => store::delete(account, Some(ext), ctx.config.lock_wait).map(|gone| {
                if gone {
                    vec![store::path(account, Some(ext))]
                } else {
                    vec![]
                }
            }),
        };
        match purged {
            Ok(removed) if removed.is_empty() => {
                cli::print(format!("{address}: no stored password to purge\n"))?
            }
            Ok(removed) => {
                for path in removed {
                    cli::print(format!("{address}: removed {}\n", path.display()))?;
                }
            }
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("cannot purge {address}"));
                eprintln!("{TOOL}: {}", cli::message(&e));
                first_failure.get_or_insert(exit_code(&e));
            }
        }
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// One line of `--list`.
struct Row {
    user: String,
    uid: Option<u32>,
    mark: Option<Mark>,
    /// `None` for `~/.apop`, `Some(ext)` for `~/.apop-EXT`.
    secrets: Vec<Option<String>>,
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let marks = DisableList::load(&ctx.config.disabled_file)?;
    let mut rows = Vec::new();
    let mut names = std::collections::HashSet::new();
    for account in ctx.accounts.all() {
        if !names.insert(account.name.clone()) {
            continue;
        }
        let secrets = match store::list(&account) {
            Ok(secrets) => secrets,
            // A home its own account cannot read holds no usable secret.
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Vec::new()
            }
            Err(e) => {
                eprintln!("{TOOL}: warning: {}: {e}", account.name);
                Vec::new()
            }
        };
        let mark = marks.get(&account.name).cloned();
        if !secrets.is_empty() || mark.is_some() {
            rows.push(Row {
                user: account.name,
                uid: Some(account.uid),
                mark,
                secrets,
            });
        }
    }
    for name in marks.names().filter(|n| !names.contains(*n)) {
        rows.push(Row {
            user: name.to_string(),
            uid: None,
            mark: marks.get(name).cloned(),
            secrets: Vec::new(),
        });
    }
    let text = if json {
        to_json(&rows)
    } else {
        to_table(&rows)
    };
    cli::print(text)?;
    Ok(ExitCode::SUCCESS)
}

fn to_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let secrets: Vec<String> = r
                .secrets
                .iter()
                .map(|ext| match ext {
                    None => ".apop".to_string(),
                    Some(ext) => format!(".apop-{ext}"),
                })
                .collect();
            [
                r.user.clone(),
                r.uid.map_or("-".to_string(), |u| u.to_string()),
                state(r).to_string(),
                if secrets.is_empty() {
                    "-".to_string()
                } else {
                    secrets.join(" ")
                },
            ]
        })
        .collect();
    let header = ["USER", "UID", "STATE", "SECRETS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    std::iter::once(&header)
        .chain(&cells)
        .map(|row| {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            format!("{}\n", line.trim_end())
        })
        .collect()
}

fn state(row: &Row) -> &'static str {
    if row.mark.is_some() {
        "disabled"
    } else {
        "enabled"
    }
}

/// One object of `--list --json`.
#[derive(Serialize)]
struct JsonRow<'a> {
    user: &'a str,
    uid: Option<u32>,
    state: &'static str,
    disabled_since: Option<u64>,
    disabled_by: Option<&'a str>,
    main: bool,
    extensions: Vec<&'a str>,
}

/// `--list --json`: an array with one object a line (`[]` when empty), through serde_json.
fn to_json(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "[]\n".to_string();
    }
    let objects: Vec<String> = rows
        .iter()
        .map(|r| {
            let row = JsonRow {
                user: &r.user,
                uid: r.uid,
                state: state(r),
                disabled_since: r.mark.as_ref().map(|m| m.since),
                disabled_by: r.mark.as_ref().map(|m| m.by.as_str()),
                main: r.secrets.contains(&None),
                extensions: r.secrets.iter().flatten().map(String::as_str).collect(),
            };
            let mut out = Vec::new();
            row.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, OneLine,
            ))
            .expect("a row serialises");
            format!(
                "  {}",
                String::from_utf8(out).expect("serde_json writes UTF-8")
            )
        })
        .collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

/// serde_json's compact output with a space after every `:` and `,`, so each object reads as
/// one line: `{"user": "alice", "uid": 1000, ...}`.
struct OneLine;

impl serde_json::ser::Formatter for OneLine {
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn json_rows() {
        let rows = [
            Row {
                user: "alice".into(),
                uid: Some(60001),
                mark: None,
                secrets: vec![None, Some("wo\"rk".into())],
            },
            Row {
                user: "gone".into(),
                uid: None,
                mark: Some(Mark {
                    since: 5,
                    by: "root".into(),
                }),
                secrets: vec![],
            },
        ];
        assert_eq!(
            to_json(&rows),
            "[\n  {\"user\": \"alice\", \"uid\": 60001, \"state\": \"enabled\", \
             \"disabled_since\": null, \"disabled_by\": null, \"main\": true, \
             \"extensions\": [\"wo\\\"rk\"]},\n  {\"user\": \"gone\", \"uid\": null, \
             \"state\": \"disabled\", \"disabled_since\": 5, \"disabled_by\": \"root\", \
             \"main\": false, \"extensions\": []}\n]\n"
        );
        assert_eq!(to_json(&[]), "[]\n");
    }

    #[test]
    fn json_escapes() {
        let rows = [Row {
            user: "alice".into(),
            uid: None,
            mark: Some(Mark {
                since: 1,
                by: "a\"b\\c\n\u{1}é".into(),
            }),
            secrets: vec![],
        }];
        let text = to_json(&rows);
        assert!(
            text.contains(r#""disabled_by": "a\"b\\c\n\u0001é""#),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back[0]["disabled_by"], "a\"b\\c\n\u{1}é");
    }
}
