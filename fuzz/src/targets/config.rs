//! The config file: TOML parsing into `Config`, then its validation.

use ringmq::server::config::Config;

/// Any text: parsed, and validated when it parses. Refusals are fine;
/// a panic or an overflow is not.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::from_toml(text) else { return };
    if cfg.validate().is_ok() {
        // A valid config's limits are usable as the broker uses them.
        assert!(cfg.message_bytes_max < cfg.frame_bytes_max);
        assert!(cfg.shard_count() >= 1);
    }
}
