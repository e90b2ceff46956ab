//! See `ringmq_fuzz::targets::reply_name`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::reply_name(data));
