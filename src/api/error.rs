//! The JSON error model `{"error":{"code","message"}}` and the body and query extractors that
//! turn every malformed request into a 4xx of that shape.

use super::AppState;
use crate::error::Error;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// An API error: a status, a code and a message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// snake_case code.
    pub code: &'static str,
    /// Human text.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
        }
    }

    /// 400/422 `invalid_request`.
    pub fn invalid(status: u16, message: impl Into<String>) -> ApiError {
        ApiError::new(status, "invalid_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Internal(_)) {
            tracing::error!(error = %e, "internal error");
        }
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body: any content type, unknown fields and bad values rejected as `invalid_request`
/// (400 for malformed JSON, 422 for well-formed JSON of the wrong shape), 413 past the limit
/// (at once when the `Content-Length` header already says so), 408 `request_timeout` when the
/// whole body has not arrived within [`AppState::body_timeout`] (a client that declares a body
/// and trickles it, or never sends it, would otherwise hold its connection forever; hyper
/// closes a connection whose body was left unread). An empty body counts as `{}`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.body_limit as u64) {
            return Err(too_large());
        }
        // the timer is armed only if the body is not already there at the first poll
        let read = tokio::time::timeout(state.body_timeout, Bytes::from_request(req, state));
        let bytes = read.await.map_err(|_| too_slow(state))?.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::invalid(400, format!("cannot read body: {e}"))
            }
        })?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        match whole::<Object<T>>(&mut serde_json::Deserializer::from_slice(&bytes)) {
            Ok(Object(v)) => Ok(Body(v)),
            Err(e) => {
                // a shape error can come before a syntax error further on: the body is
                // malformed JSON (400) if it does not parse at all, whatever serde met first
                // (into a Value: skipping values would check neither UTF-8 nor escapes)
                let malformed = matches!(
                    e.classify(),
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                ) || serde_json::from_slice::<serde_json::Value>(&bytes).is_err();
                if malformed {
                    Err(ApiError::invalid(400, format!("invalid JSON body: {e}")))
                } else {
                    let why = misshapen::<T>(&bytes).unwrap_or_else(|| e.to_string());
                    Err(ApiError::invalid(422, format!("invalid JSON body: {why}")))
                }
            }
        }
    }
}

/// A query string: unknown parameters and bad values are 400 `invalid_request`, the message
/// led by the parameter at fault (`invalid query string: page: "x" is not a whole number`).
/// axum's `Query` answers plain text that names axum instead.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Params)
            .map_err(|e| ApiError::invalid(400, format!("invalid query string: {e}")))
    }
}

fn too_large() -> ApiError {
    ApiError::new(413, "payload_too_large", "request body too large")
}

fn too_slow(state: &AppState) -> ApiError {
    ApiError::new(
        408,
        "request_timeout",
        format!(
            "the request body did not arrive within {} ms",
            state.body_timeout.as_millis()
        ),
    )
}

/// A value that deserializes from a JSON object only. serde's derived structs would also take
/// an array of their fields in order (`["bob"]` for `{"name":"bob"}`), and no body of API.md,
/// nor any object inside one, is written that way: the extractor wraps every body in it, and
/// a body wraps the objects it nests (the ticks of `POST /market/ticks`).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(Only(PhantomData))
    }
}

/// Deserializes one value that must be the whole input (only whitespace may follow).
fn whole<T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> serde_json::Result<T> {
    let v = T::deserialize(&mut *de)?;
    de.end()?;
    Ok(v)
}

/// Why a well-formed body does not fit `T`, led by the field that does not
/// (`ticks[0].price: …`), without serde's line and column. Parsed a second time, with the path
/// tracked, only once the first parse has failed: a good body pays nothing for it.
fn misshapen<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let e = serde_path_to_error::deserialize::<_, Object<T>>(&mut de).err()?;
    let text = e.inner().to_string();
    let at = format!(
        " at line {} column {}",
        e.inner().line(),
        e.inner().column()
    );
    // the integer types of the bodies, named in words
    let why = text
        .strip_suffix(&at)
        .unwrap_or(&text)
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected i64", "expected a whole number");
    Some(match e.path().to_string().as_str() {
        "." => why,
        path => format!("{path}: {why}"),
    })
}
