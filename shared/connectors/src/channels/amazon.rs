//! Amazon Selling Partner API: Listings Items 2021-08-01 and Feeds 2021-06-30 for stock and prices,
//! Orders v0 for orders and shipment confirmation.
//!
//! - Credentials: `refresh_token`, `client_id`, `client_secret` (the LWA app): Login with Amazon access
//!   tokens (1 h) are refreshed by [`crate::token`] and sent as `x-amz-access-token`; a secret holding
//!   only `access_token` has it used as stored.
//! - Settings: `seller_id`, `marketplace_id`; optional `feed_threshold` (default 50): pushes larger than
//!   this go as one `JSON_LISTINGS_FEED` (createFeedDocument, upload, createFeed) instead of one
//!   `patchListingsItem` per SKU. Feed results are processed by Amazon asynchronously: items of an
//!   accepted feed count as delivered; the processing report is not read here.
//! - Listings: Listings Items `searchListingsItems` (`GET /listings/2021-08-01/items/{sellerId}`, 20 per
//!   page, `pagination.nextToken`) with `includedData=summaries,offers,fulfillmentAvailability`: the
//!   SKU, ASIN, offer price and quantity in one call per page, instead of a merchant listings report
//!   (asynchronous: request, poll, download) or a `getListingsItem` per SKU.
//! - Limits: token bucket per operation; `x-amzn-RateLimit-Limit` updates the rate, 429 `QuotaExceeded`.
//! - `fetch_order`: `{"order": getOrder .payload, "order_items": getOrderItems .payload.OrderItems}`
//!   with `NextToken` followed.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderMap;
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{encode, id_text, number, price_of, settle};
use crate::{
    Credentials,
    client::{CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome, StockUpdate},
    error::ConnectorError,
    ratelimit::Signals,
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, field, header, required},
};
use crate::{
    token::{CLIENT_ID, ClientAuth, Flow, Grant, Lifecycle},
    verify::scheme::Scheme,
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Amazon::new(account, creds, api)),
    // Login with Amazon: access tokens live 1 h; the refresh token does not rotate.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::RefreshToken,
        endpoint: "https://api.amazon.com/auth/o2/token",
        auth: ClientAuth::SecretInBody,
        client_id: CLIENT_ID,
        client_secret: "client_secret",
        scope: None,
    }),
    // Notifications arrive on SQS / EventBridge, not over HTTP.
    webhooks: Scheme::NoWebhooks,
    // Keyed by SKU.
    item_id: |_| None,
};

const DEFAULT_FEED_THRESHOLD: usize = 50;

#[derive(Debug)]
struct AmazonDialect;

impl Dialect for AmazonDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        // Pre-signed feed upload URLs carry their own authorization.
        if !req.path.starts_with("http") {
            req.headers.push(("x-amz-access-token", required(token)?.expose().to_owned()));
        }
        Ok(())
    }

    fn signals(&self, headers: &HeaderMap, _body: &Value) -> Signals {
        Signals {
            retry_after: crate::error::retry_after_header(headers),
            rate_per_second: header(headers, "x-amzn-ratelimit-limit").and_then(|v| v.parse().ok()),
            ..Signals::default()
        }
    }
}

/// An Amazon seller account in one marketplace.
#[derive(Debug)]
pub struct Amazon {
    api: Api,
    feed_threshold: usize,
}

/// A listing attribute patch for one SKU.
struct Patch<'a> {
    channel_sku: &'a str,
    path: &'static str,
    value: Value,
}

impl Amazon {
    pub fn new(_account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let feed_threshold =
            parts.settings.get("feed_threshold").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_FEED_THRESHOLD);
        Self { api: Api::new(parts, AmazonDialect), feed_threshold }
    }

    fn ids(&self) -> Result<(String, String), ConnectorError> {
        Ok((self.api.parts.setting("seller_id")?.to_owned(), self.api.parts.setting("marketplace_id")?.to_owned()))
    }

    fn orders(&self, rest: &str) -> String {
        format!("/orders/{}/{rest}", self.api.parts.api_version)
    }

    async fn apply(&self, patches: Vec<Patch<'_>>, ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        if patches.len() > self.feed_threshold {
            self.feed(patches, ctx).await
        } else {
            let mut outcome = PushOutcome::default();
            for p in patches {
                let result = self.patch_one(&p, ctx).await;
                settle(&mut outcome, &[p.channel_sku], result)?;
            }
            Ok(outcome)
        }
    }

    async fn patch_one(&self, p: &Patch<'_>, ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let body = json!({
            "productType": "PRODUCT",
            "patches": [{ "op": "replace", "path": p.path, "value": p.value }],
        });
        let path = format!("/listings/2021-08-01/items/{seller}/{}", encode(p.channel_sku));
        let reply = self.api.send(Req::patch(path, body).query("marketplaceIds", marketplace), ctx).await?;
        let mut outcome = PushOutcome::default();
        if reply.body.get("status").and_then(Value::as_str) == Some("ACCEPTED") {
            outcome.delivered.push(p.channel_sku.to_owned());
        } else {
            let issues = reply.body.get("issues").map(Value::to_string).unwrap_or_default();
            outcome.rejected.push((
                p.channel_sku.to_owned(),
                ConnectorError::permanent(format!("listing patch not accepted: {issues}")),
            ));
        }
        Ok(outcome)
    }

    async fn feed(&self, patches: Vec<Patch<'_>>, ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let content_type = "application/json; charset=UTF-8";
        let doc = self
            .api
            .send(Req::post("/feeds/2021-06-30/documents", json!({ "contentType": content_type })), ctx)
            .await?;
        let document_id = field(&doc.body, "/feedDocumentId")?.clone();
        let url = field(&doc.body, "/url")?.as_str().unwrap_or_default().to_owned();
        let messages: Vec<Value> = patches
            .iter()
            .enumerate()
            .map(|(ix, p)| {
                json!({
                    "messageId": ix + 1,
                    "sku": p.channel_sku,
                    "operationType": "PATCH",
                    "productType": "PRODUCT",
                    "patches": [{ "op": "replace", "path": p.path, "value": p.value }],
                })
            })
            .collect();
        let content =
            json!({ "header": { "sellerId": seller, "version": "2.0", "issueLocale": "en_US" }, "messages": messages });
        self.api.send(Req::put(url, content).header("content-type", content_type), ctx).await?;
        let create = json!({ "feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [marketplace], "inputFeedDocumentId": document_id });
        let created = self.api.send(Req::post("/feeds/2021-06-30/feeds", create), ctx).await?;
        let feed_id = field(&created.body, "/feedId")?;
        tracing::info!(%feed_id, items = patches.len(), "listings feed submitted");
        Ok(PushOutcome { delivered: patches.iter().map(|p| p.channel_sku.to_owned()).collect(), rejected: Vec::new() })
    }

    async fn items(&self, order_id: &str, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = Req::get(self.orders(&format!("orders/{order_id}/orderItems")));
            if let Some(token) = next.take() {
                req = req.query("NextToken", token);
            }
            let body = self.api.send(req, ctx).await?.body;
            items.extend(field(&body, "/payload/OrderItems")?.as_array().cloned().unwrap_or_default());
            match body.pointer("/payload/NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}

/// Listings per `searchListingsItems` page (the documented maximum).
const LISTING_PAGE: &str = "20";

/// One `searchListingsItems` item as a listing: its summary for `marketplace` (ASIN), its offer's price
/// and its `DEFAULT` (merchant-fulfilled) quantity.
fn listing(item: &Value, marketplace: &str, now: DateTime<Utc>) -> Option<Listing> {
    let sku = item.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
    let in_marketplace = |list: &str| {
        item.get(list).and_then(Value::as_array).and_then(|l| {
            l.iter().find(|x| x.get("marketplaceId").and_then(Value::as_str).is_none_or(|m| m == marketplace))
        })
    };
    let offer = in_marketplace("offers");
    let quantity = item
        .get("fulfillmentAvailability")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|f| f.get("fulfillmentChannelCode").and_then(Value::as_str) == Some("DEFAULT")))
        .and_then(|f| f.get("quantity"))
        .and_then(Value::as_i64);
    Some(Listing {
        sku,
        ids: ListingIds {
            product: id_text(in_marketplace("summaries").and_then(|s| s.get("asin"))),
            ..ListingIds::default()
        },
        quantity,
        price: price_of(offer.and_then(|o| o.pointer("/price/amount"))),
        currency: offer
            .and_then(|o| o.pointer("/price/currencyCode"))
            .and_then(Value::as_str)
            .and_then(|c| c.parse().ok()),
        seen_at: now,
    })
}

#[async_trait]
impl ChannelConnector for Amazon {
    fn channel(&self) -> Channel {
        Channel::Amazon
    }

    /// `patchListingsItem` takes one SKU by design; bulk goes through a feed above `feed_threshold`.
    fn max_batch(&self) -> usize {
        1
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let patches = items
            .iter()
            .map(|i| Patch {
                channel_sku: &i.channel_sku,
                path: "/attributes/fulfillment_availability",
                value: json!([{ "fulfillment_channel_code": "DEFAULT", "quantity": i.quantity }]),
            })
            .collect();
        self.apply(patches, ctx).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let patches = items
            .iter()
            .map(|i| Patch {
                channel_sku: &i.channel_sku,
                path: "/attributes/purchasable_offer",
                value: json!([{
                    "marketplace_id": marketplace,
                    "currency": i.currency.as_str(),
                    "our_price": [{ "schedule": [{ "value_with_tax": number(&i.amount) }] }],
                }]),
            })
            .collect();
        self.apply(patches, ctx).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let id = &shipment.channel_order_id;
        let lines: Vec<Value> = if shipment.lines.is_empty() || shipment.lines.iter().any(|l| l.line_id.is_none()) {
            self.items(id, ctx)
                .await?
                .iter()
                .map(|i| json!({ "orderItemId": i.get("OrderItemId"), "quantity": i.get("QuantityOrdered") }))
                .collect()
        } else {
            shipment.lines.iter().map(|l| json!({ "orderItemId": l.line_id, "quantity": l.quantity })).collect()
        };
        let body = json!({
            "marketplaceId": marketplace,
            "packageDetail": {
                "packageReferenceId": shipment.id,
                "carrierCode": shipment.carrier.as_deref().unwrap_or("Other"),
                "trackingNumber": shipment.tracking_number,
                "shipDate": shipment.shipped_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "orderItems": lines,
            },
        });
        self.api.send(Req::post(self.orders(&format!("orders/{id}/shipmentConfirmation")), body), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let body = self.api.send(Req::get(self.orders(&format!("orders/{channel_order_id}"))), ctx).await?.body;
        let order = field(&body, "/payload")?.clone();
        let order_items = self.items(channel_order_id, ctx).await?;
        Ok(json!({ "order": order, "order_items": order_items }))
    }

    /// getOrders, then getOrderItems per order (paced by the limiter: the classic throttling trap).
    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.list_orders_since_unheld(since, &crate::NoneHeld, ctx).await
    }

    /// `getOrders` gives summaries; the items of an order held at its `LastUpdateDate` are not read.
    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn crate::HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = Req::get(self.orders("orders")).query("MarketplaceIds", marketplace.clone());
            req = match next.take() {
                Some(token) => req.query("NextToken", token),
                None => req.query("LastUpdatedAfter", since.to_rfc3339_opts(SecondsFormat::Secs, true)),
            };
            let body = self.api.send(req, ctx).await?.body;
            for order in field(&body, "/payload/Orders")?.as_array().cloned().unwrap_or_default() {
                let Some(id) = order.get("AmazonOrderId").and_then(Value::as_str).map(str::to_owned) else { continue };
                let updated = order.get("LastUpdateDate").and_then(Value::as_str).and_then(|t| t.parse().ok());
                if let Some(updated) = updated
                    && held.holds(&id, updated).await
                {
                    continue;
                }
                let order_items = self.items(&id, ctx).await?;
                out.push(json!({ "order": order, "order_items": order_items }));
            }
            match body.pointer("/payload/NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Orders v0 has no cancel operation; seller cancellations go through an order-acknowledgement
    /// feed, which is not implemented here.
    async fn cancel_order(
        &self,
        _channel_order_id: &str,
        _reason: &str,
        _ctx: &CallContext,
    ) -> Result<(), ConnectorError> {
        Err(ConnectorError::unsupported(Channel::Amazon, "cancel an order through Orders v0"))
    }

    async fn read_stock(
        &self,
        channel_skus: &[String],
        ctx: &CallContext,
    ) -> Result<Vec<(String, i64)>, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let mut out = Vec::new();
        for sku in channel_skus {
            let req = Req::get(format!("/listings/2021-08-01/items/{seller}/{}", encode(sku)))
                .query("marketplaceIds", marketplace.clone())
                .query("includedData", "fulfillmentAvailability");
            let body = self.api.send(req, ctx).await?.body;
            if let Some(q) = body.pointer("/fulfillmentAvailability/0/quantity").and_then(Value::as_i64) {
                out.push((sku.clone(), q));
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let mut req = Req::get(format!("/listings/2021-08-01/items/{}", encode(&seller)))
            .query("marketplaceIds", marketplace.clone())
            .query("includedData", "summaries,offers,fulfillmentAvailability")
            .query("pageSize", LISTING_PAGE);
        if let Some(token) = cursor {
            req = req.query("pageToken", token);
        }
        let body = self.api.send(req, ctx).await?.body;
        let now = Utc::now();
        let listings = field(&body, "/items")?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| listing(i, &marketplace, now))
            .collect();
        let next = body.pointer("/pagination/nextToken").and_then(Value::as_str).filter(|t| !t.is_empty());
        Ok(ListingPage { listings, next: next.map(str::to_owned) })
    }
}
