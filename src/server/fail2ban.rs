//! fail2ban: the filter for ipop3d's log lines, printed by `ipop3d --fail2ban-filter`, so the
//! filter and the log format it reads live in one place and change together.
//!
//! It matches every failed login (`ipop3d: login remote=IP ... result=fail`, whatever the
//! method or reason) and every session that ended on a bound before login
//! (`result=too-many-commands`, `result=login-timeout`), behind any syslog or journal prefix
//! and an optional splogger timestamp. It never matches outages (`result=unavailable`: the
//! server's trouble, not the client's), a right password whose mailbox could not be opened
//! (`result=fail mailbox=...`, such as a second client while the first holds the lock),
//! successful logins, or ordinary ends.

/// The filter file, for `/etc/fail2ban/filter.d/ipop3d.conf`.
pub const FILTER: &str = "\
# fail2ban filter for apoptools' ipop3d (printed by `ipop3d --fail2ban-filter`).
# Install:  ipop3d --fail2ban-filter > /etc/fail2ban/filter.d/ipop3d.conf
# and a jail such as:
#   [ipop3d]
#   enabled  = true
#   port     = pop3,pop3s
#   backend  = systemd            # or logpath = the file splogger/syslog writes
#   journalmatch = SYSLOG_IDENTIFIER=ipop3d
#   maxretry = 5
#   findtime = 10m
#   bantime  = 1h

[INCLUDES]
before = common.conf

[Definition]
_daemon = ipop3d

failregex = ^%(__prefix_line)s(?:@?[0-9a-f.]+\\s+)?ipop3d: login remote=<HOST> user=\\S* method=\\S+ result=fail\\b(?! mailbox=)
            ^%(__prefix_line)s(?:@?[0-9a-f.]+\\s+)?ipop3d: end remote=<HOST> user=\\S* result=(?:too-many-commands|login-timeout)\\b

ignoreregex =
";
