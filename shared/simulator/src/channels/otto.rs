//! OTTO Market: availability writes (`[{sku, quantity}]`, 200 or 207 multi-status per SKU once a
//! catalog is seeded, 413 beyond 200 items: that batch limit is an assumption, unverified) and reads;
//! asynchronous price updates whose process is still pending at its first read and done from the
//! second; Orders v4 lists filtered by `fromDate` (the bound included) and paged by `nextcursor`; order
//! reads and cancellation; shipments. Wrong shapes get OTTO's `{errors: [{path, title, code, detail,
//! logref}]}` body; beyond the 20 requests/s token bucket (the 2024 guide's figure), 429 with the same
//! body and `Retry-After`. Tokens come from `POST /v1/token` (see `crate::tokens`).
//!
//! Stricter than OTTO on purpose: a list request that sends `nextcursor` with anything but `limit` is
//! refused (OTTO ignores the other parameters; a client relying on them would page wrongly).

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{SecondsFormat, Utc};
use manifold_domain::Channel;
use manifold_domain::channel::otto::CARRIERS;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::{Bound, page, page_size, parse_time, read_token, text, token, updated_since};
use super::{St, fresh_id, num, parse};
use crate::limits::SimLimit;

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::TokenBucket { rate_per_second: 20.0, burst: 20.0 }),
    authorized: |a| a.scheme("authorization", "Bearer "),
    error_body: |status, message| error_body(status, "", message),
    rate_headers: super::no_rate_headers,
    order_id: "/salesOrderId",
    updated_at: |doc| {
        text(doc, "/lastModifiedDate")
            .or_else(|| text(doc, "/orderLifecycleInformation/lifecycleChangeDate"))
            .or_else(|| text(doc, "/orderDate"))
    },
    exported: None,
};

const C: Channel = Channel::Otto;
/// Stock updates per call (unverified; beyond it, 413).
const MAX_QUANTITIES: usize = 200;
const MAX_PRICES: usize = 500;
const ORDER_PAGE: usize = 128;
const QUANTITY_PAGE: usize = 200;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/v1/availability/quantities", post(quantities).get(list_quantities))
        .route("/v1/availability/quantities/{sku}", get(quantity))
        .route("/v4/products/prices", post(prices))
        .route("/v5/products/prices", post(prices))
        .route("/v4/products/update-tasks/{id}", get(task))
        .route("/v5/products/update-tasks/{id}", get(task))
        .route("/v4/products/update-tasks/{id}/failed", get(task_failed))
        .route("/v5/products/update-tasks/{id}/failed", get(task_failed))
        .route("/v4/orders", get(orders))
        .route("/v4/orders/{id}", get(order))
        .route("/v4/orders/{id}/cancellation", post(cancel))
        .route("/v1/shipments", post(shipments))
}

/// One error in OTTO's shape.
fn error(status: StatusCode, path: &str, detail: &str) -> Value {
    json!({
        "path": path,
        "title": status.canonical_reason().unwrap_or("Error"),
        "code": status.as_u16().to_string(),
        "detail": detail,
        "logref": fresh_id(),
    })
}

fn error_body(status: StatusCode, path: &str, detail: &str) -> Value {
    json!({ "errors": [error(status, path, detail)] })
}

fn refuse(status: StatusCode, path: &str, detail: &str) -> Response {
    (status, Json(error_body(status, path, detail))).into_response()
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantityItem {
    sku: String,
    quantity: i64,
}

/// `POST /v1/availability/quantities`: each SKU known to the seeded catalog (any SKU before one is
/// seeded) takes its quantity; 200 when all did, else 207 `{results, errors}`.
async fn quantities(State(state): St, uri: Uri, body: Bytes) -> Response {
    let items: Vec<QuantityItem> = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if items.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, uri.path(), "the request needs at least one quantity");
    }
    if items.len() > MAX_QUANTITIES {
        let detail = format!("at most {MAX_QUANTITIES} quantities per request, got {}", items.len());
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, uri.path(), &detail);
    }
    let mut s = state.lock();
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    for i in &items {
        if i.quantity < 0 {
            let detail = format!("quantity of SKU {} must be 0 or more", i.sku);
            errors.push(error(StatusCode::BAD_REQUEST, uri.path(), &detail));
        } else if !s.known(C, &i.sku) {
            let detail = format!("SKU {} is unknown: no product variation with a MOIN", i.sku);
            errors.push(error(StatusCode::NOT_FOUND, uri.path(), &detail));
        } else {
            s.set_stock(C, &i.sku, i.quantity);
            results.push(json!({ "sku": i.sku, "quantity": i.quantity, "lastModified": now() }));
        }
    }
    if errors.is_empty() {
        (StatusCode::OK, Json(json!({ "results": results }))).into_response()
    } else {
        (StatusCode::MULTI_STATUS, Json(json!({ "results": results, "errors": errors }))).into_response()
    }
}

/// `GET /v1/availability/quantities?limit=&page=`: the catalog by SKU, 200 at most per page.
async fn list_quantities(State(state): St, uri: Uri, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = num(&q, "limit", QUANTITY_PAGE);
    if !(1..=QUANTITY_PAGE).contains(&limit) {
        return refuse(StatusCode::BAD_REQUEST, uri.path(), "limit must be between 1 and 200");
    }
    let number = num(&q, "page", 0);
    let s = state.lock();
    let (items, more) = s.catalog_page(C, number * limit, limit);
    let variations: Vec<Value> = items
        .iter()
        .map(|i| json!({ "sku": i.id, "quantity": s.stock_of(C, &i.id).unwrap_or(i.quantity), "lastModified": now() }))
        .collect();
    let mut links =
        vec![json!({ "rel": "self", "href": format!("/v1/availability/quantities?limit={limit}&page={number}") })];
    if more {
        links.push(
            json!({ "rel": "next", "href": format!("/v1/availability/quantities?limit={limit}&page={}", number + 1) }),
        );
    }
    (StatusCode::OK, Json(json!({ "resources": { "variations": variations }, "links": links }))).into_response()
}

async fn quantity(State(state): St, uri: Uri, Path(sku): Path<String>) -> Response {
    match state.lock().stock_of(C, &sku) {
        Some(q) => (StatusCode::OK, Json(json!({ "sku": sku, "quantity": q, "lastModified": now() }))).into_response(),
        None => refuse(StatusCode::NOT_FOUND, uri.path(), &format!("no quantity for SKU {sku}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PriceItem {
    sku: String,
    standard_price: Money,
    #[serde(default)]
    #[allow(dead_code)]
    sale: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Money {
    amount: serde_json::Number,
    currency: String,
}

/// A positive amount with at most two decimals.
fn valid_amount(n: &serde_json::Number) -> bool {
    let text = n.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
    !text.contains(['e', 'E', '-']) && decimals <= 2 && n.as_f64().is_some_and(|v| v > 0.0)
}

/// The API version a request came in on (`/v4/...` -> `v4`).
fn version(uri: &Uri) -> &str {
    uri.path().trim_start_matches('/').split('/').next().unwrap_or("v4")
}

/// `POST /{v4|v5}/products/prices`: validates the whole request, then answers a pending process whose
/// failed results are the SKUs the seeded catalog does not know.
async fn prices(State(state): St, uri: Uri, body: Bytes) -> Response {
    let items: Vec<PriceItem> = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if items.is_empty() || items.len() > MAX_PRICES {
        return refuse(StatusCode::BAD_REQUEST, uri.path(), "a price update holds between 1 and 500 variations");
    }
    if let Some(i) = items.iter().find(|i| i.standard_price.currency != "EUR") {
        let detail = format!("currency {} of SKU {} is not supported: only EUR", i.standard_price.currency, i.sku);
        return refuse(StatusCode::BAD_REQUEST, uri.path(), &detail);
    }
    if let Some(i) = items.iter().find(|i| !valid_amount(&i.standard_price.amount)) {
        let detail =
            format!("amount {} of SKU {} must be positive with at most 2 decimals", i.standard_price.amount, i.sku);
        return refuse(StatusCode::BAD_REQUEST, uri.path(), &detail);
    }
    let id = format!("{}-{}", fresh_id(), fresh_id());
    let v = version(&uri).to_owned();
    let mut s = state.lock();
    let mut failed = Vec::new();
    for i in &items {
        if s.known(C, &i.sku) {
            #[allow(clippy::cast_possible_truncation)]
            let minor = i.standard_price.amount.as_f64().map(|a| (a * 100.0).round() as i64);
            if let Some(item) = s.catalog.get_mut(&C).and_then(|c| c.get_mut(&i.sku)) {
                item.price_minor = minor;
            }
        } else {
            failed.push(json!({ "variation": i.sku, "errors": [{
                "code": "VARIATION_NOT_FOUND", "title": "unknown variation", "path": "sku",
                "jsonPath": "$.sku", "logref": fresh_id(),
            }] }));
        }
    }
    let process = json!({
        "state": "pending",
        "message": "the price update is being processed",
        "total": items.len(),
        "progress": 0,
        "succeeded": 0,
        "failed": 0,
        "unchanged": 0,
        "pingAfter": now(),
        "links": [
            { "rel": "self", "href": format!("/{v}/products/update-tasks/{id}") },
            { "rel": "failed", "href": format!("/{v}/products/update-tasks/{id}/failed") },
            { "rel": "succeeded", "href": format!("/{v}/products/update-tasks/{id}/succeeded") },
            { "rel": "unchanged", "href": format!("/{v}/products/update-tasks/{id}/unchanged") },
        ],
    });
    s.tasks.insert(id, json!({ "process": process, "reads": 0, "failed": failed }));
    (StatusCode::ACCEPTED, Json(process)).into_response()
}

/// A price process: pending at its first read, done from the second on.
async fn task(State(state): St, uri: Uri, Path(id): Path<String>) -> Response {
    let mut s = state.lock();
    let Some(task) = s.tasks.get_mut(&id) else {
        return refuse(StatusCode::NOT_FOUND, uri.path(), &format!("no process {id}"));
    };
    let reads = task["reads"].as_u64().unwrap_or(0) + 1;
    task["reads"] = json!(reads);
    if reads >= 2 {
        let total = task["process"]["total"].as_u64().unwrap_or(0);
        let failed = task["failed"].as_array().map_or(0, Vec::len) as u64;
        let process = &mut task["process"];
        process["state"] = json!("done");
        process["message"] = json!("the price update is done");
        process["progress"] = json!(total);
        process["failed"] = json!(failed);
        process["succeeded"] = json!(total - failed);
    }
    task["process"]["pingAfter"] = json!(now());
    (StatusCode::OK, Json(task["process"].clone())).into_response()
}

async fn task_failed(State(state): St, uri: Uri, Path(id): Path<String>) -> Response {
    match state.lock().tasks.get(&id) {
        Some(task) => (StatusCode::OK, Json(json!({ "results": task["failed"] }))).into_response(),
        None => refuse(StatusCode::NOT_FOUND, uri.path(), &format!("no process {id}")),
    }
}

/// `GET /v4/orders`: `fromDate` (the earliest change date, included), `limit` (128 at most), then
/// `nextcursor` alone (with `limit`). Oldest change first.
async fn orders(State(state): St, uri: Uri, Query(q): Query<HashMap<String, String>>) -> Response {
    let (filter, offset) = match q.get("nextcursor") {
        Some(cursor) => {
            if q.keys().any(|k| k != "nextcursor" && k != "limit") {
                let detail = "with nextcursor only limit may be given: the cursor carries the filter";
                return refuse(StatusCode::BAD_REQUEST, uri.path(), detail);
            }
            match read_token(cursor) {
                Some(t) => t,
                None => return refuse(StatusCode::BAD_REQUEST, uri.path(), "invalid nextcursor"),
            }
        }
        None => (q.get("fromDate").cloned().unwrap_or_default(), 0),
    };
    let from = if filter.is_empty() {
        None
    } else {
        match parse_time(&filter) {
            Some(t) => Some((t, Bound::AtOrAfter)),
            None => return refuse(StatusCode::BAD_REQUEST, uri.path(), "fromDate must be an ISO 8601 date"),
        }
    };
    let s = state.lock();
    let size = match page_size(&s, q.get("limit"), ORDER_PAGE, ORDER_PAGE) {
        Ok(n) => n,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, uri.path(), &e),
    };
    let all: Vec<Value> = updated_since(&s, C, from, None).into_iter().map(|o| o.doc).collect();
    let (resources, more) = page(&all, offset, size);
    let links: Vec<Value> = if more {
        let cursor = super::orders::encode(&token(&filter, offset + size));
        vec![json!({ "rel": "next", "href": format!("/v4/orders?nextcursor={cursor}&limit={size}") })]
    } else {
        Vec::new()
    };
    (StatusCode::OK, Json(json!({ "resources": resources, "links": links }))).into_response()
}

async fn order(State(state): St, uri: Uri, Path(id): Path<String>) -> Response {
    match state.lock().order(C, &id) {
        Some(o) => (StatusCode::OK, Json(o.doc.clone())).into_response(),
        None => refuse(StatusCode::NOT_FOUND, uri.path(), &format!("no order with salesOrderId {id}")),
    }
}

/// Marks the order changed now (what `fromDate` compares).
fn touch(doc: &mut Value) {
    let at = now();
    doc["lastModifiedDate"] = json!(at);
    doc["orderLifecycleInformation"] = json!({ "lifecycleChangeDate": at });
}

/// `POST /v4/orders/{id}/cancellation`: every PROCESSABLE item is cancelled by the partner; 409 when
/// none can be.
async fn cancel(State(state): St, uri: Uri, Path(id): Path<String>) -> Response {
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, &id) else {
        return refuse(StatusCode::NOT_FOUND, uri.path(), &format!("no order with salesOrderId {id}"));
    };
    let mut cancelled = 0;
    for item in o.doc["positionItems"].as_array_mut().into_iter().flatten() {
        if item["fulfillmentStatus"] == "PROCESSABLE" {
            item["fulfillmentStatus"] = json!("CANCELLED_BY_PARTNER");
            item["cancellationDate"] = json!(now());
            cancelled += 1;
        }
    }
    if cancelled == 0 {
        return refuse(StatusCode::CONFLICT, uri.path(), "no position item of the order can be cancelled");
    }
    touch(&mut o.doc);
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateShipment {
    tracking_key: TrackingKey,
    ship_date: String,
    ship_from_address: ShipFrom,
    position_items: Vec<ShipItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrackingKey {
    carrier: String,
    tracking_number: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShipFrom {
    city: String,
    country_code: String,
    zip_code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ShipItem {
    position_item_id: String,
    sales_order_id: String,
    #[serde(default)]
    return_tracking_key: Option<TrackingKey>,
    #[serde(default)]
    return_address_carrier_id: Option<String>,
}

/// `POST /v1/shipments`: every named item must be PROCESSABLE (else 409 and nothing changes); they
/// become SENT with the tracking key. 201 `{shipmentId}`.
async fn shipments(State(state): St, uri: Uri, body: Bytes) -> Response {
    let req: CreateShipment = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let bad = |detail: &str| refuse(StatusCode::BAD_REQUEST, uri.path(), detail);
    let key = &req.tracking_key;
    if !CARRIERS.contains(&key.carrier.as_str()) {
        return bad(&format!("carrier {:?} is not one of {}", key.carrier, CARRIERS.join(", ")));
    }
    if key.tracking_number.trim().is_empty() {
        return bad("trackingNumber is required for parcel deliveries");
    }
    if parse_time(&req.ship_date).is_none() {
        return bad("shipDate must be an ISO 8601 date");
    }
    let from = &req.ship_from_address;
    let alpha3 = from.country_code.len() == 3 && from.country_code.bytes().all(|b| b.is_ascii_uppercase());
    if from.city.trim().is_empty() || from.zip_code.trim().is_empty() || !alpha3 {
        return bad("shipFromAddress needs city, zipCode and an ISO 3166-1 alpha-3 countryCode");
    }
    if req.position_items.is_empty() {
        return bad("positionItems must not be empty");
    }
    let mut s = state.lock();
    for item in &req.position_items {
        let status = s.order(C, &item.sales_order_id).and_then(|o| {
            o.doc["positionItems"]
                .as_array()?
                .iter()
                .find(|p| p["positionItemId"] == item.position_item_id.as_str())
                .map(|p| p["fulfillmentStatus"].clone())
        });
        match status {
            Some(st) if st == "PROCESSABLE" => {}
            Some(st) => {
                let detail = format!("position item {} is {st}, not PROCESSABLE", item.position_item_id);
                return refuse(StatusCode::CONFLICT, uri.path(), &detail);
            }
            None => {
                let detail = format!("no position item {} in order {}", item.position_item_id, item.sales_order_id);
                return refuse(StatusCode::BAD_REQUEST, uri.path(), &detail);
            }
        }
    }
    for item in &req.position_items {
        let Some(o) = s.order_mut(C, &item.sales_order_id) else { continue };
        for p in o.doc["positionItems"].as_array_mut().into_iter().flatten() {
            if p["positionItemId"] == item.position_item_id.as_str() {
                p["fulfillmentStatus"] = json!("SENT");
                p["sentDate"] = json!(req.ship_date);
                p["trackingInfo"] = json!({ "carrier": key.carrier, "trackingNumber": key.tracking_number });
            }
        }
        touch(&mut o.doc);
    }
    (StatusCode::CREATED, Json(json!({ "shipmentId": fresh_id() }))).into_response()
}
