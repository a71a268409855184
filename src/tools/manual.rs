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

/// Prose paragraphs, one a line of `text`, each its own paragraph (a bare newline would only
/// continue the same filled paragraph).
fn paragraphs(text: &str) -> String {
    text.lines()
        .map(|l| format!(".PP\n{}\n", roff(l)))
        .collect()
}

/// Literal lines (a script, a configuration file) as they must be typed: not filled, leading
/// spaces kept, backslashes and hyphens escaped so that they copy as typed.
fn literal(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect();
    format!(".PP\n.nf\n{}\n.fi\n", lines.join("\n"))
}

/// An example: a sentence of prose, then its literal lines.
fn example(intro: &str, code: &str) -> String {
    format!(".PP\n{}\n{}", roff(intro), literal(code))
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
    ("apoppassd", "8"),
    ("checkapop", "8"),
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
        ("~/.apop".into(), "The account's mail secret and its SCRAM-SHA-256 keys: a regular file owned by the account, mode 0600, one link. Anything else is refused and reported, never used.".into()),
        ("~/.apop-EXT".into(), "The secret of the extension address user-EXT.".into()),
        ("~/.apop.lock".into(), "Lock file serialising writers of the home's store files; never deleted.".into()),
        ("/etc/apoptools.conf".into(), "Configuration, see apoptools.conf(5).".into()),
    ]);
    let format = roff(
        "Version 2 of the store file is text, one `key value` per line:\n",
    ) + "\n.nf\napoptools\\-secret 2\nchanged 1796380800\nby root\nsecret <the secret, any bytes but NUL and newline>\nscram\\-sha\\-256 4096 <salt> <StoredKey> <ServerKey>\n.fi\n"
        + &roff("The first line names the format and version. `changed` (Unix seconds) and `by` (who made the change) are metadata; unknown keys are ignored so that later versions can add more.")
        + "\n"
        + &paragraphs("The `scram-sha-256` line holds the stored credentials of SCRAM-SHA-256 (RFC 5802, RFC 7677) for ipop3d's SCRAM logins: the PBKDF2 iteration count, then the salt, StoredKey and ServerKey in base64. Every write derives them from the new password (its bytes as stored, no SASLprep) with a random 16-byte salt and 4096 iterations. A second such line, fewer than 4096 iterations, an empty salt or a key that is not 32 bytes makes the file malformed, refused like any unusable store file. The `secret` line stays: APOP and CRAM-MD5 need the password itself, and USER/PASS, PLAIN and LOGIN are checked against it.\n\
             Version 1 is the same without the `scram-sha-256` line. A file whose first line is not the header is read as imapext APOPtools' format: the secret alone on the first line. Both are still read, and SCRAM logins work with them (ipop3d derives the keys at each login, see ipop3d(8)); the next password change rewrites the file as version 2. Writes always produce version 2.");
    let security = paragraphs(
        "apoppasswd is not setuid. A user edits only their own store. Root provisioning another account does every file operation in that home as the account (effective uid, gid and groups switched, and switched back by a guard), so a link, FIFO or odd file planted in the home cannot make root read or write outside it. Store files are checked on the opened handle (O_NOFOLLOW, fstat: type, owner, mode, link count), not by path.\n\
         Every write goes to a temp file created exclusively in the same directory, is fsync'd, renamed over the target, and the directory fsync'd, under an exclusive lock on ~/.apop.lock: a crash leaves the old secret or the new one, and concurrent writers never lose an update.\n\
         Passwords never come from the command line; the prompt does not echo; no password appears in any message. APOP and CRAM-MD5 need a plaintext-equivalent secret on the server, so the file holds the password itself beside its SCRAM keys: anyone who reads it can log in by any mechanism. A mail password is never the login password: apoppasswd refuses one that is (see THE LOGIN PASSWORD). A new password is at most 248 bytes, the most a 255-octet PASS line can carry, so every password set works with USER/PASS too.\n\
         apoppasswd forbids core dumps (RLIMIT_CORE 0, not dumpable) before it reads anything, reads standard input straight from the descriptor, and erases every buffer that held a password. The configuration file and passwd_file are refused when anyone but root could have written them. --generate prints the password before it stores it: if it cannot be shown (standard output full or closed) nothing changes and the exit status is 10. Files and directories get their modes whatever the caller's umask.\n\
         Tested (see README.md): 1,000 SIGKILLs at random moments left every secret old or new; a write on a full file system failed with the old secret intact; 50 concurrent writers never lost an update; nine planted-file attacks and a file swapped between check and open were refused.",
    );
    let login_password = paragraphs(
        "A mail-only password is never the account's login password (the rule of the tutorial apoptools descends from). APOP and CRAM-MD5 need the mail password on the server in a form as good as the password itself (see SECURITY), and mail clients keep it and send it far more often than anyone types a login password: it must not also open the account's shell.\n\
         So every write (at the prompt, --stdin, root's --stdin USER, --generate, every line of --batch, and apoppassd(8)'s newpass) first asks PAM whether the new password would log the account in, with the service of login_password_check (apoptools.conf(5); default common-auth, Debian's shared auth stack: pam_authenticate only, no account, credential or session modules, no message shown), and if it would, refuses it with exit status 7 and writes nothing: `apoppasswd: cannot set the APOP password of alice: password rejected: it is the login password of alice; a mail-only password must differ from it`. If PAM cannot answer (the service has no file in /etc/pam.d, a module is missing or fails, it asks for anything but the password) the write is refused too, with exit status 11: it is never let through as different. login_password_check = off compares nothing.\n\
         The password is compared once per run, the one that would be written (at the prompt, once both entries agree). As a user, PAM's unix_chkpwd helper checks your own login password; as root, pam_unix reads /etc/shadow. With Debian's yescrypt hashes a comparison costs about 50 ms; --batch compares every line of a system account before it writes anything, sharing the comparisons among as many processes as there are CPUs. Accounts of a passwd_file (virtual mail users) have no login password and are not compared; --status says which applies (its `login pass:` line).",
    );
    let extra = section("FILES", &files)
        + &section("FILE FORMAT", &format)
        + &section("THE LOGIN PASSWORD", &login_password)
        + &exit_statuses(&exit_statuses_for(crate::tools::apoppasswd::EXIT_CODES))
        + &section("SECURITY", &security)
        + &section("SEE ALSO", &see_also("apoppasswd"));
    man_page(crate::tools::apoppasswd::command(), "1", &extra)
}

fn apoppassd_page() -> String {
    let dialogue = paragraphs(
        "One session, lines of at most 255 octets ending in CRLF or LF, commands in any case:",
    ) + &literal(
        "S: 200 apoppassd ready, who are you?\nC: user alice\nS: 200 Your password please.\nC: pass OLD-MAIL-PASSWORD\nS: 200 Your new password please.\nC: newpass NEW-MAIL-PASSWORD\nS: 200 Password changed.\nC: quit\nS: 200 Bye.",
    ) + &paragraphs(
        "Every failed pass (a wrong password, a name that is no account, an account with uid or gid 0, an address disabled with deapop(8), a missing or unsafe store file) gets `500 Authentication failed.` after auth_delay, and max_auth_failures of them close the connection. A new password the policy refuses gets `500` and the policy's reason (for instance `500 the password is shorter than 8 characters`), and nothing is written; the client may try another. A new password that is the account's login password (compared by the back through PAM, see login_password_check in apoptools.conf(5) and apoppasswd(1)) gets `500 the password is not allowed: a mail password must differ from your login password`; PAM is asked at most once per connection (another newpass after that gets `500 one new password per connection; connect again`), and if it cannot answer the reply is `500 Service temporarily unavailable.`; nothing is written either way. Every newpass is answered no sooner than auth_delay after it arrived, whatever the outcome, so the change is no fast oracle for the login password. Out of order: `500 Send user first.`, `500 Send pass first.`; anything else `500 Unknown command.`; a line over 255 octets `500 Line too long.` and the end of the session.\n\
         The new password is written as apoppasswd(1) writes it: the account's store file, its SCRAM keys included, replaced atomically under the home's lock, as the account. The old one is the mail password (the store's), never the login password.",
    );
    let setup = paragraphs("Webmail on the same host talks to 127.0.0.1:106. Roundcube: `$config['password_driver'] = 'poppassd'; $config['password_pop_host'] = '127.0.0.1'; $config['password_pop_port'] = 106;`. Horde (passwd app): driver poppassd with host 127.0.0.1, port 106.")
        + &literal("tcpserver -vR -c20 127.0.0.1 106 /usr/local/sbin/apoppassd 2>&1 | splogger apoppassd")
        + &paragraphs("or a systemd socket with ListenStream=127.0.0.1:106 and Accept=yes, its service running /usr/local/sbin/apoppassd with StandardInput=socket, as for ipop3d(8).");
    let security = paragraphs("Started as root, apoppassd splits each connection as ipop3d does: a front chrooted into login_chroot, running as login_user with no groups, no new privileges, no files and a seccomp filter, reads and parses every line; the back, root, never reads the client: it verifies the old password, owns the delay and the failure count, writes the new one as the account, and logs. Log lines (`apoppassd: login|change|end remote=IP user=NAME result=...`) never hold a password. Started as a user, it serves that user alone in one process.");
    let extra = section("DIALOGUE", &dialogue)
        + &section("SETUP", &setup)
        + &section("SECURITY", &security)
        + &section("SEE ALSO", &see_also("apoppassd"));
    man_page(crate::server::poppassd::command(), "8", &extra)
}

fn checkapop_page() -> String {
    let qmail = paragraphs(
        "The default. On a good login checkapop drops to the account for good (its uid, its gid and, for a system account, its groups; a passwd_file account gets its primary group only), as ipop3d does after a login, and a drop that fails is fatal (exit 111). It sets USER (the login as given, an extension address included), HOME and SHELL, changes to HOME and runs PROG with ARGS; the rest of the environment (tcpserver's TCPREMOTEIP and the like) is passed on.\n\
         qmail-popup sends the plaintext password, or, patched for APOP, the hex APOP digest with the greeting's timestamp in the third field: with a timestamp the password is checked as that digest. The configuration's plaintext rule applies to plaintext passwords as to a connection without TLS: always; never; intranet only where INTRANET is set, as tcprules sets it for ipop3d; tls never (qmail-popup has no TLS), so that setting leaves only APOP.",
    );
    let dovecot = paragraphs(
        "With --dovecot, checkapop answers Dovecot 2.3's checkpassword passdb; Dovecot appends the path of its checkpassword-reply as PROG. No drop happens: Dovecot becomes the account itself, from the userdb_uid, userdb_gid and userdb_home fields that checkpassword-reply hands back (checkapop sets USER, HOME, userdb_uid and userdb_gid, and EXTRA naming them; for an extension address U-EXT also userdb_mail=maildir:PATH, the Maildir the first maildir line of ~U/.qmail-EXT names, found by ipop3d's rules, so Dovecot serves the same Maildir ipop3d does; if it cannot be found the login is a temporary failure). Dovecot enforces its own TLS rule (disable_plaintext_auth), so only plaintext = never refuses its plaintext logins.\n\
         Dovecot's lookups set AUTHORIZED and check no password (a userdb lookup, or a passdb lookup for a mechanism Dovecot runs itself). A credentials lookup (CREDENTIALS_LOOKUP, with SCHEME) gets the field password={PLAIN}secret, from which Dovecot does APOP and CRAM-MD5 against the same store; the secret reaches checkpassword-reply in its environment, which only root can read. checkapop then sets AUTHORIZED=2, so checkpassword-reply exits 2 as Dovecot wants; a lookup of a name that cannot log in exits 3.\n\
         Setup, in dovecot.conf:",
    ) + &literal(
        "passdb {\n  driver = checkpassword\n  args = /usr/local/sbin/checkapop --dovecot\n}\nuserdb {\n  driver = prefetch\n}\nservice auth {\n  user = root\n}",
    ) + &paragraphs("Dovecot runs checkpassword programs in its auth process, which runs as the dovecot user by default; checkapop needs root (it reads each store as its account), hence `service auth { user = root }`. Run as anyone else, checkapop exits 111 and logs why. Dovecot logs whatever a checkpassword program writes to standard error as errors, so under --dovecot checkapop writes only failures there.");
    let rules = paragraphs(
        "The same rules as ipop3d(8): a name that is no account, an account with uid or gid 0, an address disabled with deapop(8), and a missing or unsafe store file are bad logins; an account source or disable list that cannot be read is a temporary failure. Passwords and digests are compared in constant time; every bad login waits auth_delay from the start before exiting. checkapop forbids core dumps before it reads fd 3, erases the request once parsed, and never writes a secret to its log lines on standard error (checkapop: login user=NAME result=ok|fail|unavailable reason=\"...\").",
    );
    let extra = section("QMAIL", &qmail)
        + &section("DOVECOT", &dovecot)
        + &section("RULES", &rules)
        + &exit_statuses(crate::tools::checkapop::EXIT_STATUSES)
        + &section("SEE ALSO", &see_also("checkapop"));
    man_page(crate::tools::checkapop::command(), "8", &extra)
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
    let tls = paragraphs(
        "With tls_cert and tls_key in the configuration (see apoptools.conf(5)) and ipop3d started as root, TLS comes two ways: STLS (RFC 2595) on port 110, listed by CAPA until TLS is up, and --implicit-tls (RFC 8314), TLS from the first byte, for port 995. Only TLS 1.2 and 1.3 are spoken, by rustls with its ring provider and default cipher suites; there is no session resumption (each process serves one connection).\n\
         Both files are read for every connection, so a renewed certificate is served from the next connection on, without a restart. tls_cert is a PEM chain, the server's certificate first. tls_key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC) must be a regular file owned by root, not writable by its group and with no permission for others: mode 0600, or 0640 with a group such as ssl-cert. Symbolic links are followed and the check is made on the file opened, so Let's Encrypt's live/ links work. A key that fails the check, or a file that cannot be read or parsed, refuses every connection, on port 110 as on 995 (there is no fallback to POP3 without TLS): no greeting, and a log line naming the file and the fix, such as `ipop3d: fatal remote=IP reason=\"tls_key /etc/ssl/private/pop.pem: mode 0644 lets others read or change the key; chmod 0600 /etc/ssl/private/pop.pem\"`.\n\
         After STLS is answered +OK the handshake starts. Every byte the client sent after the STLS line that has already arrived is discarded, never read as a command (the plaintext injection of CVE-2011-0411); bytes still on the way reach TLS, which refuses them. Under TLS the session goes on without a new greeting: a USER given before STLS is forgotten, and the commands and failed logins counted before still count.\n\
         plaintext = intranet (the default) allows USER/PASS, and AUTH PLAIN and LOGIN (see SASL), when INTRANET is non-empty or the connection is under TLS; plaintext = tls allows them under TLS only, whatever INTRANET says; always and never do not look at TLS. APOP, CRAM-MD5 and SCRAM-SHA-256 are accepted with or without TLS. CAPA lists STLS only before TLS is active (and only before the login), and USER, and PLAIN and LOGIN in its SASL line, only where they would be accepted at that moment; before STLS, a USER that TLS would allow is answered `-ERR Plaintext login needs TLS first (STLS); or use APOP`.\n\
         Under TLS, the login log lines of a checked login end with tls=VERSION/SUITE, such as tls=TLSv1.3/TLS13_AES_256_GCM_SHA384 (those about an unavailable or locked mailbox after a good password do not). A failed handshake (a client offering only TLS 1.1, a client rejecting the certificate, bytes that are not TLS) is logged `ipop3d: tls remote=IP result=fail reason=\"...\"` and ends the connection.\n\
         Started as a user (serving its own Maildir on standard input and output), ipop3d never offers TLS, whatever the configuration says: CAPA has no STLS, STLS gets `-ERR TLS is not available here`, and --implicit-tls is refused with a fatal log line, no greeting and exit status 1.",
    );
    let sasl = paragraphs(
        "AUTH (RFC 5034) logs in with a SASL mechanism. ipop3d offers, strongest first (the order of CAPA's SASL line and of a bare AUTH, so a client that takes the first it knows gets the best): SCRAM-SHA-256-PLUS (RFC 7677, bound to the TLS channel; under TLS only), SCRAM-SHA-256 (RFC 7677), CRAM-MD5 (RFC 2195), PLAIN (RFC 4616) and LOGIN. PLAIN and LOGIN carry the password as it is, so the plaintext rule of USER/PASS governs them (see TLS): they are offered exactly where USER is. CRAM-MD5 and SCRAM-SHA-256 are offered with or without TLS, like APOP; the two SCRAM mechanisms only while the scram_salt_key file is usable (below).\n\
         CAPA's line is `SASL` and the mechanisms on offer at that moment: under plaintext = tls, `SASL SCRAM-SHA-256 CRAM-MD5` before STLS and `SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN` after it; with none on offer there is no SASL line. A bare AUTH (Outlook's discovery) answers `+OK SASL mechanisms follow`, the same names one a line, and `.`.\n\
         The command is `AUTH mechanism [initial-response]`, the name in any letter case. The initial response is base64 (RFC 4648, padded), `=` being an empty one; the AUTH line, initial response and CRLF included, must fit in 255 octets. A challenge is `+ ` and base64 (`+ ` alone when it is empty). The client answers each with one line of base64 of at most 4096 octets (an empty line, or `=`, is an empty answer), or with `*` to cancel. Decoded, a client message is at most 1024 bytes, and a user name or password at most 255. A login ends with `+OK Mailbox open, N messages`.\n\
         PLAIN: `authzid NUL user NUL password`; without an initial response an empty challenge asks for it. The authzid must be empty or the user name itself, byte for byte: no account logs in as another. LOGIN: the challenges `Username:` and `Password:` (VXNlcm5hbWU6 and UGFzc3dvcmQ6); an initial response is taken as the user name. CRAM-MD5: the challenge is a fresh `<pid.nanoseconds@hostname>`, made like the APOP timestamp; the answer is the user name, a space, and HMAC-MD5 of the challenge keyed with the mail password, in 32 hex digits. CRAM-MD5 is server-first, so an initial response fails it.\n\
         SCRAM-SHA-256: the client-first message (`n,,n=user,r=nonce`), the server-first message (the client's nonce with 24 characters of the server's appended, the salt, the iteration count), the client-final message (the proof); then the server-final message (`v=` and the server's signature) goes out as one more challenge, and the client answers it with an empty line: POP3 has no success with data (RFC 5034), so the +OK follows that empty answer. A wrong proof gets the failure reply, not an `e=` message. In the user name `=2C` and `=3D` stand for `,` and `=`; `a=` must be empty or the user name; a mandatory extension (`m=`) is refused.\n\
         Channel binding: SCRAM-SHA-256 refuses `p=` (binding is for -PLUS) and, under TLS, the flag `y`, which says the client could bind but believes the server cannot: a downgrade, refused as Dovecot refuses it; `n` is accepted. SCRAM-SHA-256-PLUS takes `p=tls-server-end-point` (RFC 5929: the hash of the server's certificate, SHA-256 unless the certificate is signed with SHA-384 or SHA-512) or `p=tls-exporter` (RFC 9266; TLS 1.3 only), and `c=` must carry this connection's binding data, so a login relayed by a man in the middle through a TLS connection of its own fails.\n\
         User names and passwords are compared as bytes: no SASLprep (RFC 4013) is applied. A non-ASCII password works only when the client sends it in the Unicode form it was set in.",
    ) + &example(
        "PLAIN with an initial response, then SCRAM-SHA-256 without one (base64(...) stands for the base64 of a message; the last C: line is empty):",
        "C: AUTH PLAIN AGFsaWNlAG15IG1haWwgcGFzcw==
S: +OK Mailbox open, 2 messages

C: AUTH SCRAM-SHA-256
S: +
C: base64(n,,n=alice,r=CLIENTNONCE)
S: + base64(r=CLIENTNONCESERVERNONCE,s=SALT,i=4096)
C: base64(c=biws,r=CLIENTNONCESERVERNONCE,p=PROOF)
S: + base64(v=SIGNATURE)
C:
S: +OK Mailbox open, 2 messages",
    ) + &paragraphs(
        "Every failure, whatever the mechanism or the cause (a wrong password, digest or proof; an unknown user, a disabled account, an unusable store file; `*`; bad base64; a malformed or oversized message; an authzid other than the user; a refused channel binding), gets `-ERR [AUTH] Authentication failed.` after the same delay (auth_delay, from the client's last line) and counts once towards max_auth_failures; the reason goes to the log only. SCRAM runs to the end for a name that cannot log in: its server-first message carries a salt made from scram_salt_key and the name, the same on every try and indistinguishable from a real record's random one, and the failure comes after the proof.\n\
         Only these are answered otherwise. A mechanism not on offer at that moment (unknown, SCRAM-SHA-256-PLUS without TLS, SCRAM without a salt key) gets `-ERR Unsupported authentication mechanism` at once and is not counted. PLAIN or LOGIN where the plaintext rule forbids them get the replies USER gets, `-ERR Plaintext login is not allowed here; use APOP` or, before STLS where TLS would allow them, `-ERR Plaintext login needs TLS first (STLS); or use APOP`, and count as a failed login, after the delay. An outage (an account source or the disable list that cannot be read, no random bytes for a nonce) gets `-ERR [SYS/TEMP] Authentication is temporarily unavailable; try again later` after the delay and is not counted.\n\
         Log lines name the mechanism: method=scram-sha-256-plus, scram-sha-256, cram-md5, plain or login (apop and user for the other logins), with user= the name the exchange gave, or - when it failed before one. The fail2ban filter matches these failures as any other.\n\
         apoppasswd(1) stores SCRAM keys with every password (store file version 2: a random 16-byte salt, 4096 iterations), so a SCRAM login costs the server no key derivation. A record written before SCRAM (version 1, or imapext's format) works with SCRAM too: ipop3d derives its keys from the secret at each login, with 4096 iterations and the salt a name without an account would get, so such an account looks like any other; the next password change rewrites the file as version 2.\n\
         The store still holds the mail password itself, a plaintext equivalent: APOP and CRAM-MD5 need it, and USER/PASS, PLAIN and LOGIN are checked against it. SCRAM keeps the password off the wire, and -PLUS ties the login to the TLS connection; neither protects the store: whoever can read ~/.apop can log in by any mechanism. Hence a mail-only password.\n\
         scram_salt_key (default /etc/apoptools/scram-salt-key) is the HMAC-SHA-256 key of the salts of names without an account and of version-1 records: a file of 32 to 1024 bytes, read for every connection by the process that stays root until the login. ipop3d started as root makes it when it is missing: 32 random bytes, created exclusively, mode 0600; its directory must exist. It must be a regular file, not a symbolic link, owned by root (or by the user running ipop3d) and writable by no one else; keep it unreadable by others too, since with it anyone can tell those salts from random ones. When it cannot be read or made, or holds fewer than 32 bytes, ipop3d logs `ipop3d: scram remote=IP result=unavailable reason=\"...\"` and offers no SCRAM on that connection (remove a short file, such as one a crash left, and the next connection makes a new one). Started as a user, ipop3d never makes it, and offers SCRAM only if it can read one. A new key changes those salts and nothing else.\n\
         Client settings. Thunderbird: \"Normal password\" logs in with AUTH PLAIN, offered only where the plaintext rule allows it (under plaintext = tls, with SSL/TLS or STARTTLS); \"Encrypted password\" uses CRAM-MD5, with or without TLS. mpop: `auth scram-sha-256`, on port 110 without TLS as well as with `tls on` (mpop does not bind to the channel). fetchmail (6.4 has no SCRAM): `auth cram-md5` in the poll entry.",
    );
    let process = paragraphs(
        "Started as root, ipop3d serves each connection with two processes, so that nothing privileged parses a client byte before the login.\n\
         The front, forked first, reads the TLS certificate and key while still root, then confines itself: chroot into login_chroot, the uid and gid of login_user with no supplementary groups (and a check that root cannot be regained), no_new_privs, not dumpable, RLIMIT_NPROC, RLIMIT_FSIZE and RLIMIT_CORE 0, RLIMIT_NOFILE 16, and last a seccomp allow-list under which any system call not listed kills it and a file open fails with EACCES. Only then does it run TLS, send the greeting and parse the client's bytes, one line at a time. It passes each login attempt to the back over a socket pair in small length-prefixed frames, and its log lines too; for AUTH it decodes the client's base64, relays each message and writes the challenges the back sends.\n\
         The back, the process the super-server started, stays root until the login. It makes the APOP timestamp, never holds the TLS key, and never reads the client before the login (except, from a balancer listed in proxy_from, the PROXY header, which it reads before the front is forked). It verifies each attempt against its own timestamp, reading the store as the account, and runs every SASL exchange: it makes CRAM-MD5's challenge and SCRAM's nonce, and it alone holds the salt key and the store's SCRAM keys. It applies the plaintext rule again (a PLAIN, LOGIN or USER/PASS the rule forbids, relayed all the same, ends the connection), owns the delay and the failure count (a compromised front cannot skip them), and writes every log line. After a proven login it drops to the account for good.\n\
         After a login without TLS the front exits and the back, now the account, talks to the client's socket itself (the front never read past the login line, so nothing the client pipelined is lost). After a login under TLS the front stays, still confined, as the relay between TLS and a socket pair that becomes the back's standard input and output; the back's copy of the client's socket is closed. No process running as a mail account ever holds the TLS key.\n\
         A split that cannot be set up (login_user unknown, root or in group 0; login_chroot missing, not empty, not root's or writable by others; a TLS file refused) ends the connection with a fatal log line and no greeting. A front killed by its seccomp filter is logged `the login process was killed by SIGSYS`. Started as a user, ipop3d stays one process.\n\
         Setup, once (login_chroot defaults to /var/lib/apoptools/empty; login_user defaults to nobody, which other daemons share, so a dedicated account is better):",
    ) + &literal(
        r#"useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin ipop3d-login
install -d -m 0755 -o root -g root /var/lib/apoptools/empty
echo 'login_user = ipop3d-login' >> /etc/apoptools.conf"#,
    );
    let examples = example(
        "Under tcpserver (ucspi-tcp), with USER/PASS in the clear only from the local network. A global INTRANET=1 would let every client on the internet send its password in the clear; tcprules(1) sets INTRANET only for the addresses listed (here 192.168.1.x). Everyone else may use APOP, CRAM-MD5 or SCRAM-SHA-256, or, with TLS configured, USER/PASS or PLAIN after STLS:",
        r#"# /etc/tcp.pop3: INTRANET for the local network, no INTRANET for the rest
192.168.1.:allow,INTRANET="1"
:allow

tcprules /etc/tcp.pop3.cdb /etc/tcp.pop3.tmp < /etc/tcp.pop3

#!/bin/sh
exec env - \
PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \
tcpserver -vR -c40 -x /etc/tcp.pop3.cdb -p 0 pop3 ipop3d 2>&1 | splogger ipop3d &"#,
    ) + &example(
        "With tls_cert and tls_key set, that script offers STLS on port 110 as it is. Port 995 needs a second one, the same with --implicit-tls:",
        r#"#!/bin/sh
exec env - \
PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \
tcpserver -vR -c40 -x /etc/tcp.pop3.cdb -p 0 pop3s ipop3d --implicit-tls \
  2>&1 | splogger ipop3d &"#,
    ) + &example(
        "The original start script, with INTRANET=1 for every client (only for a server no one outside the local network can reach):",
        r#"#!/bin/sh
exec env - \
INTRANET=1 \
PATH=/usr/local/sbin:/usr/local/bin:/bin:/usr/bin \
tcpserver -vR -c40 -p 0 pop3 ipop3d 2>&1 | splogger ipop3d &"#,
    ) + &example(
        "Under systemd, a socket unit and a service template for each port, one process per connection:",
        r#"# /etc/systemd/system/ipop3d.socket
[Socket]
ListenStream=110
Accept=yes
MaxConnectionsPerSource=4

[Install]
WantedBy=sockets.target

# /etc/systemd/system/ipop3d@.service
[Service]
ExecStart=/usr/local/sbin/ipop3d
StandardInput=socket
StandardError=journal

# /etc/systemd/system/ipop3d-tls.socket
[Socket]
ListenStream=995
Accept=yes
MaxConnectionsPerSource=4

[Install]
WantedBy=sockets.target

# /etc/systemd/system/ipop3d-tls@.service
[Service]
ExecStart=/usr/local/sbin/ipop3d --implicit-tls
StandardInput=socket
StandardError=journal

systemctl enable --now ipop3d.socket ipop3d-tls.socket"#,
    ) + &paragraphs(
        "MaxConnectionsPerSource= caps the connections of one client address at once (MaxConnections= all of them). systemd sets no per-address INTRANET: with plaintext at its default, USER/PASS, PLAIN and LOGIN are refused without TLS, and allowed after STLS and on port 995.",
    ) + &example(
        "Behind HAProxy, each ipop3d host lists the balancer in proxy_from (see apoptools.conf(5); 127.0.0.1 for an HAProxy on the same host, and then every connection from 127.0.0.1 must carry a header) and HAProxy sends a PROXY header; the log then shows the client's address. HAProxy passes TLS through untouched (mode tcp) and ipop3d on each host terminates it, so each host needs tls_cert and tls_key; the header comes before the handshake, and STLS works through the balancer too. TLS terminated in HAProxy would reach ipop3d as a plain connection: no tls= in the log and, under plaintext = tls, no USER/PASS.",
        r#"# haproxy.cfg
frontend pop3
  mode tcp
  bind :110
  default_backend ipop3d
frontend pop3s
  mode tcp
  bind :995
  default_backend ipop3d-tls
backend ipop3d
  mode tcp
  balance roundrobin
  server mx1 10.0.0.11:110 send-proxy-v2
  server mx2 10.0.0.12:110 send-proxy-v2
backend ipop3d-tls
  mode tcp
  balance roundrobin
  server mx1 10.0.0.11:995 send-proxy-v2
  server mx2 10.0.0.12:995 send-proxy-v2

# /etc/apoptools.conf on mx1 and mx2
proxy_from = 10.0.0.2"#,
    ) + &example(
        "Against password guessing across connections, fail2ban with the filter ipop3d prints. It matches failed logins, over TLS or not, and sessions ended before login on max_login_commands or login_timeout; never outages, and never a failed TLS handshake. Its sample jail covers ports pop3 and pop3s:",
        "ipop3d --fail2ban-filter > /etc/fail2ban/filter.d/ipop3d.conf",
    );
    let files = tagged(&[
        (
            "/etc/apoptools.conf".into(),
            "The configuration, see apoptools.conf(5).".into(),
        ),
        (
            "~/.apop, ~/.apop-EXT".into(),
            "The mail-only secrets and their SCRAM keys, see apoppasswd(1).".into(),
        ),
        (
            "/etc/apoptools/scram-salt-key".into(),
            "The key of the SCRAM salts of names without an account and of version-1 records (scram_salt_key): made by ipop3d on first use, mode 0600.".into(),
        ),
        (
            "~/.qmail-EXT".into(),
            "Its first maildir line names the Maildir of user-EXT (the dotqmail key).".into(),
        ),
        (
            "Maildir/apoptools-pop3.lock".into(),
            "The session lock of the maildrop.".into(),
        ),
        (
            "Maildir/apoptools-sizes".into(),
            "The sizes of the messages, measured once.".into(),
        ),
        (
            "/var/lib/apoptools/empty".into(),
            "The front's chroot (login_chroot): empty, owned by root.".into(),
        ),
    ]);
    let security = paragraphs(
        "ipop3d is not setuid. It forbids core dumps (RLIMIT_CORE 0, not dumpable) before it reads anything. Started as root, it reads the secret as the account (effective ids switched), and after a successful login drops to the account for good (setgroups, setgid, setuid, then checks that real, effective and saved ids are the account's and that root cannot be regained) before it opens the Maildir. A system account gets its groups (initgroups); a passwd_file account gets exactly its primary gid, even when a system user of the same name has other groups. If any step of the drop fails, ipop3d logs `cannot drop privileges`, answers -ERR [SYS/TEMP] and ends the connection at once: it is never taken for a wrong password. Accounts with uid 0 or gid 0 never log in. Started as a user, it serves only that user's accounts. The configuration and passwd_file are refused when anyone but root could have written them.\n\
         Without TLS, anyone on the path reads and can change the session. USER/PASS sends the password in the clear. APOP sends only an MD5 digest, but anyone who records the timestamp and digest can test guesses offline, and an attacker who can choose the timestamp (a false server, or a man in the middle) can recover the password a few characters at a time with MD5 collisions (Leurent, FSE 2007). CRAM-MD5 is no better: a recorded exchange costs one HMAC-MD5 per guess. SCRAM-SHA-256 costs 4096 PBKDF2 iterations per guess and proves that the server knows the keys, but the session it opens can still be read and taken over. On the internet, configure TLS and set plaintext = tls. Even then APOP, CRAM-MD5 and SCRAM-SHA-256 stay accepted without TLS: where every login must be under TLS, offer port 995 only, or port 110 to the local network only. Clients must check the server's certificate, and should insist on TLS (port 995, or STLS required): a client that uses STLS only when CAPA lists it can be stripped of it by a man in the middle.\n\
         A disable mark follows the account, not the name: another name with the same uid and home is refused too. An account source or disable list that cannot be read is an outage: -ERR [SYS/TEMP], logged with result=unavailable, not counted as a failed login. Before login at most max_login_commands commands are answered (the lines of a SASL exchange are not commands) and at most login_timeout seconds pass (the TLS handshake included); USER, AUTH PLAIN or AUTH LOGIN where plaintext logins are off counts as a failed login. The log names the client from TCPREMOTEIP, else from getpeername(2), or from the PROXY header of a balancer listed in proxy_from.\n\
         The Maildir is read as other readers expect: new/ moves to cur/ keeping the unique part of each name (cur/UNIQUE:2,FLAGS), so Dovecot IMAP keeps its UIDs and flags (tested); sizes come from the files or the size cache, never from a name; messages whose unique parts collide are renamed apart once (UNIQUE.dupINODE) so every UIDL is unique. A .qmail-EXT Maildir is opened and must really lie inside the home (a symlink cannot lead elsewhere).\n\
         APOP and CRAM-MD5 digests, passwords and SCRAM proofs are compared in constant time. Unknown user, wrong password, disabled account and unusable store file get the same reply after the same delay (auth_delay), whatever the login command or SASL mechanism; after max_auth_failures failures the connection closes. Log lines never hold a secret. Client input is parsed with a 255-octet line cap; NULs, bad UTF-8 and unknown commands get -ERR.\n\
         Deletions happen only at QUIT and are fsync'd; a dropped connection or the idle timeout deletes nothing. A per-maildrop lock gives a second session -ERR [IN-USE].\n\
         Tested (see README.md): the parser and whole sessions were fuzzed for 10 million executions each; 400 SIGKILLs during QUIT never lost an unmarked message; 1,000 sessions 40 at a time were all answered correctly with flat memory; a 50 MB message to a reader taking a byte per 100 ms kept the server under 5.1 MB; unknown user, disabled account and wrong password gave the same reply after the same delay; after a login under TLS no process running as the account had the key anywhere in its memory.",
    );
    let migration = paragraphs(
        "Clients that leave mail on the server remember each message's UIDL; a server that presents other UIDLs makes them fetch everything again. With uidl_compat (apoptools.conf(5)) set, a message ipop3d has not served before gets the UIDL the old server presented, from the old server's own file in the Maildir, and messages are listed in the old server's order (the ones it never listed after them, in delivery order). Every UIDL ipop3d presents that is not the file name's own is recorded in the Maildir's apoptools-sizes at that session, so it stays whatever uidl_compat says later, and the old server's file may go once every Maildir has been served. The old server's files are read as the account and never written. Step by step, for each account or all at once:",
    ) + &literal(
        "1. Set uidl_compat in /etc/apoptools.conf (below: which value).\n\
2. While the old server still serves POP3, save its listing for a user:\n\
     curl -s --user USER:PASSWORD pop3://127.0.0.1/ -X UIDL | tr -d '\\r' > old.txt\n\
3. Before any ipop3d session of that user, as root (nothing is moved, locked or written):\n\
     ipop3d --uidl-report USER > new.txt\n\
     diff old.txt new.txt          # empty: same UIDLs, same order\n\
4. Stop the old server's POP3 service and start ipop3d on its port. The first session\n\
   records the UIDLs; new mail gets ipop3d's own.",
    ) + &paragraphs(
        "From Dovecot: uidl_compat = dovecot when Dovecot used its default pop3_uidl_format (%08Xu%08Xv: the IMAP UID and UIDVALIDITY in lowercase hex) or kept UIDLs of its own (P fields, from pop3_save_uidl or an earlier migration); ipop3d reads dovecot-uidlist (versions 1 and 3) from the Maildir and lists messages in Dovecot's POP3 order (its O fields, then IMAP UID). With pop3_uidl_format = %f, use uidl_compat = qmail. Any other pop3_uidl_format is not read: step 3 shows the difference. If mail_location put the control files elsewhere (CONTROL=), copy dovecot-uidlist into the Maildir first, owned by the account.\n\
         From Courier: uidl_compat = courier; ipop3d reads courierpop3dsizelist (every version Courier wrote: UIDLs UIDuid-uidvalidity, UIDuid, or the escaped file name of the oldest) and lists in Courier's order.\n\
         From qmail-pop3d: uidl_compat = qmail; the UIDL is the whole file name before the colon (a ,S= field included, which ipop3d's own leaves out). qmail-pop3d lists messages by modification time, ipop3d by the delivery time a qmail file name starts with: the same order unless the files' times were changed.\n\
         An imported UIDL that RFC 1939 does not allow (1 to 70 characters of 0x21 to 0x7E) is not used, nor one two messages would share: those messages get ipop3d's own (the report shows them). If the old server's file is there but unusable (not the account's regular file, over 64 MiB, a header that does not parse), the login is refused with -ERR [SYS/TEMP] and the reason logged, rather than present UIDLs that would then be recorded for good. Login log lines count the imported UIDLs (imported=N).",
    );
    let extra = section("TLS", &tls)
        + &section("SASL", &sasl)
        + &section("PROCESS MODEL", &process)
        + &section("EXAMPLES", &examples)
        + &section("MIGRATION", &migration)
        + &section(
            "ENVIRONMENT",
            &tagged(&[
                (
                    "INTRANET".into(),
                    "Non-empty: USER/PASS, AUTH PLAIN and AUTH LOGIN are allowed when plaintext = intranet (under TLS they are allowed without it).".into(),
                ),
                (
                    "TCPREMOTEIP, REMOTE_ADDR".into(),
                    "The client's address (from tcpserver), logged; without either, the peer of the socket on standard input.".into(),
                ),
                (
                    "TCPLOCALHOST".into(),
                    "The host name for the greeting, unless the hostname key is set.".into(),
                ),
            ]),
        )
        + &section("FILES", &files)
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
        ("man/apoppassd.8".to_string(), apoppassd_page().into_bytes()),
        ("man/checkapop.8".to_string(), checkapop_page().into_bytes()),
        ("man/deapop.8".to_string(), deapop_page().into_bytes()),
        ("man/ipop3d.8".to_string(), ipop3d_page().into_bytes()),
        ("man/apoptools.conf.5".to_string(), conf_page().into_bytes()),
    ];
    files.extend(completions(crate::tools::apoppasswd::command, "apoppasswd"));
    files.extend(completions(crate::server::poppassd::command, "apoppassd"));
    files.extend(completions(crate::tools::checkapop::command, "checkapop"));
    files.extend(completions(crate::tools::deapop::command, "deapop"));
    files.extend(completions(crate::server::ipop3d::command, "ipop3d"));
    files
}
