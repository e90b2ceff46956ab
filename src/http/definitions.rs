//! `/api/definitions`, as RabbitMQ's: `GET` exports every definition (or
//! one vhost's queues, exchanges and bindings at `/api/definitions/VHOST`),
//! `POST` imports a document (`server::definitions`: checked whole, then
//! applied). Administrator only; `handle` checked the login. The body is
//! held to `definitions_bytes_max` (413 past it) and the request timeout.

use super::{error, json_resp, Resp};
use crate::server::definitions::{self, ImportError};
use crate::server::shard::Shard;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use std::rc::Rc;
use std::time::Duration;

pub async fn route(shard: &Rc<Shard>, method: &Method, vhost: Option<&str>, body: Incoming) -> Resp {
    if let Some(v) = vhost {
        if !shard.has_vhost(v) {
            return error(StatusCode::NOT_FOUND, "no such vhost");
        }
    }
    match *method {
        Method::GET => json_resp(StatusCode::OK, &definitions::export(shard, vhost).await),
        Method::POST => post(shard, vhost, body).await,
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST"),
    }
}

/// 200 with what was imported (counts and notes); 400 with the reason
/// when the document or an item is refused (nothing applied); 413 over
/// `definitions_bytes_max`; 503 when applying stopped part way.
async fn post(shard: &Rc<Shard>, vhost: Option<&str>, body: Incoming) -> Resp {
    let timeout = Duration::from_millis(shard.config.http_request_timeout_ms);
    let max = usize::try_from(shard.config.definitions_bytes_max).unwrap_or(usize::MAX);
    let raw = match super::users::read_body(body, max, timeout).await {
        Ok(raw) => raw,
        Err(r) => return r,
    };
    let d = match definitions::read(&raw, vhost, &shard.config) {
        Ok(d) => d,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    match definitions::import(shard, d).await {
        Ok(done) => json_resp(StatusCode::OK, &serde_json::to_value(done).unwrap_or_default()),
        Err(ImportError::Refused(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(ImportError::Failed(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}
