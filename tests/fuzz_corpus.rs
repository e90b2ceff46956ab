//! Replays every committed fuzz seed (`fuzz/seeds/<target>/`) through the
//! same target functions the libFuzzer binaries run (`fuzz/src/targets/`,
//! included by path), on the stable toolchain without libFuzzer. A crash
//! the fuzzer once found is kept there as a seed, so it stays fixed.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` rewrites the
//! seeds that are built from the project's own encoders, from frames as
//! lapin's codec (amq-protocol) writes them, and from segment files written
//! by the storage layer; crash reproducers (`crash-*`) are kept as they are.
//! See docs/security.md, "Fuzzing".
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

#[allow(dead_code)]
#[path = "../fuzz/src/targets/mod.rs"]
mod targets;

mod common;
mod fuzz_seeds;

use std::path::{Path, PathBuf};

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

/// Runs every seed of `target`; fails if it has none (a target nobody
/// replays is a target nobody notices breaking).
fn replay(target: &str) {
    let (_, run) = targets::ALL.iter().find(|(name, _)| *name == target).expect("a known target");
    let mut files: Vec<_> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz/seeds/{target} holds no seed");
    for f in &files {
        let data = std::fs::read(f).expect("a seed file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: seed {} fails", f.display());
    }
}

macro_rules! replays {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_replay_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in targets::ALL {
                assert!(tested.contains(name), "no replay test for fuzz target {name}");
            }
        }
    };
}

replays!(
    decode,
    amqp_frame,
    amqp_diff,
    amqp_props,
    table,
    record,
    recovery,
    definitions,
    config,
    link,
    data_link,
    reply_name
);

#[test]
#[ignore = "rewrites fuzz/seeds: run by hand after a format change"]
fn write_seeds() {
    for (target, seeds) in fuzz_seeds::all() {
        let dir = seed_dir(target);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
}
