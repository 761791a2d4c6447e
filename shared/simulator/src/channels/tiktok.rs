//! TikTok Shop: inventory and price updates per product, Inventory Search by product or SKU ids (at
//! most 100 of each, per-warehouse availability), order detail and search, package shipping, and
//! seller cancellation (`cancel_reason` must be one of the `seller_cancel_` keys; an order already
//! handed to the carrier cannot be cancelled). Product content: image upload (multipart, kept under a
//! fresh `uri`), Get Product (its `main_images` by uri) and `partial_edit` (title, description, and
//! `main_images` by the uris uploads answered, replacing the list).
//! Business errors come back as HTTP 200 with a non-zero `code`, as TikTok does; a request TikTok's
//! gateway refuses (a parameter it does not take, an unknown image) as HTTP 4xx.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::seconds;
use super::{St, not_found, ok};
use crate::limits::SimLimit;
use crate::{
    channel_error,
    state::{Inner, SimImage},
};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::TokenBucket { rate_per_second: 50.0, burst: 50.0 }),
    authorized: |a| a.has("x-tts-access-token") && a.query.contains("sign=") && a.query.contains("app_key="),
    error_body: |status, message| json!({ "code": 36_009_000 + u32::from(status.as_u16()), "message": message, "request_id": "sim", "data": {} }),
    rate_headers: super::no_rate_headers,
    order_id: "/id",
    updated_at: |doc| seconds(doc, "/update_time"),
    exported: None,
};

const C: Channel = Channel::Tiktok;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/product/{v}/products/{pid}/inventory/update", post(inventory))
        .route("/product/{v}/products/{pid}/prices/update", post(prices))
        .route("/product/{v}/products/search", post(product_search))
        .route("/product/{v}/products/{pid}", get(product))
        .route("/product/{v}/products/{pid}/partial_edit", post(partial_edit))
        .route("/product/{v}/images/upload", post(upload_image))
        .route("/product/{v}/inventory/search", post(inventory_search))
        .route("/order/{v}/orders", get(orders))
        .route("/order/{v}/orders/search", post(search))
        .route("/fulfillment/{v}/packages/{pkg}/ship", post(ship))
        .route("/return_refund/{v}/cancellations", post(cancel))
        .route("/return_refund/{v}/returns/search", post(returns_search))
}

fn fail(code: u32, message: &str) -> Response {
    ok(json!({ "code": code, "message": message, "request_id": super::fresh_id(), "data": {} }))
}

fn success(data: &Value) -> Response {
    ok(json!({ "code": 0, "message": "Success", "request_id": super::fresh_id(), "data": data }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryUpdate {
    skus: Vec<SkuInventory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuInventory {
    id: String,
    inventory: Vec<WarehouseQuantity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarehouseQuantity {
    #[serde(default)]
    warehouse_id: Option<String>,
    quantity: i64,
}

async fn inventory(State(state): St, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<InventoryUpdate>(&body) else {
        return fail(
            12_052_002,
            "invalid request body: expected {skus: [{id, inventory: [{warehouse_id, quantity}]}]}",
        );
    };
    let mut s = state.lock();
    if let Some(unknown) = req.skus.iter().find(|k| !s.known(C, &k.id)) {
        return fail(12_052_700, &format!("sku {} does not belong to this product", unknown.id));
    }
    for sku in &req.skus {
        let total: i64 = sku.inventory.iter().filter(|w| w.warehouse_id.is_some()).map(|w| w.quantity).sum();
        s.set_stock(C, &sku.id, total);
    }
    success(&json!({}))
}

/// `POST /product/{v}/products/search`: the shop's products (catalog items grouped by `product_id`),
/// `page_size` at most 100, `next_page_token`, each SKU with its price and warehouse inventory.
async fn product_search(
    State(state): St,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if serde_json::from_slice::<Value>(&body).map_or(true, |b| !b.is_object()) {
        return fail(12_052_002, "invalid request body: expected a search filter object");
    }
    let size = super::num(&q, "page_size", 0);
    if !(1..=100).contains(&size) {
        return fail(12_052_002, "page_size must be between 1 and 100");
    }
    let offset = match q.get("page_token").filter(|t| !t.is_empty()) {
        Some(t) => match t.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return fail(12_052_002, "invalid page_token"),
        },
        None => 0,
    };
    let s = state.lock();
    let mut products: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for i in s.catalog(C) {
        let sku = json!({
            "id": i.id, "seller_sku": i.sku,
            "price": { "currency": "USD", "sale_price": super::price_text(i.price_minor), "tax_exclusive_price": super::price_text(i.price_minor) },
            "inventory": [{ "warehouse_id": "7068517275539793707", "quantity": i.quantity }],
        });
        products.entry(i.product_id.clone().unwrap_or_else(|| i.id.clone())).or_default().push(sku);
    }
    let total = products.len();
    let page: Vec<Value> = products
        .into_iter()
        .skip(offset)
        .take(size)
        .map(|(id, skus)| json!({ "id": id, "status": "ACTIVATE", "skus": skus }))
        .collect();
    let next = if offset + size < total { (offset + size).to_string() } else { String::new() };
    success(&json!({ "products": page, "next_page_token": next, "total_count": total }))
}

/// `POST /product/{v}/inventory/search` `{product_ids?, sku_ids?}`: the named SKUs' inventory,
/// grouped by product; ids the shop does not have are left out.
async fn inventory_search(State(state): St, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ids = |key: &str| -> Option<Vec<String>> {
        let list = req.get(key)?.as_array()?;
        Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    };
    let (products, skus) = (ids("product_ids").unwrap_or_default(), ids("sku_ids").unwrap_or_default());
    if products.is_empty() && skus.is_empty() {
        return fail(12_052_002, "product_ids or sku_ids is required");
    }
    if products.len() > 100 || skus.len() > 100 {
        return fail(12_052_002, "at most 100 product_ids and 100 sku_ids");
    }
    let s = state.lock();
    let mut grouped: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for i in s.catalog(C) {
        let product = i.product_id.clone().unwrap_or_else(|| i.id.clone());
        if !products.contains(&product) && !skus.contains(&i.id) {
            continue;
        }
        grouped.entry(product).or_default().push(json!({
            "id": i.id, "seller_sku": i.sku,
            "total_available_quantity": i.quantity, "total_committed_quantity": 0,
            "warehouse_inventory": [{ "warehouse_id": "7068517275539793707", "available_quantity": i.quantity, "committed_quantity": 0 }],
        }));
    }
    let inventory: Vec<Value> =
        grouped.into_iter().map(|(product_id, skus)| json!({ "product_id": product_id, "skus": skus })).collect();
    success(&json!({ "inventory": inventory }))
}

/// Whether the shop has the product: any product goes until a catalog is seeded.
fn holds_product(s: &Inner, product: &str) -> bool {
    s.catalog(C).next().is_none() || s.catalog(C).any(|i| i.product_id.as_deref().unwrap_or(&i.id) == product)
}

/// The image CDN address TikTok serves an uploaded image's `uri` at.
fn image_url(uri: &str) -> String {
    format!("https://p16-oec-va.ibyteimg.com/{uri}~tplv-o3syd03w52-origin-jpeg.jpeg")
}

/// Image use cases the upload takes.
const USE_CASES: &[&str] =
    &["MAIN_IMAGE", "ATTRIBUTE_IMAGE", "DESCRIPTION_IMAGE", "CERTIFICATION_IMAGE", "SIZE_CHART_IMAGE"];

/// `POST /product/{v}/images/upload`: multipart `data` (the file) and `use_case` (`MAIN_IMAGE` by
/// default); the image is kept under a fresh `uri` for products to refer to. The upload belongs to
/// no shop, and TikTok refuses a `shop_cipher` on it.
async fn upload_image(
    State(state): St,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if q.contains_key("shop_cipher") {
        let body = json!({
            "code": 36_009_004,
            "message": "The 'shop_cipher' query parameter is not required",
            "request_id": super::fresh_id(),
            "data": {},
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let parts = match super::form_parts(&headers, body).await {
        Ok(p) => p,
        Err(e) => return fail(12_052_002, &e),
    };
    let Some(file) = parts.iter().find(|p| p.name == "data" && p.file_name.is_some() && !p.bytes.is_empty()) else {
        return fail(12_052_002, "data (the image file) is required");
    };
    let use_case =
        parts.iter().find(|p| p.name == "use_case").map(|p| String::from_utf8_lossy(&p.bytes).trim().to_owned());
    let use_case = use_case.unwrap_or_else(|| "MAIN_IMAGE".to_owned());
    if !USE_CASES.contains(&use_case.as_str()) {
        return fail(12_052_002, &format!("invalid use_case {use_case}"));
    }
    let uri = format!("tos-maliva-i-o3syd03w52-us/{}{}", super::fresh_id(), super::fresh_id());
    let image = SimImage { url: uri.clone(), alt: None, sha256: Some(super::sha256_hex(&file.bytes)) };
    state.lock().uploads.insert(uri.clone(), image);
    success(&json!({ "uri": uri, "url": image_url(&uri), "width": 800, "height": 800, "use_case": use_case }))
}

/// The main images of a product as Get Product shows them.
fn main_images(images: &[SimImage]) -> Vec<Value> {
    images.iter().map(|i| json!({ "uri": i.url, "urls": [image_url(&i.url)], "width": 800, "height": 800 })).collect()
}

/// `GET /product/{v}/products/{product_id}`: the product with its content and SKUs.
async fn product(State(state): St, Path((_v, pid)): Path<(String, String)>) -> Response {
    let s = state.lock();
    if !holds_product(&s, &pid) {
        return not_found(C, "product");
    }
    let content = s.content.get(&C).and_then(|c| c.get(&pid)).cloned().unwrap_or_default();
    let skus: Vec<Value> = s
        .catalog(C)
        .filter(|i| i.product_id.as_deref().unwrap_or(&i.id) == pid)
        .map(|i| {
            let price = json!({ "currency": "USD", "sale_price": super::price_text(i.price_minor) });
            json!({ "id": i.id, "seller_sku": i.sku, "price": price })
        })
        .collect();
    success(&json!({
        "id": pid, "status": "ACTIVATE",
        "title": content.title.unwrap_or_default(), "description": content.description.unwrap_or_default(),
        "main_images": main_images(&content.images), "skus": skus,
    }))
}

/// The `partial_edit` fields content writes use; anything else is refused, so a misspelt field shows
/// up instead of being dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialEdit {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    main_images: Option<Vec<ImageRef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRef {
    uri: String,
}

/// At most this many main images per product.
const MAX_MAIN_IMAGES: usize = 9;

/// `POST /product/{v}/products/{product_id}/partial_edit`: the fields given replace the product's;
/// `main_images` replaces the whole list, each image named by the `uri` its upload answered.
async fn partial_edit(State(state): St, Path((_v, pid)): Path<(String, String)>, body: Bytes) -> Response {
    let req: PartialEdit = match super::parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.title.as_ref().is_some_and(|t| t.trim().is_empty()) {
        return fail(12_052_002, "title must not be empty");
    }
    let mut s = state.lock();
    if !holds_product(&s, &pid) {
        return not_found(C, "product");
    }
    let images = match &req.main_images {
        None => None,
        Some(list) if !(1..=MAX_MAIN_IMAGES).contains(&list.len()) => {
            return fail(12_052_002, &format!("main_images takes 1 to {MAX_MAIN_IMAGES} images"));
        }
        Some(list) => match list.iter().map(|r| s.uploads.get(&r.uri).cloned().ok_or(&r.uri)).collect() {
            Ok(images) => Some(images),
            Err(uri) => {
                return channel_error(C, StatusCode::BAD_REQUEST, &format!("main image uri {uri} was not uploaded"));
            }
        },
    };
    let content = s.content_mut(C, &pid);
    if let Some(title) = req.title {
        content.title = Some(title);
    }
    if let Some(description) = req.description {
        content.description = Some(description);
    }
    if let Some(images) = images {
        content.images = images;
    }
    success(&json!({ "product_id": pid, "warnings": [] }))
}

async fn prices(body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let valid = req.get("skus").and_then(Value::as_array).is_some_and(|skus| {
        !skus.is_empty()
            && skus.iter().all(|k| k.get("id").is_some() && k.pointer("/price/amount").is_some_and(Value::is_string))
    });
    if valid {
        success(&json!({}))
    } else {
        fail(12_052_002, "invalid request body: expected {skus: [{id, price: {amount, currency}}]}")
    }
}

async fn orders(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let ids: Vec<&str> = q.get("ids").map(|i| i.split(',').collect()).unwrap_or_default();
    let s = state.lock();
    let orders: Vec<Value> = ids.iter().filter_map(|id| s.order(C, id)).map(|o| o.doc.clone()).collect();
    success(&json!({ "orders": orders }))
}

/// `POST /order/{v}/orders/search`: body filters `update_time_ge` (inclusive) and `update_time_lt`
/// (unix seconds), `page_size` (1 to 100, required) and `page_token` in the query; the same filter
/// must come with every page of a search; `next_page_token` is empty on the last page.
async fn search(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>, body: Bytes) -> Response {
    use chrono::TimeZone as _;
    let Ok(filter) = serde_json::from_slice::<Value>(&body).map(|b| if b.is_object() { b } else { Value::Null }) else {
        return fail(36_009_003, "invalid request body: expected a search filter object");
    };
    let second = |k: &str| filter.get(k).and_then(Value::as_i64).and_then(|t| chrono::Utc.timestamp_opt(t, 0).single());
    let since = second("update_time_ge").map(|t| (t, super::orders::Bound::AtOrAfter));
    let until = second("update_time_lt");
    let key = format!("{}|{}", filter["update_time_ge"], filter["update_time_lt"]);
    let offset = match q.get("page_token").filter(|t| !t.is_empty()) {
        Some(t) => match super::orders::read_token(t) {
            Some((k, offset)) if k == key => offset,
            _ => return fail(36_009_003, "invalid page_token for this search"),
        },
        None => 0,
    };
    let s = state.lock();
    if !(1..=100).contains(&super::num(&q, "page_size", 0)) {
        return fail(36_009_003, "page_size must be between 1 and 100");
    }
    let Ok(size) = super::orders::page_size(&s, q.get("page_size"), 100, 100) else {
        return fail(36_009_003, "page_size must be between 1 and 100");
    };
    let matching: Vec<Value> = super::orders::updated_since(&s, C, since, until).into_iter().map(|o| o.doc).collect();
    let (orders, more) = super::orders::page(&matching, offset, size);
    let next = if more { super::orders::token(&key, offset + size) } else { String::new() };
    success(&json!({ "orders": orders, "next_page_token": next, "total_count": matching.len() }))
}

/// `POST /return_refund/{v}/returns/search` `{order_ids}`: the orders' returns (kept by
/// `SimHandle::seed_return`, as buyers open them in the app), 50 a page at most.
async fn returns_search(
    State(state): St,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let size = super::num(&q, "page_size", 0);
    if !(1..=50).contains(&size) {
        return fail(12_052_002, "page_size must be between 1 and 50");
    }
    let offset = q.get("page_token").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let orders: Vec<String> = req
        .get("order_ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let s = state.lock();
    let all: Vec<Value> = s
        .returns
        .get(&C)
        .into_iter()
        .flatten()
        .filter(|(order, _)| orders.is_empty() || orders.contains(order))
        .flat_map(|(_, list)| list.iter().cloned())
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let next = if offset + size < all.len() { (offset + size).to_string() } else { String::new() };
    success(&json!({ "return_orders": page, "next_page_token": next, "total_count": all.len() }))
}

/// `POST /return_refund/{v}/cancellations` `{order_id, cancel_reason}`: the order becomes `CANCELLED`
/// at once (a seller cancellation of an unshipped order needs no buyer approval).
async fn cancel(State(state): St, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(order_id), Some(reason)) =
        (req.get("order_id").and_then(Value::as_str), req.get("cancel_reason").and_then(Value::as_str))
    else {
        return fail(12_052_002, "order_id and cancel_reason are required");
    };
    if !reason.starts_with("seller_cancel_") {
        return fail(25_001_005, "invalid cancel_reason: use a seller cancel reason key");
    }
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, order_id) else { return fail(25_001_001, "order not found") };
    let status = o.doc["status"].as_str().unwrap_or_default().to_owned();
    if matches!(status.as_str(), "IN_TRANSIT" | "DELIVERED" | "COMPLETED" | "CANCELLED") {
        return fail(25_001_011, &format!("order in status {status} cannot be cancelled by the seller"));
    }
    let now = chrono::Utc::now().timestamp();
    o.doc["status"] = json!("CANCELLED");
    o.doc["cancel_reason"] = json!(reason);
    o.doc["cancellation_initiator"] = json!("SELLER");
    o.doc["cancel_time"] = json!(now);
    o.doc["update_time"] = json!(now);
    success(&json!({ "cancel_id": super::fresh_id(), "cancel_status": "CANCELLATION_REQUEST_COMPLETE" }))
}

async fn ship(Path((_v, _pkg)): Path<(String, String)>, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if req.pointer("/self_shipment/tracking_number").is_some_and(Value::is_string) {
        success(&json!({}))
    } else {
        fail(21_011_001, "self_shipment.tracking_number is required")
    }
}
