//! See `ringmq_fuzz::targets::link`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::link(data));
