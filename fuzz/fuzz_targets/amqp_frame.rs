//! See `ringmq_fuzz::targets::amqp_frame`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::amqp_frame(data));
