//! Integration tests of apoppasswd and deapop: the real binaries, real files, permissions,
//! processes and a real pseudo-terminal, each test in a fresh temp world (see `harness`).
//! Tests that need root say `SKIPPED (needs root): <name>` and pass when run by anyone else.

mod attacks;
mod batch;
#[allow(dead_code)]
#[path = "../common/bins.rs"]
mod bins;
mod concurrency;
mod config;
mod deapop;
mod harness;
mod interactive;
mod provisioning;
mod selfservice;
#[allow(dead_code)]
#[path = "../common/skip.rs"]
mod skip;
