//! See `ringmq_fuzz::targets::recovery`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::recovery(data));
