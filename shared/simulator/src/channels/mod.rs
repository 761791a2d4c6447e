//! One module per simulated channel: its endpoints, and as its [`SimChannel`] the rest of what the
//! simulator knows of it (credentials, error bodies, rate limit, order fields). [`module`] is the
//! registry.

mod amazon;
mod bigcommerce;
mod ebay;
mod etsy;
pub(crate) mod kaufland;
mod orders;
mod otto;
mod shopify;
mod tiktok;
mod woocommerce;
mod zalando;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use manifold_domain::Channel;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    channel_error,
    limits::{SimLimit, Status},
    state::SimState,
};

pub(crate) type St = axum::extract::State<Arc<SimState>>;

/// What the simulator knows of one channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SimChannel {
    /// The channel's endpoints, below `/{channel}`.
    pub(crate) routes: fn() -> Router<Arc<SimState>>,
    /// The documented rate limit by default (request-based ones are enforced in front of every
    /// endpoint; a cost-based [`SimLimit::Points`] is charged by the handler that knows the cost).
    pub(crate) limit: Option<SimLimit>,
    /// Whether the request carries the channel's credentials (expiring tokens are checked apart).
    pub(crate) authorized: fn(&Access<'_>) -> bool,
    /// An error in the channel's own documented shape.
    pub(crate) error_body: fn(StatusCode, &str) -> Value,
    /// The allowance headers the channel documents.
    pub(crate) rate_headers: fn(&Status, &mut HeaderMap),
    /// The JSON pointer of a seeded order's id.
    pub(crate) order_id: &'static str,
    /// When a seeded order was last updated, read from the field the channel's list filter compares.
    pub(crate) updated_at: fn(&Value) -> Option<DateTime<Utc>>,
    /// The pointer of a flag that marks a seeded order as already taken (Zalando's `exported`).
    pub(crate) exported: Option<&'static str>,
}

/// The registry: every simulated channel.
pub(crate) const fn module(channel: Channel) -> &'static SimChannel {
    match channel {
        Channel::Shopify => &shopify::MODULE,
        Channel::Woocommerce => &woocommerce::MODULE,
        Channel::Bigcommerce => &bigcommerce::MODULE,
        Channel::Amazon => &amazon::MODULE,
        Channel::Etsy => &etsy::MODULE,
        Channel::Tiktok => &tiktok::MODULE,
        Channel::Zalando => &zalando::MODULE,
        Channel::Ebay => &ebay::MODULE,
        Channel::Kaufland => &kaufland::MODULE,
        Channel::Otto => &otto::MODULE,
    }
}

/// What a request shows of its credentials.
#[derive(Debug)]
pub(crate) struct Access<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: &'a str,
    pub(crate) path: &'a str,
}

impl Access<'_> {
    /// The header is present and not empty.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.headers.get(name).is_some_and(|v| !v.is_empty())
    }

    /// The header's value starts with `prefix` (`Bearer `, `Basic `).
    pub(crate) fn scheme(&self, name: &str, prefix: &str) -> bool {
        self.headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(prefix))
    }
}

/// For channels that document no allowance headers.
pub(crate) fn no_rate_headers(_: &Status, _: &mut HeaderMap) {}

/// A header value of a whole, non-negative figure.
pub(crate) fn whole(x: f64) -> HeaderValue {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = x.max(0.0).floor() as u64;
    HeaderValue::from(n)
}

/// A header value of a duration in milliseconds.
pub(crate) fn millis(d: std::time::Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses a request body into the documented shape, or answers with the channel's error body.
pub(crate) fn parse<T: DeserializeOwned>(channel: Channel, status: StatusCode, body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| channel_error(channel, status, &format!("invalid request body: {e}")))
}

pub(crate) fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

pub(crate) fn not_found(channel: Channel, what: &str) -> Response {
    channel_error(channel, StatusCode::NOT_FOUND, &format!("{what} not found"))
}

/// A compact unique id for things the simulator creates (feed ids, transactions).
pub(crate) fn fresh_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A catalog price in minor units as the decimal string most channels show (`"19.99"`).
pub(crate) fn price_text(minor: Option<i64>) -> String {
    let m = minor.unwrap_or(1000);
    format!("{}.{:02}", m / 100, (m % 100).abs())
}

/// A query parameter as a number, or `default` when absent or unreadable.
pub(crate) fn num(q: &std::collections::HashMap<String, String>, key: &str, default: usize) -> usize {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
pub(crate) struct FormPart {
    pub(crate) name: String,
    pub(crate) file_name: Option<String>,
    pub(crate) bytes: Bytes,
}

/// The parts of a `multipart/form-data` request (staged image uploads), or why it is not one.
pub(crate) async fn form_parts(headers: &HeaderMap, body: Bytes) -> Result<Vec<FormPart>, String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|e| format!("not multipart/form-data: {e}"))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| format!("malformed multipart body: {e}"))? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| format!("malformed multipart part {name}: {e}"))?;
        parts.push(FormPart { name, file_name, bytes });
    }
    Ok(parts)
}

/// The hex SHA-256 of uploaded bytes, as the simulator keeps an uploaded image.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
