//! `/api/users`, in RabbitMQ's shapes: `GET /api/users`, `GET`, `PUT` and
//! `DELETE /api/users/NAME`. The caller needs the administrator tag, as in
//! RabbitMQ; `handle` checked the login.

use super::{empty, error, json_resp, no_content, Resp};
use crate::auth::change::{ChangeError, UserChange};
use crate::auth::vhosts::VhostError;
use crate::server::admin_users::{self, UserChangeFailed};
use crate::server::shard::Shard;
use hyper::body::{Body as _, Incoming};
use hyper::{Method, StatusCode};
use std::rc::Rc;
use std::time::Duration;

/// A request body larger than this is refused (a user is a few hundred bytes).
const BODY_BYTES_MAX: usize = 64 << 10;

pub async fn route(shard: &Rc<Shard>, method: &Method, name: Option<&str>, body: Incoming) -> Resp {
    match (method, name) {
        (&Method::GET, None) => json_resp(StatusCode::OK, &shard.users_json()),
        (&Method::GET, Some(n)) => match shard.user_json(n) {
            Some(u) => json_resp(StatusCode::OK, &u),
            None => error(StatusCode::NOT_FOUND, "no such user"),
        },
        (&Method::PUT, Some(n)) => put(shard, n, body).await,
        (&Method::DELETE, Some(n)) => answer(shard, UserChange::Delete { name: n.to_string() }, false).await,
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

/// `/api/permissions/VHOST/USER`: `GET`, `PUT` with RabbitMQ's
/// `{"configure", "write", "read"}` (201 when the user had none there,
/// else 204), `DELETE`.
pub async fn permissions(shard: &Rc<Shard>, method: &Method, (vhost, user): (&str, &str), body: Incoming) -> Resp {
    match *method {
        Method::GET => match shard.permission_json(user, vhost) {
            Some(p) => json_resp(StatusCode::OK, &p),
            None => error(StatusCode::NOT_FOUND, "no such permission"),
        },
        Method::PUT => {
            let v = match json_body(shard, body).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            match admin_users::permission_change(user, vhost, &v) {
                Ok(c) => answer(shard, c, shard.permission_json(user, vhost).is_none()).await,
                Err(e) => failed(&e),
            }
        }
        Method::DELETE => {
            let c = UserChange::ClearPermissions { name: user.into(), vhost: vhost.into() };
            answer(shard, c, false).await
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

/// `/api/vhosts/NAME`: `PUT` creates it (201; 204 when it exists), `DELETE`
/// deletes it and every user's permissions in it (204; 404 when there is
/// none). Administrator only, as RabbitMQ.
pub async fn vhost(shard: &Rc<Shard>, method: &Method, name: &str) -> Resp {
    match *method {
        Method::PUT => {
            let created = !shard.has_vhost(name);
            answer(shard, UserChange::AddVhost { vhost: name.into(), create_only: false }, created).await
        }
        Method::DELETE => answer(shard, UserChange::DeleteVhost { vhost: name.into() }, false).await,
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

/// A JSON request body, read within the HTTP request timeout.
async fn json_body(shard: &Shard, body: Incoming) -> Result<serde_json::Value, Resp> {
    let timeout = Duration::from_millis(shard.config.http_request_timeout_ms);
    let raw = read_body(body, BODY_BYTES_MAX, timeout).await?;
    serde_json::from_slice::<serde_json::Value>(&raw)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "the body is not JSON"))
}

/// `PUT /api/users/NAME` with `{"password": ...}` or `{"password_hash":
/// ...}`, and `"tags"`: creates the user (201) or replaces it (204).
async fn put(shard: &Rc<Shard>, name: &str, body: Incoming) -> Resp {
    let v = match json_body(shard, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let made = admin_users::hash_from(&v).and_then(|hash| {
        let tags = admin_users::tags_from(&v)?;
        Ok(UserChange::Put { name: name.to_string(), hash, tags, create_only: false })
    });
    match made {
        Ok(c) => answer(shard, c, shard.user_json(name).is_none()).await,
        Err(e) => failed(&e),
    }
}

async fn answer(shard: &Rc<Shard>, change: UserChange, created: bool) -> Resp {
    match admin_users::change(shard, change).await {
        Ok(()) if created => empty(StatusCode::CREATED),
        Ok(()) => no_content(),
        Err(e) => failed(&e),
    }
}

fn failed(e: &UserChangeFailed) -> Resp {
    let status = match e {
        UserChangeFailed::Refused(ChangeError::NotFound(_) | ChangeError::Vhost(VhostError::NotFound(_))) => {
            StatusCode::NOT_FOUND
        }
        UserChangeFailed::Refused(ChangeError::Exists(_) | ChangeError::Vhost(VhostError::Exists(_))) => {
            StatusCode::CONFLICT
        }
        UserChangeFailed::Refused(_) | UserChangeFailed::BadRequest(_) => StatusCode::BAD_REQUEST,
        UserChangeFailed::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

/// The whole body, at most `max` bytes, within `timeout`.
pub(super) async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Vec<u8>, Resp> {
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, &format!("a body is at most {max} bytes"));
    if body.size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    let late = async {
        glommio::timer::sleep(timeout).await;
        Err(error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"))
    };
    futures_lite::future::or(read, late).await
}
