//! Wires the front ends to the core: `Broker::start` is the core's
//! `Broker::start_with` with the native, AMQP and HTTP front ends serving
//! their listeners. It lives above all of them, so `server/` (the core)
//! imports none of the protocols built on it.

use crate::server::config::Config;
use crate::server::shard::Shard;
use crate::server::{Broker, FrontEnds, StartError};
use glommio::net::TcpListener;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

type Tls = Option<Arc<crate::server::tls::ListenerTls>>;

impl Broker {
    /// Validates the config, binds every listener (native, AMQP, HTTP),
    /// starts the shards and returns once all of them accept connections.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        Broker::start_with(config, FrontEnds { native: native_front, amqp: amqp_front, http: http_front })
    }
}

// One box per listener per shard, at start: nothing per connection.
fn native_front(shard: Rc<Shard>, listener: TcpListener, tls: Tls) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(crate::native::accept_loop(shard, listener, tls))
}

fn amqp_front(shard: Rc<Shard>, listener: TcpListener, tls: Tls) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(crate::amqp::accept_loop(shard, listener, tls))
}

fn http_front(shard: Rc<Shard>, listener: TcpListener, tls: Tls) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(crate::http::accept_loop(shard, listener, tls))
}
