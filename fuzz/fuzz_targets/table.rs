//! See `ringmq_fuzz::targets::table`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::table(data));
