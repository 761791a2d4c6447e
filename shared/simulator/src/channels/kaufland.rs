//! Kaufland Seller API v2: signed requests, order units, bulk unit writes with per-unit 207 answers.
//!
//! Every request must carry `Shop-Client-Key`, `Shop-Timestamp` (within 5 minutes, unverified) and a
//! `Shop-Signature` that is the lowercase hex HMAC-SHA256 of `METHOD\nURL\nBODY\nTIMESTAMP` under the
//! secret of that client key ([`KEYS`]): the URL as the request reached the simulator, query included,
//! and the body byte for byte. A wrong one is answered 401 `/problems/corrupted-signature`.
//!
//! Seeded orders are the `{"data": OrderDetails}` documents `GET /v2/orders/{id_order}` serves; the
//! catalog's items are units (`id` = `id_unit`, `sku` = `id_offer`, `product_id` = `id_product`).

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use hmac::{Hmac, Mac};
use manifold_domain::Channel;
use manifold_domain::channel::kaufland::CANCEL_REASONS;
use serde_json::{Value, json};
use sha2::Sha256;

use super::orders::{Bound, page, page_size, parse_time, updated_since};
use super::{St, not_found, ok};
use crate::{limits::SimLimit, state::SimState};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    // 111 requests per second per seller, across every endpoint.
    limit: Some(SimLimit::TokenBucket { rate_per_second: 111.0, burst: 111.0 }),
    authorized: |a| a.has("shop-client-key") && a.has("shop-timestamp") && a.has("shop-signature"),
    error_body: |status, message| {
        let problem = match status.as_u16() {
            401 => "/problems/invalid-credentials",
            404 => "/problems/not-found",
            429 => "/problems/too-many-requests",
            400..=499 => "/problems/bad-request",
            _ => "/problems/internal-server-error",
        };
        json!({ "type": problem, "message": message, "errors": [] })
    },
    rate_headers: super::no_rate_headers,
    order_id: "/data/id_order",
    updated_at: |doc| {
        doc.pointer("/data/order_units")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|u| u.get("ts_updated_iso").and_then(Value::as_str).and_then(parse_time))
            .max()
    },
    exported: None,
};

/// The seller keys the simulator knows: (client key, secret key).
pub const KEYS: (&str, &str) =
    ("kaufland-demo-client-key-0000001", "kaufland-demo-secret-key-0123456789abcdef0123456789abcdef01234567");

const C: Channel = Channel::Kaufland;
const MAX_BULK: usize = 150;
pub(crate) fn routes() -> Router<std::sync::Arc<SimState>> {
    Router::new()
        .route("/v2/orders", get(list_orders))
        .route("/v2/orders/{id}", get(order))
        .route("/v2/order-units/{id}", get(order_unit))
        .route("/v2/order-units/{id}/send", patch(send))
        .route("/v2/order-units/{id}/cancel", patch(cancel))
        .route("/v2/units", get(units))
        .route("/v2/units/bulk", post(bulk))
}

/// An error of a named problem type (the registry's `error_body` picks a generic one by status).
fn problem(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "type": kind, "message": message, "errors": [] }))).into_response()
}

/// The request as Kaufland checks it: the signature over method, full URL, body and timestamp.
fn check(state: &SimState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if text("shop-client-key") != KEYS.0 {
        return Err(problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials", "unknown client key"));
    }
    let Ok(timestamp) = text("shop-timestamp").parse::<i64>() else {
        return Err(problem(StatusCode::BAD_REQUEST, "/problems/missing-or-invalid-request-header", "Shop-Timestamp"));
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return Err(problem(StatusCode::UNAUTHORIZED, "/problems/corrupted-signature", "the timestamp is too far off"));
    }
    // The channel's routes are nested under `/kaufland`; `uri` is what follows, query included.
    let url = format!("{}/{C}{uri}", state.base_url.lock().map(|b| b.clone()).unwrap_or_default());
    let mut mac = Hmac::<Sha256>::new_from_slice(KEYS.1.as_bytes()).expect("any key length");
    for part in
        [method.as_str().as_bytes(), b"\n", url.as_bytes(), b"\n", body, b"\n", timestamp.to_string().as_bytes()]
    {
        mac.update(part);
    }
    let sent = text("shop-signature");
    if sent.bytes().any(|b| b.is_ascii_uppercase()) || hex::decode(sent).map_or(true, |s| mac.verify_slice(&s).is_err())
    {
        return Err(problem(StatusCode::UNAUTHORIZED, "/problems/corrupted-signature", "the signature does not match"));
    }
    Ok(())
}

/// `GET /v2/orders`: summaries of the orders whose units changed since `ts_units_updated_from_iso`,
/// `limit` at most 100 from `offset`, with `pagination`.
async fn list_orders(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, b"") {
        return r;
    }
    if q.get("storefront").is_none_or(String::is_empty) {
        return problem(StatusCode::BAD_REQUEST, "/problems/storefront-not-configured", "storefront is required");
    }
    let since = match q.get("ts_units_updated_from_iso") {
        Some(t) => match parse_time(t) {
            Some(t) => Some((t, Bound::AtOrAfter)),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "/problems/bad-request",
                    "ts_units_updated_from_iso is not ISO 8601",
                );
            }
        },
        None => None,
    };
    let s = state.lock();
    let size = match page_size(&s, q.get("limit"), 30, 100) {
        Ok(n) => n,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "/problems/bad-request", &e),
    };
    let offset = super::num(&q, "offset", 0);
    let all = updated_since(&s, C, since, None);
    let (listed, _) = page(&all, offset, size);
    let data: Vec<Value> = listed
        .iter()
        .map(|o| {
            let d = &o.doc["data"];
            json!({
                "id_order": o.id,
                "ts_created_iso": d["ts_created_iso"],
                "ts_units_updated_iso": (MODULE.updated_at)(&o.doc).map(|t| t.to_rfc3339()),
                "order_units_count": d["order_units"].as_array().map_or(0, Vec::len),
                "storefront": d["storefront"],
                "fulfillment_type": "fulfilled_by_merchant",
            })
        })
        .collect();
    ok(json!({ "data": data, "pagination": { "offset": offset, "limit": size, "total": all.len() } }))
}

async fn order(State(state): St, method: Method, uri: Uri, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, b"") {
        return r;
    }
    state.lock().order(C, &id).map_or_else(|| not_found(C, "order"), |o| ok(o.doc.clone()))
}

/// Finds a unit in the seeded orders: (order id, index in its `order_units`).
fn find_unit(s: &crate::state::Inner, unit: &str) -> Option<(String, usize)> {
    s.orders.get(&C).into_iter().flatten().find_map(|o| {
        let units = o.doc.pointer("/data/order_units")?.as_array()?;
        let ix = units.iter().position(|u| {
            u.get("id_order_unit").map(|v| v.to_string().trim_matches('"').to_owned()).as_deref() == Some(unit)
        })?;
        Some((o.id.clone(), ix))
    })
}

async fn order_unit(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, b"") {
        return r;
    }
    let s = state.lock();
    let Some((order, ix)) = find_unit(&s, &id) else { return not_found(C, "order unit") };
    let unit = s.order(C, &order).and_then(|o| o.doc.pointer(&format!("/data/order_units/{ix}")).cloned());
    unit.map_or_else(|| not_found(C, "order unit"), |u| ok(json!({ "data": u })))
}

/// Moves a unit from one of `from` to `to`, or answers the conflict Kaufland documents.
fn transition(state: &SimState, id: &str, from: &[&str], to: &str, problem_type: &str) -> Response {
    let mut s = state.lock();
    let Some((order, ix)) = find_unit(&s, id) else { return not_found(C, "order unit") };
    let Some(unit) = s.order_mut(C, &order).and_then(|o| o.doc.pointer_mut(&format!("/data/order_units/{ix}"))) else {
        return not_found(C, "order unit");
    };
    let status = unit.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !from.contains(&status.as_str()) {
        return problem(StatusCode::BAD_REQUEST, problem_type, &format!("order unit {id} is {status}"));
    }
    unit["status"] = json!(to);
    unit["ts_updated_iso"] = json!(chrono::Utc::now().to_rfc3339());
    StatusCode::NO_CONTENT.into_response()
}

/// `PATCH /v2/order-units/{id}/send` `{tracking_numbers: "a,b", carrier_code}` (204).
async fn send(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, &body) {
        return r;
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "/problems/bad-request", "invalid JSON");
    };
    let carrier = doc.get("carrier_code").and_then(Value::as_str).unwrap_or_default();
    if carrier.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "/problems/bad-request", "carrier_code is required");
    }
    match doc.get("tracking_numbers") {
        Some(Value::String(t)) if !t.is_empty() || carrier.starts_with("Other") => {}
        Some(Value::String(_)) | None => {
            return problem(
                StatusCode::BAD_REQUEST,
                "/problems/bad-request",
                "tracking_numbers is required for this carrier",
            );
        }
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "/problems/bad-request",
                "tracking_numbers is one comma-separated string",
            );
        }
    }
    transition(&state, &id, &["need_to_be_sent"], "sent", "/problems/order-units/send-not-possible")
}

/// `PATCH /v2/order-units/{id}/cancel` `{reason}` (204), the reason one of Kaufland's list.
async fn cancel(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, &body) {
        return r;
    }
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|d| d.get("reason").and_then(Value::as_str).map(str::to_owned));
    if !reason.as_deref().is_some_and(|r| CANCEL_REASONS.contains(&r)) {
        return problem(
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
            &format!("reason must be one of {}", CANCEL_REASONS.join(", ")),
        );
    }
    transition(&state, &id, &["open", "need_to_be_sent"], "cancelled", "/problems/order-units/cancel-not-possible")
}

fn unit_json(i: &crate::state::CatalogItem, storefront: &str) -> Value {
    let id = i.id.parse::<u64>().map_or_else(|_| json!(i.id), |n| json!(n));
    json!({
        "id_unit": id, "id_offer": i.sku, "id_product": i.product_id, "amount": i.quantity,
        "listing_price": i.price_minor.unwrap_or(1000), "storefront": storefront, "status": "available",
        "product": { "id_product": i.product_id, "eans": [] },
    })
}

/// `GET /v2/units`: the catalog's units (filtered by `id_offer`), `limit` at most 100 from `offset`.
async fn units(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, b"") {
        return r;
    }
    let Some(storefront) = q.get("storefront").filter(|s| !s.is_empty()) else {
        return problem(StatusCode::BAD_REQUEST, "/problems/storefront-not-configured", "storefront is required");
    };
    let limit = super::num(&q, "limit", 30);
    if !(1..=100).contains(&limit) {
        return problem(StatusCode::BAD_REQUEST, "/problems/bad-request", "limit is at most 100");
    }
    let offset = super::num(&q, "offset", 0);
    let s = state.lock();
    let all: Vec<Value> = s
        .catalog(C)
        .filter(|i| q.get("id_offer").is_none_or(|o| *o == i.sku))
        .map(|i| {
            let mut u = unit_json(i, storefront);
            if let Some(q) = s.stock_of(C, &i.id) {
                u["amount"] = json!(q);
            }
            u
        })
        .collect();
    let data: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    ok(json!({ "data": data, "pagination": { "offset": offset, "limit": limit, "total": all.len() } }))
}

/// `POST /v2/units/bulk`: at most 150 units, no unit twice (either fails the whole request with 400),
/// then 207 with one entry per unit: `amount` and `listing_price` (integer cents above zero) written.
async fn bulk(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &method, &uri, &headers, &body) {
        return r;
    }
    if q.get("storefront").is_none_or(String::is_empty) {
        return problem(StatusCode::BAD_REQUEST, "/problems/storefront-not-configured", "storefront is required");
    }
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
            "the body is an array of {id_unit, unit_data}",
        );
    };
    if entries.len() > MAX_BULK {
        return problem(
            StatusCode::BAD_REQUEST,
            "/problems/units/bulk-too-many-units",
            "at most 150 units per request",
        );
    }
    let ids: Vec<String> = entries.iter().map(|e| e.get("id_unit").map(Value::to_string).unwrap_or_default()).collect();
    if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
        return problem(StatusCode::BAD_REQUEST, "/problems/units/bulk-duplicate-units", "a unit appears twice");
    }
    let mut s = state.lock();
    let mut answers = Vec::with_capacity(entries.len());
    for e in &entries {
        let (Some(id), Some(data)) =
            (e.get("id_unit").and_then(Value::as_u64), e.get("unit_data").and_then(Value::as_object))
        else {
            answers.push(json!({ "id_unit": e.get("id_unit"), "status_code": 400, "message": "id_unit (integer) and unit_data are required" }));
            continue;
        };
        let key = id.to_string();
        if !s.known(C, &key) {
            answers.push(json!({ "id_unit": id, "status_code": 404, "message": "unit not found", "errors": [] }));
            continue;
        }
        if let Some(price) = data.get("listing_price") {
            let Some(p) = price.as_i64().filter(|p| *p > 0) else {
                answers.push(json!({ "id_unit": id, "status_code": 400, "message": "listing_price must be integer cents above zero" }));
                continue;
            };
            if let Some(item) = s.catalog.get_mut(&C).and_then(|c| c.get_mut(&key)) {
                item.price_minor = Some(p);
            }
        }
        if let Some(amount) = data.get("amount") {
            let Some(a) = amount.as_i64().filter(|a| *a >= 0) else {
                answers.push(
                    json!({ "id_unit": id, "status_code": 400, "message": "amount must be a non-negative integer" }),
                );
                continue;
            };
            s.set_stock(C, &key, a);
        }
        answers.push(json!({ "id_unit": id, "status_code": 200 }));
    }
    (StatusCode::MULTI_STATUS, axum::Json(json!({ "data": answers }))).into_response()
}
