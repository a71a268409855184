//! manual: the man pages and shell completions, built from the clap definitions, the exit
//! status tables and the configuration key table, with the prose that goes around them.
//!
//! This is the one place the manual's text lives: `tests/generated` compares [`generated`]
//! with the committed files under `man/` and `completions/`, and with `UPDATE_GENERATED=1`
//! writes them. Each page's SEE ALSO names the other pages, never the page itself. Built only
//! with the `testing` feature (it needs clap_mangen and clap_complete, which the shipped tools
//! do not).

use clap_complete::Shell;

use crate::config::KEYS;
use crate::error::exit_statuses as exit_statuses_for;

/// Escapes text for a roff paragraph.
fn roff(text: &str) -> String {
    text.replace('\\', "\\e")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn section(title: &str, body: &str) -> String {
    format!(".SH {title}\n{body}\n")
}

fn tagged(items: &[(String, String)]) -> String {
    items
        .iter()
        .map(|(tag, text)| format!(".TP\n{tag}\n{}\n", roff(text)))
        .collect()
}

fn exit_statuses(rows: &[(u8, &str)]) -> String {
    let items: Vec<(String, String)> = rows
        .iter()
        .map(|(c, t)| (format!("\\fB{c}\\fR"), t.to_string()))
        .collect();
    section("EXIT STATUS", &tagged(&items))
}

fn man_page(cmd: clap::Command, sect: &str, extra: &str) -> String {
    let man = clap_mangen::Man::new(cmd)
        .section(sect)
        .manual("apoptools")
        .source(format!("apoptools {}", env!("CARGO_PKG_VERSION")))
        .date("");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    let mut text = String::from_utf8(out).unwrap();
    text.push_str(extra);
    text
}

/// Every page of the manual, as (name, section).
const PAGES: &[(&str, &str)] = &[
    ("apoppasswd", "1"),
    ("deapop", "8"),
    ("ipop3d", "8"),
    ("apoptools.conf", "5"),
];

/// The SEE ALSO list of page `name`: every other page of the manual.
fn see_also(name: &str) -> String {
    let others: Vec<String> = PAGES
        .iter()
        .filter(|(page, _)| *page != name)
        .map(|(page, sect)| format!(".BR {page} ({sect})"))
        .collect();
    others.join(",\n") + "\n"
}

fn apoppasswd_page() -> String {
    let files = tagged(&[
        ("~/.apop".into(), "The account's APOP secret: a regular file owned by the account, mode 0600, one link. Anything else is refused and reported, never used.".into()),
        ("~/.apop-EXT".into(), "The secret of the extension address user-EXT.".into()),
        ("~/.apop.lock".into(), "Lock file serialising writers of the home's store files; never deleted.".into()),
        ("/etc/apoptools.conf".into(), "Configuration, see apoptools.conf(5).".into()),
    ]);
    let format = roff(
        "Version 1 of the store file is text, one `key value` per line:\n",
    ) + "\n.nf\napoptools\\-secret 1\nchanged 1796380800\nby root\nsecret <the secret, any bytes but NUL and newline>\n.fi\n"
        + &roff("The first line names the format and version. `changed` (Unix seconds) and `by` (who made the change) are metadata; unknown keys are ignored so that later versions can add more. A file whose first line is not the header is read as imapext APOPtools' format: the secret alone on the first line. Writes always produce version 1.\n");
    let security = roff(
        "apoppasswd is not setuid. A user edits only their own store. Root provisioning another account does every file operation in that home as the account (effective uid, gid and groups switched, and switched back by a guard), so a link, FIFO or odd file planted in the home cannot make root read or write outside it. Store files are checked on the opened handle (O_NOFOLLOW, fstat: type, owner, mode, link count), not by path.\n\
         Every write goes to a temp file created exclusively in the same directory, is fsync'd, renamed over the target, and the directory fsync'd, under an exclusive lock on ~/.apop.lock: a crash leaves the old secret or the new one, and concurrent writers never lose an update.\n\
         Passwords never come from the command line; the prompt does not echo; no password appears in any message. APOP needs a plaintext-equivalent secret on the server: choose a mail password that is not your login password. A new password is at most 248 bytes, the most a 255-octet PASS line can carry, so every password set works with USER/PASS too.\n\
         apoppasswd forbids core dumps (RLIMIT_CORE 0, not dumpable) before it reads anything, reads standard input straight from the descriptor, and erases every buffer that held a password. The configuration file and passwd_file are refused when anyone but root could have written them. --generate prints the password before it stores it: if it cannot be shown (standard output full or closed) nothing changes and the exit status is 10. Files and directories get their modes whatever the caller's umask.\n\
         Tested (see README.md): 1,000 SIGKILLs at random moments left every secret old or new; a write on a full file system failed with the old secret intact; 50 concurrent writers never lost an update; nine planted-file attacks and a file swapped between check and open were refused.",
    );
    let extra = section("FILES", &files)
        + &section("FILE FORMAT", &format)
        + &exit_statuses(&exit_statuses_for(crate::tools::apoppasswd::EXIT_CODES))
        + &section("SECURITY", &security)
        + &section("SEE ALSO", &see_also("apoppasswd"));
    man_page(crate::tools::apoppasswd::command(), "1", &extra)
}

fn deapop_page() -> String {
    let files = tagged(&[
        ("/etc/apoptools/disabled".into(), "The disable list (config disabled_file): one account a line, `name since by`. Root-owned, mode 0644, replaced atomically under the lock file /etc/apoptools/disabled.lock.".into()),
        ("/etc/apoptools.conf".into(), "Configuration, see apoptools.conf(5).".into()),
    ]);
    let security = roff(
        "Only root may run deapop. The disable list lives where users cannot write, so a user cannot lift a mark; ipop3d and apoppasswd consult it. A mark on USER covers its extensions; a mark on USER-EXT covers that extension alone. A mark follows the account, not the name: another name with the same uid and home (an alias) is disabled too. --purge erases ~/.apop and every ~/.apop-* acting as the account, so links planted in the home cannot redirect the removal.",
    );
    let extra = section("FILES", &files)
        + &exit_statuses(&exit_statuses_for(crate::tools::deapop::EXIT_CODES))
        + &section("SECURITY", &security)
        + &section("SEE ALSO", &see_also("deapop"));
    man_page(crate::tools::deapop::command(), "8", &extra)
}

fn ipop3d_page() -> String {
    let examples = ".PP\nUnder tcpserver (ucspi-tcp), with USER/PASS only from the local network. A global INTRANET=1 would let every client on the internet send its password in the clear; tcprules(1) sets INTRANET only for the addresses listed (here 192.168.1.x), and everyone else may use APOP only:\n.PP\n.nf\n\
# /etc/tcp.pop3: INTRANET for the local network, no INTRANET for the rest\n\
192.168.1.:allow,INTRANET=\"1\"\n\
:allow\n\
\n\
tcprules /etc/tcp.pop3.cdb /etc/tcp.pop3.tmp < /etc/tcp.pop3\n\
\n\
#!/bin/sh\n\
exec env \\- \\e\n\
PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \\e\n\
tcpserver \\-vR \\-c40 \\-x /etc/tcp.pop3.cdb \\-p 0 pop3 ipop3d 2>&1 | splogger ipop3d &\n\
.fi\n\
.PP\nThe original start script, with INTRANET=1 for every client (only for a server no one outside the local network can reach):\n.PP\n.nf\n\
#!/bin/sh\n\
exec env \\- \\e\n\
INTRANET=1 \\e\n\
PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \\e\n\
tcpserver \\-vR \\-c40 \\-p 0 pop3 ipop3d 2>&1 | splogger ipop3d &\n\
.fi\n\
.PP\nAgainst password guessing across connections, fail2ban with the filter ipop3d prints (it matches failed logins and sessions ended before login on max_login_commands or login_timeout, never outages):\n.PP\n.nf\n\
ipop3d \\-\\-fail2ban\\-filter > /etc/fail2ban/filter.d/ipop3d.conf\n\
.fi\n\
.PP\nUnder systemd, a socket unit and a service template, one process per connection:\n.PP\n.nf\n\
# /etc/systemd/system/ipop3d.socket\n\
[Socket]\n\
ListenStream=110\n\
Accept=yes\n\
MaxConnectionsPerSource=4\n\
\n\
[Install]\n\
WantedBy=sockets.target\n\
\n\
# /etc/systemd/system/ipop3d@.service\n\
[Service]\n\
ExecStart=/usr/local/sbin/ipop3d\n\
StandardInput=socket\n\
StandardError=journal\n\
.fi\n\
.PP\nBehind HAProxy, each ipop3d host lists the balancer in proxy_from (see apoptools.conf(5)) and HAProxy sends a PROXY header; the log then shows the client's address:\n.PP\n.nf\n\
backend ipop3d\n\
  mode tcp\n\
  balance roundrobin\n\
  server mx1 10.0.0.11:110 send\\-proxy\\-v2\n\
  server mx2 10.0.0.12:110 send\\-proxy\\-v2\n\
.fi\n\
.PP\nMaxConnectionsPerSource= caps the connections of one client address at once (MaxConnections= all of them). systemd sets no per-address INTRANET: with plaintext at its default, USER/PASS is refused and clients use APOP.\n";
    let security = roff(
        "ipop3d is not setuid. It forbids core dumps (RLIMIT_CORE 0, not dumpable) before it reads anything. Started as root, it splits each connection in two. The front, forked first, is chrooted into login_chroot (empty, owned by root, writable by no one else) and runs as login_user with no supplementary groups, no capabilities, no-new-privs, RLIMIT_NPROC, RLIMIT_FSIZE and RLIMIT_CORE 0, and a seccomp allow-list (a file open fails with EACCES, any call not listed kills it); it sends the greeting and reads every client byte before the login, one line at a time, and hands each login attempt to the back over a socket pair in small length-prefixed frames. The back, the process that was started, makes the timestamp, never reads the client before the login, verifies each attempt against its own timestamp, owns the delay and the failure count, and writes the log (the front's lines too). When a login succeeds the front exits and the back carries on. A split that cannot be set up ends the connection with a log line and no greeting. Started as root, it reads the secret as the account (effective ids switched), and after a successful login drops to the account for good (setgroups, setgid, setuid, then checks that real, effective and saved ids are the account's and that root cannot be regained) before it opens the Maildir. A system account gets its groups (initgroups); a passwd_file account gets exactly its primary gid, even when a system user of the same name has other groups. If any step of the drop fails, ipop3d logs `cannot drop privileges`, answers -ERR [SYS/TEMP] and ends the connection at once: it is never taken for a wrong password. Accounts with uid 0 or gid 0 never log in. Started as a user, it serves only that user's accounts. The configuration and passwd_file are refused when anyone but root could have written them.\n\
         A disable mark follows the account, not the name: another name with the same uid and home is refused too. An account source or disable list that cannot be read is an outage: -ERR [SYS/TEMP], logged with result=unavailable, not counted as a failed login. Before login at most max_login_commands commands are answered and at most login_timeout seconds pass; USER where plaintext logins are off counts as a failed login. The log names the client from TCPREMOTEIP, else from getpeername(2).\n\
         The Maildir is read as other readers expect: new/ moves to cur/ keeping the unique part of each name (cur/UNIQUE:2,FLAGS), so Dovecot IMAP keeps its UIDs and flags (tested); sizes come from the files or the size cache, never from a name; messages whose unique parts collide are renamed apart once (UNIQUE.dupINODE) so every UIDL is unique. A .qmail-EXT Maildir is opened and must really lie inside the home (a symlink cannot lead elsewhere).\n\
         APOP digests and passwords are compared in constant time. Unknown user, wrong password, disabled account and unusable store file get the same reply after the same delay (auth_delay); after max_auth_failures failures the connection closes. Log lines never hold a secret. Client input is parsed with a 255-octet line cap; NULs, bad UTF-8 and unknown commands get -ERR.\n\
         Deletions happen only at QUIT and are fsync'd; a dropped connection or the idle timeout deletes nothing. A per-maildrop lock gives a second session -ERR [IN-USE].\n\
         Tested (see README.md): the parser and whole sessions were fuzzed for 10 million executions each; 400 SIGKILLs during QUIT never lost an unmarked message; 1,000 sessions 40 at a time were all answered correctly with flat memory; a 50 MB message to a reader taking a byte per 100 ms kept the server under 5.1 MB; unknown user, disabled account and wrong password gave the same reply after the same delay.",
    );
    let extra = section("EXAMPLES", examples)
        + section(
            "ENVIRONMENT",
            &tagged(&[
                (
                    "INTRANET".into(),
                    "Non-empty: USER/PASS is allowed when plaintext = intranet.".into(),
                ),
                (
                    "TCPREMOTEIP".into(),
                    "The client's address (from tcpserver), logged; without it, the peer of the socket on standard input.".into(),
                ),
                (
                    "TCPLOCALHOST".into(),
                    "The host name for the greeting, unless the hostname key is set.".into(),
                ),
            ]),
        )
        .as_str()
        + &exit_statuses(crate::server::ipop3d::EXIT_STATUSES)
        + &section("SECURITY", &security)
        + &section("SEE ALSO", &see_also("ipop3d"));
    man_page(crate::server::ipop3d::command(), "8", &extra)
}

fn conf_page() -> String {
    let mut out = String::from(".TH apoptools.conf 5 \"\" \"apoptools ");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str("\" \"apoptools\"\n.SH NAME\napoptools.conf \\- configuration of apoppasswd, deapop and ipop3d\n");
    out += &section(
        "SYNOPSIS",
        "/etc/apoptools.conf, or the file named by \\fB\\-\\-config\\fR",
    );
    out += &section("DESCRIPTION", &roff("One optional file shared by the three tools. Each line is `key = value`; `#` starts a comment line; blank lines are ignored. An unknown key, a key set twice or a bad value is an error that names the file and line, and the tool exits with status 8. A missing default file means built-in defaults; a missing file named with --config is an error."));
    let items: Vec<(String, String)> = KEYS
        .iter()
        .map(|k| {
            (
                format!("\\fB{}\\fR (default: {})", k.name, k.default),
                k.doc.to_string(),
            )
        })
        .collect();
    out += &section("KEYS", &tagged(&items));
    out += &section("EXAMPLE", ".nf\n# virtual mail users, Postfix-style extensions\npasswd_file = /etc/apoptools/passwd\next_delimiter = +\ndotqmail = .forward\nplaintext = never\nmin_length = 10\n.fi\n");
    out += &section("SEE ALSO", &see_also("apoptools.conf"));
    out
}

fn completions(cmd: fn() -> clap::Command, name: &str) -> Vec<(String, Vec<u8>)> {
    [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd(), name, &mut buf);
        (format!("completions/{file}"), buf)
    })
    .collect()
}

/// Every generated file: its path relative to the repository root and its contents.
pub fn generated() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "man/apoppasswd.1".to_string(),
            apoppasswd_page().into_bytes(),
        ),
        ("man/deapop.8".to_string(), deapop_page().into_bytes()),
        ("man/ipop3d.8".to_string(), ipop3d_page().into_bytes()),
        ("man/apoptools.conf.5".to_string(), conf_page().into_bytes()),
    ];
    files.extend(completions(crate::tools::apoppasswd::command, "apoppasswd"));
    files.extend(completions(crate::tools::deapop::command, "deapop"));
    files.extend(completions(crate::server::ipop3d::command, "ipop3d"));
    files
}
