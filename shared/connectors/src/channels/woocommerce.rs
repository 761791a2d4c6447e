//! WooCommerce REST API (`/wc/{v}` under the site's `wp-json`).
//!
//! - Credentials: `client_id` / `client_secret` (the REST API consumer key and secret, HTTP Basic).
//! - `channel_item_id` (stock and prices): the product id, or `product_id/variation_id` for a
//!   variation. Products go through `POST products/batch`, variations through
//!   `POST products/{id}/variations/batch`, 100 per call; the per-item `error` entries of the batch
//!   response become rejected items.
//! - Content: through the same `POST products/batch`, at the product (a variation's parent): `name`,
//!   `description` and `images` (`[{src, alt}]` in display order; WooCommerce sideloads each `src`
//!   into its media library and replaces the product's gallery with the list).
//! - Tracking: WooCommerce core has no tracking field. This assumes the "Shipment Tracking" plugin and
//!   writes its `_wc_shipment_tracking_items` order meta with `PUT orders/{id}`, completing the order
//!   (unverified against every plugin version: kept in [`tracking_body`]).
//! - `fetch_returns`: the order and its refunds (`GET orders/{id}/refunds`), for the
//!   `action.woocommerce_order_refunded` webhook (WooCommerce core has no returns: a refund with line
//!   items is how goods come back).
//! - `fetch_order`: the REST v3 order. No platform rate limit (host dependent): the configured limit.
//! - Listings: `GET products` 100 per page (`X-WP-TotalPages`); a `variable` product's variations come
//!   from `GET products/{id}/variations` (each a listing with `product/variation` as its item id).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{cursor_number, decimal, group_by, id_text, missing_item_id, next_page, price_of, settle, split_item_id};
use crate::client::StockRead;
use crate::content::ContentUpdate;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    error::{ConnectorError, class_of_status},
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, batches, credential, header},
};
use crate::{
    token::Lifecycle,
    verify::scheme::{Encoding, HmacHeader, Ping, Scheme},
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(WooCommerce::new(account, creds, api)),
    tokens: Lifecycle::None,
    // WooCommerce posts `webhook_id=N` (no signature header) when a webhook is created.
    webhooks: Scheme::Hmac(HmacHeader {
        header: "X-WC-Webhook-Signature",
        encoding: Encoding::Base64,
        prefix_setting: None,
        ping: Some(Ping { field: "webhook_id" }),
    }),
    item_id: |ids| super::compound(ids.product.as_ref(), ids.variant.as_ref()),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::UrlImport,
        key: crate::content::ContentKey::Product,
        note: Some("WooCommerce product attributes also define variations; they are not replaced from here"),
    },
};

const MAX_BATCH: usize = 100;

#[derive(Debug)]
struct WooDialect {
    creds: Credentials,
}

impl Dialect for WooDialect {
    fn authorize(&self, req: &mut Req, _token: Option<&Token>) -> Result<(), ConnectorError> {
        use base64::Engine;
        let key = credential(&self.creds, "client_id")?;
        let secret = credential(&self.creds, "client_secret")?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
        req.headers.push(("authorization", format!("Basic {basic}")));
        Ok(())
    }
}

/// A WooCommerce store.
#[derive(Debug)]
pub struct WooCommerce {
    api: Api,
    batch: usize,
}

impl WooCommerce {
    pub fn new(_account: &AccountConfig, creds: &Credentials, parts: ApiParts) -> Self {
        let batch = parts.batch(MAX_BATCH);
        Self { api: Api::new(parts, WooDialect { creds: creds.clone() }), batch }
    }

    fn path(&self, rest: &str) -> String {
        format!("/wc/{}/{rest}", self.api.parts.api_version)
    }

    /// Sends `{update: [...]}` batches grouped by parent product; `fields` builds one entry's changes.
    async fn batch_update<'a>(
        &self,
        items: Vec<(&'a str, Option<&'a str>, Value)>,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let mut plain = Vec::new();
        let mut keyed = Vec::new();
        for (channel_sku, id, fields) in items {
            match id {
                None => outcome.rejected.push((channel_sku.to_owned(), missing_item_id(channel_sku, "product id"))),
                Some(id) => {
                    let (product, variation) = split_item_id(id);
                    keyed.push((channel_sku, product.to_owned(), variation.map(str::to_owned), fields));
                }
            }
        }
        for (product, group) in group_by(&keyed, |k| k.2.as_ref().map(|_| k.1.clone())) {
            plain.push((product, group));
        }
        for (parent, group) in plain {
            let path = match &parent {
                None => self.path("products/batch"),
                Some(p) => self.path(&format!("products/{p}/variations/batch")),
            };
            for chunk in batches(&group, self.batch) {
                let update: Vec<Value> = chunk
                    .iter()
                    .map(|(_, product, variation, fields)| {
                        let mut entry = fields.clone();
                        let id = variation.as_deref().unwrap_or(product);
                        entry["id"] = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
                        entry
                    })
                    .collect();
                let skus: Vec<&str> = chunk.iter().map(|k| k.0).collect();
                let result = async {
                    let reply = self.api.send(Req::post(path.clone(), json!({ "update": update })), ctx).await?;
                    Ok(per_item(&reply.body, &skus))
                }
                .await;
                settle(&mut outcome, &skus, result)?;
            }
        }
        Ok(outcome)
    }
}

/// The batch response lists updates in request order; failed ones carry `error {code, message, data.status}`.
fn per_item(body: &Value, skus: &[&str]) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    let results = body.get("update").and_then(Value::as_array);
    for (ix, sku) in skus.iter().enumerate() {
        match results.and_then(|r| r.get(ix)).and_then(|r| r.get("error")) {
            Some(err) => {
                let status = err
                    .pointer("/data/status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(400);
                let message = err.get("message").and_then(Value::as_str).unwrap_or("rejected");
                let e = ConnectorError::new(class_of_status(status), message).with_status(status);
                outcome.rejected.push(((*sku).to_owned(), e));
            }
            None => outcome.delivered.push((*sku).to_owned()),
        }
    }
    outcome
}

/// A product or variation as a listing (`None` without a SKU). `parent` is the product of a variation.
fn listing(item: &Value, parent: Option<&str>, now: DateTime<Utc>) -> Option<Listing> {
    let sku = item.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
    let id = id_text(item.get("id"));
    let (product, variant) = match parent {
        Some(p) => (Some(p.to_owned()), id),
        None => (id, None),
    };
    Some(Listing {
        sku,
        ids: ListingIds { product, variant, ean: id_text(item.get("global_unique_id")), ..ListingIds::default() },
        quantity: item.get("stock_quantity").and_then(Value::as_i64),
        price: price_of(item.get("price")),
        currency: None,
        seen_at: now,
    })
}

/// Shipment Tracking plugin meta (assumption, see module docs).
fn tracking_body(shipment: &Shipment) -> Value {
    json!({
        "status": "completed",
        "meta_data": [{
            "key": "_wc_shipment_tracking_items",
            "value": [{
                "tracking_provider": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "custom_tracking_link": shipment.tracking_url,
                "date_shipped": shipment.shipped_at.timestamp().to_string(),
            }],
        }],
    })
}

#[async_trait]
impl ChannelConnector for WooCommerce {
    fn channel(&self) -> Channel {
        Channel::Woocommerce
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let entries = items
            .iter()
            .map(|i| {
                (
                    i.channel_sku.as_str(),
                    i.channel_item_id.as_deref(),
                    json!({ "manage_stock": true, "stock_quantity": i.quantity }),
                )
            })
            .collect();
        self.batch_update(entries, ctx).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let entries = items
            .iter()
            .map(|i| {
                (i.channel_sku.as_str(), i.channel_item_id.as_deref(), json!({ "regular_price": decimal(&i.amount) }))
            })
            .collect();
        self.batch_update(entries, ctx).await
    }

    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let entries = items
            .iter()
            .map(|i| {
                let mut fields = json!({});
                if let Some(text) = &i.text {
                    if let Some(title) = &text.title {
                        fields["name"] = json!(title);
                    }
                    if let Some(description) = &text.description {
                        fields["description"] = json!(description);
                    }
                }
                if let Some(images) = &i.images {
                    fields["images"] = images.images.iter().map(|im| json!({ "src": im.url, "alt": im.alt })).collect();
                }
                // Content belongs to the product, a variation's parent included.
                (i.channel_sku.as_str(), i.ids.product.as_deref(), fields)
            })
            .collect();
        self.batch_update(entries, ctx).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let path = self.path(&format!("orders/{}", shipment.channel_order_id));
        self.api.send(Req::put(path, tracking_body(shipment)), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Ok(self.api.send(Req::get(self.path(&format!("orders/{channel_order_id}"))), ctx).await?.body)
    }

    /// `{"order": GET orders/{id}, "refunds": GET orders/{id}/refunds}`: the refunds carry neither
    /// their order's currency nor its lines, which the normalizer reads from the order.
    async fn fetch_returns(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let order = self.fetch_order(channel_order_id, ctx).await?;
        let path = self.path(&format!("orders/{channel_order_id}/refunds"));
        let refunds = self.api.send(Req::get(path).query("per_page", "100"), ctx).await?.body;
        Ok(json!({ "order": order, "refunds": refunds }))
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut orders = Vec::new();
        // `modified_after` excludes its bound (WordPress's date query `after`) and reads whole
        // seconds: a second earlier keeps an order modified exactly at `since` in the sweep.
        let after = since - chrono::Duration::seconds(1);
        for page in 1.. {
            let req = Req::get(self.path("orders"))
                .query("modified_after", after.format("%Y-%m-%dT%H:%M:%S").to_string())
                .query("dates_are_gmt", "true")
                .query("per_page", "100")
                .query("page", page.to_string());
            let reply = self.api.send(req, ctx).await?;
            let batch = reply.body.as_array().cloned().unwrap_or_default();
            let pages = header(&reply.headers, "x-wp-totalpages").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1);
            let empty = batch.is_empty();
            orders.extend(batch);
            if empty || page >= pages {
                break;
            }
        }
        Ok(orders)
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let path = self.path(&format!("orders/{channel_order_id}"));
        self.api.send(Req::put(path.clone(), json!({ "status": "cancelled" })), ctx).await?;
        let note = json!({ "note": format!("Cancelled by Manifold: {reason}"), "customer_note": false });
        self.api.send(Req::post(format!("{path}/notes"), note), ctx).await.map(|_| Accepted::Done)
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let mut out = Vec::new();
        for chunk in batches(channel_skus, MAX_BATCH) {
            let req = Req::get(self.path("products")).query("sku", chunk.join(",")).query("per_page", "100");
            let reply = self.api.send(req, ctx).await?;
            for p in reply.body.as_array().into_iter().flatten() {
                if let (Some(sku), Some(q)) =
                    (p.get("sku").and_then(Value::as_str), p.get("stock_quantity").and_then(Value::as_i64))
                {
                    out.push((sku.to_owned(), q));
                }
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let page = cursor_number(cursor, 1)?;
        let req = Req::get(self.path("products")).query("per_page", "100").query("page", page.to_string());
        let reply = self.api.send(req, ctx).await?;
        let pages = header(&reply.headers, "x-wp-totalpages").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1);
        let products = reply.body.as_array().cloned().unwrap_or_default();
        let now = Utc::now();
        let mut listings = Vec::new();
        for product in &products {
            if product.get("type").and_then(Value::as_str) != Some("variable") {
                listings.extend(listing(product, None, now));
                continue;
            }
            let Some(parent) = id_text(product.get("id")) else { continue };
            for variation_page in 1.. {
                let req = Req::get(self.path(&format!("products/{parent}/variations")))
                    .query("per_page", "100")
                    .query("page", variation_page.to_string());
                let reply = self.api.send(req, ctx).await?;
                let pages = header(&reply.headers, "x-wp-totalpages").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1);
                let variations = reply.body.as_array().cloned().unwrap_or_default();
                listings.extend(variations.iter().filter_map(|v| listing(v, Some(&parent), now)));
                if variations.is_empty() || variation_page >= pages {
                    break;
                }
            }
        }
        Ok(ListingPage { listings, next: next_page(page, pages, products.is_empty()) })
    }
}
