//! See `ringmq_fuzz::targets::decode`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::decode(data));
