//! Etsy Open API v3: listing inventory read and full replacement (products left out of a PUT are
//! deleted, as Etsy documents), listings by shop and by id (`getListingsByListingIds`, at most 100
//! ids), receipts and tracking; listing content: `updateListing` (title, description) and
//! `uploadListingImage` (multipart, one image at a rank).

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, patch, post},
};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::seconds;
use super::{St, not_found, ok, parse};
use crate::limits::SimLimit;
use crate::{
    channel_error,
    state::{CatalogItem, Inner, SimImage},
};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::TokenBucket { rate_per_second: 10.0, burst: 10.0 }),
    authorized: |a| a.has("x-api-key") && a.has("authorization"),
    error_body: |_, message| json!({ "error": message }),
    rate_headers: |s, headers| {
        headers.insert("x-remaining-this-second", super::whole(s.remaining));
        headers.insert("x-limit-per-second", super::whole(s.limit));
    },
    order_id: "/receipt_id",
    updated_at: |doc| seconds(doc, "/updated_timestamp").or_else(|| seconds(doc, "/update_timestamp")),
    exported: None,
};

const C: Channel = Channel::Etsy;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/v3/application/listings/{listing}/inventory", get(inventory).put(replace))
        .route("/v3/application/listings/batch", get(listings_by_ids))
        .route("/v3/application/shops/{shop}/listings", get(shop_listings))
        .route("/v3/application/shops/{shop}/listings/{listing}", patch(update_listing))
        .route("/v3/application/shops/{shop}/listings/{listing}/images", post(upload_image))
        .route("/v3/application/shops/{shop}/listings/{listing}/images/{image}", delete(delete_image))
        .route("/v3/application/listings/{listing}/images", get(listing_images))
        .route("/v3/application/shops/{shop}/receipts", get(receipts))
        .route("/v3/application/shops/{shop}/receipts/{id}", get(receipt))
        .route("/v3/application/shops/{shop}/receipts/{id}/tracking", post(tracking))
}

fn bad(message: &str) -> Response {
    channel_error(C, StatusCode::BAD_REQUEST, message)
}

async fn inventory(State(state): St, Path(listing): Path<String>) -> Response {
    let s = state.lock();
    let items: Vec<&CatalogItem> = s.catalog(C).filter(|i| i.product_id.as_deref() == Some(listing.as_str())).collect();
    if items.is_empty() {
        return not_found(C, "listing");
    }
    ok(inventory_of(&items))
}

/// `getListingsByShop`: the shop's listings (catalog items grouped by `product_id`), `limit` at most
/// 100 from `offset`, with `count`; `includes=Inventory` inlines each listing's inventory.
async fn shop_listings(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let limit = super::num(&q, "limit", 25);
    if !(1..=100).contains(&limit) {
        return bad("limit must be between 1 and 100");
    }
    let offset = super::num(&q, "offset", 0);
    let with_inventory = q.get("includes").is_some_and(|i| i.split(',').any(|x| x == "Inventory"));
    let s = state.lock();
    let mut listings: std::collections::BTreeMap<String, Vec<&CatalogItem>> = std::collections::BTreeMap::new();
    for i in s.catalog(C) {
        if let Some(l) = &i.product_id {
            listings.entry(l.clone()).or_default().push(i);
        }
    }
    let count = listings.len();
    let results: Vec<Value> = listings
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(id, items)| {
            let mut l = json!({
                "listing_id": numeric(id),
                "state": "active",
                "quantity": items.iter().map(|i| i.quantity).sum::<i64>(),
            });
            if with_inventory {
                l["inventory"] = inventory_of(items);
            }
            l
        })
        .collect();
    ok(json!({ "count": count, "results": results }))
}

/// `getListingsByListingIds`: `listing_ids` (comma-separated, 1 to 100), `includes=Inventory`
/// inlines each listing's inventory; ids the shop does not have are left out, as Etsy does.
async fn listings_by_ids(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let ids: Vec<&str> =
        q.get("listing_ids").map(|l| l.split(',').filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return bad("listing_ids must name between 1 and 100 listings");
    }
    let with_inventory = q.get("includes").is_some_and(|i| i.split(',').any(|x| x == "Inventory"));
    let s = state.lock();
    let results: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            let items: Vec<&CatalogItem> = s.catalog(C).filter(|i| i.product_id.as_deref() == Some(*id)).collect();
            if items.is_empty() {
                return None;
            }
            let mut l = json!({
                "listing_id": numeric(id),
                "state": "active",
                "quantity": items.iter().map(|i| i.quantity).sum::<i64>(),
            });
            if with_inventory {
                l["inventory"] = inventory_of(&items);
            }
            Some(l)
        })
        .collect();
    ok(json!({ "count": results.len(), "results": results }))
}

/// A listing's inventory in `getListingInventory`'s shape.
fn inventory_of(items: &[&CatalogItem]) -> Value {
    let products: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(ix, i)| {
            json!({
                "product_id": ix + 1, "sku": i.sku, "is_deleted": false, "property_values": [],
                "offerings": [{ "offering_id": ix + 1, "quantity": i.quantity, "is_enabled": true, "is_deleted": false,
                                "price": { "amount": i.price_minor.unwrap_or(1000), "divisor": 100, "currency_code": "USD" } }],
            })
        })
        .collect();
    json!({ "products": products, "price_on_property": [], "quantity_on_property": [], "sku_on_property": [] })
}

/// The documented body; the `*_on_property` lists and `is_enabled` are required by shape only.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Replace {
    products: Vec<Product>,
    #[serde(default)]
    price_on_property: Vec<u64>,
    #[serde(default)]
    quantity_on_property: Vec<u64>,
    #[serde(default)]
    sku_on_property: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Product {
    sku: String,
    #[serde(default)]
    property_values: Vec<Value>,
    offerings: Vec<Offering>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Offering {
    price: f64,
    quantity: i64,
    is_enabled: bool,
}

async fn replace(State(state): St, Path(listing): Path<String>, body: Bytes) -> Response {
    let req: Replace = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.products.iter().any(|p| {
        p.offerings.is_empty() || p.offerings.iter().any(|o| !(0..=999).contains(&o.quantity) || o.price <= 0.0)
    }) {
        return bad("every product needs offerings with a positive price and a quantity between 0 and 999");
    }
    if let Err(r) = apply(&state, &listing, &req) {
        return r;
    }
    inventory(State(state), Path(listing)).await
}

fn apply(state: &std::sync::Arc<crate::state::SimState>, listing: &str, req: &Replace) -> Result<(), Response> {
    let mut s = state.lock();
    let existing: Vec<CatalogItem> =
        s.catalog(C).filter(|i| i.product_id.as_deref() == Some(listing)).cloned().collect();
    if existing.is_empty() {
        return Err(not_found(C, "listing"));
    }
    // Whatever the PUT leaves out is gone, exactly like on Etsy.
    for old in &existing {
        if !req.products.iter().any(|p| p.sku == old.sku) {
            if let Some(c) = s.catalog.get_mut(&C) {
                c.remove(&old.id);
            }
            if let Some(st) = s.stock.get_mut(&C) {
                st.remove(&old.id);
            }
        }
    }
    for p in &req.products {
        let Some(old) = existing.iter().find(|i| i.sku == p.sku) else { continue };
        let o = &p.offerings[0];
        s.set_stock(C, &old.id, o.quantity);
        if let Some(item) = s.catalog.get_mut(&C).and_then(|c| c.get_mut(&old.id)) {
            #[allow(clippy::cast_possible_truncation)]
            let minor = (o.price * 100.0).round() as i64;
            item.price_minor = Some(minor);
        }
    }
    Ok(())
}

/// An id as Etsy sends it: a number (text that is not one stays text).
fn numeric(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

/// Whether the shop has the listing: any listing goes until a catalog is seeded.
fn holds_listing(s: &Inner, listing: &str) -> bool {
    s.catalog(C).next().is_none() || s.catalog(C).any(|i| i.product_id.as_deref() == Some(listing))
}

/// The `updateListing` fields content writes use; anything else is refused, so a misspelt field
/// shows up instead of being dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListingUpdate {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Longest listing title Etsy takes.
const MAX_TITLE: usize = 140;

/// `updateListing`: the fields given replace the listing's; answers the listing.
async fn update_listing(State(state): St, Path((_shop, listing)): Path<(String, String)>, body: Bytes) -> Response {
    let req: ListingUpdate = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.title.as_ref().is_some_and(|t| t.trim().is_empty() || t.chars().count() > MAX_TITLE) {
        return bad(&format!("title must have 1 to {MAX_TITLE} characters"));
    }
    let mut s = state.lock();
    if !holds_listing(&s, &listing) {
        return not_found(C, "listing");
    }
    let content = s.content_mut(C, &listing);
    if let Some(title) = req.title {
        content.title = Some(title);
    }
    if let Some(description) = req.description {
        content.description = Some(description);
    }
    ok(json!({
        "listing_id": numeric(&listing),
        "state": "active",
        "title": content.title,
        "description": content.description,
    }))
}

/// `uploadListingImage`: multipart with the file part `image`, `rank` (1-based, 1 by default),
/// `overwrite` (replace the image at `rank` rather than insert before it) and `alt_text`. A rank
/// past the listing's last image appends. Answers the ListingImage, 201.
async fn upload_image(
    State(state): St,
    Path((shop, listing)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts = match super::form_parts(&headers, body).await {
        Ok(p) => p,
        Err(e) => return bad(&e),
    };
    let text =
        |name: &str| parts.iter().find(|p| p.name == name).map(|p| String::from_utf8_lossy(&p.bytes).trim().to_owned());
    let Some(file) = parts.iter().find(|p| p.name == "image" && p.file_name.is_some() && !p.bytes.is_empty()) else {
        return bad("Either a valid image file or a listing_image_id must be provided.");
    };
    let rank = match text("rank").map(|r| r.parse::<usize>()) {
        None => 1,
        Some(Ok(r)) if r >= 1 => r,
        Some(_) => return bad("rank must be a positive integer"),
    };
    let overwrite = match text("overwrite").as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return bad("overwrite must be a boolean"),
    };
    let alt = text("alt_text").filter(|a| !a.is_empty());
    let mut s = state.lock();
    if !holds_listing(&s, &listing) {
        return not_found(C, "listing");
    }
    let image_id = 1_000_000_000 + u64::from(rand::random::<u32>());
    let url = format!(
        "https://i.etsystatic.com/{shop}/r/il/{}/{image_id}/il_fullxfull.{image_id}.jpg",
        &super::fresh_id()[..6]
    );
    let image = SimImage { url: url.clone(), alt: alt.clone(), sha256: Some(super::sha256_hex(&file.bytes)) };
    let images = &mut s.content_mut(C, &listing).images;
    let at = (rank - 1).min(images.len());
    if overwrite && at < images.len() {
        images[at] = image;
    } else {
        images.insert(at, image);
    }
    let created = json!({
        "listing_id": numeric(&listing),
        "listing_image_id": image_id,
        "rank": at + 1,
        "url_fullxfull": url,
        "alt_text": alt,
        "created_timestamp": chrono::Utc::now().timestamp(),
    });
    (StatusCode::CREATED, Json(created)).into_response()
}

/// The `listing_image_id` an uploaded image's URL carries (`.../il/{hash}/{id}/il_fullxfull...`).
fn image_id(url: &str) -> Option<u64> {
    url.split('/').rev().nth(1).and_then(|id| id.parse().ok())
}

/// `getListingImages`: the listing's images in rank order.
async fn listing_images(State(state): St, Path(listing): Path<String>) -> Response {
    let s = state.lock();
    if !holds_listing(&s, &listing) {
        return not_found(C, "listing");
    }
    let images = s.content.get(&C).and_then(|c| c.get(&listing)).map(|c| c.images.clone()).unwrap_or_default();
    let results: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(k, i)| {
            json!({ "listing_id": numeric(&listing), "listing_image_id": image_id(&i.url), "rank": k + 1,
                    "url_fullxfull": i.url, "alt_text": i.alt })
        })
        .collect();
    ok(json!({ "count": results.len(), "results": results }))
}

/// `deleteListingImage`: removes the image; the ranks after it move up.
async fn delete_image(State(state): St, Path((_shop, listing, image)): Path<(String, String, u64)>) -> Response {
    let mut s = state.lock();
    if !holds_listing(&s, &listing) {
        return not_found(C, "listing");
    }
    let images = &mut s.content_mut(C, &listing).images;
    match images.iter().position(|i| image_id(&i.url) == Some(image)) {
        Some(k) => {
            images.remove(k);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(C, "listing image"),
    }
}

/// `getShopReceipts`: `min_last_modified` (inclusive) and `max_last_modified` (unix seconds),
/// `limit` (25, at most 100) and `offset`; `count` is every receipt the filter matches.
async fn receipts(State(state): St, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    use chrono::TimeZone as _;
    let second = |k: &str| match q.get(k) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().ok().and_then(|t| chrono::Utc.timestamp_opt(t, 0).single()).map(Some).ok_or(()),
    };
    let (Ok(min), Ok(max)) = (second("min_last_modified"), second("max_last_modified")) else {
        return bad("min_last_modified and max_last_modified must be unix timestamps");
    };
    let s = state.lock();
    let size = match super::orders::page_size(&s, q.get("limit"), 25, 100) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    // `max_last_modified` is inclusive too: the bound before the next second.
    let until = max.map(|t| t + chrono::Duration::seconds(1));
    let matching: Vec<Value> =
        super::orders::updated_since(&s, C, min.map(|t| (t, super::orders::Bound::AtOrAfter)), until)
            .into_iter()
            .map(|o| o.doc)
            .collect();
    let (results, _) = super::orders::page(&matching, super::num(&q, "offset", 0), size);
    ok(json!({ "count": matching.len(), "results": results }))
}

async fn receipt(State(state): St, Path((_shop, id)): Path<(String, String)>) -> Response {
    state.lock().order(C, &id).map_or_else(|| not_found(C, "receipt"), |o| ok(o.doc.clone()))
}

async fn tracking(State(state): St, Path((_shop, id)): Path<(String, String)>, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.get("tracking_code").and_then(Value::as_str).is_none()
        || req.get("carrier_name").and_then(Value::as_str).is_none()
    {
        return bad("tracking_code and carrier_name are required");
    }
    let mut s = state.lock();
    let Some(o) = s.order_mut(C, &id) else { return not_found(C, "receipt") };
    o.doc["is_shipped"] = json!(true);
    ok(o.doc.clone())
}
