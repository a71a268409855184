//! SIGKILL apoppasswd and deapop at random moments over 1,000 trials. After each kill every
//! account holds its old or its new secret (never a torn, empty or missing one), the disable
//! list parses whole with each mark old or new, and the next run works despite any debris.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apoptools::testing::accounts::Account;
use apoptools::testing::disable::DisableList;

use crate::harness::{need_root, User, World, APOPPASSWD, DEAPOP};
use crate::Rng;

const TRIALS: usize = 1000;
const USERS: usize = 5;

fn account(u: &User) -> Account {
    Account {
        name: u.name.clone(),
        uid: u.uid,
        gid: u.gid,
        home: u.home.clone(),
    }
}

/// Runs `program args` with `input` on stdin and SIGKILLs it after `delay` (if still running).
/// Returns whether it had already exited by itself (and then its status code).
fn run_and_kill(program: &str, args: &[&str], input: &[u8], delay: Duration) -> Option<i32> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        return status.code();
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // Killed, or it exited between try_wait and kill.
    status.code()
}

fn secret_of(u: &User) -> Vec<u8> {
    apoptools::testing::store::read(&account(u), None)
        .unwrap_or_else(|e| panic!("{}: store unreadable after a kill: {e}", u.name))
        .secret
        .as_bytes()
        .to_vec()
}

fn marks(world: &World) -> BTreeSet<String> {
    DisableList::load(&world.disabled)
        .unwrap_or_else(|e| panic!("disable list broken after a kill: {e}"))
        .names()
        .map(str::to_string)
        .collect()
}

#[test]
fn sigkill_at_random_moments_leaves_old_or_new_root() {
    if !need_root("sigkill_at_random_moments_leaves_old_or_new_root") {
        return;
    }
    let mut world = World::new();
    let names: Vec<String> = (0..USERS).map(|i| format!("crash{i}")).collect();
    let users = world.add_users(&names);
    let config = world.config.to_str().unwrap().to_string();
    let mut current: Vec<Vec<u8>> = Vec::new();
    for u in &users {
        let pw = format!("initial-{}", u.name);
        world
            .apoppasswd()
            .args(["--stdin", &u.name])
            .stdin(format!("{pw}\n"))
            .run()
            .success();
        current.push(pw.into_bytes());
    }
    world.deapop().arg(&users[0].name).run().success();
    let mut disabled = marks(&world);

    // How long an uninterrupted run takes: kills are spread over 0..1.5x that.
    let start = Instant::now();
    for _ in 0..10 {
        world
            .apoppasswd()
            .args(["--stdin", &users[1].name])
            .stdin("calibrate-pw\n")
            .run()
            .success();
    }
    current[1] = b"calibrate-pw".to_vec();
    let span = (start.elapsed() / 10).as_micros() as u64 * 3 / 2;
    eprintln!(
        "an uninterrupted apoppasswd run: {} us; kills spread over 0..{span} us",
        span * 2 / 3
    );

    let seed = 0x5eed_0001;
    let mut rng = Rng::new(seed);
    let (mut old_kept, mut new_seen, mut finished) = (0, 0, 0);
    for trial in 0..TRIALS {
        let i = rng.below(USERS as u64) as usize;
        let user = &users[i];
        let delay = Duration::from_micros(rng.below(span.max(1)));
        if trial % 4 == 3 {
            // deapop: flip this user's mark.
            let enable = disabled.contains(&user.name);
            let mut args = vec!["--config", config.as_str()];
            if enable {
                args.push("--enable");
            }
            args.push(&user.name);
            let code = run_and_kill(DEAPOP, &args, b"", delay);
            let now = marks(&world);
            let mut want_new = disabled.clone();
            if enable {
                want_new.remove(&user.name);
            } else {
                want_new.insert(user.name.clone());
            }
            assert!(
                now == disabled || now == want_new,
                "trial {trial} (seed {seed:#x}): marks {now:?}"
            );
            if code == Some(0) {
                assert_eq!(
                    now, want_new,
                    "trial {trial}: deapop succeeded but the mark is old"
                );
                finished += 1;
            }
            if now == want_new {
                new_seen += 1
            } else {
                old_kept += 1
            }
            disabled = now;
        } else {
            let new = format!("pw-{trial}-{}", rng.next_u64());
            let code = run_and_kill(
                APOPPASSWD,
                &["--config", &config, "--stdin", &user.name],
                format!("{new}\n").as_bytes(),
                delay,
            );
            let got = secret_of(user);
            assert!(
                got == current[i] || got == new.as_bytes(),
                "trial {trial} (seed {seed:#x}): {} holds neither the old nor the new secret",
                user.name
            );
            if code == Some(0) {
                assert_eq!(
                    got,
                    new.as_bytes(),
                    "trial {trial}: success reported, old secret kept"
                );
                finished += 1;
            }
            if got == new.as_bytes() {
                new_seen += 1
            } else {
                old_kept += 1
            }
            current[i] = got;
        }
    }
    eprintln!("crash trials: {TRIALS}; old state kept: {old_kept}; new state: {new_seen}; ran to completion: {finished}");
    // The kills must have landed on both sides of the commit point for the test to mean anything.
    assert!(
        old_kept > 50 && new_seen > 50,
        "kills did not spread: old {old_kept}, new {new_seen}"
    );

    // No debris breaks the next run, and the next run clears it.
    for (u, pw) in users.iter().zip(&current) {
        assert!(world.verifies(&u.name, std::str::from_utf8(pw).unwrap()));
        world
            .apoppasswd()
            .args(["--stdin", &u.name])
            .stdin("final-password\n")
            .run()
            .success();
        assert!(world.verifies(&u.name, "final-password"));
        assert!(apoptools::testing::atomic::stale_temps(&u.home.join(".apop")).is_empty());
    }
    world.deapop().arg("--enable").args(&names).run().success();
    assert!(marks(&world).is_empty());
    assert!(apoptools::testing::atomic::stale_temps(&world.disabled).is_empty());
}
