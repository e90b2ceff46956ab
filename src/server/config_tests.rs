use super::*;

#[test]
fn defaults_validate() {
    Config::default().validate().unwrap();
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_toml("frame_bytes_maxx = 10").unwrap_err().to_string();
    assert!(e.contains("frame_bytes_maxx"), "{e}");
}

#[test]
fn http_timeouts_are_checked() {
    let c = Config::from_toml("http_idle_timeout_ms = 0").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("http_idle_timeout_ms"), "{e}");
    let c = Config::from_toml("http_request_timeout_ms = 100000000").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("http_request_timeout_ms"), "{e}");
    let c = Config::from_toml("http_idle_timeout_ms = 500\nhttp_request_timeout_ms = 200").unwrap();
    c.validate().unwrap();
}

#[test]
fn connection_keys_are_checked() {
    for (toml, key) in [
        ("handshake_bytes_max = 100", "handshake_bytes_max"),
        ("handshake_bytes_max = 8388608", "handshake_bytes_max"),
        ("unauthenticated_connections_max = 0", "unauthenticated_connections_max"),
        ("send_timeout_ms = 0", "send_timeout_ms"),
        ("idle_spin_us = 10001", "idle_spin_us"),
        ("heartbeat_ms = 5", "heartbeat_ms"),
        ("tcp_keepalive_idle_ms = 10", "tcp_keepalive_idle_ms"),
        ("tcp_keepalive_probes = 0", "tcp_keepalive_probes"),
    ] {
        let e = Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    Config::from_toml("heartbeat_ms = 0\ntcp_keepalive_idle_ms = 0").unwrap().validate().unwrap();
}

#[test]
fn bad_value_names_its_key() {
    let c = Config::from_toml("message_bytes_max = 9000000\nframe_bytes_max = 4096").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("message_bytes_max"), "{e}");
}

#[test]
fn table_depth_is_checked() {
    for bad in ["table_depth_max = 0", "table_depth_max = 256"] {
        let e = Config::from_toml(bad).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("table_depth_max"), "{e}");
    }
    Config::from_toml("table_depth_max = 255").unwrap().validate().unwrap();
    assert_eq!(Config::default().table_depth_max, 32);
}

#[test]
fn storage_keys_are_checked() {
    let c = Config::from_toml("compact_live_ratio_pct = 95").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("compact_live_ratio_pct"));
    let c = Config::from_toml("memory_budget_bytes = 1000").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("memory_budget_bytes"));
    Config::from_toml("compact_live_ratio_pct = 0\nmemory_budget_bytes = 1048576").unwrap().validate().unwrap();
    let c = Config::from_toml("segments_recycled_max = 65").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("segments_recycled_max"));
    Config::from_toml("segments_recycled_max = 0").unwrap().validate().unwrap();
}

#[test]
fn alarm_keys_are_checked() {
    let c = Config::from_toml("memory_high_watermark_bytes = 1000").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("memory_high_watermark_bytes"));
    let c = Config::from_toml("memory_high_watermark_bytes = 1048576\ndisk_free_limit_bytes = 0").unwrap();
    c.validate().unwrap();
    assert_eq!(c.memory_high_watermark_bytes, Some(1 << 20));
    assert_eq!(Config::default().disk_free_limit_bytes, 50_000_000);
    assert_eq!(Config::default().memory_high_watermark_bytes, None);
}

#[test]
fn transaction_limits_are_checked() {
    for (toml, key) in [
        ("tx_messages_max = 0", "tx_messages_max"),
        ("tx_bytes_max = 1000", "tx_bytes_max"),
        ("tx_bytes_max = 2000000000000", "tx_bytes_max"),
    ] {
        let e = Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    Config::from_toml("tx_messages_max = 1\ntx_bytes_max = 1048576").unwrap().validate().unwrap();
}
