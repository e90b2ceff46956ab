//! See `ringmq_fuzz::targets::amqp_diff`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::amqp_diff(data));
