//! eBay: `bulkUpdatePriceQuantity` (25 requests per call, per-SKU statuses), inventory reads, the
//! Fulfillment API's orders and shipping fulfillments, the Post-Order API's seller cancellation and
//! return search (which take the user token under the `IAF` scheme, with the marketplace header), and
//! the notification public keys.
//!
//! Inventory items: `getInventoryItem` serves an item (the seeded catalog's, or one put) with the
//! stock the simulator keeps for its SKU as `availability`, and the content it shows for the SKU as
//! `product`; `createOrReplaceInventoryItem` replaces it whole, as eBay does (content kept per SKU,
//! the other fields of the item kept as put), and sets the SKU's stock only when its `availability`
//! says another quantity, so putting back what was read leaves stock alone.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use manifold_domain::Channel;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, fresh_id, not_found, ok, parse};
use crate::channel_error;
use crate::state::{Inner, SimContent, SimImage};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: None,
    authorized: |a| {
        if a.path.contains("/post-order/") {
            a.scheme("authorization", "IAF ") && a.has("x-ebay-c-marketplace-id")
        } else {
            a.scheme("authorization", "Bearer ")
        }
    },
    error_body: |_, message| json!({ "errors": [{ "errorId": 25_001, "domain": "API_INVENTORY", "category": "REQUEST", "message": message }] }),
    rate_headers: super::no_rate_headers,
    order_id: "/orderId",
    updated_at: |doc| text(doc, "/lastModifiedDate"),
    exported: None,
};

const C: Channel = Channel::Ebay;
const MAX_REQUESTS: usize = 25;
/// The `CancelReasonEnum` values a seller may give (Post-Order API v2).
const SELLER_CANCEL_REASONS: [&str; 3] = ["ADDRESS_ISSUES", "BUYER_ASKED_CANCEL", "OUT_OF_STOCK_OR_CANNOT_FULFILL"];

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/sell/inventory/v1/bulk_update_price_quantity", post(bulk_update))
        .route("/sell/inventory/v1/bulk_get_inventory_item", post(bulk_get))
        .route("/sell/inventory/v1/inventory_item", get(inventory_items))
        .route("/sell/inventory/v1/inventory_item/{sku}", get(inventory_item).put(replace_item))
        .route("/sell/inventory/v1/offer", get(offers))
        .route("/sell/fulfillment/v1/order", get(orders))
        .route("/sell/fulfillment/v1/order/{id}", get(order))
        .route("/sell/fulfillment/v1/order/{id}/shipping_fulfillment", post(ship))
        .route("/post-order/v2/cancellation", post(cancel))
        .route("/post-order/v2/return/search", get(return_search))
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

/// `getInventoryItems`: `limit` at most 200 from `offset`, `total`, and `next` while more follow.
async fn inventory_items(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let limit = super::num(&q, "limit", 25);
    if !(1..=200).contains(&limit) {
        return bad("limit must be between 1 and 200");
    }
    let offset = super::num(&q, "offset", 0);
    let s = state.lock();
    let total = s.catalog(C).count();
    let (page, more) = s.catalog_page(C, offset, limit);
    let items: Vec<Value> = page.iter().map(|i| item_json(&s, &i.sku, Some(i.quantity))).collect();
    let mut body =
        json!({ "total": total, "size": items.len(), "limit": limit, "offset": offset, "inventoryItems": items });
    if more {
        body["next"] = json!(format!("/sell/inventory/v1/inventory_item?limit={limit}&offset={}", offset + limit));
    }
    ok(body)
}

/// The `InventoryItem` fields `createOrReplaceInventoryItem` takes (the SKU is the path's).
const ITEM_FIELDS: [&str; 6] =
    ["availability", "condition", "conditionDescription", "conditionDescriptors", "packageWeightAndSize", "product"];
/// The `product` fields that are content, kept per SKU in the state's content rather than with the item.
const CONTENT_FIELDS: [&str; 4] = ["title", "description", "aspects", "imageUrls"];
const MAX_TITLE_CHARS: usize = 80;
const MAX_DESCRIPTION_CHARS: usize = 500_000;
const MAX_IMAGES: usize = 24;

/// Where the fields of a put item other than its content and stock are kept.
fn item_key(sku: &str) -> (Channel, String) {
    (C, sku.to_owned())
}

/// An inventory item as `getInventoryItem` and `getInventoryItems` show it: the fields it was put
/// with (a catalog item never put is `NEW`, titled by its SKU), its content, and `quantity` as its
/// ship-to-location availability.
fn item_json(s: &Inner, sku: &str, quantity: Option<i64>) -> Value {
    let mut item = s
        .documents
        .get(&item_key(sku))
        .cloned()
        .unwrap_or_else(|| json!({ "locale": "en_US", "condition": "NEW", "product": { "ean": [] } }));
    item["sku"] = json!(sku);
    let product = &mut item["product"];
    match s.content.get(&C).and_then(|c| c.get(sku)) {
        Some(content) => {
            if let Some(title) = &content.title {
                product["title"] = json!(title);
            }
            if let Some(description) = &content.description {
                product["description"] = json!(description);
            }
            product["aspects"] = json!(content.attributes);
            product["imageUrls"] = content.images.iter().map(|i| i.url.clone()).collect();
        }
        None => product["title"] = json!(sku),
    }
    if let Some(q) = quantity {
        item["availability"] = json!({ "shipToLocationAvailability": { "quantity": q } });
    }
    item
}

/// eBay's answer to a SKU it has no inventory item for.
fn no_item() -> Response {
    let body = json!({ "errors": [{ "errorId": 25_710, "domain": "API_INVENTORY", "subdomain": "Selling", "category": "REQUEST",
                                    "message": "We didn't find the resource/entity you are requesting. Please verify the request" }] });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// eBay's answer to a field (or header) whose value it does not take.
fn invalid(field: &str) -> Response {
    let body = json!({ "errors": [{ "errorId": 25_709, "domain": "API_INVENTORY", "subdomain": "Selling", "category": "REQUEST",
                                    "message": format!("Invalid value for {field}."), "parameters": [{ "name": "text1", "value": field }] }] });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `getInventoryItem`: the item of a SKU the simulator holds stock for or that was put, else 25710.
async fn inventory_item(State(state): St, Path(sku): Path<String>) -> Response {
    let s = state.lock();
    let quantity = s.stock_of(C, &sku);
    if quantity.is_none() && !s.documents.contains_key(&item_key(&sku)) {
        return no_item();
    }
    ok(item_json(&s, &sku, quantity))
}

/// A `Content-Language` value as eBay takes it (`en-US`, `de-DE`), as the item's `locale` (`en_US`).
fn locale_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("content-language")?.to_str().ok()?;
    let (language, region) = value.split_once('-')?;
    let shaped = language.len() == 2
        && region.len() == 2
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && region.bytes().all(|b| b.is_ascii_uppercase());
    shaped.then(|| format!("{language}_{region}"))
}

/// Whether eBay can fetch an image URL: `https` only, as documented. The test image host is the
/// simulator itself on a loopback address over plain `http`, so `http` to a loopback host passes too.
fn fetchable(url: &str) -> bool {
    if url.strip_prefix("https://").is_some_and(|rest| !rest.is_empty()) {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host =
        if authority.ends_with(']') { authority } else { authority.rsplit_once(':').map_or(authority, |(h, _)| h) };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// The content of a put item's `product`, checked against the documented limits; `Err` names the field.
fn product_content(product: Option<&Value>) -> Result<SimContent, String> {
    let Some(product) = product else { return Ok(SimContent::default()) };
    let product = product.as_object().ok_or("product")?;
    let text = |key: &str, max: usize| -> Result<Option<String>, String> {
        match product.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(t)) if t.chars().count() <= max => Ok(Some(t.clone())),
            Some(_) => Err(format!("product.{key}")),
        }
    };
    let mut content = SimContent {
        title: text("title", MAX_TITLE_CHARS)?,
        description: text("description", MAX_DESCRIPTION_CHARS)?,
        ..SimContent::default()
    };
    if let Some(aspects) = product.get("aspects").filter(|a| !a.is_null()) {
        let aspects = aspects.as_object().ok_or("product.aspects")?;
        for (name, values) in aspects {
            let values: Option<Vec<String>> =
                values.as_array().and_then(|v| v.iter().map(|x| x.as_str().map(str::to_owned)).collect());
            content.attributes.insert(name.clone(), values.ok_or_else(|| format!("product.aspects.{name}"))?);
        }
    }
    if let Some(urls) = product.get("imageUrls").filter(|u| !u.is_null()) {
        let urls = urls.as_array().filter(|u| u.len() <= MAX_IMAGES).ok_or("product.imageUrls")?;
        for url in urls {
            let url = url.as_str().filter(|u| fetchable(u)).ok_or("product.imageUrls")?;
            content.images.push(SimImage { url: url.to_owned(), alt: None, sha256: None });
        }
    }
    Ok(content)
}

/// `createOrReplaceInventoryItem`: needs `Content-Language`, takes only the documented `InventoryItem`
/// fields, and replaces the item whole: its content, its other fields, and its stock where
/// `availability` says another quantity. 204 for a replaced item, 201 for a new one.
async fn replace_item(State(state): St, Path(sku): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(locale) = locale_of(&headers) else { return invalid("header Content-Language") };
    let item: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(fields) = item.as_object() else { return invalid("InventoryItem") };
    if let Some(unknown) = fields.keys().find(|k| !ITEM_FIELDS.contains(&k.as_str())) {
        return invalid(unknown);
    }
    let content = match product_content(fields.get("product")) {
        Ok(c) => c,
        Err(field) => return invalid(&field),
    };
    let quantity = match item.pointer("/availability/shipToLocationAvailability/quantity") {
        None | Some(Value::Null) => None,
        Some(q) => match q.as_i64().filter(|q| *q >= 0) {
            Some(q) => Some(q),
            None => return invalid("availability.shipToLocationAvailability.quantity"),
        },
    };
    let mut rest = item.clone();
    rest["locale"] = json!(locale);
    if let Some(fields) = rest.as_object_mut() {
        fields.remove("availability");
    }
    if let Some(product) = rest.get_mut("product").and_then(Value::as_object_mut) {
        for field in CONTENT_FIELDS {
            product.remove(field);
        }
    }
    let mut s = state.lock();
    let created = s.stock_of(C, &sku).is_none() && !s.documents.contains_key(&item_key(&sku));
    s.documents.insert(item_key(&sku), rest);
    *s.content_mut(C, &sku) = content;
    if let Some(q) = quantity
        && s.stock_of(C, &sku) != Some(q)
    {
        s.set_stock(C, &sku, q);
    }
    if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT }.into_response()
}

/// `getOffers` for one SKU: its offer id (`variant_id`), listing id (`product_id`) and price.
async fn offers(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let Some(sku) = q.get("sku").filter(|s| !s.is_empty()) else { return bad("sku is required") };
    let s = state.lock();
    let Some(item) = s.catalog(C).find(|i| &i.sku == sku) else {
        return channel_error(C, StatusCode::NOT_FOUND, &format!("SKU {sku} has no offers"));
    };
    let offer = json!({
        "offerId": item.variant_id.clone().unwrap_or_else(|| format!("{}", 5_000_000 + item.sku.len())),
        "sku": item.sku, "marketplaceId": "EBAY_US", "format": "FIXED_PRICE", "status": "PUBLISHED",
        "availableQuantity": item.quantity,
        "pricingSummary": { "price": { "value": super::price_text(item.price_minor), "currency": "USD" } },
        "listing": { "listingId": item.product_id, "listingStatus": "ACTIVE" },
    });
    ok(json!({ "total": 1, "size": 1, "offers": [offer] }))
}

/// `getOrders`: `filter=lastmodifieddate:[from..to]` (inclusive; `to` optional), `limit` (50, at most
/// 200) and `offset`; the answer carries `href`, `total`, `limit`, `offset` and, while more follow,
/// `next`: the URL of the next page.
async fn orders(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    use super::orders::{Bound, encode, parse_time, updated_since};
    let filter = q.get("filter").cloned().unwrap_or_default();
    let range = filter.strip_prefix("lastmodifieddate:[").and_then(|r| r.strip_suffix(']'));
    let (since, until) = match range.map(|r| r.split_once("..")) {
        None if filter.is_empty() => (None, None),
        Some(Some((from, to))) => match (parse_time(from), to) {
            (Some(from), "") => (Some((from, Bound::AtOrAfter)), None),
            (Some(from), to) => match parse_time(to) {
                Some(to) => (Some((from, Bound::AtOrAfter)), Some(to + chrono::Duration::milliseconds(1))),
                None => return bad("Invalid filter: lastmodifieddate"),
            },
            (None, _) => return bad("Invalid filter: lastmodifieddate"),
        },
        _ => return bad("Invalid filter: only lastmodifieddate:[from..to] is simulated"),
    };
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let s = state.lock();
    let limit = match super::orders::page_size(&s, q.get("limit"), 50, 200) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let offset = super::num(&q, "offset", 0);
    let matching: Vec<Value> = updated_since(&s, C, since, until).into_iter().map(|o| o.doc).collect();
    let (orders, more) = super::orders::page(&matching, offset, limit);
    let url = |offset: usize| {
        let filter = if filter.is_empty() { String::new() } else { format!("filter={}&", encode(&filter)) };
        format!("{base}/ebay/sell/fulfillment/v1/order?{filter}limit={limit}&offset={offset}")
    };
    let mut body =
        json!({ "href": url(offset), "total": matching.len(), "limit": limit, "offset": offset, "orders": orders });
    if more {
        body["next"] = json!(url(offset + limit));
    }
    ok(body)
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

/// `POST /post-order/v2/cancellation` `{legacyOrderId, cancelReason}`: a seller's cancellation needs no
/// buyer approval, so the order reads as cancelled at once (`cancelStatus.cancelState` `CANCELED`).
async fn cancel(State(state): St, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(id) = req.get("legacyOrderId").and_then(Value::as_str) else {
        return bad("legacyOrderId is required");
    };
    let reason = req.get("cancelReason").and_then(Value::as_str).unwrap_or_default();
    if !SELLER_CANCEL_REASONS.contains(&reason) {
        return bad(&format!("cancelReason must be one of {}", SELLER_CANCEL_REASONS.join(", ")));
    }
    let mut s = state.lock();
    let Some(order) = s.order_mut(C, id) else { return not_found(C, "order") };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cancel_id = fresh_id();
    order.doc["cancelStatus"] = json!({
        "cancelState": "CANCELED",
        "cancelledDate": now,
        "cancelRequests": [{ "cancelRequestId": cancel_id, "cancelInitiator": "SELLER", "cancelReason": reason, "cancelRequestState": "COMPLETED", "cancelRequestedDate": now }],
    });
    order.doc["lastModifiedDate"] = json!(now);
    ok(json!({ "cancelId": cancel_id }))
}

/// `GET /post-order/v2/return/search`: the return summaries buyers opened (kept by
/// `SimHandle::seed_return`, keyed by their order), created within `creation_date_range_from..to`,
/// in one `return_state` (`ALL_OPEN`, the default, or `CLOSED`), `limit` (1 to 200) a page, `offset`
/// the page number from 1.
async fn return_search(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let limit = super::num(&q, "limit", 25);
    if !(1..=200).contains(&limit) {
        return bad("limit must be between 1 and 200");
    }
    let page = super::num(&q, "offset", 1).max(1);
    let date = |key: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, Response> {
        q.get(key)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|d| d.to_utc())
                    .map_err(|_| bad(&format!("{key} is not an ISO 8601 date")))
            })
            .transpose()
    };
    let (from, to) = match (date("creation_date_range_from"), date("creation_date_range_to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let closed = match q.get("return_state").map_or("ALL_OPEN", String::as_str) {
        "ALL_OPEN" => false,
        "CLOSED" => true,
        other => return bad(&format!("return_state {other} is not simulated")),
    };
    let s = state.lock();
    let all: Vec<Value> = s
        .returns
        .get(&C)
        .into_iter()
        .flatten()
        .flat_map(|(_, list)| list.iter())
        .filter(|r| (r.get("state").and_then(Value::as_str) == Some("CLOSED")) == closed)
        .filter(|r| {
            let created = r
                .pointer("/creationInfo/creationDate/value")
                .and_then(Value::as_str)
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
                .map(|d| d.to_utc());
            created.is_some_and(|c| from.is_none_or(|f| c >= f) && to.is_none_or(|t| c <= t))
        })
        .cloned()
        .collect();
    let pages = all.len().div_ceil(limit).max(1);
    let members: Vec<Value> = all.iter().skip((page - 1) * limit).take(limit).cloned().collect();
    ok(json!({
        "members": members,
        "paginationOutput": { "limit": limit, "offset": page, "totalEntries": all.len(), "totalPages": pages },
        "total": all.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_are_https_or_plain_http_to_a_loopback_host() {
        assert!(fetchable("https://i.ebayimg.com/images/g/a/s-l1600.jpg"));
        assert!(fetchable("http://127.0.0.1:40123/_sim/assets/mug-1.png"));
        assert!(fetchable("http://[::1]:8080/a.png"));
        assert!(!fetchable("http://cdn.example/a.png"));
        assert!(!fetchable("http://127.0.0.1.cdn.example/a.png"));
        assert!(!fetchable("ftp://127.0.0.1/a.png"));
    }

    #[test]
    fn a_product_over_the_documented_limits_names_its_field() {
        let long = json!({ "title": "x".repeat(81) });
        assert_eq!(product_content(Some(&long)).unwrap_err(), "product.title");
        let aspects = json!({ "aspects": { "Material": "Stoneware" } });
        assert_eq!(product_content(Some(&aspects)).unwrap_err(), "product.aspects.Material");
        let fine = json!({ "title": "Mug", "aspects": { "Material": ["Stoneware"] }, "imageUrls": ["https://a.example/1.png"] });
        let content = product_content(Some(&fine)).unwrap();
        assert_eq!((content.title.as_deref(), content.images.len()), (Some("Mug"), 1));
    }
}
