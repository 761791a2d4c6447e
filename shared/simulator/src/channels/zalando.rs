//! Zalando zDirect: stock and price writes (1000 items per call, per-item results; the result shape is
//! an assumption, unverified), JSON:API orders with the `exported` flag, order and line updates.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, not_found, parse};
use crate::channel_error;
use crate::limits::SimLimit;

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::Window { requests: 60, window_ms: 60_000 }),
    authorized: |a| a.scheme("authorization", "Bearer "),
    error_body: |status, message| json!({ "type": "about:blank", "title": status.canonical_reason().unwrap_or("Error"), "status": status.as_u16(), "detail": message }),
    rate_headers: super::no_rate_headers,
    order_id: "/data/id",
    updated_at: |doc| text(doc, "/data/attributes/modified_at").or_else(|| text(doc, "/data/attributes/order_date")),
    exported: Some("/data/attributes/exported"),
};

const C: Channel = Channel::Zalando;
const MAX_ITEMS: usize = 1000;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/merchants/{mid}/stocks", post(stocks).get(list_stocks))
        .route("/merchants/{mid}/prices", post(prices))
        .route("/merchants/{mid}/orders", get(orders))
        .route("/merchants/{mid}/orders/{oid}", get(order).patch(update_order))
        .route("/merchants/{mid}/orders/{oid}/items/{iid}/lines/{lid}", patch(update_line))
}

fn bad(message: &str) -> Response {
    channel_error(C, StatusCode::BAD_REQUEST, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stocks {
    items: Vec<StockItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockItem {
    sales_channel_id: String,
    ean: String,
    quantity: i64,
}

async fn stocks(State(state): St, body: Bytes) -> Response {
    let req: Stocks = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return bad("items must hold between 1 and 1000 entries");
    }
    let mut s = state.lock();
    let results: Vec<Value> = req
        .items
        .iter()
        .map(|i| {
            if i.sales_channel_id.is_empty() || i.quantity < 0 || !s.known(C, &i.ean) {
                json!({ "ean": i.ean, "status": "rejected", "description": "unknown EAN or invalid quantity" })
            } else {
                s.set_stock(C, &i.ean, i.quantity);
                json!({ "ean": i.ean, "status": "accepted" })
            }
        })
        .collect();
    (StatusCode::MULTI_STATUS, axum::Json(json!({ "results": results }))).into_response()
}

/// The articles' stock by EAN for a sales channel (an assumed read, see the connector), `page[size]` at
/// most 1000, `links.next` an absolute URL.
async fn list_stocks(
    State(state): St,
    Path(mid): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(channel) = q.get("sales_channel_id").filter(|c| !c.is_empty()).cloned() else {
        return bad("sales_channel_id is required");
    };
    let size = super::num(&q, "page[size]", 100);
    if !(1..=MAX_ITEMS).contains(&size) {
        return bad("page[size] must be between 1 and 1000");
    }
    let number = super::num(&q, "page[number]", 0);
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let s = state.lock();
    let (page, more) = s.catalog_page(C, number * size, size);
    let items: Vec<Value> =
        page.iter().map(|i| json!({ "ean": i.id, "sales_channel_id": channel, "quantity": i.quantity })).collect();
    let next = more.then(|| {
        format!("{base}/zalando/merchants/{mid}/stocks?sales_channel_id={channel}&page%5Bsize%5D={size}&page%5Bnumber%5D={}", number + 1)
    });
    (StatusCode::OK, axum::Json(json!({ "items": items, "links": { "next": next } }))).into_response()
}

async fn prices(body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(items) = req.get("product_prices").and_then(Value::as_array) else {
        return bad("product_prices is required");
    };
    if items.iter().any(|i| i.pointer("/regular_price/amount").is_none_or(|a| !a.is_number())) {
        return bad("regular_price.amount must be a number");
    }
    let results: Vec<Value> = items.iter().map(|i| json!({ "ean": i["ean"], "status": "accepted" })).collect();
    (StatusCode::MULTI_STATUS, axum::Json(json!({ "results": results }))).into_response()
}

fn json_api(body: &Value) -> Response {
    (StatusCode::OK, [("content-type", "application/vnd.api+json")], body.to_string()).into_response()
}

/// The orders list: `exported=false` keeps the ones not yet marked exported (the poller's filter),
/// `last_updated_after` the ones modified at or after it (`modified_at`);
/// `page[size]` and `page[number]` (from 0) page it, `links.next` names the next page (page size
/// limits unverified: 100 by default and at most 1000 assumed, as for stocks). Resources included by
/// several orders are included once, as JSON:API requires.
async fn orders(
    State(state): St,
    Path(mid): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let only_new = q.get("exported").map(String::as_str) == Some("false");
    let since = match q.get("last_updated_after").map(|t| super::orders::parse_time(t)) {
        None => None,
        Some(Some(t)) => Some((t, super::orders::Bound::AtOrAfter)),
        Some(None) => return bad("last_updated_after must be an ISO 8601 date-time"),
    };
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let s = state.lock();
    let size = match super::orders::page_size(&s, q.get("page[size]"), 100, MAX_ITEMS) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let number = super::num(&q, "page[number]", 0);
    let matching: Vec<Value> = super::orders::updated_since(&s, C, since, None)
        .into_iter()
        .filter(|o| !only_new || !o.exported)
        .map(|o| o.doc)
        .collect();
    let (page, more) = super::orders::page(&matching, number * size, size);
    let mut data = Vec::new();
    let mut included: Vec<Value> = Vec::new();
    for doc in page {
        data.push(doc["data"].clone());
        for resource in doc["included"].as_array().into_iter().flatten() {
            if !included.iter().any(|r| r["type"] == resource["type"] && r["id"] == resource["id"]) {
                included.push(resource.clone());
            }
        }
    }
    let next = more.then(|| {
        let mut query: Vec<String> = q
            .iter()
            .filter(|(k, _)| !k.starts_with("page["))
            .map(|(k, v)| format!("{}={}", super::orders::encode(k), super::orders::encode(v)))
            .collect();
        query.sort();
        query.push(format!("page%5Bsize%5D={size}&page%5Bnumber%5D={}", number + 1));
        format!("{base}/zalando/merchants/{mid}/orders?{}", query.join("&"))
    });
    json_api(&json!({ "data": data, "included": included, "links": { "next": next } }))
}

async fn order(State(state): St, Path((_mid, oid)): Path<(String, String)>) -> Response {
    state.lock().order(C, &oid).map_or_else(|| not_found(C, "order"), |o| json_api(&o.doc))
}

async fn update_order(State(state): St, Path((_mid, oid)): Path<(String, String)>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.pointer("/data/type").and_then(Value::as_str) != Some("Order")
        || req.pointer("/data/id").and_then(Value::as_str) != Some(oid.as_str())
    {
        return bad("data.type must be Order and data.id the order id");
    }
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, &oid) else { return not_found(C, "order") };
    for (k, v) in req.pointer("/data/attributes").and_then(Value::as_object).cloned().unwrap_or_default() {
        if k == "exported" {
            o.exported = v.as_bool().unwrap_or(o.exported);
        }
        o.doc["data"]["attributes"][k] = v;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn update_line(
    State(state): St,
    Path((_mid, oid, _iid, lid)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let status = req.pointer("/data/attributes/status").and_then(Value::as_str);
    if req.pointer("/data/type").and_then(Value::as_str) != Some("OrderLine")
        || !matches!(status, Some("accepted" | "shipped" | "canceled" | "returned" | "initial"))
    {
        return bad("data.type must be OrderLine and attributes.status a known line status");
    }
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, &oid) else { return not_found(C, "order") };
    let Some(line) = o.doc["included"]
        .as_array_mut()
        .and_then(|inc| inc.iter_mut().find(|r| r["type"] == "OrderLine" && r["id"].as_str() == Some(lid.as_str())))
    else {
        return not_found(C, "order line");
    };
    line["attributes"]["status"] = json!(status);
    settle(&mut o.doc);
    StatusCode::NO_CONTENT.into_response()
}

/// Zalando sets the order status itself: `fulfilled` once each order line is shipped, canceled or
/// returned (a failed payment, too, ends with every line canceled and the order fulfilled).
fn settle(doc: &mut Value) {
    let mut lines = doc["included"].as_array().into_iter().flatten().filter(|r| r["type"] == "OrderLine").peekable();
    let done = lines.peek().is_some()
        && lines.all(|l| matches!(l["attributes"]["status"].as_str(), Some("shipped" | "canceled" | "returned")));
    if done {
        doc["data"]["attributes"]["status"] = json!("fulfilled");
    }
}
