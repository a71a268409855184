//! system: where apoptools talks to the operating system about identities and processes.
//!
//! - [`accounts`]: the one account lookup (NSS or a passwd(5)-format file) and name validation.
//! - [`privilege`]: acting as an account (an RAII effective-id guard) and the permanent drop.
//! - [`sandbox`]: the chroot, identity and limits of ipop3d's pre-login front.
//! - [`seccomp`]: that front's system-call allow-list.
//! - [`dir`]: file operations relative to an open directory (a Maildir's `new/` and `cur/`).
//! - [`process`]: SIGINT ignored around a prompt, and forked worker processes.
//! - [`random`]: bytes from the kernel's generator (SCRAM salts and nonces).
//! - [`wipe`]: the one routine that erases secrets and passwords from memory.
//! - [`pam`]: asks the PAM stack whether a password is an account's login password.
//!
//! This is the only module allowed `unsafe` code (the crate root denies it everywhere else);
//! every `unsafe` block here carries a `// SAFETY:` comment saying why it is sound, and each is
//! wrapped in a safe function, so callers outside `system` never need `unsafe`.

pub mod accounts;
pub mod dir;
pub mod pam;
pub mod privilege;
pub mod process;
pub mod random;
pub mod sandbox;
pub mod seccomp;
pub mod wipe;
