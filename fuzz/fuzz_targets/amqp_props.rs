//! See `ringmq_fuzz::targets::amqp_props`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmq_fuzz::targets::amqp_props(data));
