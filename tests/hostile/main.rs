//! Hostile conditions for the whole suite (issue #4): load, hostile clients, hostile names,
//! a store file swapped under the reader, SIGKILL during QUIT's UPDATE and racing writers.
//! Each test states one promise and could catch its breaking: nothing lost, no one let in,
//! memory bounded.
//!
//! The harnesses of the ipop3d and tools tests are reused as they are. Root-only tests carry
//! `_root` in their names; they and tests needing a missing program say so (`SKIPPED (needs
//! root): <name>`) and pass, except under `APOPTOOLS_REQUIRE_ALL`, where a skip fails. Everything listens on 127.0.0.1 only; every loop is bounded in
//! count and time.

#[allow(dead_code)]
#[path = "../common/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../ipop3d/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../common/cores.rs"]
mod cores;
#[allow(dead_code)]
#[path = "../common/skip.rs"]
mod skip;
#[allow(dead_code, unused_macros, unused_imports)]
#[macro_use]
#[path = "../ipop3d/harness.rs"]
mod harness;
#[allow(dead_code, unused_imports)]
#[path = "../tools/harness.rs"]
mod tools_harness;

mod clients;
mod direct;
mod fail_closed;
mod fake_front;
mod load;
mod names;
mod swap;
mod update_kill;
mod writers;

use std::io::Write as _;
use std::path::Path;

/// Serves the world's ipop3d as the harness does (one session per connection, up to 40 at a
/// time, as `tcpserver -c40`).
pub fn serve(w: &harness::World) -> harness::Server {
    w.serve()
}

pub use crate::skip::{need_programs, need_root};

/// A figure worth seeing in the test output (fd 2, past the capture).
pub fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The pids of the running ipop3d processes started with `config` (found by scanning /proc,
/// which works whether or not the kernel offers `/proc/PID/task/TID/children`).
pub fn ipop3d_pids(config: &Path) -> Vec<u32> {
    let want = config.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&b| b == 0);
        // The harness may run a link to the binary from the world's directory.
        let is_ipop3d = args.next().is_some_and(|a0| a0.ends_with(b"/ipop3d"));
        if is_ipop3d && args.any(|a| a == want) {
            out.push(pid);
        }
    }
    out
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`), if the process still exists.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[path = "../common/rng.rs"]
mod rng;
pub use rng::Rng;

/// The median of `values` (sorted in place); zero for none.
pub fn median(values: &mut [u128]) -> u128 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}
