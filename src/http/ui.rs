//! The management web UI (docs/operations.md, "Management UI"): static
//! files compiled into the binary, served at `/` on the HTTP listener. The
//! page logs in with a form and sends the credentials as basic auth with
//! each call to the JSON API, which checks them (and the user's tags) as
//! for any other client: the files themselves are public, and hold no data.
//!
//! Each file is sent with its content type, `nosniff`, a Content-Security-
//! Policy that allows scripts, styles and API calls from this origin only
//! (no inline script, no `eval`, no framing), and `Cache-Control:
//! no-cache` with an ETag: a browser revalidates (a 304) and so never
//! keeps files of an older broker.

use super::{empty, Body, Resp};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};
use sha2::{Digest, Sha256};

/// One embedded file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: [Asset; 8] = [
    Asset { path: "/", content_type: HTML, bytes: include_bytes!("ui/index.html") },
    Asset { path: "/ui/app.css", content_type: CSS, bytes: include_bytes!("ui/app.css") },
    Asset { path: "/ui/dom.js", content_type: JS, bytes: include_bytes!("ui/dom.js") },
    Asset { path: "/ui/api.js", content_type: JS, bytes: include_bytes!("ui/api.js") },
    Asset { path: "/ui/charts.js", content_type: JS, bytes: include_bytes!("ui/charts.js") },
    Asset { path: "/ui/lists.js", content_type: JS, bytes: include_bytes!("ui/lists.js") },
    Asset { path: "/ui/queue.js", content_type: JS, bytes: include_bytes!("ui/queue.js") },
    Asset { path: "/ui/app.js", content_type: JS, bytes: include_bytes!("ui/app.js") },
];

/// The policy of every UI file: this origin's scripts, styles and API
/// only; images only as `data:` (none are used); no plugins, no forms
/// posting elsewhere, no framing (clickjacking).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is one of the UI's (the rest of the HTTP listener is the
/// API and the metrics).
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/ui/")
}

/// The file at `path` (`GET` or `HEAD`), 304 when `If-None-Match` names
/// it, 404 for a path of the UI that has none, 405 for another method.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Resp {
    let path = if path == "/index.html" { "/" } else { path };
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return with_policy(super::error(StatusCode::NOT_FOUND, "not found"));
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = with_policy(super::error(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let etag = etag(asset.bytes);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if matches {
        empty(StatusCode::NOT_MODIFIED)
    } else if method == Method::HEAD {
        // hyper sends no body for HEAD; the length is the file's.
        let mut r = super::text(StatusCode::OK, asset.content_type, Body::new(Vec::new()));
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
        r
    } else {
        super::text(StatusCode::OK, asset.content_type, Body::new(vec![bytes::Bytes::from_static(asset.bytes)]))
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(r)
}

/// A strong ETag: the file's SHA-256, shortened (files change only with
/// the binary).
fn etag(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The headers every UI response carries.
fn with_policy(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_policy() {
        for a in &ASSETS {
            let r = serve(&Method::GET, a.path, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, r.headers()[header::ETAG].clone());
            assert_eq!(serve(&Method::GET, a.path, &h).status(), StatusCode::NOT_MODIFIED);
        }
    }

    #[test]
    fn no_inline_script_or_html_sink_in_the_files() {
        for a in &ASSETS {
            let text = std::str::from_utf8(a.bytes).unwrap();
            // Data from the broker is set with textContent; nothing writes
            // HTML from strings (the CSP forbids inline script anyway).
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "onclick="] {
                assert!(!text.contains(sink), "{} uses {sink}", a.path);
            }
            if a.content_type == HTML {
                assert!(!text.contains("<script>"), "inline script in {}", a.path);
            }
        }
    }

    #[test]
    fn unknown_files_and_other_methods_are_refused() {
        assert_eq!(serve(&Method::GET, "/ui/nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        assert_eq!(serve(&Method::GET, "/ui/../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        assert_eq!(serve(&Method::POST, "/", &HeaderMap::new()).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
