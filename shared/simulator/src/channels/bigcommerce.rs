//! BigCommerce: absolute inventory adjustments (v3, validated as a whole batch, 422 on any bad item),
//! variant prices and reads, and the v2 order endpoints (204 for empty lists).
//!
//! Shipments: `POST /v2/orders/{id}/shipments` creates one in the documented full shape (a store-wide
//! integer id, the order's addresses, `items[]` with their `product_id`) and keeps it with the order, under
//! `"shipments"` of the seeded document (a seed may bring its own). `GET /v2/orders/{id}/shipments` lists
//! them and `GET /v2/orders/{id}/shipments/{shipment_id}` returns one; any other path under an order is a
//! 404, as on BigCommerce.
//!
//! Refunds: `POST /v3/orders/{id}/payment_actions/refunds` (`items[]` of `{item_type, item_id,
//! quantity, amount}`, `payments[]`) creates one as the Payment Actions API answers it (`{data, meta}`,
//! 201); a `PRODUCT` item must name a product of the order and refund at most what it sold less earlier
//! refunds (422 otherwise). `GET` lists the order's refunds.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, fresh_id, not_found, ok, parse};
use crate::channel_error;
use crate::limits::SimLimit;

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::Window { requests: 150, window_ms: 30_000 }),
    authorized: |a| a.has("x-auth-token"),
    error_body: |status, message| {
        json!({
            "status": status.as_u16(),
            "title": message,
            "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes",
            "errors": {},
        })
    },
    rate_headers: |s, headers| {
        headers.insert("x-rate-limit-requests-left", super::whole(s.remaining));
        headers.insert("x-rate-limit-requests-quota", super::whole(s.limit));
        headers.insert("x-rate-limit-time-reset-ms", super::millis(s.reset_in));
    },
    order_id: "/order/id",
    updated_at: |doc| text(doc, "/order/date_modified"),
    exported: None,
};

const C: Channel = Channel::Bigcommerce;
const MAX_ITEMS: usize = 2000;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/v3/inventory/adjustments/absolute", put(absolute))
        .route("/v3/catalog/variants", put(variants).get(read_variants))
        .route("/v3/catalog/products/{id}", put(update_product))
        .route("/v3/catalog/products/{id}/images", get(images).post(add_image))
        .route("/v3/catalog/products/{id}/images/{image_id}", put(replace_image).delete(delete_image))
        .route("/v2/orders", get(orders))
        .route("/v2/orders/{id}", get(order).put(update_order))
        .route("/v2/orders/{id}/products", get(products))
        .route("/v2/orders/{id}/shipping_addresses", get(addresses))
        .route("/v2/orders/{id}/shipments", post(shipment).get(shipments))
        .route("/v2/orders/{id}/shipments/{shipment_id}", get(one_shipment))
        .route("/v3/orders/{id}/payment_actions/refunds", post(create_refund).get(refunds))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Absolute {
    reason: String,
    items: Vec<AbsoluteItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbsoluteItem {
    location_id: u64,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    variant_id: Option<u64>,
    #[serde(default)]
    product_id: Option<u64>,
    quantity: i64,
}

fn unprocessable(title: &str, errors: &Value) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "status": 422, "title": title, "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes", "errors": errors })),
    )
        .into_response()
}

async fn absolute(State(state): St, body: Bytes) -> Response {
    let req: Absolute = match parse(C, StatusCode::UNPROCESSABLE_ENTITY, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.reason.trim().is_empty() || req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return unprocessable("reason is required and items must hold 1 to 2000 entries", &json!({}));
    }
    let mut s = state.lock();
    let mut errors = serde_json::Map::new();
    for (ix, item) in req.items.iter().enumerate() {
        let key =
            item.sku.clone().or(item.variant_id.map(|v| v.to_string())).or(item.product_id.map(|p| p.to_string()));
        match key {
            _ if item.location_id == 0 => {
                errors.insert(format!("items.{ix}.location_id"), json!("location_id must be a valid location"));
            }
            Some(k) if s.known(C, &k) && item.quantity >= 0 => {}
            Some(k) if item.quantity < 0 => {
                errors.insert(format!("items.{ix}.quantity"), json!(format!("{k}: quantity must not be negative")));
            }
            Some(k) => {
                errors.insert(format!("items.{ix}.sku"), json!(format!("{k} does not exist")));
            }
            None => {
                errors.insert(format!("items.{ix}"), json!("one of sku, variant_id or product_id is required"));
            }
        }
    }
    if !errors.is_empty() {
        return unprocessable("Inventory adjustment failed validation", &Value::Object(errors));
    }
    for item in &req.items {
        let key = item
            .sku
            .clone()
            .or(item.variant_id.map(|v| v.to_string()))
            .or(item.product_id.map(|p| p.to_string()))
            .unwrap_or_default();
        s.set_stock(C, &key, item.quantity);
    }
    ok(json!({ "transaction_id": fresh_id() }))
}

async fn variants(body: Bytes) -> Response {
    let list: Vec<Value> = match parse(C, StatusCode::UNPROCESSABLE_ENTITY, &body) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if list.len() > 50 || list.iter().any(|v| !v.get("id").is_some_and(Value::is_u64)) {
        return unprocessable("at most 50 variants, each with a numeric id", &json!({}));
    }
    if list.iter().any(|v| v.get("price").is_some_and(|p| !p.is_number())) {
        return unprocessable("price must be a number", &json!({}));
    }
    ok(json!({ "data": list, "meta": {} }))
}

/// Whether the catalog (when seeded) holds product `id`; answers BigCommerce's 404 otherwise.
fn product_known(s: &crate::state::Inner, id: &str) -> Result<(), Response> {
    let known = s.catalog(C).next().is_none() || s.catalog(C).any(|i| i.product_id.as_deref() == Some(id));
    if known { Ok(()) } else { Err(channel_error(C, StatusCode::NOT_FOUND, "The requested product was not found.")) }
}

/// `PUT /v3/catalog/products/{id}`: the fields given replace the product's (`name`, `description`
/// are what the simulator keeps).
async fn update_product(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let product: Value = match parse(C, StatusCode::UNPROCESSABLE_ENTITY, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut s = state.lock();
    if let Err(r) = product_known(&s, &id) {
        return r;
    }
    let name = product.get("name");
    if name.is_some_and(|n| n.as_str().is_none_or(|n| n.is_empty() || n.chars().count() > 250)) {
        return unprocessable(
            "JSON data is missing or invalid",
            &json!({ "name": "name must be 1 to 250 characters" }),
        );
    }
    let content = s.content_mut(C, &id);
    if let Some(n) = name.and_then(Value::as_str) {
        content.title = Some(n.to_owned());
    }
    if let Some(d) = product.get("description").and_then(Value::as_str) {
        content.description = Some(d.to_owned());
    }
    ok(
        json!({ "data": { "id": id.parse::<u64>().ok(), "name": content.title, "description": content.description }, "meta": {} }),
    )
}

/// A product image as BigCommerce answers it. The simulator numbers a product's images by position
/// (`sort_order` is the position), so an image keeps its id while it is replaced in place.
fn image_json(product: &str, position: usize, image: &crate::state::SimImage) -> Value {
    json!({
        "id": position + 1, "product_id": product.parse::<u64>().ok(), "image_url": image.url,
        "url_standard": image.url, "description": image.alt.clone().unwrap_or_default(),
        "sort_order": position, "is_thumbnail": position == 0,
    })
}

async fn images(State(state): St, Path(id): Path<String>) -> Response {
    let s = state.lock();
    if let Err(r) = product_known(&s, &id) {
        return r;
    }
    let list = s.content.get(&C).and_then(|c| c.get(&id)).map(|c| c.images.clone()).unwrap_or_default();
    let data: Vec<Value> = list.iter().enumerate().map(|(k, i)| image_json(&id, k, i)).collect();
    ok(json!({ "data": data, "meta": {} }))
}

/// The `image_url` and `description` of an image body, or BigCommerce's 422.
fn image_body(body: &Bytes) -> Result<crate::state::SimImage, Response> {
    let v: Value = parse(C, StatusCode::UNPROCESSABLE_ENTITY, body)?;
    let url = v.get("image_url").and_then(Value::as_str).filter(|u| u.starts_with("http"));
    let Some(url) = url else {
        return Err(unprocessable(
            "JSON data is missing or invalid",
            &json!({ "image_url": "image_url must be an http(s) URL" }),
        ));
    };
    let alt = v.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()).map(str::to_owned);
    Ok(crate::state::SimImage { url: url.to_owned(), alt, sha256: None })
}

async fn add_image(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let image = match image_body(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut s = state.lock();
    if let Err(r) = product_known(&s, &id) {
        return r;
    }
    let list = &mut s.content_mut(C, &id).images;
    list.push(image);
    let answer = image_json(&id, list.len() - 1, &list[list.len() - 1]);
    ok(json!({ "data": answer, "meta": {} }))
}

async fn replace_image(State(state): St, Path((id, image_id)): Path<(String, usize)>, body: Bytes) -> Response {
    let image = match image_body(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut s = state.lock();
    if let Err(r) = product_known(&s, &id) {
        return r;
    }
    let list = &mut s.content_mut(C, &id).images;
    let Some(slot) = image_id.checked_sub(1).and_then(|k| list.get_mut(k)) else {
        return channel_error(C, StatusCode::NOT_FOUND, "The requested image was not found.");
    };
    *slot = image;
    let answer = image_json(&id, image_id - 1, slot);
    ok(json!({ "data": answer, "meta": {} }))
}

async fn delete_image(State(state): St, Path((id, image_id)): Path<(String, usize)>) -> Response {
    let mut s = state.lock();
    let list = &mut s.content_mut(C, &id).images;
    match image_id.checked_sub(1).filter(|k| *k < list.len()) {
        Some(k) => {
            list.remove(k);
            StatusCode::NO_CONTENT.into_response()
        }
        None => channel_error(C, StatusCode::NOT_FOUND, "The requested image was not found."),
    }
}

#[derive(Deserialize)]
struct SkuIn {
    #[serde(rename = "sku:in", default)]
    sku_in: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v3/catalog/variants` without a filter: the catalog a page at a time, `meta.pagination` as documented.
fn variant_page(s: &crate::state::Inner, page: usize, limit: usize) -> Response {
    let limit = limit.clamp(1, 250);
    let page = page.max(1);
    let total = s.catalog(C).count();
    let (items, _) = s.catalog_page(C, (page - 1) * limit, limit);
    let data: Vec<Value> = items
        .iter()
        .map(|i| {
            let price = super::price_text(i.price_minor).parse::<f64>().unwrap_or_default();
            json!({
                "id": i.variant_id.as_deref().and_then(|v| v.parse::<u64>().ok()),
                "product_id": i.product_id.as_deref().and_then(|p| p.parse::<u64>().ok()),
                "sku": i.sku, "price": price, "calculated_price": price, "inventory_level": i.quantity,
                "upc": "", "gtin": "",
            })
        })
        .collect();
    let pages = total.div_ceil(limit).max(1);
    ok(json!({ "data": data, "meta": { "pagination": {
        "total": total, "count": data.len(), "per_page": limit, "current_page": page, "total_pages": pages,
        "links": { "current": format!("?page={page}&limit={limit}") },
    } } }))
}

async fn read_variants(State(state): St, Query(q): Query<SkuIn>) -> Response {
    let s = state.lock();
    if q.sku_in.is_empty() {
        return variant_page(&s, q.page.unwrap_or(1), q.limit.unwrap_or(50));
    }
    let skus: Vec<&str> = q.sku_in.split(',').collect();
    let data: Vec<Value> =
        skus.iter().filter_map(|sku| s.stock_of(C, sku).map(|q| json!({ "sku": sku, "inventory_level": q }))).collect();
    ok(json!({ "data": data, "meta": {} }))
}

async fn refunds(State(state): St, Path(id): Path<String>) -> Response {
    let s = state.lock();
    if s.order(C, &id).is_none() {
        return not_found(C, "order");
    }
    let list = s.returns.get(&C).and_then(|r| r.get(&id)).cloned().unwrap_or_default();
    ok(json!({ "data": list, "meta": {} }))
}

async fn create_refund(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let invalid = |m: String| channel_error(C, StatusCode::UNPROCESSABLE_ENTITY, &m);
    let mut s = state.lock();
    let Some(order) = s.order(C, &id).map(|o| o.doc.clone()) else { return not_found(C, "order") };
    let earlier = s.returns.get(&C).and_then(|r| r.get(&id)).cloned().unwrap_or_default();
    let items = req["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return invalid("items: at least one item is required".into());
    }
    let mut total = 0.0_f64;
    for item in &items {
        total += item["amount"].as_f64().unwrap_or(0.0);
        if item["item_type"] != "PRODUCT" {
            continue;
        }
        let products = order["products"].as_array().cloned().unwrap_or_default();
        let Some(product) = products.iter().find(|p| p["id"] == item["item_id"]) else {
            return invalid(format!("item {} is not a product of order {id}", item["item_id"]));
        };
        let refunded: i64 = earlier
            .iter()
            .flat_map(|r| r["items"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["item_type"] == "PRODUCT" && i["item_id"] == item["item_id"])
            .map(|i| i["quantity"].as_i64().unwrap_or(0))
            .sum();
        let quantity = item["quantity"].as_i64().unwrap_or(0);
        if quantity <= 0 || quantity > product["quantity"].as_i64().unwrap_or(0) - refunded {
            return invalid(format!("item {}: quantity {quantity} is more than is left to refund", item["item_id"]));
        }
    }
    let refund_id = 1 + s.returns.get(&C).map_or(0, |r| r.values().map(Vec::len).sum::<usize>());
    let refund = json!({
        "id": refund_id,
        "order_id": id.parse::<i64>().unwrap_or_default(),
        "user_id": 0,
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "reason": req["reason"].as_str().unwrap_or(""),
        "total_amount": total,
        "total_tax": 0,
        "uses_merchant_override_values": false,
        "items": items,
        "payments": req["payments"].clone(),
    });
    s.returns.entry(C).or_default().entry(id).or_default().push(refund.clone());
    (StatusCode::CREATED, axum::Json(json!({ "data": refund, "meta": {} }))).into_response()
}

fn order_part(state: &St, id: &str, part: &str) -> Response {
    state
        .lock()
        .order(C, id)
        .map_or_else(|| not_found(C, "order"), |o| ok(o.doc.get(part).cloned().unwrap_or(json!([]))))
}

/// `GET /v2/orders`: `min_date_modified` (inclusive; RFC 2822 or ISO 8601), `limit` (50, at most 250)
/// and `page` (from 1); a page with no orders is `204 No Content`, as v2 answers past the last page.
async fn orders(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let invalid = |m: &str| channel_error(C, StatusCode::BAD_REQUEST, m);
    let since = match q.get("min_date_modified").map(|m| super::orders::parse_time(m)) {
        None => None,
        Some(Some(t)) => Some((t, super::orders::Bound::AtOrAfter)),
        Some(None) => return invalid("The field 'min_date_modified' is invalid."),
    };
    let s = state.lock();
    let size = match super::orders::page_size(&s, q.get("limit"), 50, 250) {
        Ok(n) => n,
        Err(e) => return invalid(&e),
    };
    let page = super::num(&q, "page", 1).max(1);
    let matching: Vec<Value> =
        super::orders::updated_since(&s, C, since, None).into_iter().map(|o| o.doc["order"].clone()).collect();
    let (list, _) = super::orders::page(&matching, (page - 1) * size, size);
    if list.is_empty() { StatusCode::NO_CONTENT.into_response() } else { ok(Value::Array(list)) }
}

async fn order(state: St, Path(id): Path<String>) -> Response {
    order_part(&state, &id, "order")
}

async fn products(state: St, Path(id): Path<String>) -> Response {
    order_part(&state, &id, "products")
}

async fn addresses(state: St, Path(id): Path<String>) -> Response {
    order_part(&state, &id, "shipping_addresses")
}

async fn update_order(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let changes: serde_json::Map<String, Value> = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, &id) else { return not_found(C, "order") };
    for (k, v) in changes {
        o.doc["order"][k] = v;
    }
    ok(o.doc["order"].clone())
}

async fn shipment(State(state): St, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.get("order_address_id").is_none() || req.get("items").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return channel_error(C, StatusCode::BAD_REQUEST, "order_address_id and items are required");
    }
    let mut s = state.lock();
    // Shipment ids are store-wide integers.
    let next =
        s.orders.get(&C).into_iter().flatten().flat_map(stored_shipments).filter_map(|sh| sh["id"].as_u64()).max();
    let Some(order) = s.order_mut(C, &id) else { return not_found(C, "order") };
    let created = full_shipment(&order.doc, next.unwrap_or(0) + 1, &req);
    match order.doc.get_mut("shipments").and_then(Value::as_array_mut) {
        Some(list) => list.push(created.clone()),
        None => order.doc["shipments"] = json!([created.clone()]),
    }
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

fn stored_shipments(order: &crate::state::SeededOrder) -> impl Iterator<Item = &Value> {
    order.doc.get("shipments").and_then(Value::as_array).into_iter().flatten()
}

/// The shipment BigCommerce answers (`orderShipment_Full`): what was posted, completed from the order.
fn full_shipment(doc: &Value, id: u64, req: &Value) -> Value {
    let order = &doc["order"];
    let text = |key: &str| req.get(key).cloned().unwrap_or(json!(""));
    let address_id = req["order_address_id"].clone();
    let shipping_address = doc["shipping_addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == address_id)
        .cloned()
        .unwrap_or(Value::Null);
    let items: Vec<Value> = req["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let product =
                doc["products"].as_array().into_iter().flatten().find(|p| p["id"] == item["order_product_id"]);
            json!({
                "order_product_id": item["order_product_id"],
                "product_id": product.map_or(json!(0), |p| p["product_id"].clone()),
                "quantity": item["quantity"],
            })
        })
        .collect();
    json!({
        "id": id,
        "order_id": order["id"],
        "customer_id": order.get("customer_id").cloned().unwrap_or(json!(0)),
        "order_address_id": address_id,
        "date_created": chrono::Utc::now().to_rfc2822(),
        "tracking_number": text("tracking_number"),
        "merchant_shipping_cost": "0.0000",
        "shipping_method": text("shipping_method"),
        "comments": text("comments"),
        "shipping_provider": text("shipping_provider"),
        "tracking_carrier": text("tracking_carrier"),
        "tracking_link": text("tracking_link"),
        "billing_address": order.get("billing_address").cloned().unwrap_or(Value::Null),
        "shipping_address": shipping_address,
        "items": items,
        "shipping_provider_display_name": text("shipping_provider"),
        "generated_tracking_link": "",
    })
}

async fn shipments(State(state): St, Path(id): Path<String>) -> Response {
    let s = state.lock();
    let Some(order) = s.order(C, &id) else { return not_found(C, "order") };
    let list: Vec<Value> = stored_shipments(order).cloned().collect();
    if list.is_empty() { StatusCode::NO_CONTENT.into_response() } else { ok(Value::Array(list)) }
}

async fn one_shipment(State(state): St, Path((id, shipment_id)): Path<(String, String)>) -> Response {
    let s = state.lock();
    let Some(order) = s.order(C, &id) else { return not_found(C, "order") };
    let same_id = |v: &Value| match v {
        Value::Number(n) => n.as_u64().is_some_and(|n| shipment_id.parse() == Ok(n)),
        other => other.as_str() == Some(shipment_id.as_str()),
    };
    stored_shipments(order).find(|sh| same_id(&sh["id"])).cloned().map_or_else(|| not_found(C, "shipment"), ok)
}
