//! See `ringmq_fuzz::targets::data_link`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::data_link(data));
