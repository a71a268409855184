//! store: what apoptools keeps on disk, and how it keeps it safe.
//!
//! - [`record`]: the format of a store file and the [`Secret`] it holds.
//! - [`file`](mod@file): one secret per address in `~/.apop` / `~/.apop-EXT`, read and written as the
//!   account and checked on the opened handle.
//! - [`disable`]: the administrator's disable list.
//! - [`atomic`]: the one lock-and-replace routine both writers use, so readers never see a torn
//!   file and no concurrent update is lost.
//!
//! Callers read and write secrets through the re-exports below (`store::read`, `store::Secret`,
//! ...).

pub mod atomic;
pub mod disable;
pub mod file;
pub mod record;

pub use file::{delete, list, path, purge, read, write};
pub use record::{check_policy, Secret, MAX_SECRET_LEN};
