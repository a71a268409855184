//! Reliability under faults: SIGKILL at random moments, a full file system. Each promise of the
//! store and the disable list (old or new, never torn; no debris that breaks the next run) is
//! checked after every fault. Root only (virtual users, tmpfs mounts); elsewhere each test says
//! `SKIPPED (needs root): <name>`.

#[allow(dead_code)]
#[path = "../common/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../tools/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../common/skip.rs"]
mod skip;

mod crash;
mod disk_full;

#[path = "../common/rng.rs"]
mod rng;
pub use rng::Rng;
