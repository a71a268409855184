//! Integration tests of apoppasswd and deapop: the real binaries, real files, permissions,
//! processes and a real pseudo-terminal, each test in a fresh temp world (see `harness`).
//! Tests that need root carry `_root` in their names and say `SKIPPED (needs root): <name>` when
//! run by anyone else (a failure under `APOPTOOLS_REQUIRE_ALL`).

mod attacks;
mod batch;
#[path = "../common/bins.rs"]
mod bins;
mod concurrency;
mod config;
#[allow(dead_code)]
#[path = "../common/cores.rs"]
mod cores;
mod deapop;
mod fail_closed;
mod harness;
mod interactive;
mod login_password;
mod provisioning;
mod selfservice;
#[allow(dead_code)]
#[path = "../common/skip.rs"]
mod skip;
#[allow(dead_code)]
#[path = "../common/system_account.rs"]
mod system_account;
