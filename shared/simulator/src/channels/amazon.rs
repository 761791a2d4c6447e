//! Amazon SP-API: `patchListingsItem` / `getListingsItem`, the Feeds flow (document, pre-signed upload,
//! feed), and Orders v0 reads and shipment confirmation. One token bucket for the whole channel
//! (Amazon's is per operation: a simplification of this test double).

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, fresh_id, not_found, ok, parse};
use crate::limits::SimLimit;
use crate::{channel_error, state::Inner};
use axum::http::HeaderValue;

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::TokenBucket { rate_per_second: 5.0, burst: 10.0 }),
    // Feed document uploads go to a pre-signed URL.
    authorized: |a| a.has("x-amz-access-token") || a.path.starts_with("/_upload/"),
    error_body: |status, message| {
        let code = match status.as_u16() {
            429 => "QuotaExceeded",
            401 | 403 => "Unauthorized",
            400..=499 => "InvalidInput",
            _ => "InternalFailure",
        };
        json!({ "errors": [{ "code": code, "message": message, "details": "" }] })
    },
    rate_headers: |s, headers| {
        if let Ok(v) = HeaderValue::from_str(&s.rate.to_string()) {
            headers.insert("x-amzn-ratelimit-limit", v);
        }
    },
    order_id: "/order/AmazonOrderId",
    updated_at: |doc| text(doc, "/order/LastUpdateDate"),
    exported: None,
};

const C: Channel = Channel::Amazon;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/listings/2021-08-01/items/{seller}", get(search_items))
        .route("/listings/2021-08-01/items/{seller}/{sku}", patch(patch_item).get(get_item))
        .route("/feeds/2021-06-30/documents", post(create_document))
        .route("/_upload/{doc}", put(upload))
        .route("/feeds/2021-06-30/feeds", post(create_feed))
        .route("/orders/v0/orders", get(orders))
        .route("/orders/v0/orders/{id}", get(order))
        .route("/orders/v0/orders/{id}/orderItems", get(order_items))
        .route("/orders/v0/orders/{id}/shipmentConfirmation", post(confirm))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marketplaces {
    #[serde(default)]
    marketplace_ids: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListingPatch {
    product_type: String,
    patches: Vec<PatchOp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOp {
    op: String,
    path: String,
    #[serde(default)]
    value: Value,
}

fn bad(message: &str) -> Response {
    channel_error(C, StatusCode::BAD_REQUEST, message)
}

/// Applies patches to a SKU; `Err` is the list of issues.
fn apply(s: &mut Inner, sku: &str, patches: &[PatchOp]) -> Result<(), Vec<Value>> {
    if !s.known(C, sku) {
        return Err(vec![
            json!({ "code": "4000001", "message": format!("SKU {sku} not found for this seller"), "severity": "ERROR" }),
        ]);
    }
    let mut issues = Vec::new();
    for p in patches {
        if !matches!(p.op.as_str(), "add" | "replace" | "merge" | "delete") || !p.path.starts_with("/attributes/") {
            issues.push(json!({ "code": "4000002", "message": format!("invalid patch {} {}", p.op, p.path), "severity": "ERROR" }));
            continue;
        }
        if p.path == "/attributes/fulfillment_availability" {
            match p.value.pointer("/0/quantity").and_then(Value::as_i64) {
                Some(q) if p.value.pointer("/0/fulfillment_channel_code").is_some() => s.set_stock(C, sku, q),
                _ => issues.push(json!({ "code": "4000003", "message": "fulfillment_availability needs fulfillment_channel_code and quantity", "severity": "ERROR", "attributeNames": ["fulfillment_availability"] })),
            }
        }
    }
    if issues.is_empty() { Ok(()) } else { Err(issues) }
}

async fn patch_item(
    State(state): St,
    Path((_seller, sku)): Path<(String, String)>,
    Query(m): Query<Marketplaces>,
    body: Bytes,
) -> Response {
    if m.marketplace_ids.is_none() {
        return bad("Missing required parameter marketplaceIds");
    }
    let req: ListingPatch = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.product_type.is_empty() || req.patches.is_empty() {
        return bad("productType and at least one patch are required");
    }
    let result = apply(&mut state.lock(), &sku, &req.patches);
    let (status, issues) = match result {
        Ok(()) => ("ACCEPTED", Vec::new()),
        Err(issues) => ("INVALID", issues),
    };
    ok(json!({ "sku": sku, "status": status, "submissionId": fresh_id(), "issues": issues }))
}

async fn get_item(State(state): St, Path((_seller, sku)): Path<(String, String)>) -> Response {
    let s = state.lock();
    match s.stock_of(C, &sku) {
        Some(q) => ok(
            json!({ "sku": sku, "fulfillmentAvailability": [{ "fulfillmentChannelCode": "DEFAULT", "quantity": q }] }),
        ),
        None => not_found(C, "listing"),
    }
}

/// `searchListingsItems`: at most 20 per page, `pagination.nextToken`, the `includedData` asked for.
async fn search_items(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let Some(marketplace) = q.get("marketplaceIds").cloned() else {
        return bad("Missing required parameter marketplaceIds");
    };
    let size = super::num(&q, "pageSize", 10);
    if !(1..=20).contains(&size) {
        return bad("pageSize must be between 1 and 20");
    }
    let offset = match q.get("pageToken") {
        Some(t) => match t.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return bad("Invalid pageToken"),
        },
        None => 0,
    };
    let included: Vec<&str> = q.get("includedData").map_or_else(|| vec!["summaries"], |d| d.split(',').collect());
    let s = state.lock();
    let total = s.catalog(C).count();
    let (page, more) = s.catalog_page(C, offset, size);
    let items: Vec<Value> = page
        .iter()
        .map(|i| {
            let mut item = json!({ "sku": i.sku });
            if included.contains(&"summaries") {
                item["summaries"] = json!([{ "marketplaceId": marketplace, "asin": i.product_id, "productType": "PRODUCT", "status": ["BUYABLE"] }]);
            }
            if included.contains(&"offers") {
                item["offers"] = json!([{ "marketplaceId": marketplace, "offerType": "B2C",
                                          "price": { "currencyCode": "EUR", "amount": super::price_text(i.price_minor) } }]);
            }
            if included.contains(&"fulfillmentAvailability") {
                item["fulfillmentAvailability"] = json!([{ "fulfillmentChannelCode": "DEFAULT", "quantity": i.quantity }]);
            }
            item
        })
        .collect();
    let mut body = json!({ "numberOfResults": total, "items": items });
    if more {
        body["pagination"] = json!({ "nextToken": (offset + size).to_string() });
    }
    ok(body)
}

async fn create_document(State(state): St, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.get("contentType").and_then(Value::as_str).is_none() {
        return bad("contentType is required");
    }
    let id = format!("amzn1.tortuga.4.sim.{}", fresh_id());
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    state.lock().feed_documents.insert(id.clone());
    (StatusCode::CREATED, axum::Json(json!({ "feedDocumentId": id, "url": format!("{base}/amazon/_upload/{id}") })))
        .into_response()
}

async fn upload(State(state): St, Path(doc): Path<String>, body: Bytes) -> Response {
    let feed: Value = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("feed document is not JSON: {e}")).into_response(),
    };
    let mut s = state.lock();
    if !s.feed_documents.contains(&doc) {
        return (StatusCode::FORBIDDEN, "unknown pre-signed URL").into_response();
    }
    if feed.pointer("/header/sellerId").is_none() || feed.get("messages").and_then(Value::as_array).is_none() {
        return (StatusCode::BAD_REQUEST, "JSON_LISTINGS_FEED needs header.sellerId and messages").into_response();
    }
    for m in feed["messages"].as_array().into_iter().flatten() {
        let (Some(sku), Some(patches)) = (m.get("sku").and_then(Value::as_str), m.get("patches")) else { continue };
        let Ok(patches) = serde_json::from_value::<Vec<PatchOp>>(patches.clone()) else { continue };
        let _ = apply(&mut s, sku, &patches);
    }
    StatusCode::OK.into_response()
}

async fn create_feed(State(state): St, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let doc = req.get("inputFeedDocumentId").and_then(Value::as_str).unwrap_or_default();
    if req.get("feedType").and_then(Value::as_str).is_none()
        || req.get("marketplaceIds").and_then(Value::as_array).is_none_or(Vec::is_empty)
    {
        return bad("feedType and marketplaceIds are required");
    }
    if !state.lock().feed_documents.contains(doc) {
        return bad("inputFeedDocumentId is not a known feed document");
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "feedId": fresh_id() }))).into_response()
}

/// `getOrders`: `MarketplaceIds` always; `LastUpdatedAfter` (inclusive, "after or at") or
/// `CreatedAfter` unless a `NextToken` continues a listing (which then carries its filter);
/// `LastUpdatedBefore` (exclusive); `MaxResultsPerPage` (100, at most 100). `NextToken` in the payload
/// while more follow.
async fn orders(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    use super::orders::{Bound, parse_time, read_token, token};
    if !q.contains_key("MarketplaceIds") {
        return bad("Missing required parameter MarketplaceIds");
    }
    let (filter, offset) = match q.get("NextToken") {
        Some(t) => match read_token(t) {
            Some(f) => f,
            None => return bad("Invalid NextToken"),
        },
        None if q.contains_key("LastUpdatedAfter") || q.contains_key("CreatedAfter") => (
            format!(
                "{}|{}",
                q.get("LastUpdatedAfter").map_or("", String::as_str),
                q.get("LastUpdatedBefore").map_or("", String::as_str)
            ),
            0,
        ),
        None => return bad("Either CreatedAfter or LastUpdatedAfter must be specified"),
    };
    let (after, before) = filter.split_once('|').unwrap_or((filter.as_str(), ""));
    let time = |t: &str| if t.is_empty() { Ok(None) } else { parse_time(t).map(Some).ok_or(()) };
    let (Ok(after), Ok(before)) = (time(after), time(before)) else {
        return bad("LastUpdatedAfter and LastUpdatedBefore must be ISO 8601 dates");
    };
    let s = state.lock();
    let size = match super::orders::page_size(&s, q.get("MaxResultsPerPage"), 100, 100) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let matching: Vec<Value> = super::orders::updated_since(&s, C, after.map(|t| (t, Bound::AtOrAfter)), before)
        .into_iter()
        .map(|o| o.doc["order"].clone())
        .collect();
    let (page, more) = super::orders::page(&matching, offset, size);
    let mut payload = json!({ "Orders": page });
    if more {
        payload["NextToken"] = json!(token(&filter, offset + size));
    }
    ok(json!({ "payload": payload }))
}

async fn order(State(state): St, Path(id): Path<String>) -> Response {
    state.lock().order(C, &id).map_or_else(|| not_found(C, "order"), |o| ok(json!({ "payload": o.doc["order"] })))
}

/// Serves items two per page, so clients must follow `NextToken`.
async fn order_items(
    State(state): St,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let s = state.lock();
    let Some(o) = s.order(C, &id) else { return not_found(C, "order") };
    let items = o.doc["order_items"].as_array().cloned().unwrap_or_default();
    let start: usize = q.get("NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = items.iter().skip(start).take(2).cloned().collect();
    let mut payload = json!({ "AmazonOrderId": id, "OrderItems": page });
    if start + 2 < items.len() {
        payload["NextToken"] = json!((start + 2).to_string());
    }
    ok(json!({ "payload": payload }))
}

async fn confirm(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let d = &req["packageDetail"];
    let complete = req.get("marketplaceId").is_some()
        && ["packageReferenceId", "carrierCode", "shipDate"].iter().all(|k| d.get(*k).is_some_and(|v| !v.is_null()))
        && d.get("orderItems").and_then(Value::as_array).is_some_and(|i| !i.is_empty());
    if !complete {
        return bad(
            "marketplaceId and packageDetail {packageReferenceId, carrierCode, shipDate, orderItems} are required",
        );
    }
    if state.lock().order(C, &id).is_none() {
        return not_found(C, "order");
    }
    StatusCode::NO_CONTENT.into_response()
}
