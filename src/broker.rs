//! Wires the front ends to the core: `Broker::start` is the core's
//! `Broker::start_with` with the AMQP front end serving the AMQP listener.
//! It lives above both, so `server/` (the core) does not import `amqp/`.

use crate::server::config::Config;
use crate::server::shard::Shard;
use crate::server::{Broker, StartError};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

impl Broker {
    /// Validates the config, binds every listener (native, AMQP, HTTP),
    /// starts the shards and returns once all of them accept connections.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        Broker::start_with(config, amqp_front)
    }
}

fn amqp_front(shard: Rc<Shard>, listener: glommio::net::TcpListener) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(crate::amqp::accept_loop(shard, listener))
}
