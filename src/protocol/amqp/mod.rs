//! The AMQP 0-9-1 codec, sans-IO, shared by the broker's AMQP front end
//! (`crate::amqp`, which decodes client methods and encodes server ones)
//! and by clients such as the load generator (which do the opposite).
//! Like the native codec it reads byte slices and appends to a `BytesMut`:
//! no sockets, nothing from the broker, only `bytes` and
//! [`crate::protocol::field_table`].
//!
//! | piece | module |
//! |---|---|
//! | field types (tables, bits, strings): the [`wire::Reader`] and writers | [`wire`] |
//! | framing: [`frame::decode`] for both sides, [`frame::FrameWriter`], content and body frames | [`frame`] |
//! | method and class ids, reply codes, client methods parsed, methods built | [`method`] |
//! | the server's methods as a client reads them: deliver, ack/nack, tune, close | [`client`] |

pub mod client;
pub mod frame;
pub mod method;
pub mod wire;

#[cfg(test)]
mod method_tx_tests;
