//! The store file swapped between check and open: while a thread keeps renaming over ~/.apop
//! either a valid 0600 file (secret A) or a symlink / hard link to a root-owned 0600 file
//! (secret R), APOP with R never logs in and `apoppasswd --check` never matches R. Root only.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apoptools::testing::store::{self, Record, Secret};

/// Each round lasts at least this long and until [`ATTEMPTS`] of each kind, but never longer
/// than [`LIMIT`].
const ROUND: Duration = Duration::from_secs(3);
const ATTEMPTS: usize = 40;
const LIMIT: Duration = Duration::from_secs(12);

fn more(start: Instant, done: &AtomicUsize) -> bool {
    let t = start.elapsed();
    t < LIMIT && (t < ROUND || done.load(Ordering::SeqCst) < ATTEMPTS)
}

#[derive(Clone, Copy, Debug)]
enum Planted {
    Symlink,
    HardLink,
}

#[test]
fn store_file_swapped_between_check_and_open_root() {
    let test = "store_file_swapped_between_check_and_open_root";
    if !crate::need_root(test) {
        return;
    }
    let mut w = world!("store_file_swapped_between_check_and_open_root");
    let alice = w.user("alice");
    w.set("auth_delay", "0");
    let secret_a = alice.password.clone();
    let secret_r = "root-only-secret-R".to_string();
    let root_file = w.path().join("root-secret");
    let record = Record {
        secret: Secret::new(secret_r.as_bytes().to_vec()),
        changed: Some(0),
        by: Some("root".into()),
        scram: None,
    };
    std::fs::write(&root_file, store::encode(&record)).unwrap();
    std::fs::set_permissions(&root_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let valid_a = std::fs::read(store::path(&alice.account, None)).unwrap();
    let server = crate::serve(&w);
    let config = w.config_path();
    let home = alice.account.home.clone();
    let target = home.join(".apop");

    // Control: R itself, in a file alice owns, does log in (so a refusal below is the
    // planted file's doing, not a wrong digest).
    w.write_as(&alice.account, &target, &store::encode(&record), 0o600);
    let mut pop = server.connect();
    pop.apop(alice.name(), &secret_r);
    pop.ok("QUIT");
    pop.expect_closed();
    let out = crate::tools_harness::Run::new(crate::tools_harness::APOPPASSWD)
        .arg("--config")
        .arg(config.to_str().unwrap())
        .args(["--check", "--stdin", "alice"])
        .stdin(format!("{secret_r}\n"))
        .run();
    assert_eq!(out.code, 0, "control --check with R: {out:#?}");
    w.write_as(&alice.account, &target, &valid_a, 0o600);

    for planted in [Planted::Symlink, Planted::HardLink] {
        let stop = AtomicBool::new(false);
        let swaps = AtomicUsize::new(0);
        let (r_tries, a_wins, check_r, check_a_wins) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                let staged_a = home.join(".swap-a");
                let staged_r = home.join(".swap-r");
                while !stop.load(Ordering::SeqCst) {
                    w.write_as(&alice.account, &staged_a, &valid_a, 0o600);
                    std::fs::rename(&staged_a, &target).unwrap();
                    // Leave the CPU to the sessions (2 shared cores); each state lasts about
                    // as long as the other, far less than a login takes.
                    std::thread::sleep(Duration::from_micros(250));
                    let _ = std::fs::remove_file(&staged_r);
                    match planted {
                        Planted::Symlink => {
                            std::os::unix::fs::symlink(&root_file, &staged_r).unwrap()
                        }
                        Planted::HardLink => std::fs::hard_link(&root_file, &staged_r).unwrap(),
                    }
                    std::fs::rename(&staged_r, &target).unwrap();
                    swaps.fetch_add(2, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(250));
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    let start = Instant::now();
                    while more(start, &r_tries) {
                        let mut pop = server.connect();
                        let line = pop.apop_line(alice.name(), &secret_r);
                        let reply = pop.cmd(&line);
                        r_tries.fetch_add(1, Ordering::SeqCst);
                        assert!(
                            reply.starts_with("-ERR"),
                            "{planted:?}: APOP with the root file's secret got {reply:?}"
                        );
                        let line = pop.apop_line(alice.name(), &secret_a);
                        let reply = pop.cmd(&line);
                        if reply.starts_with("+OK") {
                            a_wins.fetch_add(1, Ordering::SeqCst);
                        }
                        pop.send("QUIT");
                        let _ = pop.try_line();
                    }
                });
            }
            s.spawn(|| {
                let start = Instant::now();
                let mut i = 0;
                while more(start, &check_r) {
                    let (pw, is_r) = if i % 2 == 0 {
                        (&secret_r, true)
                    } else {
                        (&secret_a, false)
                    };
                    i += 1;
                    let out = crate::tools_harness::Run::new(crate::tools_harness::APOPPASSWD)
                        .arg("--config")
                        .arg(config.to_str().unwrap())
                        .args(["--check", "--stdin", "alice"])
                        .stdin(format!("{pw}\n"))
                        .run();
                    if is_r {
                        check_r.fetch_add(1, Ordering::SeqCst);
                        assert_ne!(out.code, 0, "{planted:?}: --check matched R: {out:#?}");
                    } else if out.code == 0 {
                        check_a_wins.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            // The clients end by count and time; then the swapper.
            let start = Instant::now();
            while (more(start, &r_tries) || more(start, &check_r)) && start.elapsed() < LIMIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            while !crate::ipop3d_pids(&config).is_empty() && start.elapsed() < 2 * LIMIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::SeqCst);
        });
        crate::report(&format!(
            "{planted:?} swapped {} times: APOP with R tried {} times (never in), with A in {} \
             times; --check with R {} times (never matched), with A matched {} times",
            swaps.load(Ordering::SeqCst),
            r_tries.load(Ordering::SeqCst),
            a_wins.load(Ordering::SeqCst),
            check_r.load(Ordering::SeqCst),
            check_a_wins.load(Ordering::SeqCst)
        ));
        assert!(
            r_tries.load(Ordering::SeqCst) >= 10 && check_r.load(Ordering::SeqCst) >= 10,
            "too few attempts to mean anything"
        );
    }
    // The root file is as it was.
    let meta = std::fs::metadata(&root_file).unwrap();
    assert_eq!(
        (
            meta.permissions().mode() & 0o7777,
            std::os::unix::fs::MetadataExt::uid(&meta)
        ),
        (0o600, 0)
    );
    assert_eq!(std::fs::read(&root_file).unwrap(), store::encode(&record));
}
