//! Zalando zDirect (merchant API).
//!
//! - Credentials: `client_id`, `client_secret`: a client-credentials bearer token from [`crate::token`]
//!   (or a stored `access_token`).
//! - Settings: `sales_channel_id`; `merchant_id` (defaults to the account id).
//! - Stock: `POST /merchants/{merchant_id}/stocks` `{items: [{sales_channel_id, ean, quantity}]}`, at most
//!   1000 items per call; `channel_sku` is the EAN. Per-item results are read from `results[]` when the
//!   response carries them (the exact result shape is unverified: see [`per_item`]).
//! - Listings: Zalando keys articles by EAN and documents no catalog read for partner-fulfilled stock;
//!   this reads the stock resource back (`GET /merchants/{merchant_id}/stocks?sales_channel_id=`,
//!   `{items: [{ean, sales_channel_id, quantity}], links.next}`, 1000 per page): an assumption,
//!   unverified, isolated in `list_listings`. The listing's SKU is the EAN, as for stock writes.
//! - Prices: `POST /merchants/{merchant_id}/prices` (shape unverified, isolated in `push_prices`).
//! - Orders are JSON:API (`application/vnd.api+json`), polled with `exported=false` and marked
//!   `exported: true` by `acknowledge_order`. `fetch_order`: `{"data": order, "included": [items, lines]}`.
//! - Limits: requests per minute (configured fixed window); 429 with `Retry-After`.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{id_text, number, settle};
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    error::ConnectorError,
    transport::{Api, ApiParts, Bearer, Req, batches, field},
};
use crate::{
    token::{CLIENT_ID, ClientAuth, Flow, Grant, Lifecycle},
    verify::scheme::Scheme,
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Zalando::new(account, creds, api)),
    // zDirect: client credentials (unverified: path and Basic client authentication from the partner
    // portal's examples).
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::ClientCredentials,
        endpoint: "/auth/token",
        auth: ClientAuth::Basic,
        client_id: CLIENT_ID,
        client_secret: "client_secret",
        scope: None,
    }),
    // Orders are polled.
    webhooks: Scheme::NoWebhooks,
    // Keyed by EAN, which is its channel SKU.
    item_id: |_| None,
};

const MAX_STOCK_BATCH: usize = 1000;
const JSON_API: &str = "application/vnd.api+json";
const INCLUDE: &str = "order_items,order_lines";

/// A Zalando merchant.
#[derive(Debug)]
pub struct Zalando {
    api: Api,
    merchant: String,
    batch: usize,
}

impl Zalando {
    pub fn new(account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let merchant = parts.settings.get("merchant_id").cloned().unwrap_or_else(|| account.account.to_string());
        let batch = parts.batch(MAX_STOCK_BATCH);
        Self { api: Api::new(parts, Bearer), merchant, batch }
    }

    fn path(&self, rest: &str) -> String {
        format!("/merchants/{}/{rest}", self.merchant)
    }

    fn json_api(req: Req) -> Req {
        req.header("accept", JSON_API).header("content-type", JSON_API)
    }

    async fn patch_order(&self, order_id: &str, attributes: Value, ctx: &CallContext) -> Result<(), ConnectorError> {
        let body = json!({ "data": { "id": order_id, "type": "Order", "attributes": attributes } });
        self.api.send(Self::json_api(Req::patch(self.path(&format!("orders/{order_id}")), body)), ctx).await.map(drop)
    }

    /// Sets the status of every line of the order (or of the lines named in `only`).
    async fn set_line_status(
        &self,
        order_id: &str,
        status: &str,
        only: &[String],
        ctx: &CallContext,
    ) -> Result<(), ConnectorError> {
        let doc = self.fetch_order(order_id, ctx).await?;
        let included = doc.get("included").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut lines = 0;
        for item in included.iter().filter(|r| r.get("type").and_then(Value::as_str) == Some("OrderItem")) {
            let item_id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            let line_ids =
                item.pointer("/relationships/order_lines/data").and_then(Value::as_array).cloned().unwrap_or_default();
            for line in line_ids.iter().filter_map(|l| l.get("id").and_then(Value::as_str)) {
                if !only.is_empty() && !only.iter().any(|o| o == line) {
                    continue;
                }
                let body = json!({ "data": { "id": line, "type": "OrderLine", "attributes": { "status": status } } });
                let path = self.path(&format!("orders/{order_id}/items/{item_id}/lines/{line}"));
                self.api.send(Self::json_api(Req::patch(path, body)), ctx).await?;
                lines += 1;
            }
        }
        if lines == 0 {
            return Err(ConnectorError::permanent(format!("order {order_id} has no matching order lines")));
        }
        Ok(())
    }
}

/// Per-item results, when present: entries in request order with `status` `accepted` / `rejected`.
fn per_item(body: &Value, skus: &[&str]) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    let results = body.get("results").and_then(Value::as_array);
    for (ix, sku) in skus.iter().enumerate() {
        let result = results.and_then(|r| r.get(ix));
        let status = result.and_then(|r| r.get("status")).and_then(Value::as_str).map(str::to_ascii_lowercase);
        match status.as_deref() {
            Some("rejected" | "failed" | "error") => {
                let why = result.and_then(|r| r.get("description")).and_then(Value::as_str).unwrap_or("rejected");
                outcome.rejected.push(((*sku).to_owned(), ConnectorError::permanent(why)));
            }
            _ => outcome.delivered.push((*sku).to_owned()),
        }
    }
    outcome
}

/// Splits a JSON:API list document into one document per order, each with its own items and lines.
fn split_orders(doc: &Value) -> Vec<Value> {
    let included = doc.get("included").and_then(Value::as_array).cloned().unwrap_or_default();
    let find = |ty: &str, id: &str| {
        included
            .iter()
            .find(|r| {
                r.get("type").and_then(Value::as_str) == Some(ty) && r.get("id").and_then(Value::as_str) == Some(id)
            })
            .cloned()
    };
    let ids = |r: &Value, rel: &str| -> Vec<String> {
        r.pointer(&format!("/relationships/{rel}/data"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    doc.get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|order| {
            let mut own = Vec::new();
            for item_id in ids(order, "order_items") {
                if let Some(item) = find("OrderItem", &item_id) {
                    let lines = ids(&item, "order_lines");
                    own.push(item);
                    for line_id in lines {
                        own.extend(find("OrderLine", &line_id));
                    }
                }
            }
            json!({ "data": order, "included": own })
        })
        .collect()
}

#[async_trait]
impl ChannelConnector for Zalando {
    fn channel(&self) -> Channel {
        Channel::Zalando
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let sales_channel = self.api.parts.setting("sales_channel_id")?.to_owned();
        let mut outcome = PushOutcome::default();
        for batch in batches(items, self.batch) {
            let body = json!({
                "items": batch.iter().map(|i| json!({ "sales_channel_id": sales_channel, "ean": i.channel_sku, "quantity": i.quantity })).collect::<Vec<_>>(),
            });
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result =
                self.api.send(Req::post(self.path("stocks"), body), ctx).await.map(|r| per_item(&r.body, &skus));
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let sales_channel = self.api.parts.setting("sales_channel_id")?.to_owned();
        let mut outcome = PushOutcome::default();
        for batch in batches(items, self.batch) {
            let body = json!({
                "product_prices": batch.iter().map(|i| json!({
                    "ean": i.channel_sku,
                    "sales_channel_id": sales_channel,
                    "regular_price": { "amount": number(&i.amount), "currency": i.currency.as_str() },
                })).collect::<Vec<_>>(),
            });
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result =
                self.api.send(Req::post(self.path("prices"), body), ctx).await.map(|r| per_item(&r.body, &skus));
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let id = &shipment.channel_order_id;
        self.patch_order(id, json!({ "tracking_number": shipment.tracking_number }), ctx).await?;
        let only: Vec<String> = shipment.lines.iter().filter_map(|l| l.line_id.clone()).collect();
        self.set_line_status(id, "shipped", &only, ctx).await
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let req = Self::json_api(Req::get(self.path(&format!("orders/{channel_order_id}"))).query("include", INCLUDE));
        Ok(self.api.send(req, ctx).await?.body)
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut req = Self::json_api(Req::get(self.path("orders")))
            .query("exported", "false")
            .query("include", INCLUDE)
            .query("last_updated_after", since.to_rfc3339_opts(SecondsFormat::Secs, true))
            .query("page[size]", "50");
        loop {
            let body = self.api.send(req, ctx).await?.body;
            field(&body, "/data")?;
            out.extend(split_orders(&body));
            match body.pointer("/links/next").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => req = Self::json_api(Req::get(next.to_owned())),
                _ => return Ok(out),
            }
        }
    }

    async fn acknowledge_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Accepted, ConnectorError> {
        self.patch_order(channel_order_id, json!({ "exported": true }), ctx).await.map(|()| Accepted::Done)
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        _reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        self.set_line_status(channel_order_id, "canceled", &[], ctx).await.map(|()| Accepted::Done)
    }

    async fn read_stock(
        &self,
        _channel_skus: &[String],
        _ctx: &CallContext,
    ) -> Result<Vec<(String, i64)>, ConnectorError> {
        Err(ConnectorError::unsupported(Channel::Zalando, "read stock back"))
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let req = match cursor {
            Some(next) => Req::get(next.to_owned()),
            None => Req::get(self.path("stocks"))
                .query("sales_channel_id", self.api.parts.setting("sales_channel_id")?)
                .query("page[size]", MAX_STOCK_BATCH.to_string()),
        };
        let body = self.api.send(req, ctx).await?.body;
        let now = Utc::now();
        let listings = field(&body, "/items")?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let ean = id_text(i.get("ean"))?;
                Some(Listing {
                    sku: ean.clone(),
                    ids: ListingIds { ean: Some(ean), ..ListingIds::default() },
                    quantity: i.get("quantity").and_then(Value::as_i64),
                    price: None,
                    currency: None,
                    seen_at: now,
                })
            })
            .collect();
        let next = body.pointer("/links/next").and_then(Value::as_str).filter(|n| !n.is_empty());
        Ok(ListingPage { listings, next: next.map(str::to_owned) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_documents_split_per_order_with_their_items_and_lines() {
        let doc = json!({
            "data": [
                { "id": "o1", "type": "Order", "relationships": { "order_items": { "data": [{ "id": "i1", "type": "OrderItem" }] } } },
                { "id": "o2", "type": "Order", "relationships": { "order_items": { "data": [{ "id": "i2", "type": "OrderItem" }] } } }
            ],
            "included": [
                { "id": "i1", "type": "OrderItem", "relationships": { "order_lines": { "data": [{ "id": "l1", "type": "OrderLine" }] } } },
                { "id": "l1", "type": "OrderLine" },
                { "id": "i2", "type": "OrderItem", "relationships": { "order_lines": { "data": [] } } }
            ]
        });
        let split = split_orders(&doc);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0]["included"].as_array().unwrap().len(), 2);
        assert_eq!(split[1]["included"].as_array().unwrap().len(), 1);
        assert_eq!(split[1]["data"]["id"], "o2");
    }
}
