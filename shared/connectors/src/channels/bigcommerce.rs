//! BigCommerce REST (v3 catalog and inventory, v2 orders) under `https://api.bigcommerce.com/stores/{hash}`.
//!
//! - Credentials: `access_token` (`X-Auth-Token`).
//! - Settings: `location_id` (inventory location), optional `batch_size`.
//! - Stock: `PUT /v3/inventory/adjustments/absolute` by SKU. BigCommerce accepts up to 2000 items per
//!   call; 1000 is used as a conservative figure (the whole batch is validated together, so a smaller
//!   batch limits what one unknown SKU takes down).
//! - Prices: `PUT /v3/catalog/variants` (50 per call), `PriceUpdate::channel_item_id` = variant id.
//! - Content: `PUT /v3/catalog/products/{id}` (`name`, `description`) for text; images one at a time
//!   under `/v3/catalog/products/{id}/images` (read in `sort_order`, then `PUT` the image at a changed
//!   position with its new `image_url`, `POST` one the product lacks, `DELETE` those past the list),
//!   so one changed image is one write. BigCommerce fetches each `image_url` itself.
//! - Limits: a per-store window shared by every app; `X-Rate-Limit-Requests-Left` and
//!   `X-Rate-Limit-Time-Reset-Ms` (and `-Requests-Quota`) of every response feed the limiter.
//! - Listings: `GET /v3/catalog/variants` 250 per page (`meta.pagination`): every variant with its SKU,
//!   product and variant ids, `inventory_level`, price and UPC/GTIN.
//! - `fetch_order`: `{"order": GET /v2/orders/{id}, "products": .../products, "shipping_addresses": ...}`.
//! - `fetch_shipment`: `GET /v2/orders/{order_id}/shipments/{shipment_id}` for the `"{order_id}/{shipment_id}"`
//!   a `store/shipment/*` notification names (its `data.orderId` and `data.id`); the shipment object as is.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{cursor_number, decimal, id_text, missing_item_id, next_page, price_of, settle};
use crate::client::StockRead;
use crate::content::{ContentImages, ContentUpdate};
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, FetchedShipment, Listing, ListingIds, ListingPage, PriceUpdate,
        PushOutcome, StockUpdate,
    },
    error::ConnectorError,
    ratelimit::{Signals, WindowStatus},
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, batches, header, required},
};
use crate::{
    token::Lifecycle,
    verify::scheme::{HeaderToken, Scheme},
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(BigCommerce::new(account, creds, api)),
    tokens: Lifecycle::Stored,
    webhooks: Scheme::Token(HeaderToken { name_setting: "webhook_header", default_header: "X-Manifold-Webhook-Token" }),
    item_id: |ids| ids.variant.clone(),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::UrlImport,
        key: crate::content::ContentKey::Product,
        note: Some("BigCommerce keeps free attributes as custom fields, one call each"),
    },
};

/// Splits the `"{order_id}/{shipment_id}"` of a shipment notification. Both are BigCommerce integer ids;
/// anything else is refused before it can reach a URL path.
fn shipment_ids(resource_id: &str) -> Result<(&str, &str), ConnectorError> {
    let numeric = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    resource_id.split_once('/').filter(|(o, s)| numeric(o) && numeric(s)).ok_or_else(|| {
        ConnectorError::permanent(format!(
            "{resource_id:?} is not an order id and a shipment id (\"{{order}}/{{shipment}}\")"
        ))
    })
}

const MAX_STOCK_BATCH: usize = 1000;
const MAX_VARIANT_BATCH: usize = 50;
/// `status_id` of "Cancelled" in BigCommerce's fixed order status table.
const CANCELLED: u32 = 5;

#[derive(Debug)]
struct BigCommerceDialect;

impl Dialect for BigCommerceDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        req.headers.push(("x-auth-token", required(token)?.expose().to_owned()));
        req.headers.push(("accept", "application/json".to_owned()));
        Ok(())
    }

    fn signals(&self, headers: &HeaderMap, _body: &Value) -> Signals {
        let num = |name: &str| header(headers, name).and_then(|v| v.parse::<u64>().ok());
        let window = match (num("x-rate-limit-requests-left"), num("x-rate-limit-time-reset-ms")) {
            (Some(left), Some(reset_ms)) => Some(WindowStatus {
                requests_left: u32::try_from(left).unwrap_or(u32::MAX),
                reset_in: Duration::from_millis(reset_ms),
                quota: num("x-rate-limit-requests-quota").and_then(|q| u32::try_from(q).ok()),
            }),
            _ => None,
        };
        Signals { retry_after: crate::error::retry_after_header(headers), window, ..Signals::default() }
    }
}

/// A BigCommerce store.
#[derive(Debug)]
pub struct BigCommerce {
    api: Api,
    batch: usize,
}

impl BigCommerce {
    pub fn new(_account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let batch = parts.batch(MAX_STOCK_BATCH);
        Self { api: Api::new(parts, BigCommerceDialect), batch }
    }

    /// One product's content: its text, then its images (see the module docs).
    async fn set_content(&self, item: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        let product = item.id(Channel::Bigcommerce, "product id", item.ids.product.as_ref())?;
        if let Some(text) = &item.text {
            let mut body = json!({});
            if let Some(title) = &text.title {
                body["name"] = json!(title);
            }
            if let Some(description) = &text.description {
                body["description"] = json!(description);
            }
            self.api.send(Req::put(format!("/v3/catalog/products/{product}"), body), ctx).await?;
        }
        if let Some(images) = &item.images {
            self.set_images(product, images, ctx).await?;
        }
        Ok(())
    }

    /// Makes the product's images the list given, writing only the changed positions and removing
    /// those past its end.
    async fn set_images(&self, product: &str, images: &ContentImages, ctx: &CallContext) -> Result<(), ConnectorError> {
        let path = format!("/v3/catalog/products/{product}/images");
        let mut current: Vec<(i64, String)> = self
            .get(path.clone(), ctx)
            .await?
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i.get("sort_order").and_then(Value::as_i64).unwrap_or(0), id_text(i.get("id"))?)))
            .collect();
        current.sort();
        for &k in &images.changed {
            let Some(image) = images.images.get(k) else { continue };
            let body = json!({
                "image_url": image.url, "description": image.alt.clone().unwrap_or_default(),
                "sort_order": k, "is_thumbnail": k == 0,
            });
            let req = match current.get(k) {
                Some((_, id)) => Req::put(format!("{path}/{id}"), body),
                None => Req::post(path.clone(), body),
            };
            self.api.send(req, ctx).await?;
        }
        for (_, id) in current.iter().skip(images.images.len()) {
            self.api.send(Req::new(http::Method::DELETE, format!("{path}/{id}")).raw_reply(), ctx).await?;
        }
        Ok(())
    }

    async fn get(&self, path: String, ctx: &CallContext) -> Result<Value, ConnectorError> {
        // v2 list endpoints answer 204 with no body when there is nothing.
        Ok(match self.api.send(Req::get(path), ctx).await?.body {
            Value::Null => json!([]),
            v => v,
        })
    }
}

#[async_trait]
impl ChannelConnector for BigCommerce {
    fn channel(&self) -> Channel {
        Channel::Bigcommerce
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let location = self.api.parts.setting("location_id")?;
        let location: Value = location.parse::<u64>().map_or_else(|_| json!(location), |n| json!(n));
        let mut outcome = PushOutcome::default();
        for batch in batches(items, self.batch) {
            let body = json!({
                "reason": "Manifold stock sync",
                "items": batch.iter().map(|i| json!({ "location_id": location, "sku": i.channel_sku, "quantity": i.quantity })).collect::<Vec<_>>(),
            });
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result = self.api.send(Req::put("/v3/inventory/adjustments/absolute", body), ctx).await.map(|_| {
                PushOutcome { delivered: skus.iter().map(|s| (*s).to_owned()).collect(), ..PushOutcome::default() }
            });
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let (with_id, without): (Vec<&PriceUpdate>, Vec<&PriceUpdate>) =
            items.iter().partition(|i| i.channel_item_id.is_some());
        for i in without {
            outcome.rejected.push((i.channel_sku.clone(), missing_item_id(&i.channel_sku, "variant id")));
        }
        for batch in batches(&with_id, MAX_VARIANT_BATCH) {
            let body: Vec<Value> = batch
                .iter()
                .map(|i| {
                    let id = i.channel_item_id.as_deref().unwrap_or_default();
                    json!({ "id": id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n)), "price": decimal(&i.amount).parse::<f64>().ok() })
                })
                .collect();
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result = self.api.send(Req::put("/v3/catalog/variants", Value::Array(body)), ctx).await.map(|_| {
                PushOutcome { delivered: skus.iter().map(|s| (*s).to_owned()).collect(), ..PushOutcome::default() }
            });
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.set_content(item, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let id = &shipment.channel_order_id;
        let addresses = self.get(format!("/v2/orders/{id}/shipping_addresses"), ctx).await?;
        let address_id = addresses
            .pointer("/0/id")
            .cloned()
            .ok_or_else(|| ConnectorError::permanent(format!("order {id} has no shipping address")))?;
        let items: Vec<Value> = if shipment.lines.iter().all(|l| l.line_id.is_some()) && !shipment.lines.is_empty() {
            shipment
                .lines
                .iter()
                .map(|l| {
                    let line = l.line_id.as_deref().unwrap_or_default();
                    json!({ "order_product_id": line.parse::<u64>().map_or_else(|_| json!(line), |n| json!(n)), "quantity": l.quantity })
                })
                .collect()
        } else {
            let products = self.get(format!("/v2/orders/{id}/products"), ctx).await?;
            products
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| json!({ "order_product_id": p.get("id"), "quantity": p.get("quantity") }))
                .collect()
        };
        let body = json!({
            "order_address_id": address_id,
            "tracking_number": shipment.tracking_number,
            "tracking_carrier": shipment.carrier.as_deref().map(str::to_ascii_lowercase),
            "tracking_link": shipment.tracking_url,
            "items": items,
        });
        self.api.send(Req::post(format!("/v2/orders/{id}/shipments"), body), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let order = self.api.send(Req::get(format!("/v2/orders/{channel_order_id}")), ctx).await?.body;
        let products = self.get(format!("/v2/orders/{channel_order_id}/products"), ctx).await?;
        let shipping_addresses = self.get(format!("/v2/orders/{channel_order_id}/shipping_addresses"), ctx).await?;
        Ok(json!({ "order": order, "products": products, "shipping_addresses": shipping_addresses }))
    }

    /// The order (as [`fetch_order`](Self::fetch_order) reads it) with its v3 refunds, for a
    /// `store/order/refund/created` notification.
    async fn fetch_returns(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let mut doc = self.fetch_order(channel_order_id, ctx).await?;
        let path = format!("/v3/orders/{channel_order_id}/payment_actions/refunds");
        let refunds = self.api.send(Req::get(path), ctx).await?.body;
        doc["refunds"] = refunds.get("data").cloned().unwrap_or_else(|| json!([]));
        Ok(doc)
    }

    async fn fetch_shipment(&self, resource_id: &str, ctx: &CallContext) -> Result<FetchedShipment, ConnectorError> {
        let (order_id, shipment_id) = shipment_ids(resource_id)?;
        let path = format!("/v2/orders/{order_id}/shipments/{shipment_id}");
        Ok(FetchedShipment::Shipment(self.api.send(Req::get(path), ctx).await?.body))
    }

    /// Lists changed orders, then fetches each one's products and addresses (BigCommerce's list is
    /// thin); the rate limiter paces the extra calls.
    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.list_orders_since_unheld(since, &crate::NoneHeld, ctx).await
    }

    /// v2 orders are summaries; the products and addresses of an order held at its
    /// `date_modified` are not read.
    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn crate::HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        for page in 1.. {
            let req = Req::get("/v2/orders")
                .query("min_date_modified", since.to_rfc2822())
                .query("limit", "250")
                .query("page", page.to_string());
            let listed = match self.api.send(req, ctx).await?.body {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            // v2 answers past the last page with 204 No Content; a short page is not proof of the
            // end (the store may serve fewer than `limit`), so the walk stops at an empty one.
            if listed.is_empty() {
                break;
            }
            for order in listed {
                let Some(id) = order.get("id").map(|v| v.to_string().trim_matches('"').to_owned()) else { continue };
                let updated = order
                    .get("date_modified")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if let Some(updated) = updated
                    && held.holds(&id, updated).await
                {
                    continue;
                }
                let products = self.get(format!("/v2/orders/{id}/products"), ctx).await?;
                let shipping_addresses = self.get(format!("/v2/orders/{id}/shipping_addresses"), ctx).await?;
                out.push(json!({ "order": order, "products": products, "shipping_addresses": shipping_addresses }));
            }
        }
        Ok(out)
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let body = json!({ "status_id": CANCELLED, "staff_notes": reason });
        self.api.send(Req::put(format!("/v2/orders/{channel_order_id}"), body), ctx).await.map(|_| Accepted::Done)
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let mut out = Vec::new();
        for chunk in batches(channel_skus, MAX_VARIANT_BATCH) {
            let req = Req::get("/v3/catalog/variants").query("sku:in", chunk.join(",")).query("limit", "250");
            let body = self.api.send(req, ctx).await?.body;
            for v in body.get("data").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(sku), Some(q)) =
                    (v.get("sku").and_then(Value::as_str), v.get("inventory_level").and_then(Value::as_i64))
                {
                    out.push((sku.to_owned(), q));
                }
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let page = cursor_number(cursor, 1)?;
        let req = Req::get("/v3/catalog/variants").query("limit", "250").query("page", page.to_string());
        let body = self.api.send(req, ctx).await?.body;
        let now = Utc::now();
        let data = body.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
        let listings = data
            .iter()
            .filter_map(|v| {
                let sku = v.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
                Some(Listing {
                    sku,
                    ids: ListingIds {
                        product: id_text(v.get("product_id")),
                        variant: id_text(v.get("id")),
                        ean: id_text(v.get("gtin")).or_else(|| id_text(v.get("upc"))),
                        ..ListingIds::default()
                    },
                    quantity: v.get("inventory_level").and_then(Value::as_i64),
                    price: price_of(v.get("calculated_price")).or_else(|| price_of(v.get("price"))),
                    currency: None,
                    seen_at: now,
                })
            })
            .collect();
        let pages = body
            .pointer("/meta/pagination/total_pages")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(1);
        Ok(ListingPage { listings, next: next_page(page, pages, data.is_empty()) })
    }
}

#[cfg(test)]
mod tests {
    use super::shipment_ids;

    #[test]
    fn shipment_notifications_name_an_order_and_a_shipment_by_number() {
        assert_eq!(shipment_ids("251/12").unwrap(), ("251", "12"));
        for bad in ["251", "251/", "/12", "251/12/3", "../v3/12", "251/1a", ""] {
            assert!(!shipment_ids(bad).unwrap_err().is_retryable(), "{bad}");
        }
    }
}
