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
//! - Orders are JSON:API (`application/vnd.api+json`): new ones polled with `exported=false`
//!   (`list_unexported_orders`) and marked `exported: true` by `acknowledge_order`; changes to any
//!   order (lines returned or canceled after the export) listed by `last_updated_after`
//!   (`list_orders_since`, the reconciliation tier's poll). `fetch_order`: `{"data": order, "included": [items, lines]}`.
//! - Limits: requests per minute (configured fixed window); 429 with `Retry-After`.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{id_text, number, settle};
use crate::client::StockRead;
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
    content: crate::content::ContentSupport {
        note: Some("Zalando takes product content through its onboarding (product submission), not per listing"),
        ..crate::content::ContentSupport::NONE
    },
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

    /// Every page of an orders list, each order as `fetch_order` answers it.
    async fn all_orders(&self, mut req: Req, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
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

    async fn patch_order(&self, order_id: &str, attributes: Value, ctx: &CallContext) -> Result<(), ConnectorError> {
        let body = json!({ "data": { "id": order_id, "type": "Order", "attributes": attributes } });
        self.api.send(Self::json_api(Req::patch(self.path(&format!("orders/{order_id}")), body)), ctx).await.map(drop)
    }

    /// Sets the status of every order line (Zalando's unit) of the order, or of the units `only`
    /// names (see [`units_named`]).
    async fn set_line_status(
        &self,
        order_id: &str,
        status: &str,
        only: &[(String, u32)],
        ctx: &CallContext,
    ) -> Result<(), ConnectorError> {
        let doc = self.fetch_order(order_id, ctx).await?;
        let units = units(&doc);
        let chosen = if only.is_empty() { units.iter().collect() } else { units_named(&units, only) };
        if chosen.is_empty() {
            return Err(ConnectorError::permanent(format!("order {order_id} has no matching order lines")));
        }
        for unit in chosen {
            let (item, line) = (&unit.item, &unit.line);
            let body = json!({ "data": { "id": line, "type": "OrderLine", "attributes": { "status": status } } });
            let path = self.path(&format!("orders/{order_id}/items/{item}/lines/{line}"));
            self.api.send(Self::json_api(Req::patch(path, body)), ctx).await?;
        }
        Ok(())
    }
}

/// One order line of an order: Zalando's unit of one article, in its order item.
#[derive(Debug, Clone, PartialEq)]
struct Unit {
    item: String,
    line: String,
    status: String,
    price: Value,
}

/// Every unit of a [`ChannelConnector::fetch_order`] document, in item and line order.
fn units(doc: &Value) -> Vec<Unit> {
    let included = doc.get("included").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let of_type = |ty: &'static str| included.iter().filter(move |r| r.get("type").and_then(Value::as_str) == Some(ty));
    let mut out = Vec::new();
    for item in of_type("OrderItem") {
        let item_id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        let line_ids = item.pointer("/relationships/order_lines/data").and_then(Value::as_array).into_iter().flatten();
        for line_id in line_ids.filter_map(|l| l.get("id").and_then(Value::as_str)) {
            let line = of_type("OrderLine").find(|l| l.get("id").and_then(Value::as_str) == Some(line_id));
            let attr = |k: &str| line.and_then(|l| l.pointer(&format!("/attributes/{k}"))).cloned().unwrap_or_default();
            out.push(Unit {
                item: item_id.to_owned(),
                line: line_id.to_owned(),
                status: attr("status").as_str().unwrap_or_default().to_owned(),
                price: attr("price"),
            });
        }
    }
    out
}

/// The units a shipment's lines name, each `(line id, quantity)`. A canonical line id is what the
/// normalizer made of an order item: the item id, or `{item}:{first line}` where the item's units
/// sell at several prices (then only the units at that line's price). It names `quantity` of those
/// units not yet shipped, canceled or returned. An order line's own id names that unit.
fn units_named<'a>(units: &'a [Unit], only: &[(String, u32)]) -> Vec<&'a Unit> {
    let mut chosen: Vec<&Unit> = Vec::new();
    for (id, quantity) in only {
        if let Some(unit) = units.iter().find(|u| u.line == *id) {
            if !chosen.contains(&unit) {
                chosen.push(unit);
            }
            continue;
        }
        let (item, first) = id.split_once(':').map_or((id.as_str(), None), |(i, f)| (i, Some(f)));
        let price = first.and_then(|f| units.iter().find(|u| u.item == item && u.line == f)).map(|u| &u.price);
        let open: Vec<&Unit> = units
            .iter()
            .filter(|u| u.item == item && price.is_none_or(|p| u.price == *p))
            .filter(|u| !matches!(u.status.as_str(), "shipped" | "canceled" | "returned"))
            .filter(|u| !chosen.contains(u))
            .take(usize::try_from(*quantity).unwrap_or(usize::MAX))
            .collect();
        chosen.extend(open);
    }
    chosen
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
        let only: Vec<(String, u32)> =
            shipment.lines.iter().filter_map(|l| l.line_id.clone().map(|id| (id, l.quantity))).collect();
        self.set_line_status(id, "shipped", &only, ctx).await
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let req = Self::json_api(Req::get(self.path(&format!("orders/{channel_order_id}"))).query("include", INCLUDE));
        Ok(self.api.send(req, ctx).await?.body)
    }

    /// Every order changed at or after `since`, exported or not (sweeps; line changes such as
    /// returns and cancellations of orders already taken over).
    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let req = Self::json_api(Req::get(self.path("orders")))
            .query("include", INCLUDE)
            .query("last_updated_after", since.to_rfc3339_opts(SecondsFormat::Secs, true))
            .query("page[size]", "50");
        self.all_orders(req, ctx).await
    }

    /// The orders not yet marked exported: new orders, however old.
    async fn list_unexported_orders(&self, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let req = Self::json_api(Req::get(self.path("orders")))
            .query("exported", "false")
            .query("include", INCLUDE)
            .query("page[size]", "50");
        self.all_orders(req, ctx).await
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

    async fn read_stock(&self, _items: &[StockRead], _ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
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

    #[test]
    fn shipment_lines_name_units_by_the_canonical_line_or_the_order_line() {
        let line = |id: &str, status: &str, amount: f64| json!({ "id": id, "type": "OrderLine", "attributes": { "status": status, "price": { "amount": amount, "currency": "EUR" } } });
        let item = |id: &str, lines: &[&str]| {
            let data: Vec<Value> = lines.iter().map(|l| json!({ "id": l, "type": "OrderLine" })).collect();
            json!({ "id": id, "type": "OrderItem", "relationships": { "order_lines": { "data": data } } })
        };
        let doc = json!({ "data": { "id": "o1", "type": "Order" }, "included": [
            item("i1", &["l1", "l2", "l3"]), item("i2", &["l4", "l5", "l6"]),
            line("l1", "shipped", 10.0), line("l2", "accepted", 10.0), line("l3", "accepted", 10.0),
            line("l4", "accepted", 20.0), line("l5", "accepted", 15.0), line("l6", "accepted", 15.0),
        ] });
        let units = units(&doc);
        let named = |only: &[(&str, u32)]| {
            let only: Vec<(String, u32)> = only.iter().map(|(i, q)| ((*i).to_owned(), *q)).collect();
            units_named(&units, &only).into_iter().map(|u| u.line.as_str()).collect::<Vec<_>>()
        };
        // One unit of item i1 is shipped already: the next open ones go.
        assert_eq!(named(&[("i1", 1)]), ["l2"]);
        assert_eq!(named(&[("i1", 5)]), ["l2", "l3"]);
        // Split prices: `item:first line` names units at that line's price only.
        assert_eq!(named(&[("i2:l5", 2)]), ["l5", "l6"]);
        assert_eq!(named(&[("i2:l4", 2)]), ["l4"]);
        // An order line's own id, and nothing twice.
        assert_eq!(named(&[("l3", 1), ("i1", 2)]), ["l3", "l2"]);
        assert!(named(&[("unknown", 1)]).is_empty());
    }
}
