//! Requests the core makes on its own behalf (definitions import): sent to
//! a queue's owner or shard 0 exactly as a connection's are, and answered
//! to a waiter on this shard instead of a socket. A waiter's connection id
//! carries [`WAITER_BIT`] (connections count from 1; the fan-ins use the
//! two bits above it), so a reply finds its waiter before any connection
//! lookup.

use super::Shard;
use crate::protocol::ErrorCode;
use crate::rt::Notify;
use crate::server::types::{ConnRef, QueueError, Reply, Request};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Connection ids with this bit name a waiter of [`Shard::ask`].
pub(super) const WAITER_BIT: u64 = 1 << 61;

/// How long one request waits for its answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Waiter {
    reply: RefCell<Option<Reply>>,
    done: Notify,
}

thread_local! {
    static WAITERS: RefCell<HashMap<u64, Rc<Waiter>>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

/// What the core asks: a request to a queue's owner, an exchange
/// declare, or a binding.
pub enum Ask {
    Request { owner: u16, req: Request },
    DeclareExchange(crate::routing::ExchangeDef),
    Bind(crate::routing::BindingDef),
}

impl Shard {
    /// Sends `ask` and waits for its answer: `Ok` with the reply's value,
    /// or the error it carried (a timeout is `Internal`).
    pub async fn ask(&self, ask: Ask) -> Result<u64, QueueError> {
        let token = NEXT.with(|n| {
            let v = n.get();
            n.set(v.wrapping_add(1) & (WAITER_BIT - 1));
            v
        });
        let w = Rc::new(Waiter::default());
        WAITERS.with(|m| m.borrow_mut().insert(token, w.clone()));
        let me = ConnRef { shard: self.id, conn_id: WAITER_BIT | token };
        match ask {
            Ask::Request { owner, req } => self.submit(me, token, owner, req),
            Ask::DeclareExchange(def) => self.declare_exchange(me, token, def),
            Ask::Bind(b) => self.bind(me, token, b, false),
        }
        let wait = async {
            loop {
                let n = w.done.notified();
                if let Some(r) = w.reply.borrow_mut().take() {
                    return Some(r);
                }
                n.await;
            }
        };
        let late = async {
            glommio::timer::sleep(ASK_TIMEOUT).await;
            None
        };
        let got = futures_lite::future::or(wait, late).await;
        WAITERS.with(|m| m.borrow_mut().remove(&token));
        match got {
            Some(Reply::Ok { value, .. }) => Ok(value),
            Some(Reply::Error { code, message, .. }) => Err(QueueError::new(code, message)),
            Some(other) => Err(QueueError::new(ErrorCode::Internal, format!("unexpected answer {other:?}"))),
            None => Err(QueueError::new(ErrorCode::Internal, format!("no answer within {ASK_TIMEOUT:?}"))),
        }
    }

    /// Whether a reply is addressed to a waiter; if so it is consumed.
    pub(super) fn waiter_reply(&self, conn_id: u64, reply: Reply) -> Option<Reply> {
        if conn_id & WAITER_BIT == 0 || conn_id & super::routing_replica::FANIN_BIT != 0 {
            return Some(reply);
        }
        let token = conn_id & !WAITER_BIT;
        match WAITERS.with(|m| m.borrow().get(&token).cloned()) {
            Some(w) => {
                *w.reply.borrow_mut() = Some(reply);
                w.done.notify();
            }
            None => tracing::debug!(token, "answer for a waiter that gave up discarded"),
        }
        None
    }
}
