//! testing: what the integration tests, benches and fuzz targets reach inside the library,
//! behind the `testing` feature so the shipped library exports only the entry points.
//!
//! Re-exports only, under the module names the tests have always used
//! (`apoptools::testing::store::write`, ...), plus [`fuzzing`], the properties the fuzz targets
//! and their regression tests check.

pub mod fuzzing;

pub use crate::tools::manual;

pub mod accounts {
    pub use crate::system::accounts::{Account, Accounts};
}

pub mod apop {
    pub use crate::auth::apop::digest;
}

pub mod atomic {
    pub use crate::store::atomic::stale_temps;
}

pub mod config {
    pub use crate::config::KEYS;
}

pub mod disable {
    pub use crate::store::disable::{DisableList, Mark};
}

pub mod error {
    pub use crate::error::exit_statuses;
}

pub mod store {
    pub use crate::auth::sasl::ScramKeys;
    pub use crate::store::record::{encode, Record};
    pub use crate::store::{path, read, write, Secret};
}

pub mod apoppasswd {
    pub use crate::tools::apoppasswd::{command, EXIT_CODES};
}

pub mod deapop {
    pub use crate::tools::deapop::{command, EXIT_CODES};
}

pub mod ipop3d {
    pub use crate::server::ipop3d::{command, serve_with_fake_front, EXIT_STATUSES};
}

pub mod pipe {
    pub use crate::server::pipe::{Request, Verdict};
}
