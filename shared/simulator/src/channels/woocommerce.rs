//! WooCommerce REST v3: product and variation batches (100 per call, per-item errors), product reads
//! by SKU, orders, and order refunds (`POST` as the merchant's shop does when goods come back, with
//! line items naming order lines; `GET` lists them, newest first, as WooCommerce does).

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, not_found, ok, parse};
use crate::{channel_error, state::Inner};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: None,
    authorized: |a| a.scheme("authorization", "Basic "),
    error_body: |status, message| json!({ "code": woo_code(status.as_u16()), "message": message, "data": { "status": status.as_u16() } }),
    rate_headers: super::no_rate_headers,
    order_id: "/id",
    // The GMT twin: `date_modified` is in the site's zone and carries none.
    updated_at: |doc| text(doc, "/date_modified_gmt"),
    exported: None,
};

fn woo_code(status: u16) -> &'static str {
    match status {
        401 => "woocommerce_rest_cannot_view",
        404 => "woocommerce_rest_invalid_id",
        429 => "too_many_requests",
        500..=599 => "internal_server_error",
        _ => "rest_invalid_param",
    }
}

const C: Channel = Channel::Woocommerce;
const MAX_BATCH: usize = 100;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/wc/{v}/products/batch", post(products_batch))
        .route("/wc/{v}/products/{pid}/variations/batch", post(variations_batch))
        .route("/wc/{v}/products", get(products))
        .route("/wc/{v}/products/{pid}/variations", get(variations))
        .route("/wc/{v}/orders", get(orders))
        .route("/wc/{v}/orders/{id}", get(order).put(update_order))
        .route("/wc/{v}/orders/{id}/notes", post(note))
        .route("/wc/{v}/orders/{id}/refunds", get(refunds).post(create_refund))
}

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    create: Vec<Value>,
    #[serde(default)]
    update: Vec<Value>,
    #[serde(default)]
    delete: Vec<Value>,
}

async fn products_batch(State(state): St, body: Bytes) -> Response {
    batch(&mut state.lock(), None, &body)
}

async fn variations_batch(State(state): St, Path((_v, pid)): Path<(String, String)>, body: Bytes) -> Response {
    batch(&mut state.lock(), Some(&pid), &body)
}

fn batch(s: &mut Inner, parent: Option<&str>, body: &Bytes) -> Response {
    let b: Batch = match parse(C, StatusCode::BAD_REQUEST, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.create.len() + b.update.len() + b.delete.len() > MAX_BATCH {
        return channel_error(
            C,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Unable to accept more than 100 items for this request.",
        );
    }
    let mut updated = Vec::new();
    for entry in &b.update {
        let Some(id) = entry.get("id").and_then(Value::as_u64) else {
            updated.push(json!({ "id": 0, "error": { "code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.", "data": { "status": 400 } } }));
            continue;
        };
        let key = parent.map_or_else(|| id.to_string(), |p| format!("{p}/{id}"));
        // A variable product is known by its variations (`{product}/{variation}`).
        let variable = parent.is_none() && s.catalog(C).any(|i| i.id.starts_with(&format!("{id}/")));
        if !s.known(C, &key) && !variable {
            updated.push(json!({ "id": id, "error": { "code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.", "data": { "status": 400 } } }));
            continue;
        }
        match entry.get("stock_quantity") {
            Some(q) if !q.is_i64() => {
                updated.push(json!({ "id": id, "error": { "code": "rest_invalid_param", "message": "Invalid parameter(s): stock_quantity", "data": { "status": 400 } } }));
                continue;
            }
            Some(q) => s.set_stock(C, &key, q.as_i64().unwrap_or_default()),
            None => {}
        }
        if entry.get("regular_price").is_some_and(|p| !p.is_string()) {
            updated.push(json!({ "id": id, "error": { "code": "rest_invalid_param", "message": "Invalid parameter(s): regular_price", "data": { "status": 400 } } }));
            continue;
        }
        if let Err(field) = set_content(s, &key, entry) {
            updated.push(json!({ "id": id, "error": { "code": "rest_invalid_param", "message": format!("Invalid parameter(s): {field}"), "data": { "status": 400 } } }));
            continue;
        }
        let mut echoed = entry.clone();
        echoed["manage_stock"] = json!(true);
        updated.push(echoed);
    }
    ok(json!({ "create": [], "update": updated, "delete": [] }))
}

/// A batch entry's `name`, `description` and `images` (`[{src, alt}]`, replacing the gallery), as the
/// product's content; answers the first invalid field's name.
fn set_content(s: &mut Inner, key: &str, entry: &Value) -> Result<(), &'static str> {
    let name = entry.get("name").map(|v| v.as_str().ok_or("name")).transpose()?;
    let description = entry.get("description").map(|v| v.as_str().ok_or("description")).transpose()?;
    let images = entry
        .get("images")
        .map(|v| {
            v.as_array()
                .ok_or("images")?
                .iter()
                .map(|i| {
                    let src = i.get("src").and_then(Value::as_str).filter(|u| u.starts_with("http")).ok_or("images")?;
                    let alt = i.get("alt").and_then(Value::as_str).map(str::to_owned);
                    Ok(crate::state::SimImage { url: src.to_owned(), alt, sha256: None })
                })
                .collect::<Result<Vec<_>, &'static str>>()
        })
        .transpose()?;
    if name.is_none() && description.is_none() && images.is_none() {
        return Ok(());
    }
    let content = s.content_mut(C, key);
    if let Some(n) = name {
        content.title = Some(n.to_owned());
    }
    if let Some(d) = description {
        content.description = Some(d.to_owned());
    }
    if let Some(i) = images {
        content.images = i;
    }
    Ok(())
}

#[derive(Deserialize)]
struct ProductQuery {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
}

/// A page of a list, with WordPress's `X-WP-Total` and `X-WP-TotalPages`.
fn paged(all: Vec<Value>, page: usize, per_page: usize) -> Response {
    let per_page = per_page.clamp(1, 100);
    let pages = all.len().div_ceil(per_page).max(1);
    let total = all.len();
    let list: Vec<Value> = all.into_iter().skip(page.saturating_sub(1) * per_page).take(per_page).collect();
    (
        StatusCode::OK,
        [("x-wp-totalpages", pages.to_string()), ("x-wp-total", total.to_string())],
        axum::Json(Value::Array(list)),
    )
        .into_response()
}

/// Simple products (catalog ids `pid`) and variable ones (ids `pid/vid`, one product per `pid`).
fn catalog_products(s: &Inner) -> Vec<Value> {
    let mut products: std::collections::BTreeMap<u64, Value> = std::collections::BTreeMap::new();
    for i in s.catalog(C) {
        if let Some((p, _)) = i.id.split_once('/') {
            let Ok(pid) = p.parse::<u64>() else { continue };
            products.entry(pid).or_insert_with(
                || json!({ "id": pid, "type": "variable", "sku": "", "stock_quantity": null, "price": "" }),
            );
        } else {
            let Ok(pid) = i.id.parse::<u64>() else { continue };
            let price = super::price_text(i.price_minor);
            let simple = json!({ "id": pid, "type": "simple", "sku": i.sku, "stock_quantity": i.quantity, "manage_stock": true, "price": price });
            products.insert(pid, simple);
        }
    }
    products.into_values().collect()
}

async fn variations(
    State(state): St,
    Path((_v, pid)): Path<(String, String)>,
    Query(q): Query<ProductQuery>,
) -> Response {
    let s = state.lock();
    let prefix = format!("{pid}/");
    let list: Vec<Value> = s
        .catalog(C)
        .filter_map(|i| i.id.strip_prefix(&prefix).and_then(|v| v.parse::<u64>().ok()).map(|vid| (vid, i)))
        .map(|(vid, i)| json!({ "id": vid, "sku": i.sku, "stock_quantity": i.quantity, "manage_stock": true, "price": super::price_text(i.price_minor) }))
        .collect();
    if list.is_empty() {
        return not_found(C, "product");
    }
    paged(list, q.page.unwrap_or(1), q.per_page.unwrap_or(10))
}

async fn products(State(state): St, Query(q): Query<ProductQuery>) -> Response {
    let s = state.lock();
    if q.sku.is_empty() {
        return paged(catalog_products(&s), q.page.unwrap_or(1), q.per_page.unwrap_or(10));
    }
    let skus: Vec<&str> = q.sku.split(',').collect();
    let found: Vec<Value> = s
        .catalog(C)
        .filter(|i| skus.contains(&i.sku.as_str()))
        .map(|i| json!({ "id": i.id, "sku": i.sku, "stock_quantity": i.quantity }))
        .collect();
    ok(Value::Array(found))
}

/// `GET orders`: `modified_after` (exclusive: WordPress's date query `after`; read in GMT with
/// `dates_are_gmt=true`, which is how the simulated site's zone is set anyway), `per_page` (10, at
/// most 100) and `page` (from 1); the totals in `X-WP-Total` and `X-WP-TotalPages`.
async fn orders(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let invalid = |m: &str| channel_error(C, StatusCode::BAD_REQUEST, m);
    let since = match q.get("modified_after").map(|m| super::orders::parse_time(m)) {
        None => None,
        Some(Some(t)) => Some((t, super::orders::Bound::After)),
        Some(None) => return invalid("Invalid parameter(s): modified_after"),
    };
    let s = state.lock();
    let Ok(size) = super::orders::page_size(&s, q.get("per_page"), 10, 100) else {
        return invalid("Invalid parameter(s): per_page");
    };
    let page = super::num(&q, "page", 1).max(1);
    let matching: Vec<Value> = super::orders::updated_since(&s, C, since, None).into_iter().map(|o| o.doc).collect();
    let (orders, _) = super::orders::page(&matching, (page - 1) * size, size);
    let pages = matching.len().div_ceil(size);
    (
        StatusCode::OK,
        [("x-wp-totalpages", pages.to_string()), ("x-wp-total", matching.len().to_string())],
        axum::Json(Value::Array(orders)),
    )
        .into_response()
}

async fn order(State(state): St, Path((_v, id)): Path<(String, String)>) -> Response {
    state.lock().order(C, &id).map_or_else(|| not_found(C, "order"), |o| ok(o.doc.clone()))
}

async fn update_order(State(state): St, Path((_v, id)): Path<(String, String)>, body: Bytes) -> Response {
    let changes: serde_json::Map<String, Value> = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut s = state.lock();
    let Some(order) = s.order_mut(C, &id) else { return not_found(C, "order") };
    for (k, v) in changes {
        order.doc[k] = v;
    }
    ok(order.doc.clone())
}

async fn note(State(state): St, Path((_v, id)): Path<(String, String)>, body: Bytes) -> Response {
    let n: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if n.get("note").and_then(Value::as_str).is_none() {
        return channel_error(C, StatusCode::BAD_REQUEST, "Missing parameter(s): note");
    }
    if state.lock().order(C, &id).is_none() {
        return not_found(C, "order");
    }
    (StatusCode::CREATED, axum::Json(json!({ "id": 1, "note": n["note"] }))).into_response()
}

async fn refunds(State(state): St, Path((_v, id)): Path<(String, String)>) -> Response {
    let s = state.lock();
    if s.order(C, &id).is_none() {
        return not_found(C, "order");
    }
    let mut list = s.returns.get(&C).and_then(|r| r.get(&id)).cloned().unwrap_or_default();
    list.reverse();
    ok(Value::Array(list))
}

/// `POST /orders/{id}/refunds` `{amount?, reason?, line_items: [{id, quantity, refund_total}]}`: the
/// refund object as WooCommerce answers it (negative quantities and totals, its own line ids), and
/// the order's `refunds` summary extended. A line refunds at most what it sold less earlier refunds.
async fn create_refund(State(state): St, Path((_v, id)): Path<(String, String)>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let invalid = |m: &str| channel_error(C, StatusCode::BAD_REQUEST, m);
    let mut s = state.lock();
    let Some(order) = s.order(C, &id).map(|o| o.doc.clone()) else { return not_found(C, "order") };
    let earlier = s.returns.get(&C).and_then(|r| r.get(&id)).cloned().unwrap_or_default();
    let refunded = |line: &Value| -> i64 {
        earlier
            .iter()
            .flat_map(|r| r["line_items"].as_array().cloned().unwrap_or_default())
            .filter(|l| l["product_id"] == line["product_id"] && l["variation_id"] == line["variation_id"])
            .map(|l| -l["quantity"].as_i64().unwrap_or(0))
            .sum()
    };
    let mut line_items = Vec::new();
    let mut total = 0.0_f64;
    let next_item = 9000 + earlier.len() * 100;
    for (n, item) in req["line_items"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let Some(line) = order["line_items"].as_array().and_then(|ls| ls.iter().find(|l| l["id"] == item["id"])) else {
            return invalid("Invalid line item ID.");
        };
        let quantity = item["quantity"].as_i64().unwrap_or(0);
        let sold = line["quantity"].as_i64().unwrap_or(0);
        if quantity <= 0 || quantity > sold - refunded(line) {
            return invalid("Invalid refund amount.");
        }
        let amount =
            item["refund_total"].as_f64().or_else(|| item["refund_total"].as_str()?.parse().ok()).unwrap_or(0.0);
        total += amount;
        line_items.push(json!({
            "id": next_item + n,
            "name": line["name"],
            "product_id": line["product_id"],
            "variation_id": line["variation_id"],
            "quantity": -quantity,
            "tax_class": "",
            "subtotal": format!("{:.2}", -amount),
            "total": format!("{:.2}", -amount),
            "sku": line["sku"],
            "meta_data": [],
        }));
    }
    let amount = req["amount"].as_str().map_or(format!("{total:.2}"), str::to_owned);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let refund_id = 700 + s.returns.get(&C).map_or(0, |r| r.values().map(Vec::len).sum::<usize>()) + 1;
    let refund = json!({
        "id": refund_id,
        "date_created": now,
        "date_created_gmt": now,
        "amount": amount,
        "reason": req["reason"].as_str().unwrap_or(""),
        "refunded_by": 1,
        "refunded_payment": req["api_refund"].as_bool().unwrap_or(false),
        "meta_data": [],
        "line_items": line_items,
    });
    s.returns.entry(C).or_default().entry(id.clone()).or_default().push(refund.clone());
    if let Some(o) = s.order_mut(C, &id) {
        let summary = json!({ "id": refund_id, "reason": refund["reason"], "total": format!("-{amount}") });
        match o.doc["refunds"].as_array_mut() {
            Some(list) => list.push(summary),
            None => o.doc["refunds"] = json!([summary]),
        }
    }
    (StatusCode::CREATED, axum::Json(refund)).into_response()
}
