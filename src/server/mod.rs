//! server: ipop3d, the POP3 server process around [`crate::pop3`].
//!
//! ipop3d lives here rather than in [`crate::tools`] because it is a server, not an
//! administrator's tool: it wires the session to the real world (stdin/stdout with the idle
//! timeout, the store, the disable list, the permanent privilege drop, the log). The
//! privilege-separated front and back, their pipe format and TLS will join it here.
//!
//! - [`ipop3d`]: the command line, the entry point, the system authenticator and the log.
//! - [`connection`]: standard input with the idle timeout, standard output, socket options.
//! - [`fail2ban`]: the fail2ban filter for the log lines, printed by `--fail2ban-filter`.
//! - [`split`], [`pipe`]: the privilege split run as root: the confined pre-login front, the
//!   back that decides every login, and the messages between them.
//! - [`proxy`]: the PROXY protocol header a balancer listed in `proxy_from` sends.
//! - [`poppassd`]: apoppassd, the poppassd dialogue webmail uses to change the password.

pub mod connection;
pub mod fail2ban;
pub mod ipop3d;
pub mod pipe;
pub mod poppassd;
pub mod proxy;
pub mod split;
pub mod tls;
