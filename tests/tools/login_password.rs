//! The seed's rule (issue #14): a new mail password is never the account's login password.
//! Real system accounts, made for each test with `useradd -m` and given a known login password
//! with `chpasswd` (removed again with `userdel -r` by a guard, also when the test fails), in a
//! world whose config names no passwd_file, so PAM (`login_password_check`, default
//! `pam:common-auth`) has a login password to compare with: at the terminal and with `--stdin`
//! as the account, root's `--stdin USER` and `--batch`, each refuse it (exit 7, a one-line
//! message, the store unchanged) and take another; `--generate` passes the same gate; a PAM
//! service without a file is a clear error (exit 11) that writes nothing; `off` compares
//! nothing; passwd_file accounts (virtual, no login password) are never compared.

use crate::harness::{need_root, User, World};
use crate::interactive::Terminal;

/// The refusal every path prints for the login password (after `... of NAME: `).
const REFUSED: &str = "password rejected: it is the login password of";
/// A service no system has.
const NO_SUCH_SERVICE: &str = "apoptools-no-such-service";

/// A system account made for one test (tests/common/system_account.rs), as the harness's
/// [`User`].
struct SystemAccount {
    user: User,
    login_password: String,
    /// Removes the account when dropped.
    _real: crate::system_account::SystemAccount,
}

impl SystemAccount {
    /// A new account `apoplpPIDxN` with a home and the login password `Login-NAME-pw`.
    fn new() -> SystemAccount {
        let real = crate::system_account::SystemAccount::new("apoplp");
        SystemAccount {
            user: User {
                name: real.name.clone(),
                uid: real.uid,
                gid: real.gid,
                home: real.home.clone(),
            },
            login_password: real.login_password.clone(),
            _real: real,
        }
    }

    fn name(&self) -> &str {
        &self.user.name
    }

    /// The store file of the account (or of NAME-EXT) as it is now.
    fn stored(&self, ext: Option<&str>) -> Option<Vec<u8>> {
        let file = match ext {
            Some(ext) => format!(".apop-{ext}"),
            None => ".apop".into(),
        };
        std::fs::read(self.user.home.join(file)).ok()
    }
}

/// Sets the account's mail password as root (a password that is not its login password).
fn provision(world: &World, account: &SystemAccount, password: &str) {
    world
        .apoppasswd()
        .args(["--stdin", account.name()])
        .stdin(format!("{password}\n"))
        .run()
        .success();
}

#[test]
fn at_the_terminal_the_login_password_is_refused_and_another_taken_root() {
    if !need_root("at_the_terminal_the_login_password_is_refused_and_another_taken_root") {
        return;
    }
    let world = World::with_system_accounts("");
    let account = SystemAccount::new();
    provision(&world, &account, "Mail-first-1");
    let before = account.stored(None);
    let mut term = Terminal::spawn(&world, &account.user, &[]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line(&account.login_password);
    term.wait_for_prompt("Again APOP Password: ", 1);
    term.type_line(&account.login_password);
    let (code, shown) = term.finish();
    assert_eq!(code, 7, "{shown:?}");
    assert!(shown.contains(REFUSED), "{shown:?}");
    assert!(!shown.contains(&account.login_password), "{shown:?}");
    // One attempt per run: no third prompt.
    assert_eq!(shown.matches("APOP Password: ").count(), 2, "{shown:?}");
    assert!(!shown.contains("Updated APOP password"), "{shown:?}");
    assert_eq!(account.stored(None), before, "the store changed");

    let mut term = Terminal::spawn(&world, &account.user, &[]);
    term.wait_for_prompt("Enter APOP Password: ", 1);
    term.type_line("Mail-at-the-tty-2");
    term.wait_for_prompt("Again APOP Password: ", 1);
    term.type_line("Mail-at-the-tty-2");
    let (code, shown) = term.finish();
    assert_eq!(code, 0, "{shown:?}");
    assert!(world.verifies(account.name(), "Mail-at-the-tty-2"));
}

#[test]
fn stdin_as_the_account_refuses_the_login_password_root() {
    if !need_root("stdin_as_the_account_refuses_the_login_password_root") {
        return;
    }
    let world = World::with_system_accounts("");
    let account = SystemAccount::new();
    provision(&world, &account, "Mail-first-1");
    let before = account.stored(None);
    let want = format!(
        "cannot set the APOP password of {}: {REFUSED}",
        account.name()
    );
    let out = world
        .set_by(&account.user, &[], &account.login_password)
        .fails(7, &want);
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(!out.stderr.contains(&account.login_password), "{out:#?}");
    assert_eq!(account.stored(None), before);
    // An extension address of the account is held to the same rule.
    world
        .set_by(&account.user, &["--ext", "work"], &account.login_password)
        .fails(7, REFUSED);
    assert_eq!(account.stored(Some("work")), None);

    world
        .set_by(&account.user, &[], "Mail-by-stdin-2")
        .success();
    assert!(world.verifies(account.name(), "Mail-by-stdin-2"));
    assert!(!world.verifies(account.name(), &account.login_password));
}

#[test]
fn root_stdin_user_refuses_the_login_password_root() {
    if !need_root("root_stdin_user_refuses_the_login_password_root") {
        return;
    }
    let world = World::with_system_accounts("");
    let account = SystemAccount::new();
    provision(&world, &account, "Mail-first-1");
    let before = account.stored(None);
    for args in [
        vec!["--stdin", account.name()],
        vec!["--stdin", "--ext", "work", account.name()],
    ] {
        let out = world
            .apoppasswd()
            .args(&args)
            .stdin(format!("{}\n", account.login_password))
            .run()
            .fails(7, REFUSED);
        assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    }
    assert_eq!(account.stored(None), before);
    assert_eq!(account.stored(Some("work")), None);
    provision(&world, &account, "Mail-by-root-2");
    assert!(world.verifies(account.name(), "Mail-by-root-2"));
}

#[test]
fn batch_refuses_a_login_password_on_any_line_and_writes_nothing_root() {
    if !need_root("batch_refuses_a_login_password_on_any_line_and_writes_nothing_root") {
        return;
    }
    let world = World::with_system_accounts("");
    let (a, b) = (SystemAccount::new(), SystemAccount::new());
    provision(&world, &a, "Mail-a-first-1");
    provision(&world, &b, "Mail-b-first-1");
    let before = (a.stored(None), b.stored(None));
    // Eight lines: the checks are shared among forked processes; the bad one is line 7.
    let lines = |a_ext3: &str| {
        [
            format!("{}:Batch-a-new-1", a.name()),
            format!("{}:Batch-b-new-1", b.name()),
            format!("{}-e1:Batch-a-e1-new", a.name()),
            format!("{}-e2:Batch-a-e2-new", a.name()),
            format!("{}-e1:Batch-b-e1-new", b.name()),
            format!("{}-e2:Batch-b-e2-new", b.name()),
            format!("{}-e3:{a_ext3}", a.name()),
            format!("{}-e3:Batch-b-e3-new", b.name()),
        ]
        .join("\n")
    };
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(lines(&a.login_password))
        .run()
        .fails(7, &format!("line 7: {REFUSED} {}", a.name()));
    assert!(
        out.stderr.contains("1 bad line(s); nothing was written"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains(&a.login_password), "{out:#?}");
    assert_eq!((a.stored(None), b.stored(None)), before);
    for ext in ["e1", "e2", "e3"] {
        assert_eq!((a.stored(Some(ext)), b.stored(Some(ext))), (None, None));
    }

    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(lines("Batch-a-e3-new"))
        .run()
        .success();
    assert_eq!(out.stdout, "Updated 8 APOP password(s).\n");
    assert!(world.verifies(a.name(), "Batch-a-new-1"));
    assert!(world.verifies(&format!("{}-e3", a.name()), "Batch-a-e3-new"));
    assert!(world.verifies(b.name(), "Batch-b-new-1"));
}

#[test]
fn generate_passes_the_same_gate_root() {
    if !need_root("generate_passes_the_same_gate_root") {
        return;
    }
    let account = SystemAccount::new();
    let world = World::with_system_accounts("");
    let out = world
        .apoppasswd()
        .args(["--generate", account.name()])
        .run()
        .success();
    assert!(world.verifies(account.name(), out.stdout.trim_end()));
    // The gate runs before the password is shown: a check that cannot run shows nothing.
    let broken =
        World::with_system_accounts(&format!("login_password_check = pam:{NO_SUCH_SERVICE}\n"));
    let before = account.stored(None);
    let out = broken
        .apoppasswd()
        .args(["--generate", account.name()])
        .run()
        .fails(11, NO_SUCH_SERVICE);
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert_eq!(account.stored(None), before);
}

#[test]
fn a_pam_service_without_a_file_is_a_clear_error_that_writes_nothing_root() {
    if !need_root("a_pam_service_without_a_file_is_a_clear_error_that_writes_nothing_root") {
        return;
    }
    let account = SystemAccount::new();
    let world =
        World::with_system_accounts(&format!("login_password_check = pam:{NO_SUCH_SERVICE}\n"));
    let want = format!(
        "cannot tell whether the new password is the login password: login_password_check \
         names the PAM service \"{NO_SUCH_SERVICE}\", which has no file in /etc/pam.d"
    );
    // Not the login password either: the check cannot run, so nothing is written.
    let out = world
        .set_by(&account.user, &[], "Mail-not-login-1")
        .fails(11, &want);
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    world
        .apoppasswd()
        .args(["--stdin", account.name()])
        .stdin("Mail-not-login-1\n")
        .run()
        .fails(11, &want);
    let out = world
        .apoppasswd()
        .arg("--batch")
        .stdin(format!("{}:Mail-not-login-1\n", account.name()))
        .run()
        .fails(11, &want);
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one error, not one per line: {out:#?}"
    );
    assert_eq!(account.stored(None), None);
}

#[test]
fn off_compares_nothing_root() {
    if !need_root("off_compares_nothing_root") {
        return;
    }
    let account = SystemAccount::new();
    let world = World::with_system_accounts("login_password_check = off\n");
    world
        .set_by(&account.user, &[], &account.login_password)
        .success();
    assert!(world.verifies(account.name(), &account.login_password));
    let status = world
        .apoppasswd()
        .args(["--status", account.name()])
        .run()
        .success()
        .stdout;
    assert!(
        status.contains("login pass: not checked (login_password_check = off)\n"),
        "{status}"
    );
}

#[test]
fn status_says_new_passwords_must_differ_root() {
    if !need_root("status_says_new_passwords_must_differ_root") {
        return;
    }
    let account = SystemAccount::new();
    let world = World::with_system_accounts("");
    let status = world
        .apoppasswd()
        .args(["--status"])
        .user(&account.user)
        .run()
        .fails(9, "")
        .stdout;
    assert!(
        status
            .contains("login pass: new passwords must differ from it (PAM service common-auth)\n"),
        "{status}"
    );
}

/// A passwd_file account has no login password: even one named like a system account, given
/// that system account's login password, is not compared with anything.
#[test]
fn virtual_users_are_never_compared_root() {
    if !need_root("virtual_users_are_never_compared_root") {
        return;
    }
    let account = SystemAccount::new();
    let mut world = World::new();
    let virtual_user = world.add_user(account.name());
    world
        .set_by(&virtual_user, &[], &account.login_password)
        .success();
    assert!(world.verifies(account.name(), &account.login_password));
    world
        .apoppasswd()
        .arg("--batch")
        .stdin(format!("{}:{}\n", account.name(), account.login_password))
        .run()
        .success();
    let status = world
        .apoppasswd()
        .args(["--status", account.name()])
        .run()
        .success()
        .stdout;
    assert!(
        status.contains("login pass: not checked (a passwd_file account has no login password)\n"),
        "{status}"
    );
    // The system account itself was not touched.
    assert_eq!(account.stored(None), None);
}

/// The same for whoever runs the tests: their own passwd_file account says it is not checked.
#[test]
fn status_of_a_virtual_account_says_it_is_not_checked() {
    let mut world = World::new();
    let me = world.me("alice");
    let status = world
        .apoppasswd()
        .arg("--status")
        .user(&me)
        .run()
        .fails(9, "")
        .stdout;
    assert!(
        status.contains("login pass: not checked (a passwd_file account has no login password)\n"),
        "{status}"
    );
}
