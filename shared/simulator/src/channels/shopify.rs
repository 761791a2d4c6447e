//! Shopify Admin API: GraphQL (cost-limited leaky bucket, `throttleStatus` in every response,
//! `THROTTLED` beyond) and the REST order reads. GraphQL documents are recognised by the root field
//! they call, not parsed: the simulator checks variables, not query syntax.
//!
//! Returns: `returnCreate` (status `OPEN`; a fulfillment line item id here is the order line's own
//! id, a simplification), `returnClose` (`CLOSED`) and `returnDeclineRequest` (`DECLINED`) keep the
//! return with its order; `return(id:)` reads it in the Admin API's shape.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use chrono::{SecondsFormat, Utc};
use manifold_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::text;
use super::{St, fresh_id, not_found, ok, orders, parse};
use crate::limits::SimLimit;
use crate::{limits::Verdict, state::Inner};

/// This channel in the simulator's registry ([`super::module`]).
pub(crate) const MODULE: super::SimChannel = super::SimChannel {
    routes,
    limit: Some(SimLimit::Points { capacity: 1000.0, restore_per_second: 50.0 }),
    authorized: |a| a.has("x-shopify-access-token"),
    error_body: |_, message| json!({ "errors": message }),
    rate_headers: super::no_rate_headers,
    order_id: "/id",
    updated_at: |doc| text(doc, "/updated_at"),
    exported: None,
};

const C: Channel = Channel::Shopify;
const MAX_QUANTITIES: usize = 250;

pub(crate) fn routes() -> Router<std::sync::Arc<crate::state::SimState>> {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route("/admin/api/{version}/{*rest}", get(rest))
}

#[derive(Deserialize)]
struct Gql {
    query: String,
    #[serde(default)]
    variables: Value,
}

async fn rest(
    State(state): St,
    Path((version, rest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if rest == "orders.json" {
        return list_orders(&state, &version, &q);
    }
    let s = state.lock();
    match rest.strip_prefix("orders/").and_then(|r| r.strip_suffix(".json")) {
        Some(id) => s.order(C, id).map_or_else(|| not_found(C, "order"), |o| ok(json!({ "order": o.doc }))),
        None => not_found(C, "resource"),
    }
}

/// `GET orders.json`: `status` (default `open`), `updated_at_min` (inclusive), `limit` (50, at most
/// 250); further pages by the `page_info` of the `Link` header's `rel="next"` URL, which may only be
/// combined with `limit`, as Shopify's cursor pagination requires.
fn list_orders(state: &crate::state::SimState, version: &str, q: &HashMap<String, String>) -> Response {
    let bad = |m: &str| crate::channel_error(C, StatusCode::BAD_REQUEST, m);
    let (filter, offset) = if let Some(info) = q.get("page_info") {
        if q.keys().any(|k| k != "page_info" && k != "limit" && k != "fields") {
            return bad("page_info cannot be combined with other filters than limit");
        }
        let Some(f) = orders::read_token(info) else { return bad("Invalid page_info") };
        f
    } else {
        let status = q.get("status").map_or("open", String::as_str);
        (format!("{status}|{}", q.get("updated_at_min").map_or("", String::as_str)), 0)
    };
    let (status, min) = filter.split_once('|').unwrap_or((filter.as_str(), ""));
    let since = match min {
        "" => None,
        m => match orders::parse_time(m) {
            Some(t) => Some((t, orders::Bound::AtOrAfter)),
            None => return bad("updated_at_min is not a valid date"),
        },
    };
    let base = state.base_url.lock().map(|b| b.clone()).unwrap_or_default();
    let s = state.lock();
    let size = match orders::page_size(&s, q.get("limit"), 50, 250) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let set = |o: &Value, k: &str| o.get(k).is_some_and(|v| !v.is_null());
    let matching: Vec<Value> = orders::updated_since(&s, C, since, None)
        .into_iter()
        .map(|o| o.doc)
        .filter(|o| match status {
            "open" => !set(o, "closed_at") && !set(o, "cancelled_at"),
            "closed" => set(o, "closed_at"),
            "cancelled" => set(o, "cancelled_at"),
            _ => true,
        })
        .collect();
    let (page, more) = orders::page(&matching, offset, size);
    let mut response = ok(json!({ "orders": page }));
    if more {
        let next = orders::token(&filter, offset + size);
        let link =
            format!("<{base}/shopify/admin/api/{version}/orders.json?limit={size}&page_info={next}>; rel=\"next\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&link) {
            response.headers_mut().insert("link", value);
        }
    }
    response
}

fn cost_of(q: &Gql) -> f64 {
    if q.query.trim_start().starts_with("mutation") {
        10.0
    } else {
        q.variables.get("first").and_then(Value::as_f64).map_or(10.0, |f| 2.0 + f)
    }
}

async fn graphql(State(state): St, Path(version): Path<String>, body: Bytes) -> Response {
    let q: Gql = match parse(C, StatusCode::BAD_REQUEST, &body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let cost = cost_of(&q);
    let mut s = state.lock();
    let Some(limiter) = s.limiters.get_mut(&C) else {
        let data = execute(&mut s, &q, &version);
        return respond(data, cost, None);
    };
    match limiter.take(cost) {
        Verdict::Refused { status, .. } => {
            *s.throttled.entry(C).or_default() += 1;
            let throttle = json!({ "maximumAvailable": status.limit, "currentlyAvailable": status.remaining, "restoreRate": status.rate });
            ok(json!({
                "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits" } }],
                "extensions": { "cost": { "requestedQueryCost": cost, "actualQueryCost": null, "throttleStatus": throttle } },
            }))
        }
        Verdict::Allowed(status) => {
            let throttle = json!({ "maximumAvailable": status.limit, "currentlyAvailable": status.remaining, "restoreRate": status.rate });
            let data = execute(&mut s, &q, &version);
            respond(data, cost, Some(&throttle))
        }
    }
}

fn respond(data: Result<Value, String>, cost: f64, throttle: Option<&Value>) -> Response {
    let extensions =
        json!({ "cost": { "requestedQueryCost": cost, "actualQueryCost": cost, "throttleStatus": throttle } });
    match data {
        Ok(data) => ok(json!({ "data": data, "extensions": extensions })),
        Err(message) => ok(
            json!({ "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }], "extensions": extensions }),
        ),
    }
}

fn execute(s: &mut Inner, q: &Gql, version: &str) -> Result<Value, String> {
    let v = &q.variables;
    if q.query.contains("inventorySetQuantities") {
        return set_quantities(s, q, version);
    }
    if q.query.contains("productVariantsBulkUpdate") {
        let variants = v
            .get("variants")
            .and_then(Value::as_array)
            .ok_or("Variable $variants of type [ProductVariantsBulkInput!]! was provided invalid value")?;
        if v.get("productId").and_then(Value::as_str).is_none() || variants.iter().any(|x| x.get("id").is_none()) {
            return Err("Variable $productId and every variant id are required".into());
        }
        return Ok(
            json!({ "productVariantsBulkUpdate": { "productVariants": variants.iter().map(|x| json!({ "id": x["id"] })).collect::<Vec<_>>(), "userErrors": [] } }),
        );
    }
    if q.query.contains("productSet(") {
        return product_set(s, v);
    }
    if q.query.contains("productVariants(") && q.query.contains("pageInfo") {
        return listings(s, v);
    }
    if q.query.contains("productVariants(") {
        let skus = skus_in(v.get("query").and_then(Value::as_str).unwrap_or_default());
        let nodes: Vec<Value> = s
            .catalog(C)
            .filter(|i| skus.contains(&i.sku))
            .map(|i| json!({ "id": i.variant_id, "sku": i.sku, "product": { "id": i.product_id }, "inventoryItem": { "id": i.id } }))
            .collect();
        return Ok(json!({ "productVariants": { "nodes": nodes } }));
    }
    if q.query.contains("inventoryItems(") {
        let skus = skus_in(v.get("query").and_then(Value::as_str).unwrap_or_default());
        let nodes: Vec<Value> = s
            .catalog(C)
            .filter(|i| skus.contains(&i.sku))
            .map(|i| json!({ "sku": i.sku, "inventoryLevel": { "quantities": [{ "name": "available", "quantity": i.quantity }] } }))
            .collect();
        return Ok(json!({ "inventoryItems": { "nodes": nodes } }));
    }
    if q.query.contains("fulfillmentCreate") {
        let f =
            v.get("fulfillment").ok_or("Variable $fulfillment of type FulfillmentInput! was provided invalid value")?;
        let Some(by_order) = f.get("lineItemsByFulfillmentOrder").and_then(Value::as_array).filter(|a| !a.is_empty())
        else {
            return Err("lineItemsByFulfillmentOrder is required".into());
        };
        // As Shopify does: the fulfillment order closes and the order reads as fulfilled, with the
        // tracking on its fulfillment.
        for fo in by_order {
            let gid = fo.get("fulfillmentOrderId").and_then(Value::as_str).unwrap_or_default();
            let id = gid.rsplit('/').next().unwrap_or_default();
            if let Some(order) = s.order_mut(C, id) {
                order.doc["fulfillment_status"] = json!("fulfilled");
                order.doc["fulfillments"] = json!([{ "status": "success", "tracking_number": f.pointer("/trackingInfo/number"), "tracking_company": f.pointer("/trackingInfo/company") }]);
            }
        }
        return Ok(
            json!({ "fulfillmentCreate": { "fulfillment": { "id": format!("gid://shopify/Fulfillment/{}", fresh_id()) }, "userErrors": [] } }),
        );
    }
    if q.query.contains("orderCancel") {
        // The job runs at once here: the order reads as cancelled, with the reason, as Shopify shows
        // it once the job is done (`status=cancelled` lists it, the normalizer reads `cancelled_at`).
        let gid = v.get("orderId").and_then(Value::as_str).unwrap_or_default();
        let id = gid.rsplit('/').next().unwrap_or_default();
        if let Some(order) = s.order_mut(C, id) {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("OTHER").to_ascii_lowercase();
            order.doc["cancelled_at"] = json!(now);
            order.doc["updated_at"] = json!(now);
            order.doc["cancel_reason"] = json!(reason);
        }
        return Ok(
            json!({ "orderCancel": { "job": { "id": format!("gid://shopify/Job/{}", fresh_id()) }, "orderCancelUserErrors": [] } }),
        );
    }
    if let Some(answer) = returns(s, q) {
        return answer;
    }
    if q.query.contains("order(") {
        let gid = v.get("id").and_then(Value::as_str).unwrap_or_default();
        let id = gid.rsplit('/').next().unwrap_or_default();
        return Ok(json!({ "order": s.order(C, id).map(|o| {
                let status = if o.doc.get("fulfillment_status").and_then(Value::as_str) == Some("fulfilled") { "CLOSED" } else { "OPEN" };
                json!({ "fulfillmentOrders": { "nodes": [{ "id": format!("gid://shopify/FulfillmentOrder/{id}"), "status": status }] } })
            }) }));
    }
    Err("this operation is not simulated".into())
}

/// The return operations (see the module docs), or `None` for any other document.
fn returns(s: &mut Inner, q: &Gql) -> Option<Result<Value, String>> {
    let v = &q.variables;
    let tail = |gid: &str| gid.rsplit('/').next().unwrap_or_default().to_owned();
    let find = |s: &mut Inner, id: &str| -> Option<(String, usize)> {
        let all = s.returns.get(&C)?;
        all.iter().find_map(|(order, list)| list.iter().position(|r| r["id"] == id).map(|i| (order.clone(), i)))
    };
    if q.query.contains("returnCreate(") {
        let input = v.get("returnInput").cloned().unwrap_or_default();
        let order_id = tail(input["orderId"].as_str().unwrap_or_default());
        let Some(order) = s.order(C, &order_id).map(|o| o.doc.clone()) else {
            return Some(Ok(
                json!({ "returnCreate": { "return": null, "userErrors": [{ "field": ["returnInput", "orderId"], "message": "Order does not exist" }] } }),
            ));
        };
        let mut lines = Vec::new();
        for item in input["returnLineItems"].as_array().cloned().unwrap_or_default() {
            let line_id = tail(item["fulfillmentLineItemId"].as_str().unwrap_or_default());
            let Some(line) = order["line_items"].as_array().and_then(|ls| {
                ls.iter().find(|l| l["id"].as_u64().map(|n| n.to_string()).as_deref() == Some(line_id.as_str()))
            }) else {
                return Some(Ok(
                    json!({ "returnCreate": { "return": null, "userErrors": [{ "field": ["returnInput", "returnLineItems"], "message": "Fulfillment line item does not exist" }] } }),
                ));
            };
            lines.push(json!({ "line_item_id": line_id, "sku": line["sku"], "quantity": item["quantity"], "reason": item["returnReason"] }));
        }
        // Shopify ids are numbers.
        let id = (945_000_000 + s.returns.get(&C).map_or(0, |r| r.values().map(Vec::len).sum::<usize>())).to_string();
        let count = s.returns.get(&C).and_then(|r| r.get(&order_id)).map_or(0, Vec::len);
        let name = format!("#{}-R{}", order["order_number"], count + 1);
        let kept = json!({ "id": id, "name": name, "status": "OPEN", "order_id": order_id, "lines": lines });
        s.returns.entry(C).or_default().entry(order_id).or_default().push(kept);
        return Some(Ok(
            json!({ "returnCreate": { "return": { "id": format!("gid://shopify/Return/{id}"), "status": "OPEN" }, "userErrors": [] } }),
        ));
    }
    for (root, status) in [("returnClose(", "CLOSED"), ("returnDeclineRequest(", "DECLINED")] {
        if q.query.contains(root) {
            let field = root.trim_end_matches('(');
            let gid = v.get("id").or_else(|| v.pointer("/input/id")).and_then(Value::as_str).unwrap_or_default();
            let Some((order, i)) = find(s, &tail(gid)) else {
                return Some(Ok(
                    json!({ field: { "return": null, "userErrors": [{ "field": ["id"], "message": "Return does not exist" }] } }),
                ));
            };
            if let Some(r) = s.returns.get_mut(&C).and_then(|all| all.get_mut(&order)).and_then(|l| l.get_mut(i)) {
                r["status"] = json!(status);
            }
            return Some(Ok(json!({ field: { "return": { "id": gid, "status": status }, "userErrors": [] } })));
        }
    }
    if q.query.contains("return(") {
        let gid = v.get("id").and_then(Value::as_str).unwrap_or_default();
        let found = find(s, &tail(gid)).and_then(|(order, i)| s.returns.get(&C)?.get(&order)?.get(i).cloned());
        return Some(Ok(json!({ "return": found.map(|r| {
            let nodes: Vec<Value> = r["lines"].as_array().cloned().unwrap_or_default().iter().enumerate().map(|(n, l)| json!({
                "id": format!("gid://shopify/ReturnLineItem/{}{n}", r["id"].as_str().unwrap_or_default()),
                "quantity": l["quantity"], "returnReason": l["reason"],
                "fulfillmentLineItem": { "lineItem": { "id": format!("gid://shopify/LineItem/{}", l["line_item_id"].as_str().unwrap_or_default()), "sku": l["sku"] } },
            })).collect();
            json!({
                "id": format!("gid://shopify/Return/{}", r["id"].as_str().unwrap_or_default()), "name": r["name"], "status": r["status"],
                "order": { "id": format!("gid://shopify/Order/{}", r["order_id"].as_str().unwrap_or_default()) },
                "returnLineItems": { "nodes": nodes },
            })
        }) })));
    }
    None
}

/// `productVariants(first:, after:)` over the catalog: the cursor is the offset of the next node.
fn listings(s: &Inner, v: &Value) -> Result<Value, String> {
    let first = v.get("first").and_then(Value::as_u64).unwrap_or(0);
    if first == 0 || first > 250 {
        return Err("first must be between 1 and 250".into());
    }
    let offset = match v.get("after").and_then(Value::as_str) {
        Some(c) => {
            c.strip_prefix("cursor:").and_then(|n| n.parse().ok()).ok_or("Invalid cursor for current pagination")?
        }
        None => 0,
    };
    let size = usize::try_from(first).unwrap_or(250);
    let (page, more) = s.catalog_page(C, offset, size);
    let nodes: Vec<Value> = page
        .iter()
        .map(|i| {
            json!({
                "id": i.variant_id, "sku": i.sku, "price": super::price_text(i.price_minor), "barcode": null,
                "product": { "id": i.product_id },
                "inventoryItem": { "id": i.id, "inventoryLevel": { "quantities": [{ "name": "available", "quantity": i.quantity }] } },
            })
        })
        .collect();
    let end = (!page.is_empty()).then(|| format!("cursor:{}", offset + page.len()));
    Ok(json!({
        "shop": { "currencyCode": "USD" },
        "productVariants": { "pageInfo": { "hasNextPage": more, "endCursor": end }, "nodes": nodes },
    }))
}

/// `productSet` on an existing product (`identifier.id`): the scalar fields given replace the
/// product's, and `files` (when given) replaces its media in order; an unknown product is a user
/// error, as Shopify answers it.
fn product_set(s: &mut Inner, v: &Value) -> Result<Value, String> {
    let id = v
        .pointer("/identifier/id")
        .and_then(Value::as_str)
        .ok_or("Variable $identifier of type ProductSetIdentifiers! was provided invalid value")?;
    let input = v
        .get("input")
        .and_then(Value::as_object)
        .ok_or("Variable $input of type ProductSetInput! was provided invalid value")?;
    let known = s.catalog(C).next().is_none() || s.catalog(C).any(|i| i.product_id.as_deref() == Some(id));
    if !known {
        return Ok(
            json!({ "productSet": { "product": null, "userErrors": [{ "field": ["identifier", "id"], "message": "Product does not exist", "code": "PRODUCT_DOES_NOT_EXIST" }] } }),
        );
    }
    let mut images = None;
    if let Some(files) = input.get("files") {
        let files = files.as_array().ok_or("Variable $input.files must be a list of FileSetInput")?;
        let mut list = Vec::new();
        for f in files {
            let source =
                f.get("originalSource").and_then(Value::as_str).ok_or("FileSetInput.originalSource is required")?;
            if f.get("contentType").and_then(Value::as_str) != Some("IMAGE") {
                return Err("FileSetInput.contentType must be IMAGE for product images".into());
            }
            let alt = f.get("alt").and_then(Value::as_str).map(str::to_owned);
            list.push(crate::state::SimImage { url: source.to_owned(), alt, sha256: None });
        }
        images = Some(list);
    }
    let content = s.content_mut(C, id);
    if let Some(title) = input.get("title").and_then(Value::as_str) {
        content.title = Some(title.to_owned());
    }
    if let Some(description) = input.get("descriptionHtml").and_then(Value::as_str) {
        content.description = Some(description.to_owned());
    }
    if let Some(images) = images {
        content.images = images;
    }
    Ok(json!({ "productSet": { "product": { "id": id }, "userErrors": [] } }))
}

/// `sku:'A' OR sku:'B'` -> [A, B].
fn skus_in(query: &str) -> Vec<String> {
    query
        .split("sku:")
        .skip(1)
        .map(|p| p.trim().trim_start_matches('\'').split('\'').next().unwrap_or_default().to_owned())
        .collect()
}

fn set_quantities(s: &mut Inner, q: &Gql, version: &str) -> Result<Value, String> {
    let v = &q.variables;
    let key = if q.query.contains("@idempotent(key: $") {
        let name = q.query.split("@idempotent(key: $").nth(1).and_then(|r| r.split(')').next()).unwrap_or_default();
        v.get(name).and_then(Value::as_str).map(str::to_owned)
    } else {
        q.query.split("@idempotent(key: \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned)
    };
    if version >= "2026-04" && key.is_none() {
        return Err("The @idempotent directive is required for this mutation from API version 2026-04".into());
    }
    if let Some(k) = &key {
        s.idempotency.entry(C).or_default().push(k.clone());
        if let Some(reply) = s.idempotent_replies.get(k) {
            return Ok(reply.clone());
        }
    }
    let input =
        v.get("input").ok_or("Variable $input of type InventorySetQuantitiesInput! was provided invalid value")?;
    if input.get("name").and_then(Value::as_str) != Some("available")
        && input.get("name").and_then(Value::as_str) != Some("on_hand")
    {
        return Err("Variable $input: name must be available or on_hand".into());
    }
    if input.get("reason").and_then(Value::as_str).is_none() {
        return Err("Variable $input: reason is required".into());
    }
    let quantities =
        input.get("quantities").and_then(Value::as_array).ok_or("Variable $input: quantities is required")?;
    let mut user_errors = Vec::new();
    if quantities.len() > MAX_QUANTITIES {
        user_errors.push(json!({ "field": ["input", "quantities"], "message": "Too many quantities: at most 250", "code": "INVALID_QUANTITY" }));
    }
    let ignore_compare = input.get("ignoreCompareQuantity").and_then(Value::as_bool) == Some(true);
    let mut parsed = Vec::new();
    for (ix, entry) in quantities.iter().enumerate() {
        let item = entry.get("inventoryItemId").and_then(Value::as_str);
        let location = entry.get("locationId").and_then(Value::as_str);
        let quantity = entry.get("quantity").and_then(Value::as_i64);
        match (item, location, quantity) {
            (Some(item), Some(_), Some(quantity)) if item.starts_with("gid://shopify/InventoryItem/") => {
                if !s.known(C, item) {
                    user_errors.push(json!({ "field": ["input", "quantities", ix.to_string(), "inventoryItemId"], "message": "The specified inventory item could not be found.", "code": "INVALID_INVENTORY_ITEM" }));
                } else if !ignore_compare && entry.get("compareQuantity").is_none() {
                    user_errors.push(json!({ "field": ["input", "quantities", ix.to_string(), "compareQuantity"], "message": "compareQuantity is required unless ignoreCompareQuantity is true", "code": "COMPARE_QUANTITY_REQUIRED" }));
                } else {
                    parsed.push((item.to_owned(), quantity));
                }
            }
            _ => {
                return Err(format!(
                    "Variable $input: quantities[{ix}] needs inventoryItemId (InventoryItem gid), locationId and quantity"
                ));
            }
        }
    }
    let reply = if user_errors.is_empty() {
        for (item, quantity) in parsed {
            s.set_stock(C, &item, quantity);
        }
        json!({ "inventorySetQuantities": { "inventoryAdjustmentGroup": { "id": format!("gid://shopify/InventoryAdjustmentGroup/{}", fresh_id()) }, "userErrors": [] } })
    } else {
        json!({ "inventorySetQuantities": { "inventoryAdjustmentGroup": null, "userErrors": user_errors } })
    };
    if let Some(k) = key {
        s.idempotent_replies.insert(k, reply.clone());
    }
    Ok(reply)
}
