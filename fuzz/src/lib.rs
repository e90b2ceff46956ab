//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by the root crate's `tests/fuzz_corpus.rs`, which
//! replays every seed in `fuzz/seeds/<target>/` through the same code.

pub mod targets;
