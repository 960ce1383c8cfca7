//! Building responses: JSON bodies, upstream Status errors, and streamed bodies for watches.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::error::ApiError;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with `status`.
pub fn json(status: u16, value: &Value) -> Resp {
    json_bytes(
        status,
        serde_json::to_vec(value).expect("JSON values always serialize"),
    )
}

pub fn json_bytes(status: u16, body: Vec<u8>) -> Resp {
    with_type(status, "application/json", body)
}

pub fn with_type(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// The error as a `Status` body with its code (and Retry-After for 429).
pub fn error(e: &ApiError) -> Resp {
    let mut r = json(e.code, &e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_static("1"));
    }
    r
}

/// Plain text, as Go's mux answers unknown non-API paths.
pub fn text(status: u16, body: &str) -> Resp {
    with_type(status, "text/plain; charset=utf-8", body.to_string())
}

/// Adds `Warning: 299 - "<text>"` headers, which kubectl prints.
pub fn add_warnings(r: &mut Resp, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append("Warning", v);
        }
    }
}
