//! Permission checks for the channel methods (`server/grants.rs`): a
//! refusal closes the channel with 403 ACCESS_REFUSED, as in RabbitMQ.

use super::conn::{AmqpConn, Fault};
use crate::auth::permissions::Perm;
use crate::protocol::amqp::method::{code, MethodId};
use crate::server::grants::Kind;
use crate::server::types::QueueError;

impl AmqpConn {
    /// The user's permission for `p` on `kind` `name`.
    pub(super) fn may(&self, n: u16, mid: MethodId, p: Perm, kind: Kind, name: &str) -> Result<(), Fault> {
        let r = match self.grants.borrow().as_ref() {
            Some(g) => g.check(&self.shard, p, kind, name),
            None => Err(not_logged_in()),
        };
        r.map_err(|e| refused(n, mid, e))
    }

    /// Write on the exchange a publish batch goes to.
    pub(super) fn may_publish(&self, n: u16, mid: MethodId, exchange: &str) -> Result<(), Fault> {
        let r = match self.grants.borrow().as_ref() {
            Some(g) => g.check_publish(&self.shard, exchange),
            None => Err(not_logged_in()),
        };
        r.map_err(|e| refused(n, mid, e))
    }
}

fn not_logged_in() -> QueueError {
    QueueError::new(crate::protocol::ErrorCode::AccessRefused, "not logged in")
}

fn refused(channel: u16, cause: MethodId, e: QueueError) -> Fault {
    Fault::Channel { channel, code: code::ACCESS_REFUSED, text: format!("ACCESS_REFUSED - {}", e.message), cause }
}
