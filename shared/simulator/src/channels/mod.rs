//! One module per simulated channel, each a router of that channel's endpoints.

mod amazon;
mod bigcommerce;
mod ebay;
mod etsy;
mod orders;
mod shopify;
mod tiktok;
mod woocommerce;
mod zalando;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use manifold_domain::Channel;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{channel_error, state::SimState};

pub(crate) type St = axum::extract::State<Arc<SimState>>;

pub(crate) fn routes(channel: Channel) -> Router<Arc<SimState>> {
    match channel {
        Channel::Shopify => shopify::routes(),
        Channel::Woocommerce => woocommerce::routes(),
        Channel::Bigcommerce => bigcommerce::routes(),
        Channel::Amazon => amazon::routes(),
        Channel::Etsy => etsy::routes(),
        Channel::Tiktok => tiktok::routes(),
        Channel::Zalando => zalando::routes(),
        Channel::Ebay => ebay::routes(),
    }
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
