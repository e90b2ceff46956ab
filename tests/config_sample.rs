//! `dist/ringmq.toml`, the sample configuration shipped for operators, and
//! the config table of `docs/operations.md`, against `Config` itself: the
//! sample parses, equals the built-in defaults and names every key (the
//! ones without a default commented out, with an example that parses), and
//! the table documents every key. A key added to `Config` without both
//! fails here, so neither can go stale. (`tests/cli.rs` starts a broker
//! from the sample.)
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::server::config::Config;

const SAMPLE: &str = include_str!("../dist/ringmq.toml");
const OPERATIONS: &str = include_str!("../docs/operations.md");

/// Every key `Config` takes, from serde's own list: the error for an
/// unknown key names every field, so no list is kept by hand here.
fn every_key() -> Vec<String> {
    let e = Config::from_toml("no_such_key_at_all = 0").unwrap_err().to_string();
    let list = e.split("expected one of").nth(1).unwrap_or_else(|| panic!("no key list in {e:?}"));
    let keys: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(keys.len() > 50 && keys.iter().any(|k| k == "cores"), "could not read the keys from {e:?}");
    keys
}

/// `key = value`, or `# key = value` for a key commented out: the key.
fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.strip_prefix("# ").unwrap_or(line).split_once(" = ")?;
    let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(k)
}

/// The sample's keys, set or commented out, and its `[[table]]` arrays.
/// Tables come last in TOML, and their own keys are not `Config`'s.
fn sample_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_table = false;
    for line in SAMPLE.lines() {
        if let Some(t) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            in_table = true;
            if !keys.iter().any(|k| k == t) {
                keys.push(t.to_owned());
            }
        } else if let Some(k) = key_of(line).filter(|_| !in_table) {
            keys.push(k.to_owned());
        }
    }
    keys
}

#[test]
fn the_sample_is_the_defaults() {
    let sample = Config::from_toml(SAMPLE).unwrap_or_else(|e| panic!("dist/ringmq.toml does not parse: {e}"));
    sample.validate().unwrap();
    assert_eq!(sample, Config::default(), "dist/ringmq.toml differs from Config::default()");
}

#[test]
fn the_sample_names_every_key_once() {
    let mut in_sample = sample_keys();
    let n = in_sample.len();
    in_sample.sort();
    in_sample.dedup();
    assert_eq!(in_sample.len(), n, "a key appears twice in dist/ringmq.toml");
    let mut all = every_key();
    all.sort();
    let missing: Vec<_> = all.iter().filter(|k| !in_sample.contains(k)).collect();
    let unknown: Vec<_> = in_sample.iter().filter(|k| !all.contains(k)).collect();
    assert!(missing.is_empty(), "keys missing from dist/ringmq.toml: {missing:?}");
    assert!(unknown.is_empty(), "not keys of Config: {unknown:?}");
}

#[test]
fn the_commented_out_examples_parse() {
    let commented: Vec<&str> =
        SAMPLE.lines().filter_map(|l| l.strip_prefix("# ").filter(|r| key_of(r).is_some())).collect();
    assert!(commented.len() >= 10, "{commented:?}");
    // All of them set, before the `[[users]]` table as in the file.
    let text = SAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(r) if key_of(r).is_some() => r,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("an example in dist/ringmq.toml is wrong: {e}"));
    assert!(c.tls_listen.is_some() && c.cluster_tls_ca_file.is_some() && c.memory_high_watermark_bytes.is_some());
}

#[test]
fn the_operations_guide_documents_every_key() {
    let table = OPERATIONS
        .split("| key | default | meaning |")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("docs/operations.md has the config table");
    let missing: Vec<_> = every_key().into_iter().filter(|k| !table.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "keys missing from docs/operations.md's config table: {missing:?}");
}
