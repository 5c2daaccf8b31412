//! Errors as JSON problems: `{"error": code, "message": ...}` with the right status.

use serde_json::json;
use std::convert::Infallible;
use tracseq_core::Error;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// An error a handler returns; it becomes a problem response, never a panic.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<tracseq_learn::LearnError> for ApiError {
    fn from(e: tracseq_learn::LearnError) -> Self {
        match e {
            tracseq_learn::LearnError::Invalid(m) => ApiError::bad_request(m),
            other => Error::Internal(other.to_string()).into(),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("serialization failed: {e}")).into()
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        // Messages may quote the request (serde names an unknown field or
        // variant whole): never send back more than a screenful of it.
        let message = tracseq_core::error::excerpt(&self.message, MAX_MESSAGE_CHARS);
        let body = json!({"error": self.code, "message": message});
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// The longest problem message sent, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Every `error` code a problem may carry (the OpenAPI document's enum).
pub const PROBLEM_CODES: &[&str] = &[
    "invalid",
    "not_found",
    "conflict",
    "unavailable",
    "internal",
    "too_large",
    "length_required",
    "method_not_allowed",
    "unsupported_media_type",
    "unauthorized",
    "forbidden",
];

/// Turns a handler's result into a response.
pub fn respond(r: ApiResult) -> Response {
    r.unwrap_or_else(Reply::into_response)
}

/// Requests that matched no route or broke a filter's rule.
pub async fn recover(rej: Rejection) -> Result<Response, Infallible> {
    let e = if rej.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body exceeds the configured limit (api.max_body_bytes)",
        )
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        )
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else if let Some(q) = rej.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(format!("invalid query string: {q}"))
    } else if rej.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported content type",
        )
    } else {
        tracing::warn!(rejection = ?rej, "unhandled rejection");
        ApiError::bad_request(format!("bad request: {rej:?}"))
    };
    Ok(e.into_response())
}
