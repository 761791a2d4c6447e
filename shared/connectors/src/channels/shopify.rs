//! Shopify Admin API: GraphQL for writes and stock reads, REST for the order payloads the normalizer
//! reads (the REST order object, the same shape as the order webhooks).
//!
//! - Credentials: `access_token` (Admin API token, sent as `X-Shopify-Access-Token`).
//! - Settings: `location_id` (`gid://shopify/Location/...`), optional `batch_size`.
//! - Stock: `inventorySetQuantities` with up to 250 quantities per call, `@idempotent(key:)` from API
//!   2026-04 on (the key is derived from the trace id and the batch, so a retried batch reuses it).
//!   `StockUpdate::channel_item_id` is the `InventoryItem` gid; SKUs without one are looked up once per
//!   batch through `productVariants`.
//! - Listings: `productVariants` 100 per page (`pageInfo.endCursor`), each with its product, inventory
//!   item and `available` level at `location_id`, price (in `shop.currencyCode`) and barcode.
//! - Limits: calculated query cost in a leaky bucket; `extensions.cost.throttleStatus` of every response
//!   feeds the limiter, and a `THROTTLED` error is a rate-limited failure.
//! - Content: one `productSet` per product (title, `descriptionHtml`, and the ordered image list as
//!   `files` the shop fetches from their URLs); `productSet` replaces the list fields it is given and
//!   leaves the rest, so text and images change in one call and variants are untouched.
//! - `fetch_order`: the REST order object, unwrapped (`GET /admin/api/{v}/orders/{id}.json` `.order`).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{decimal, id_text, price_of, settle};
use crate::client::StockRead;
use crate::content::ContentUpdate;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    error::{ConnectorError, FailureClass},
    ratelimit::{PointsStatus, Signals},
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, batches, field, header, required},
};
use crate::{
    token::Lifecycle,
    verify::scheme::{Encoding, HmacHeader, Scheme},
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Shopify::new(account, creds, api)),
    tokens: Lifecycle::Stored,
    webhooks: Scheme::Hmac(HmacHeader {
        header: "X-Shopify-Hmac-Sha256",
        encoding: Encoding::Base64,
        prefix_setting: None,
        ping: None,
    }),
    item_id: |ids| ids.inventory_item.clone(),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::UrlImport,
        key: crate::content::ContentKey::Product,
        note: Some("Shopify keeps free attributes as metafields, which need definitions per store"),
    },
};

const MAX_QUANTITIES: usize = 250;
/// Shopify's documented cost of a mutation.
const MUTATION_COST: f64 = 10.0;
/// The requested cost of [`RETURN`]: the return and its order, and 50 lines with two objects each.
const RETURN_COST: f64 = 155.0;
/// The first version that requires (and accepts) `@idempotent` on inventory mutations.
const IDEMPOTENT_FROM: &str = "2026-04";

const SET_QUANTITIES: &str = "mutation SetStock($input: InventorySetQuantitiesInput!$directive_args) {
  inventorySetQuantities(input: $input)$directive {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}";

const VARIANTS_BY_SKU: &str = "query VariantsBySku($first: Int!, $query: String!) {
  productVariants(first: $first, query: $query) {
    nodes { id sku product { id } inventoryItem { id } }
  }
}";

const BULK_PRICES: &str = "mutation SetPrices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id }
    userErrors { field message }
  }
}";

const SET_CONTENT: &str = "mutation SetContent($identifier: ProductSetIdentifiers!, $input: ProductSetInput!) {
  productSet(identifier: $identifier, input: $input, synchronous: true) {
    product { id }
    userErrors { field message code }
  }
}";

const FULFILLMENT_ORDERS: &str = "query FulfillmentOrders($id: ID!) {
  order(id: $id) { fulfillmentOrders(first: 10) { nodes { id status } } }
}";

const FULFILLMENT_CREATE: &str = "mutation Ship($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id }
    userErrors { field message }
  }
}";

const ORDER_CANCEL: &str = "mutation Cancel($orderId: ID!, $reason: OrderCancelReason!, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, refund: false, restock: true, staffNote: $staffNote) {
    job { id }
    orderCancelUserErrors { field message code }
  }
}";

/// A return with its lines and the order lines they take back (`returns/*` webhooks are thin).
const RETURN: &str = "query Return($id: ID!) {
  return(id: $id) {
    id name status order { id }
    returnLineItems(first: 50) {
      nodes { ... on ReturnLineItem { id quantity returnReason fulfillmentLineItem { lineItem { id sku } } } }
    }
  }
}";

const STOCK_BY_SKU: &str = "query StockBySku($first: Int!, $query: String!, $locationId: ID!) {
  inventoryItems(first: $first, query: $query) {
    nodes { sku inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } }
  }
}";

/// Every variant of the shop, a page at a time, with its inventory item and the level at the account's
/// location (`productVariants` is the documented way to walk a catalog by variant).
const LISTINGS: &str = "query Listings($first: Int!, $after: String, $locationId: ID!) {
  shop { currencyCode }
  productVariants(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id sku price barcode product { id }
      inventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } }
    }
  }
}";

/// Variants per listing page (each costs about two points with its inventory level).
const LISTING_PAGE: usize = 100;

#[derive(Debug)]
struct ShopifyDialect;

impl Dialect for ShopifyDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        req.headers.push(("x-shopify-access-token", required(token)?.expose().to_owned()));
        Ok(())
    }

    fn signals(&self, headers: &HeaderMap, body: &Value) -> Signals {
        let status = body.pointer("/extensions/cost/throttleStatus");
        let num = |k: &str| status.and_then(|s| s.get(k)).and_then(Value::as_f64);
        let points = match (num("maximumAvailable"), num("currentlyAvailable"), num("restoreRate")) {
            (Some(maximum_available), Some(currently_available), Some(restore_rate)) => {
                Some(PointsStatus { maximum_available, currently_available, restore_rate })
            }
            _ => None,
        };
        Signals { retry_after: crate::error::retry_after_header(headers), points, ..Signals::default() }
    }

    fn body_error(&self, body: &Value) -> Option<ConnectorError> {
        let errors = body.get("errors")?.as_array().filter(|e| !e.is_empty())?;
        let throttled =
            errors.iter().any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"));
        let message =
            errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect::<Vec<_>>().join("; ");
        if throttled {
            let cost = body.pointer("/extensions/cost");
            let requested =
                cost.and_then(|c| c.get("requestedQueryCost")).and_then(Value::as_f64).unwrap_or(MUTATION_COST);
            let status = cost.and_then(|c| c.get("throttleStatus"));
            let available = status.and_then(|s| s.get("currentlyAvailable")).and_then(Value::as_f64).unwrap_or(0.0);
            let restore = status.and_then(|s| s.get("restoreRate")).and_then(Value::as_f64).unwrap_or(50.0).max(1.0);
            let wait = std::time::Duration::from_secs_f64(((requested - available) / restore).clamp(0.05, 60.0));
            return Some(ConnectorError::new(FailureClass::RateLimited, message).with_retry_after(Some(wait)));
        }
        let class =
            if errors.iter().any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("ACCESS_DENIED")) {
                FailureClass::Auth
            } else {
                FailureClass::Permanent
            };
        Some(ConnectorError::new(class, message))
    }
}

/// A Shopify store.
#[derive(Debug)]
pub struct Shopify {
    api: Api,
    batch: usize,
}

/// What a SKU resolves to in the store.
#[derive(Debug, Clone)]
struct VariantIds {
    variant: String,
    product: String,
    inventory_item: String,
}

impl Shopify {
    pub fn new(_account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let batch = parts.batch(MAX_QUANTITIES);
        Self { api: Api::new(parts, ShopifyDialect), batch }
    }

    fn rest(&self, path: &str) -> String {
        format!("/admin/api/{}/{path}", self.api.parts.api_version)
    }

    async fn graphql(
        &self,
        query: &str,
        variables: Value,
        cost: f64,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
        let req = Req::post(self.rest("graphql.json"), json!({ "query": query, "variables": variables })).cost(cost);
        let reply = self.api.send(req, ctx).await?;
        Ok(field(&reply.body, "/data")?.clone())
    }

    /// One product's content in one `productSet` (see the module docs).
    async fn set_content(&self, item: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        let product = item.id(Channel::Shopify, "product id", item.ids.product.as_ref())?;
        let mut input = serde_json::Map::new();
        if let Some(text) = &item.text {
            if let Some(title) = &text.title {
                input.insert("title".into(), json!(title));
            }
            if let Some(description) = &text.description {
                input.insert("descriptionHtml".into(), json!(description));
            }
        }
        if let Some(images) = &item.images {
            let files: Vec<Value> = images
                .images
                .iter()
                .map(|i| json!({ "originalSource": i.url, "alt": i.alt, "contentType": "IMAGE" }))
                .collect();
            input.insert("files".into(), Value::Array(files));
        }
        let variables = json!({ "identifier": { "id": product }, "input": input });
        let data = self.graphql(SET_CONTENT, variables, MUTATION_COST, ctx).await?;
        user_errors(&data, "/productSet/userErrors")?;
        Ok(())
    }

    fn idempotent(&self) -> bool {
        self.api.parts.api_version.as_str() >= IDEMPOTENT_FROM
    }

    async fn variants(&self, skus: &[&str], ctx: &CallContext) -> Result<HashMap<String, VariantIds>, ConnectorError> {
        let mut found = HashMap::new();
        for chunk in batches(skus, MAX_QUANTITIES) {
            let query =
                chunk.iter().map(|s| format!("sku:'{}'", s.replace('\'', "\\'"))).collect::<Vec<_>>().join(" OR ");
            let first = chunk.len();
            #[allow(clippy::cast_precision_loss)]
            let cost = 2.0 + first as f64;
            let data = self.graphql(VARIANTS_BY_SKU, json!({ "first": first, "query": query }), cost, ctx).await?;
            for node in field(&data, "/productVariants/nodes")?.as_array().into_iter().flatten() {
                let text = |p: &str| node.pointer(p).and_then(Value::as_str).map(str::to_owned);
                if let (Some(sku), Some(variant), Some(product), Some(inventory_item)) =
                    (text("/sku"), text("/id"), text("/product/id"), text("/inventoryItem/id"))
                {
                    found.insert(sku, VariantIds { variant, product, inventory_item });
                }
            }
        }
        Ok(found)
    }

    async fn set_batch(
        &self,
        batch: &[&StockUpdate],
        location: &str,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let unresolved: Vec<&str> =
            batch.iter().filter(|i| i.channel_item_id.is_none()).map(|i| i.channel_sku.as_str()).collect();
        let looked_up = if unresolved.is_empty() { HashMap::new() } else { self.variants(&unresolved, ctx).await? };
        let mut pending: Vec<(&StockUpdate, String)> = Vec::new();
        for item in batch {
            match item
                .channel_item_id
                .clone()
                .or_else(|| looked_up.get(&item.channel_sku).map(|v| v.inventory_item.clone()))
            {
                Some(id) => pending.push((item, id)),
                None => outcome.rejected.push((
                    item.channel_sku.clone(),
                    ConnectorError::permanent(format!("no Shopify variant with SKU {}", item.channel_sku)),
                )),
            }
        }
        // One resend without the items Shopify named in userErrors: the mutation is all-or-nothing.
        for _ in 0..2 {
            if pending.is_empty() {
                break;
            }
            let quantities: Vec<Value> = pending
                .iter()
                .map(|(i, id)| json!({ "inventoryItemId": id, "locationId": location, "quantity": i.quantity }))
                .collect();
            let key = idempotency_key(&ctx.trace_id, location, &quantities);
            let (query, variables) = if self.idempotent() {
                (
                    SET_QUANTITIES
                        .replace("$directive_args", ", $idempotencyKey: String!")
                        .replace("$directive", " @idempotent(key: $idempotencyKey)"),
                    json!({ "input": set_input(&quantities), "idempotencyKey": key }),
                )
            } else {
                (
                    SET_QUANTITIES.replace("$directive_args", "").replace("$directive", ""),
                    json!({ "input": set_input(&quantities) }),
                )
            };
            let data = self.graphql(&query, variables, MUTATION_COST, ctx).await?;
            let errors = field(&data, "/inventorySetQuantities/userErrors")?.as_array().cloned().unwrap_or_default();
            if errors.is_empty() {
                outcome.delivered.extend(pending.iter().map(|(i, _)| i.channel_sku.clone()));
                return Ok(outcome);
            }
            let mut bad: BTreeMap<usize, String> = BTreeMap::new();
            for e in &errors {
                let message = e.get("message").and_then(Value::as_str).unwrap_or("rejected").to_owned();
                match quantity_index(e) {
                    Some(ix) if ix < pending.len() => {
                        bad.insert(ix, message);
                    }
                    _ => {
                        let err = ConnectorError::permanent(message);
                        outcome.reject_all(pending.iter().map(|(i, _)| i.channel_sku.as_str()), &err);
                        return Ok(outcome);
                    }
                }
            }
            let mut kept = Vec::new();
            for (ix, entry) in pending.into_iter().enumerate() {
                match bad.remove(&ix) {
                    Some(message) => {
                        outcome.rejected.push((entry.0.channel_sku.clone(), ConnectorError::permanent(message)));
                    }
                    None => kept.push(entry),
                }
            }
            pending = kept;
        }
        let err = ConnectorError::permanent("rejected again after removing the items Shopify named");
        outcome.reject_all(pending.iter().map(|(i, _)| i.channel_sku.as_str()), &err);
        Ok(outcome)
    }
}

fn set_input(quantities: &[Value]) -> Value {
    json!({ "name": "available", "reason": "correction", "ignoreCompareQuantity": true, "quantities": quantities })
}

/// `["input", "quantities", "3", "inventoryItemId"]` -> 3.
fn quantity_index(user_error: &Value) -> Option<usize> {
    let path = user_error.get("field")?.as_array()?;
    let pos = path.iter().position(|p| p.as_str() == Some("quantities"))?;
    let ix = path.get(pos + 1)?;
    ix.as_u64().and_then(|n| usize::try_from(n).ok()).or_else(|| ix.as_str()?.parse().ok())
}

/// The same batch under the same trace id always gets the same key, so a retry is deduplicated.
fn idempotency_key(trace_id: &str, location: &str, quantities: &[Value]) -> String {
    let mut h = Sha256::new();
    h.update(trace_id.as_bytes());
    h.update(location.as_bytes());
    for q in quantities {
        h.update(q.to_string().as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn order_gid(id: &str) -> String {
    if id.starts_with("gid://") { id.to_owned() } else { format!("gid://shopify/Order/{id}") }
}

fn user_errors(data: &Value, pointer: &str) -> Result<(), ConnectorError> {
    match data.pointer(pointer).and_then(Value::as_array) {
        Some(errors) if !errors.is_empty() => Err(ConnectorError::permanent(
            errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect::<Vec<_>>().join("; "),
        )),
        _ => Ok(()),
    }
}

/// One `productVariants` node as a listing (`None` for a variant without a SKU: nothing can key it).
fn listing(node: &Value, currency: Option<manifold_domain::Currency>, now: DateTime<Utc>) -> Option<Listing> {
    let sku = node.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
    let quantity = node
        .pointer("/inventoryItem/inventoryLevel/quantities")
        .and_then(Value::as_array)
        .and_then(|q| q.iter().find(|x| x.get("name").and_then(Value::as_str) == Some("available")))
        .and_then(|x| x.get("quantity"))
        .and_then(Value::as_i64);
    Some(Listing {
        sku,
        ids: ListingIds {
            product: id_text(node.pointer("/product/id")),
            variant: id_text(node.get("id")),
            inventory_item: id_text(node.pointer("/inventoryItem/id")),
            ean: id_text(node.get("barcode")),
            ..ListingIds::default()
        },
        quantity,
        price: price_of(node.get("price")),
        currency,
        seen_at: now,
    })
}

/// The URL of `rel="next"` in a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    header(headers, "link")?
        .split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split(['<', '>']).nth(1))
        .map(str::to_owned)
}

#[async_trait]
impl ChannelConnector for Shopify {
    fn channel(&self) -> Channel {
        Channel::Shopify
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let location = self.api.parts.setting("location_id")?.to_owned();
        let mut outcome = PushOutcome::default();
        for batch in batches(items, self.batch) {
            let refs: Vec<&StockUpdate> = batch.iter().collect();
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            settle(&mut outcome, &skus, self.set_batch(&refs, &location, ctx).await)?;
        }
        Ok(outcome)
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let skus: Vec<&str> = items.iter().map(|i| i.channel_sku.as_str()).collect();
        let ids = self.variants(&skus, ctx).await?;
        let (known, unknown): (Vec<&PriceUpdate>, Vec<&PriceUpdate>) =
            items.iter().partition(|i| ids.contains_key(&i.channel_sku));
        for i in unknown {
            outcome.rejected.push((
                i.channel_sku.clone(),
                ConnectorError::permanent(format!("no Shopify variant with SKU {}", i.channel_sku)),
            ));
        }
        let by_product = super::group_by(&known, |i| ids[&i.channel_sku].product.clone());
        for (product, group) in by_product {
            let variants: Vec<Value> = group
                .iter()
                .map(|i| json!({ "id": ids[&i.channel_sku].variant, "price": decimal(&i.amount) }))
                .collect();
            let skus: Vec<&str> = group.iter().map(|i| i.channel_sku.as_str()).collect();
            let result = async {
                let data = self
                    .graphql(BULK_PRICES, json!({ "productId": product, "variants": variants }), MUTATION_COST, ctx)
                    .await?;
                user_errors(&data, "/productVariantsBulkUpdate/userErrors")?;
                Ok(PushOutcome { delivered: skus.iter().map(|s| (*s).to_owned()).collect(), ..PushOutcome::default() })
            }
            .await;
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.set_content(item, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let data =
            self.graphql(FULFILLMENT_ORDERS, json!({ "id": order_gid(&shipment.channel_order_id) }), 12.0, ctx).await?;
        // Ships every open fulfillment order in full: partial shipments would need Shopify's own
        // fulfillment-order line ids, which canonical shipments do not carry.
        let open: Vec<Value> = field(&data, "/order/fulfillmentOrders/nodes")?
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| matches!(n.get("status").and_then(Value::as_str), Some("OPEN" | "IN_PROGRESS")))
            .filter_map(|n| n.get("id").cloned())
            .map(|id| json!({ "fulfillmentOrderId": id }))
            .collect();
        if open.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "order {} has no open fulfillment order",
                shipment.channel_order_id
            )));
        }
        let fulfillment = json!({
            "lineItemsByFulfillmentOrder": open,
            "notifyCustomer": true,
            "trackingInfo": { "company": shipment.carrier, "number": shipment.tracking_number, "url": shipment.tracking_url },
        });
        let data = self.graphql(FULFILLMENT_CREATE, json!({ "fulfillment": fulfillment }), MUTATION_COST, ctx).await?;
        user_errors(&data, "/fulfillmentCreate/userErrors")
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let reply = self.api.send(Req::get(self.rest(&format!("orders/{channel_order_id}.json"))), ctx).await?;
        Ok(field(&reply.body, "/order")?.clone())
    }

    /// The GraphQL `return` a `returns/*` webhook names (`resource_id`: its global id), as
    /// `{"return": ...}`; a return Shopify no longer has is a permanent failure.
    async fn fetch_returns(&self, resource_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let data = self.graphql(RETURN, json!({ "id": resource_id }), RETURN_COST, ctx).await?;
        match data.get("return") {
            Some(r) if r.is_object() => Ok(json!({ "return": r })),
            _ => Err(ConnectorError::permanent(format!("Shopify has no return {resource_id}"))),
        }
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut orders = Vec::new();
        let mut req = Req::get(self.rest("orders.json"))
            .query("status", "any")
            .query("updated_at_min", since.to_rfc3339())
            .query("limit", "250");
        loop {
            let reply = self.api.send(req, ctx).await?;
            orders.extend(field(&reply.body, "/orders")?.as_array().cloned().unwrap_or_default());
            match next_link(&reply.headers) {
                Some(next) => req = Req::get(next),
                None => return Ok(orders),
            }
        }
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let code = match reason.to_ascii_uppercase().as_str() {
            r @ ("CUSTOMER" | "DECLINED" | "FRAUD" | "INVENTORY" | "STAFF") => r.to_owned(),
            _ => "OTHER".to_owned(),
        };
        let variables = json!({ "orderId": order_gid(channel_order_id), "reason": code, "staffNote": reason });
        let data = self.graphql(ORDER_CANCEL, variables, MUTATION_COST, ctx).await?;
        user_errors(&data, "/orderCancel/orderCancelUserErrors").map(|()| Accepted::Done)
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let location = self.api.parts.setting("location_id")?.to_owned();
        let mut out = Vec::new();
        for chunk in batches(channel_skus, MAX_QUANTITIES) {
            let query =
                chunk.iter().map(|s| format!("sku:'{}'", s.replace('\'', "\\'"))).collect::<Vec<_>>().join(" OR ");
            #[allow(clippy::cast_precision_loss)]
            let cost = 2.0 + 2.0 * chunk.len() as f64;
            let variables = json!({ "first": chunk.len(), "query": query, "locationId": location });
            let data = self.graphql(STOCK_BY_SKU, variables, cost, ctx).await?;
            for node in field(&data, "/inventoryItems/nodes")?.as_array().into_iter().flatten() {
                let sku = node.get("sku").and_then(Value::as_str);
                let quantity = node
                    .pointer("/inventoryLevel/quantities")
                    .and_then(Value::as_array)
                    .and_then(|q| q.iter().find(|x| x.get("name").and_then(Value::as_str) == Some("available")))
                    .and_then(|x| x.get("quantity"))
                    .and_then(Value::as_i64);
                if let (Some(sku), Some(q)) = (sku, quantity) {
                    out.push((sku.to_owned(), q));
                }
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let location = self.api.parts.setting("location_id")?.to_owned();
        let variables = json!({ "first": LISTING_PAGE, "after": cursor, "locationId": location });
        #[allow(clippy::cast_precision_loss)]
        let cost = 2.0 + 2.0 * LISTING_PAGE as f64;
        let data = self.graphql(LISTINGS, variables, cost, ctx).await?;
        let currency = data.pointer("/shop/currencyCode").and_then(Value::as_str).and_then(|c| c.parse().ok());
        let now = Utc::now();
        let listings = field(&data, "/productVariants/nodes")?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| listing(n, currency, now))
            .collect();
        let more = data.pointer("/productVariants/pageInfo/hasNextPage").and_then(Value::as_bool) == Some(true);
        let next = data.pointer("/productVariants/pageInfo/endCursor").and_then(Value::as_str).map(str::to_owned);
        Ok(ListingPage { listings, next: next.filter(|_| more) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_error_paths_name_the_quantity() {
        let e = json!({ "field": ["input", "quantities", "3", "inventoryItemId"], "message": "not found" });
        assert_eq!(quantity_index(&e), Some(3));
        assert_eq!(quantity_index(&json!({ "field": ["input", "name"] })), None);
    }

    #[test]
    fn idempotency_keys_are_stable_per_batch_and_trace() {
        let q = vec![json!({ "inventoryItemId": "gid://shopify/InventoryItem/1", "quantity": 3 })];
        assert_eq!(idempotency_key("t1", "l", &q), idempotency_key("t1", "l", &q));
        assert_ne!(idempotency_key("t1", "l", &q), idempotency_key("t2", "l", &q));
    }

    #[test]
    fn link_header_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            "<https://s.myshopify.com/admin/api/2026-07/orders.json?page_info=abc>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://s.myshopify.com/admin/api/2026-07/orders.json?page_info=abc")
        );
    }
}
