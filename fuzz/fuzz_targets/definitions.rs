//! See `ringmq_fuzz::targets::definitions`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::definitions(data));
