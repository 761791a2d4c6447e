//! Amazon SP-API: `patchListingsItem` / `getListingsItem`, the Feeds flow (document, pre-signed upload,
//! feed, feed status, processing report), and Orders v0 reads and shipment confirmation. One token
//! bucket for the whole channel (Amazon's is per operation: a simplification of this test double).
//!
//! Feeds: an uploaded document is checked against its content type (`JSON_LISTINGS_FEED` JSON with
//! `header.sellerId` and `messages`; the XML `AmazonEnvelope` of `OrderAcknowledgement` messages,
//! malformed XML refused with 400). `createFeed` queues it: the first `getFeed` answers `IN_PROGRESS`,
//! the second processes the feed (applies it, writes its report) and answers `DONE`, as later ones do,
//! with the `resultFeedDocumentId` whose `getFeedDocument` url serves the report: JSON (`header`, `issues`, `summary`) for the listings
//! feed, a gzip-compressed XML `ProcessingReport` for the order feed. Per message: an unknown SKU is
//! an `ERROR` issue (`4000001`); an unknown order is a `Result` `Error` 18028, a `Failure` for an order
//! already `Shipped` one of code 25; otherwise `Failure` sets the order's `OrderStatus` to `Canceled`
//! and `Success` acknowledges it (both recorded under the seeded document's `_sim`, which the order
//! reads do not serve; an acknowledged order shows as `exported` in the state snapshot).
//!
//! Listing content: `patchListingsItem` (and a listings feed's `PATCH` messages) take `item_name` and
//! `product_description` (`[{value, language_tag?, marketplace_id?}]`) and the image locators
//! (`main_product_image_locator`, `other_product_image_locator_1` to `_8`: `[{media_location,
//! marketplace_id?}]`), shown per SKU as its title, description and images in positions 0 to 8;
//! replacing one position keeps the others, `delete` empties it. Other attributes are taken unchecked
//! (beyond stock), as the simulator does not model product type schemas. A patch that is not valid
//! answers `INVALID` with its issues and applies nothing. Product facts are patched onto a listing
//! that exists: once a catalog is seeded, content patches of an unknown SKU answer 404 `NOT_FOUND`,
//! as `getListingsItem` does; offer patches (stock, price) of one keep their `INVALID` issue 4000001.
//!
//! Reports: only the returns report by return date (`createReport`, `getReport` in queue on the first
//! look and done from the second, its gzip TSV document by `getReportDocument`), built from the returns
//! a test keeps with `SimHandle::seed_return`.

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
use std::fmt::Write as _;

use super::orders::text;
use super::{St, fresh_id, not_found, ok, parse};
use crate::limits::SimLimit;
use crate::{
    channel_error,
    state::{Inner, SimImage},
};
use axum::http::HeaderValue;

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::TokenBucket { rate_per_second: 5.0, burst: 10.0 }),
    // Feed documents are uploaded to, and reports downloaded from, pre-signed URLs.
    authorized: |a| a.has("x-amz-access-token") || crate::presigned(a.path),
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
        .route("/feeds/2021-06-30/feeds/{id}", get(get_feed))
        .route("/feeds/2021-06-30/documents/{id}", get(get_document))
        .route("/_download/{doc}", get(download))
        .route("/reports/2021-06-30/reports", post(create_report))
        .route("/reports/2021-06-30/reports/{id}", get(get_report))
        .route("/reports/2021-06-30/documents/{id}", get(get_document))
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

/// The image position an image locator attribute stands for (0: the main image), if `path` is one.
fn image_position(path: &str) -> Option<usize> {
    let name = path.strip_prefix("/attributes/")?;
    if name == "main_product_image_locator" {
        return Some(0);
    }
    let n: usize = name.strip_prefix("other_product_image_locator_")?.parse().ok()?;
    (1..=8).contains(&n).then_some(n)
}

/// Whether a patch changes the listing's content (its product facts) rather than its offer.
fn is_content(path: &str) -> bool {
    matches!(path, "/attributes/item_name" | "/attributes/product_description") || image_position(path).is_some()
}

/// One change a valid patch makes, applied once every patch of the submission is valid.
#[derive(Debug)]
enum Change {
    Stock(i64),
    Title(Option<String>),
    Description(Option<String>),
    Image(usize, Option<SimImage>),
}

/// An `ERROR` issue about one attribute.
fn issue(code: &str, message: &str, attribute: &str) -> Value {
    json!({ "code": code, "message": message, "severity": "ERROR", "attributeNames": [attribute] })
}

/// The first entry of a patch's `value` list, which content patches must give unless they delete.
fn first_entry(p: &PatchOp) -> Option<&serde_json::Map<String, Value>> {
    p.value.as_array().and_then(|v| v.first()).and_then(Value::as_object)
}

/// What one valid patch changes (`None`: an attribute the simulator takes unchecked), or its issue.
fn change(p: &PatchOp) -> Result<Option<Change>, Value> {
    let attribute = p.path.trim_start_matches("/attributes/");
    let delete = p.op == "delete";
    let text = || -> Result<Option<String>, Value> {
        if delete {
            return Ok(None);
        }
        let value = first_entry(p).and_then(|e| e.get("value")).and_then(Value::as_str).filter(|v| !v.is_empty());
        value.map(|v| Some(v.to_owned())).ok_or_else(|| {
            issue("4000003", &format!("{attribute} needs a value list of {{value, marketplace_id}}"), attribute)
        })
    };
    match p.path.as_str() {
        "/attributes/fulfillment_availability" => match p.value.pointer("/0/quantity").and_then(Value::as_i64) {
            Some(q) if p.value.pointer("/0/fulfillment_channel_code").is_some() => Ok(Some(Change::Stock(q))),
            _ => Err(issue(
                "4000003",
                "fulfillment_availability needs fulfillment_channel_code and quantity",
                "fulfillment_availability",
            )),
        },
        "/attributes/item_name" => text().map(|t| Some(Change::Title(t))),
        "/attributes/product_description" => text().map(|t| Some(Change::Description(t))),
        path => match image_position(path) {
            Some(position) if delete => Ok(Some(Change::Image(position, None))),
            Some(position) => {
                let url = first_entry(p)
                    .and_then(|e| e.get("media_location"))
                    .and_then(Value::as_str)
                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                let url = url.ok_or_else(|| {
                    issue("4000003", &format!("{attribute} needs a value list of {{media_location}} URLs"), attribute)
                })?;
                Ok(Some(Change::Image(position, Some(SimImage { url: url.to_owned(), alt: None, sha256: None }))))
            }
            None => Ok(None),
        },
    }
}

/// Applies patches to a SKU, all or none; `Err` is the list of issues.
fn apply(s: &mut Inner, sku: &str, patches: &[PatchOp]) -> Result<(), Vec<Value>> {
    if !s.known(C, sku) {
        return Err(vec![
            json!({ "code": "4000001", "message": format!("SKU {sku} not found for this seller"), "severity": "ERROR" }),
        ]);
    }
    let mut issues = Vec::new();
    let mut changes = Vec::new();
    for p in patches {
        if !matches!(p.op.as_str(), "add" | "replace" | "merge" | "delete") || !p.path.starts_with("/attributes/") {
            issues.push(json!({ "code": "4000002", "message": format!("invalid patch {} {}", p.op, p.path), "severity": "ERROR" }));
            continue;
        }
        match change(p) {
            Ok(c) => changes.extend(c),
            Err(i) => issues.push(i),
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    for c in changes {
        match c {
            Change::Stock(q) => s.set_stock(C, sku, q),
            Change::Title(t) => s.content_mut(C, sku).title = t,
            Change::Description(d) => s.content_mut(C, sku).description = d,
            Change::Image(position, image) => {
                let images = &mut s.content_mut(C, sku).images;
                if images.len() <= position {
                    images.resize_with(position + 1, SimImage::default);
                }
                images[position] = image.unwrap_or_default();
                // An emptied last position leaves the list; one in the middle stays as a gap.
                while images.last().is_some_and(|i| i.url.is_empty()) {
                    images.pop();
                }
            }
        }
    }
    Ok(())
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
    let mut s = state.lock();
    if !s.known(C, &sku) && req.patches.iter().any(|p| is_content(&p.path)) {
        let body = json!({ "errors": [{ "code": "NOT_FOUND", "message": format!("Requested item '{sku}' not found"), "details": "" }] });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let result = apply(&mut s, &sku, &req.patches);
    drop(s);
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
    let Some(content_type) = req.get("contentType").and_then(Value::as_str) else {
        return bad("contentType is required");
    };
    let id = format!("amzn1.tortuga.4.sim.{}", fresh_id());
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let mut s = state.lock();
    s.feed_documents.insert(id.clone());
    s.tasks.insert(doc_key(&id), json!({ "contentType": content_type }));
    drop(s);
    (StatusCode::CREATED, axum::Json(json!({ "feedDocumentId": id, "url": format!("{base}/amazon/_upload/{id}") })))
        .into_response()
}

fn doc_key(doc: &str) -> String {
    format!("amazon:document:{doc}")
}

fn feed_key(feed: &str) -> String {
    format!("amazon:feed:{feed}")
}

fn report_key(doc: &str) -> String {
    format!("amazon:report:{doc}")
}

/// The pre-signed upload: the document must fit its declared content type.
async fn upload(State(state): St, Path(doc): Path<String>, body: Bytes) -> Response {
    let mut s = state.lock();
    let Some(declared) = s.tasks.get(&doc_key(&doc)).filter(|_| s.feed_documents.contains(&doc)).cloned() else {
        return (StatusCode::FORBIDDEN, "unknown pre-signed URL").into_response();
    };
    let content_type = declared["contentType"].as_str().unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let checked =
        if content_type.starts_with("text/xml") { order_feed(&text).map(drop) } else { listings_feed(&body).map(drop) };
    if let Err(e) = checked {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    s.tasks.insert(doc_key(&doc), json!({ "contentType": content_type, "content": text }));
    StatusCode::OK.into_response()
}

/// A `JSON_LISTINGS_FEED` document's messages.
fn listings_feed(body: &[u8]) -> Result<Vec<Value>, String> {
    let feed: Value = serde_json::from_slice(body).map_err(|e| format!("feed document is not JSON: {e}"))?;
    match (feed.pointer("/header/sellerId"), feed.get("messages").and_then(Value::as_array)) {
        (Some(_), Some(messages)) => Ok(messages.clone()),
        _ => Err("JSON_LISTINGS_FEED needs header.sellerId and messages".into()),
    }
}

/// One message of an order-acknowledgement feed.
struct OrderAck {
    message_id: String,
    order_id: String,
    cancel: bool,
    reason: Option<String>,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

/// The trimmed text of `n`'s child element `name`.
fn xml_text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).and_then(|c| c.text()).map(|t| t.trim().to_owned())
}

/// The messages of a `POST_ORDER_ACKNOWLEDGEMENT_DATA` document, or why it is refused.
fn order_feed(xml: &str) -> Result<Vec<OrderAck>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("malformed XML: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name("AmazonEnvelope") {
        return Err("the root element must be AmazonEnvelope".into());
    }
    if child(root, "Header").and_then(|h| xml_text(h, "MerchantIdentifier")).is_none_or(|m| m.is_empty()) {
        return Err("Header/MerchantIdentifier is required".into());
    }
    if xml_text(root, "MessageType").as_deref() != Some("OrderAcknowledgement") {
        return Err("MessageType must be OrderAcknowledgement".into());
    }
    let mut acks = Vec::new();
    for m in root.children().filter(|n| n.has_tag_name("Message")) {
        let id = xml_text(m, "MessageID").ok_or("every Message needs a MessageID")?;
        let ack = child(m, "OrderAcknowledgement").ok_or("every Message needs an OrderAcknowledgement")?;
        let order_id = xml_text(ack, "AmazonOrderID").filter(|o| !o.is_empty()).ok_or("AmazonOrderID is required")?;
        let cancel = match xml_text(ack, "StatusCode").as_deref() {
            Some("Success") => false,
            Some("Failure") => true,
            _ => return Err(format!("message {id}: StatusCode must be Success or Failure")),
        };
        let items: Vec<_> = ack.children().filter(|n| n.has_tag_name("Item")).collect();
        if items.iter().any(|i| xml_text(*i, "AmazonOrderItemCode").is_none()) {
            return Err(format!("message {id}: every Item needs an AmazonOrderItemCode"));
        }
        let reason = items.iter().find_map(|i| xml_text(*i, "CancelReason"));
        if cancel && (items.is_empty() || items.iter().any(|i| xml_text(*i, "CancelReason").is_none())) {
            return Err(format!("message {id}: a Failure names each Item with its CancelReason"));
        }
        acks.push(OrderAck { message_id: id, order_id, cancel, reason });
    }
    if acks.is_empty() {
        return Err("the envelope holds no Message".into());
    }
    Ok(acks)
}

/// `createFeed`: the document is queued for processing, which `getFeed` finishes.
async fn create_feed(State(state): St, body: Bytes) -> Response {
    let req: Value = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let doc = req.get("inputFeedDocumentId").and_then(Value::as_str).unwrap_or_default();
    let feed_type = req.get("feedType").and_then(Value::as_str).unwrap_or_default().to_owned();
    if feed_type.is_empty() || req.get("marketplaceIds").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return bad("feedType and marketplaceIds are required");
    }
    let mut s = state.lock();
    if !s.feed_documents.contains(doc) {
        return bad("inputFeedDocumentId is not a known feed document");
    }
    let Some(content) = s.tasks.get(&doc_key(doc)).and_then(|d| d["content"].as_str()).map(str::to_owned) else {
        return bad("the feed document was never uploaded");
    };
    if !matches!(feed_type.as_str(), "JSON_LISTINGS_FEED" | "POST_ORDER_ACKNOWLEDGEMENT_DATA") {
        return bad(&format!("feedType {feed_type} is not simulated"));
    }
    let feed_id = fresh_id();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    s.tasks.insert(
        feed_key(&feed_id),
        json!({ "feedId": feed_id, "feedType": feed_type, "marketplaceIds": req["marketplaceIds"], "createdTime": now,
                "polls": 0, "content": content }),
    );
    drop(s);
    (StatusCode::ACCEPTED, axum::Json(json!({ "feedId": feed_id }))).into_response()
}

/// Applies a listings feed; its JSON processing report (never compressed).
fn listings_report(s: &mut Inner, feed_id: &str, content: &[u8]) -> Value {
    let messages = listings_feed(content).unwrap_or_default();
    let mut issues = Vec::new();
    let mut invalid = 0;
    for m in &messages {
        let id = m.get("messageId").cloned().unwrap_or(Value::Null);
        let patches = m.get("patches").cloned().map(serde_json::from_value::<Vec<PatchOp>>);
        let result = match (m.get("sku").and_then(Value::as_str), patches) {
            (Some(sku), Some(Ok(patches))) => apply(s, sku, &patches),
            _ => {
                Err(vec![json!({ "code": "4000004", "message": "sku and patches are required", "severity": "ERROR" })])
            }
        };
        if let Err(found) = result {
            invalid += 1;
            issues.extend(found.into_iter().map(|mut i| {
                i["messageId"] = id.clone();
                i
            }));
        }
    }
    let report = json!({
        "header": { "sellerId": "A2EUQ1WTGCTBG2", "version": "2.0", "feedId": feed_id },
        "issues": issues,
        "summary": { "errors": issues.len(), "warnings": 0, "messagesProcessed": messages.len(),
                     "messagesAccepted": messages.len() - invalid, "messagesInvalid": invalid },
    });
    json!({ "content": report.to_string(), "gzip": false })
}

/// XML character data.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Applies an order-acknowledgement feed; its XML `ProcessingReport`, to be served gzip-compressed.
fn order_report(s: &mut Inner, feed_id: &str, content: &str) -> Value {
    let acks = order_feed(content).unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut results = String::new();
    let mut errors = 0;
    for ack in &acks {
        let refused = match s.order_mut(C, &ack.order_id) {
            None => {
                Some(("18028", format!("The AmazonOrderID {} could not be found for this merchant.", ack.order_id)))
            }
            Some(o) if ack.cancel && o.doc["order"]["OrderStatus"] == "Shipped" => {
                Some(("25", format!("The order {} has already shipped and can no longer be cancelled.", ack.order_id)))
            }
            Some(o) => {
                if ack.cancel {
                    o.doc["order"]["OrderStatus"] = json!("Canceled");
                    o.doc["_sim"]["cancel_reason"] = json!(ack.reason);
                } else {
                    o.doc["_sim"]["acknowledged"] = json!(true);
                    o.exported = true;
                }
                o.doc["order"]["LastUpdateDate"] = json!(now);
                None
            }
        };
        if let Some((code, description)) = refused {
            errors += 1;
            let _ = write!(
                results,
                "<Result><MessageID>{}</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>{code}</ResultMessageCode><ResultDescription>{}</ResultDescription><AdditionalInfo><AmazonOrderID>{}</AmazonOrderID></AdditionalInfo></Result>",
                escape(&ack.message_id),
                escape(&description),
                escape(&ack.order_id)
            );
        }
    }
    let report = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">"#,
            "<Header><DocumentVersion>1.02</DocumentVersion><MerchantIdentifier>A2EUQ1WTGCTBG2</MerchantIdentifier></Header>",
            "<MessageType>ProcessingReport</MessageType><Message><MessageID>1</MessageID><ProcessingReport>",
            "<DocumentTransactionID>{feed}</DocumentTransactionID><StatusCode>Complete</StatusCode>",
            "<ProcessingSummary><MessagesProcessed>{n}</MessagesProcessed><MessagesSuccessful>{ok}</MessagesSuccessful>",
            "<MessagesWithError>{errors}</MessagesWithError><MessagesWithWarning>0</MessagesWithWarning></ProcessingSummary>",
            "{results}</ProcessingReport></Message></AmazonEnvelope>"
        ),
        feed = escape(feed_id),
        n = acks.len(),
        ok = acks.len() - errors,
        errors = errors,
        results = results,
    );
    json!({ "content": report, "gzip": true })
}

/// `getFeed`: `IN_PROGRESS` on the first look; the second look processes the feed (applies it and
/// writes its report) and answers `DONE` with the report's document, as do later ones.
async fn get_feed(State(state): St, Path(id): Path<String>) -> Response {
    let mut s = state.lock();
    let Some(feed) = s.tasks.get_mut(&feed_key(&id)) else { return not_found(C, "feed") };
    let polls = feed["polls"].as_u64().unwrap_or(0) + 1;
    feed["polls"] = json!(polls);
    let feed = feed.clone();
    let mut body = json!({ "feedId": id, "feedType": feed["feedType"], "marketplaceIds": feed["marketplaceIds"],
                           "createdTime": feed["createdTime"], "processingStartTime": feed["createdTime"] });
    if polls < 2 {
        body["processingStatus"] = json!("IN_PROGRESS");
        return ok(body);
    }
    let report_doc = if let Some(doc) = feed.get("resultFeedDocumentId").and_then(Value::as_str) {
        doc.to_owned()
    } else {
        let content = feed["content"].as_str().unwrap_or_default();
        let report = if feed["feedType"] == "JSON_LISTINGS_FEED" {
            listings_report(&mut s, &id, content.as_bytes())
        } else {
            order_report(&mut s, &id, content)
        };
        let doc = format!("amzn1.tortuga.4.sim.report.{}", fresh_id());
        s.tasks.insert(report_key(&doc), report);
        if let Some(f) = s.tasks.get_mut(&feed_key(&id)) {
            f["resultFeedDocumentId"] = json!(doc);
            f["processingEndTime"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        doc
    };
    body["processingStatus"] = json!("DONE");
    body["processingEndTime"] = s.tasks[&feed_key(&id)]["processingEndTime"].clone();
    body["resultFeedDocumentId"] = json!(report_doc);
    ok(body)
}

/// The returns report's columns, as Amazon names them (`GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE`).
const RETURN_COLUMNS: [&str; 24] = [
    "Order ID",
    "Order date",
    "Return request date",
    "Return request status",
    "Amazon RMA ID",
    "Merchant RMA ID",
    "Label type",
    "Label cost",
    "Currency code",
    "Return carrier",
    "Tracking ID",
    "Label to be paid by",
    "A-to-Z Claim",
    "Is prime",
    "ASIN",
    "Merchant SKU",
    "Item Name",
    "Return quantity",
    "Return Reason",
    "In policy",
    "Return type",
    "Resolution",
    "Return delivery date",
    "Refunded Amount",
];

/// `createReport`: only the returns report by return date is simulated; its rows are the returns kept
/// by `SimHandle::seed_return` (objects keyed by column name) whose `Return request date` falls in
/// `[dataStartTime, dataEndTime)`.
async fn create_report(State(state): St, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if req["reportType"] != "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE" {
        return bad("reportType: only GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE is simulated");
    }
    if req["marketplaceIds"].as_array().is_none_or(Vec::is_empty) {
        return bad("marketplaceIds is required");
    }
    let time = |k: &str| req[k].as_str().and_then(super::orders::parse_time);
    let (Some(start), Some(end)) = (time("dataStartTime"), time("dataEndTime")) else {
        return bad("dataStartTime and dataEndTime are required ISO 8601 date-times");
    };
    let mut s = state.lock();
    let rows: Vec<Value> = s
        .returns
        .get(&C)
        .into_iter()
        .flatten()
        .flat_map(|(_, list)| list.iter().cloned())
        .filter(|r| {
            r["Return request date"].as_str().and_then(super::orders::parse_time).is_some_and(|t| t >= start && t < end)
        })
        .collect();
    let mut tsv = RETURN_COLUMNS.join("\t");
    for row in &rows {
        tsv.push('\n');
        tsv.push_str(&RETURN_COLUMNS.map(|c| row[c].as_str().unwrap_or_default().to_owned()).join("\t"));
    }
    let id = format!("{}", 50_000 + s.tasks.len());
    s.tasks.insert(format!("amazon:returns-report:{id}"), json!({ "content": tsv, "polls": 0 }));
    (StatusCode::ACCEPTED, axum::Json(json!({ "reportId": id }))).into_response()
}

/// `getReport`: `IN_QUEUE` on the first look, `DONE` with its document (gzip TSV) from the second.
async fn get_report(State(state): St, Path(id): Path<String>) -> Response {
    let mut s = state.lock();
    let Some(report) = s.tasks.get_mut(&format!("amazon:returns-report:{id}")) else {
        return not_found(C, "report");
    };
    let polls = report["polls"].as_u64().unwrap_or(0) + 1;
    report["polls"] = json!(polls);
    let content = report["content"].clone();
    let mut body = json!({ "reportId": id, "reportType": "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE" });
    if polls < 2 {
        body["processingStatus"] = json!("IN_QUEUE");
        return ok(body);
    }
    let doc = format!("amzn1.spdoc.1.4.sim.{id}");
    s.tasks.insert(report_key(&doc), json!({ "content": content, "gzip": true }));
    body["processingStatus"] = json!("DONE");
    body["reportDocumentId"] = json!(doc);
    ok(body)
}

/// `getFeedDocument` of a processing report (and `getReportDocument`): its pre-signed url and
/// compression.
async fn get_document(State(state): St, Path(id): Path<String>) -> Response {
    let s = state.lock();
    let Some(report) = s.tasks.get(&report_key(&id)) else { return not_found(C, "feed document") };
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let mut body = json!({ "feedDocumentId": id, "url": format!("{base}/amazon/_download/{id}") });
    if report["gzip"] == true {
        body["compressionAlgorithm"] = json!("GZIP");
    }
    ok(body)
}

async fn download(State(state): St, Path(doc): Path<String>) -> Response {
    let Some(report) = state.lock().tasks.get(&report_key(&doc)).cloned() else {
        return (StatusCode::FORBIDDEN, "unknown pre-signed URL").into_response();
    };
    let content = report["content"].as_str().unwrap_or_default().as_bytes().to_vec();
    if report["gzip"] == true {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zipped = gz.write_all(&content).and_then(|()| gz.finish());
        return match zipped {
            Ok(bytes) => (StatusCode::OK, bytes).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
    }
    (StatusCode::OK, content).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_locators_stand_for_positions_zero_to_eight() {
        assert_eq!(image_position("/attributes/main_product_image_locator"), Some(0));
        assert_eq!(image_position("/attributes/other_product_image_locator_8"), Some(8));
        assert_eq!(image_position("/attributes/other_product_image_locator_9"), None);
        assert_eq!(image_position("/attributes/swatch_product_image_locator"), None);
    }

    #[test]
    fn image_patches_replace_one_position_and_an_invalid_patch_applies_nothing() {
        let mut s = Inner::default();
        let op = |op: &str, path: &str, value: Value| PatchOp { op: op.into(), path: path.into(), value };
        let image = |url: &str| json!([{ "media_location": url, "marketplace_id": "M" }]);
        let set = [
            op("replace", "/attributes/main_product_image_locator", image("https://a/0.png")),
            op("replace", "/attributes/other_product_image_locator_1", image("https://a/1.png")),
            op("replace", "/attributes/other_product_image_locator_2", image("https://a/2.png")),
        ];
        apply(&mut s, "MUG", &set).unwrap();
        apply(&mut s, "MUG", &[op("replace", "/attributes/other_product_image_locator_1", image("https://a/1b.png"))])
            .unwrap();
        let urls = |s: &mut Inner| s.content_mut(C, "MUG").images.iter().map(|i| i.url.clone()).collect::<Vec<_>>();
        assert_eq!(urls(&mut s), ["https://a/0.png", "https://a/1b.png", "https://a/2.png"]);
        apply(
            &mut s,
            "MUG",
            &[op("delete", "/attributes/other_product_image_locator_2", json!([{ "marketplace_id": "M" }]))],
        )
        .unwrap();
        assert_eq!(urls(&mut s).len(), 2);

        let bad = [
            op("replace", "/attributes/item_name", json!([{ "value": "Mug" }])),
            op("replace", "/attributes/main_product_image_locator", json!([{ "url": "https://a/x.png" }])),
        ];
        let issues = apply(&mut s, "MUG", &bad).unwrap_err();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(s.content_mut(C, "MUG").title, None, "nothing of an invalid submission applied");
    }
}
