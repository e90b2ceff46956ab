//! connection.start and start-ok, and the login: SASL `PLAIN` (a user and password), and
//! `EXTERNAL` on a TLS connection whose client certificate the handshake
//! verified (the user is the certificate's subject, RabbitMQ's
//! `rabbitmq_auth_mechanism_ssl`). `EXTERNAL` is offered only where a
//! certificate was presented.

use super::conn::{conn_fault, AmqpConn, Fault, Phase, HEARTBEAT_S};
use crate::auth::LoginError;
use crate::protocol::amqp::method::{self, code, id};
use crate::protocol::amqp::wire::{self, put_longstr, TableWriter};
use crate::server::shard::Credential;
use bytes::{BufMut, BytesMut};

impl AmqpConn {
    /// The mechanisms connection.start offers, space-separated.
    pub(super) fn mechanisms(&self) -> &'static [u8] {
        match self.certificate_login.borrow().is_some() {
            true => b"PLAIN EXTERNAL",
            false => b"PLAIN",
        }
    }

    /// Checks the login start-ok carries; the user's name when it passes.
    pub(super) fn log_in(&self, mechanism: &str, response: &[u8]) -> Result<String, Fault> {
        let cause = id::CONNECTION_START_OK;
        let (user, credential) = match mechanism {
            // PLAIN: [authzid] NUL authcid NUL passwd
            "PLAIN" => {
                let mut parts = response.split(|b| *b == 0);
                let (_authz, user, pass) = (parts.next(), parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
                (String::from_utf8_lossy(user).into_owned(), Credential::Password(pass))
            }
            "EXTERNAL" => match self.certificate_login.borrow().clone() {
                Some(Ok(user)) => (user, Credential::Certificate),
                Some(Err(why)) => {
                    let text = format!("ACCESS_REFUSED - EXTERNAL login refused: {why}");
                    return Err(conn_fault(code::ACCESS_REFUSED, text, cause));
                }
                None => {
                    let text = "ACCESS_REFUSED - EXTERNAL needs a TLS client certificate; use PLAIN".to_string();
                    return Err(conn_fault(code::ACCESS_REFUSED, text, cause));
                }
            },
            other => {
                let text =
                    format!("mechanism {other} is not supported; use PLAIN or, with a client certificate, EXTERNAL");
                return Err(conn_fault(code::ACCESS_REFUSED, text, cause));
            }
        };
        match self.shard.log_in("amqp", &user, credential, self.peer) {
            Ok(_) => Ok(user),
            Err(LoginError::LoopbackOnly) => {
                let text = format!("ACCESS_REFUSED - user '{user}' can only connect via localhost");
                Err(conn_fault(code::ACCESS_REFUSED, text, cause))
            }
            Err(e) => {
                let text =
                    format!("ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism} (user '{user}'): {e}");
                Err(conn_fault(code::ACCESS_REFUSED, text, cause))
            }
        }
    }
}

impl AmqpConn {
    /// connection.open's vhost: it must exist, and the user must have
    /// permissions there (RabbitMQ's "access to vhost refused"). The
    /// connection then works in it: its names are scoped by it, and its
    /// permissions are the user's there.
    pub(super) fn open_vhost(&self, vhost: &str) -> Result<(), Fault> {
        let refused = |text: String| conn_fault(code::NOT_ALLOWED, text, id::CONNECTION_OPEN);
        if !self.shard.has_vhost(vhost) {
            return Err(refused(format!("NOT_ALLOWED - vhost '{vhost}' not found")));
        }
        let user = self.grants.borrow().as_ref().map(|g| g.user().to_string()).unwrap_or_default();
        if self.shard.permission_of(&user, vhost).1.is_none() {
            tracing::info!(peer = ?self.peer, user, vhost, "AMQP connection refused: no permissions in the vhost");
            return Err(refused(format!("NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'")));
        }
        *self.grants.borrow_mut() = Some(crate::server::grants::Grants::new(&self.shard, &user, vhost));
        let _ = self.vhost.set(vhost.to_string());
        Ok(())
    }

    /// connection.start: the server's properties, capabilities and login
    /// mechanisms.
    pub(super) fn put_start(&self, b: &mut BytesMut) {
        method::put(b, 0, id::CONNECTION_START, |b| {
            b.put_u8(0);
            b.put_u8(9);
            let t = TableWriter::begin(b);
            t.str(b, "product", "ringmq");
            t.str(b, "version", env!("CARGO_PKG_VERSION"));
            t.str(b, "platform", "Rust");
            t.str(b, "information", "https://github.com/ringmq (AMQP 0-9-1 front end, see docs/amqp.md)");
            let caps = t.table(b, "capabilities");
            caps.bool(b, "publisher_confirms", true);
            caps.bool(b, "basic.nack", true);
            caps.bool(b, "consumer_cancel_notify", true);
            caps.bool(b, "exchange_exchange_bindings", true);
            caps.bool(b, "connection.blocked", true);
            caps.bool(b, "authentication_failure_close", true);
            caps.bool(b, "per_consumer_qos", true);
            caps.bool(b, "direct_reply_to", true);
            caps.finish(b);
            t.finish(b);
            put_longstr(b, self.mechanisms());
            put_longstr(b, b"en_US");
        });
    }

    /// connection.start-ok: logs in and answers connection.tune.
    pub(super) fn start_ok(&self, client_props: &[u8], mechanism: &str, response: &[u8]) -> Result<(), Fault> {
        let user = self.log_in(mechanism, response)?;
        *self.grants.borrow_mut() =
            Some(crate::server::grants::Grants::new(&self.shard, &user, crate::auth::vhosts::DEFAULT_VHOST));
        let mut st = self.st.borrow_mut();
        st.cancel_notify = wire::has_capability(client_props, "consumer_cancel_notify");
        st.blocked_cap = wire::has_capability(client_props, "connection.blocked");
        st.phase = Phase::TuneOk;
        let (channel_max, frame_max) = (st.channel_max, crate::protocol::wire::len32(st.frame_max));
        self.outbox.push(|b| {
            method::put(b, 0, id::CONNECTION_TUNE, |b| {
                b.put_u16(channel_max);
                b.put_u32(frame_max);
                b.put_u16(HEARTBEAT_S);
            })
        });
        tracing::debug!(peer = ?self.peer, %user, "AMQP login");
        Ok(())
    }
}
