//! HTTP response helpers for the API Gateway functions.

use lambda_http::{Body, Response};

/// A small JSON body `{"status", "message", "trace_id"}` with the trace id also in a header.
pub fn json_response(status: u16, message: &str, trace_id: &str) -> Result<Response<Body>, http::Error> {
    let body = serde_json::json!({ "status": status, "message": message, "trace_id": trace_id }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(manifold_telemetry::TRACE_HEADER, trace_id)
        .body(Body::from(body))
}
