//! eBay: `bulkUpdatePriceQuantity` (25 requests per call, per-SKU statuses), inventory reads, the
//! Fulfillment API's orders and shipping fulfillments, and the notification public keys.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use manifold_domain::Channel;
use serde_json::{Value, json};

use super::{St, fresh_id, not_found, ok, parse};
use crate::channel_error;

const C: Channel = Channel::Ebay;
const MAX_REQUESTS: usize = 25;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/sell/inventory/v1/bulk_update_price_quantity", post(bulk_update))
        .route("/sell/inventory/v1/bulk_get_inventory_item", post(bulk_get))
        .route("/sell/fulfillment/v1/order", get(orders))
        .route("/sell/fulfillment/v1/order/{id}", get(order))
        .route("/sell/fulfillment/v1/order/{id}/shipping_fulfillment", post(ship))
        .route("/commerce/notification/v1/public_key/{kid}", get(public_key))
}

fn bad(message: &str) -> Response {
    channel_error(C, StatusCode::BAD_REQUEST, message)
}

fn requests(body: &Bytes) -> Result<Vec<Value>, Response> {
    let req: Value = parse(C, StatusCode::BAD_REQUEST, body)?;
    let list = req.get("requests").and_then(Value::as_array).cloned().ok_or_else(|| bad("requests is required"))?;
    if list.is_empty() || list.len() > MAX_REQUESTS {
        return Err(bad("requests must hold between 1 and 25 entries"));
    }
    Ok(list)
}

async fn bulk_update(State(state): St, body: Bytes) -> Response {
    let list = match requests(&body) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut s = state.lock();
    let mut all_ok = true;
    let responses: Vec<Value> = list
        .iter()
        .map(|r| {
            let sku = r.get("sku").and_then(Value::as_str).unwrap_or_default();
            let quantity = r.pointer("/shipToLocationAvailability/quantity");
            let offers_ok = r.get("offers").is_none_or(|o| {
                o.as_array().is_some_and(|o| o.iter().all(|x| x.get("offerId").is_some() && x.pointer("/price/value").is_some_and(Value::is_string)))
            });
            if sku.is_empty() || !s.known(C, sku) {
                all_ok = false;
                json!({ "sku": sku, "statusCode": 404, "errors": [{ "errorId": 25_702, "domain": "API_INVENTORY", "message": format!("SKU {sku} is not available") }] })
            } else if quantity.is_some_and(|q| !q.is_i64()) || !offers_ok {
                all_ok = false;
                json!({ "sku": sku, "statusCode": 400, "errors": [{ "errorId": 25_709, "domain": "API_INVENTORY", "message": "Invalid value for quantity or offers" }] })
            } else {
                if let Some(q) = quantity.and_then(Value::as_i64) {
                    s.set_stock(C, sku, q);
                }
                json!({ "sku": sku, "statusCode": 200 })
            }
        })
        .collect();
    let status = if all_ok { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    (status, axum::Json(json!({ "responses": responses }))).into_response()
}

async fn bulk_get(State(state): St, body: Bytes) -> Response {
    let list = match requests(&body) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let s = state.lock();
    let responses: Vec<Value> = list
        .iter()
        .filter_map(|r| r.get("sku").and_then(Value::as_str))
        .map(|sku| match s.stock_of(C, sku) {
            Some(q) => json!({ "sku": sku, "statusCode": 200, "inventoryItem": { "sku": sku, "availability": { "shipToLocationAvailability": { "quantity": q } } } }),
            None => json!({ "sku": sku, "statusCode": 404 }),
        })
        .collect();
    ok(json!({ "responses": responses }))
}

async fn orders(State(state): St) -> Response {
    let s = state.lock();
    let orders: Vec<Value> = s.orders.get(&C).into_iter().flatten().map(|o| o.doc.clone()).collect();
    ok(json!({ "orders": orders, "total": orders.len() }))
}

async fn order(State(state): St, Path(id): Path<String>) -> Response {
    state.lock().order(C, &id).map_or_else(|| not_found(C, "order"), |o| ok(o.doc.clone()))
}

async fn ship(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let complete = req.get("lineItems").and_then(Value::as_array).is_some_and(|l| !l.is_empty())
        && req.get("trackingNumber").is_some_and(Value::is_string)
        && req.get("shippingCarrierCode").is_some_and(Value::is_string);
    if !complete {
        return bad("lineItems, trackingNumber and shippingCarrierCode are required");
    }
    if state.lock().order(C, &id).is_none() {
        return not_found(C, "order");
    }
    let fulfillment = fresh_id();
    (StatusCode::CREATED, [("location", format!("/sell/fulfillment/v1/order/{id}/shipping_fulfillment/{fulfillment}"))])
        .into_response()
}

async fn public_key(State(state): St, Path(kid): Path<String>) -> Response {
    match state.lock().public_keys.get(&kid) {
        Some(key) => ok(json!({ "algorithm": "ECDSA", "digest": "SHA1", "key": key })),
        None => not_found(C, "public key"),
    }
}
