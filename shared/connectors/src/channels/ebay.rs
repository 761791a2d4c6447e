//! eBay Sell APIs (Inventory v1, Fulfillment v1).
//!
//! - Credentials: `refresh_token`, `client_id`, `client_secret`: the OAuth user token (2 h) is refreshed
//!   by [`crate::token`] and sent as a bearer; a secret holding only `access_token` has it used as stored.
//! - Stock: `POST /sell/inventory/v1/bulk_update_price_quantity`, 25 SKUs per call; the response lists
//!   a status per SKU (`responses[].statusCode`, `errors`), so one bad SKU rejects only itself.
//! - Prices: the same call with `offers: [{offerId, price}]`; `PriceUpdate::channel_item_id` = offer id.
//! - Listings: `GET /sell/inventory/v1/inventory_item` 100 per page (offset, `next`): SKU, EAN and the
//!   ship-to-location quantity; then each SKU's offers (`GET /sell/inventory/v1/offer?sku=`) for the
//!   offer id, the listing id and the price. Item id = the offer id.
//! - Content: `createOrReplaceInventoryItem` (`PUT /sell/inventory/v1/inventory_item/{sku}`) replaces
//!   the whole item (availability, condition, package, product), so each listing's item is read first
//!   (`getInventoryItem`) and put back as read, with only `product.title`, `product.description`,
//!   `product.aspects` (each attribute as `name: [value]`, merged into the aspects the item has, so
//!   aspects set on eBay or by catalog match stay) and `product.imageUrls` (the whole ordered list, at
//!   most 24; eBay fetches each URL) changed: one GET and one PUT per listing. The PUT carries
//!   `Content-Language`: the setting `content_language`, else the item's own `locale` (`en_US` ->
//!   `en-US`), else the marketplace's language. The quantity goes back as read: a stock push landing
//!   between the read and the PUT is overwritten by it (eBay's replace has no version check), until the
//!   next stock push or reconciliation sets it again.
//! - `fetch_order`: the Fulfillment API `Order` (`GET /sell/fulfillment/v1/order/{orderId}`).
//! - Post-Order API v2 (cancellations, returns): the same user token, sent as `Authorization: IAF
//!   {token}` with `X-EBAY-C-MARKETPLACE-ID` (setting `marketplace_id`, default `EBAY_US`), as the
//!   Post-Order "Making a Call" page asks.
//! - Returns: eBay notifies none through the Notification API, so the reconciliation tier sweeps them
//!   (`sweep_returns`): `GET /post-order/v2/return/search` for the returns created in the last
//!   `returns_lookback_days` (setting, default 30), once with `return_state=ALL_OPEN` and once with
//!   `CLOSED` (without it eBay lists open ones only), 200 a page, `offset` = page number from 1 until
//!   `paginationOutput.totalPages`. The `members[]` (`ReturnSummaryType`) are grouped by `orderId`:
//!   `{"order": getOrder, "returns": [members], "kept": [return ids]}`. The resume is `{"seen": {order
//!   id: digest of its members}, "kept": [...]}`: an order whose returns read as last time is neither
//!   fetched nor handed on again, and a return once seen `ITEM_KEPT` (the buyer keeps the goods) is
//!   remembered, because its later `CLOSED` summary no longer says so and must not restock.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{cursor_number, decimal, encode, id_text, missing_item_id, price_of, settle};
use crate::client::{ReturnsSweep, StockRead};
use crate::content::ContentUpdate;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    error::{ConnectorError, class_of_status},
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, batches, field, required},
};
use crate::{
    token::{CLIENT_ID, ClientAuth, Flow, Grant, Lifecycle},
    verify::scheme::Scheme,
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Ebay::new(account, creds, api)),
    // User token (2 h) from the user's refresh token (18 months); the scopes of the original consent.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::RefreshToken,
        endpoint: "/identity/v1/oauth2/token",
        auth: ClientAuth::Basic,
        client_id: CLIENT_ID,
        client_secret: "client_secret",
        scope: None,
    }),
    // ECDSA over the body with a key fetched by id (`crate::verify::ebay`).
    webhooks: Scheme::Ecdsa,
    item_id: |ids| ids.offer.clone(),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: true,
        images: crate::content::ImageFlow::UrlImport,
        key: crate::content::ContentKey::Sku,
        note: None,
    },
};

const MAX_BATCH: usize = 25;
/// Return summaries per search page (the Post-Order search's largest).
const RETURN_PAGE: u32 = 200;
/// How far back eBay lets a return search reach (18 months).
const MAX_RETURNS_LOOKBACK_DAYS: i64 = 540;
const POST_ORDER: &str = "/post-order/v2/";
const DEFAULT_MARKETPLACE: &str = "EBAY_US";
/// Images an item takes (`product.imageUrls`, most categories and marketplaces).
const MAX_IMAGES: usize = 24;
/// Fields `getInventoryItem` answers that `createOrReplaceInventoryItem` does not take.
const READ_ONLY_FIELDS: [&str; 4] = ["sku", "locale", "groupIds", "inventoryItemGroupKeys"];

/// Sell APIs take the user token as a bearer; the Post-Order API takes the same token under the
/// `IAF` scheme and needs the marketplace header.
#[derive(Debug)]
struct EbayDialect {
    marketplace: String,
}

impl Dialect for EbayDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        let token = required(token)?.expose();
        if req.path.starts_with(POST_ORDER) {
            req.headers.push(("authorization", format!("IAF {token}")));
            req.headers.push(("x-ebay-c-marketplace-id", self.marketplace.clone()));
        } else {
            req.headers.push(("authorization", format!("Bearer {token}")));
        }
        Ok(())
    }
}
/// Inventory items per listing page (`getInventoryItems` allows up to 200).
const LISTING_PAGE: u32 = 100;

/// An eBay seller account.
#[derive(Debug)]
pub struct Ebay {
    api: Api,
    batch: usize,
}

impl Ebay {
    pub fn new(_account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let batch = parts.batch(MAX_BATCH);
        let marketplace = parts.settings.get("marketplace_id").map_or(DEFAULT_MARKETPLACE, String::as_str).to_owned();
        Self { api: Api::new(parts, EbayDialect { marketplace }), batch }
    }

    /// Every return summary created since `from` in one `return_state` (`ALL_OPEN`, `CLOSED`).
    async fn search_returns(
        &self,
        state: &str,
        from: DateTime<Utc>,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        let (from, to) = (
            from.to_rfc3339_opts(SecondsFormat::Millis, true),
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let mut members = Vec::new();
        for page in 1_u64.. {
            let req = Req::get(format!("{POST_ORDER}return/search"))
                .query("creation_date_range_from", from.clone())
                .query("creation_date_range_to", to.clone())
                .query("return_state", state)
                .query("limit", RETURN_PAGE.to_string())
                .query("offset", page.to_string());
            let body = self.api.send(req, ctx).await?.body;
            let found = body.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
            let pages = body.pointer("/paginationOutput/totalPages").and_then(Value::as_u64).unwrap_or(1);
            let last = found.is_empty() || page >= pages;
            members.extend(found);
            if last {
                break;
            }
        }
        Ok(members)
    }

    /// `getInventoryItem`, then `createOrReplaceInventoryItem` of the same item with the listing's new
    /// content: the PUT replaces the whole item, so what the content does not change goes back as read.
    async fn replace_content(&self, item: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        if item.text.is_none() && item.images.is_none() {
            return Ok(());
        }
        let path = format!("/sell/inventory/v1/inventory_item/{}", encode(&item.channel_sku));
        let current = self.api.send(Req::get(path.clone()), ctx).await?.body;
        let language = self.content_language(&current);
        if let Some(images) = &item.images
            && images.images.len() > MAX_IMAGES
        {
            tracing::warn!(
                sku = %item.channel_sku,
                images = images.images.len(),
                "eBay takes {MAX_IMAGES} images per item; the rest are not sent"
            );
        }
        let body = replaced_item(current, item)?;
        let reply = self.api.send(Req::put(path, body).header("content-language", language), ctx).await?;
        for warning in reply.body.get("warnings").and_then(Value::as_array).into_iter().flatten() {
            let message = warning.get("message").and_then(Value::as_str).unwrap_or_default();
            tracing::warn!(sku = %item.channel_sku, message, "inventory item replaced with a warning");
        }
        Ok(())
    }

    /// The `Content-Language` of a replaced item: the account's `content_language`, else the language
    /// the item is in (its `locale`), else the marketplace's, so the PUT does not relabel the item.
    fn content_language(&self, item: &Value) -> String {
        let settings = &self.api.parts.settings;
        if let Some(language) = settings.get("content_language").filter(|l| !l.is_empty()) {
            return language.clone();
        }
        if let Some(locale) = item.get("locale").and_then(Value::as_str).filter(|l| !l.is_empty()) {
            return locale.replace('_', "-");
        }
        marketplace_language(settings.get("marketplace_id").map_or(DEFAULT_MARKETPLACE, String::as_str)).to_owned()
    }

    async fn bulk(&self, requests: Vec<(&str, Value)>, ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        for batch in batches(&requests, self.batch) {
            let skus: Vec<&str> = batch.iter().map(|r| r.0).collect();
            let body = json!({ "requests": batch.iter().map(|r| r.1.clone()).collect::<Vec<_>>() });
            let result = self
                .api
                .send(Req::post("/sell/inventory/v1/bulk_update_price_quantity", body), ctx)
                .await
                .map(|r| per_item(&r.body, &skus));
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }
}

/// The main language of an eBay marketplace, as a `Content-Language` value (US English otherwise).
fn marketplace_language(marketplace: &str) -> &'static str {
    match marketplace {
        "EBAY_GB" => "en-GB",
        "EBAY_IE" => "en-IE",
        "EBAY_AU" => "en-AU",
        "EBAY_CA" => "en-CA",
        "EBAY_DE" => "de-DE",
        "EBAY_AT" => "de-AT",
        "EBAY_CH" => "de-CH",
        "EBAY_FR" => "fr-FR",
        "EBAY_IT" => "it-IT",
        "EBAY_ES" => "es-ES",
        "EBAY_NL" => "nl-NL",
        "EBAY_PL" => "pl-PL",
        _ => "en-US",
    }
}

/// `current` (a `getInventoryItem` answer) as `createOrReplaceInventoryItem` takes it, with the
/// listing's content: title, description and aspects as given (aspects merged, each value a
/// one-element list), images as the whole ordered list; everything else as read, read-only fields
/// dropped.
fn replaced_item(mut current: Value, item: &ContentUpdate) -> Result<Value, ConnectorError> {
    let Some(fields) = current.as_object_mut() else {
        return Err(ConnectorError::transient("malformed response: the inventory item is not an object"));
    };
    for field in READ_ONLY_FIELDS {
        fields.remove(field);
    }
    let product = fields.entry("product").or_insert_with(|| json!({}));
    if !product.is_object() {
        *product = json!({});
    }
    if let Some(text) = &item.text {
        if let Some(title) = &text.title {
            product["title"] = json!(title);
        }
        if let Some(description) = &text.description {
            product["description"] = json!(description);
        }
        if !text.attributes.is_empty() {
            let aspects = &mut product["aspects"];
            if !aspects.is_object() {
                *aspects = json!({});
            }
            for (name, value) in &text.attributes {
                aspects[name] = json!([value]);
            }
        }
    }
    if let Some(images) = &item.images {
        product["imageUrls"] = images.images.iter().take(MAX_IMAGES).map(|i| i.url.clone()).collect();
    }
    Ok(current)
}

/// An id eBay sends as a string or a number, as text.
fn id_text_of(v: &Value) -> Option<String> {
    id_text(Some(v))
}

/// `responses[]`: `{sku, statusCode, errors: [{errorId, message}]}` per request.
fn per_item(body: &Value, skus: &[&str]) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    let responses = body.get("responses").and_then(Value::as_array).cloned().unwrap_or_default();
    for sku in skus {
        let response = responses.iter().find(|r| r.get("sku").and_then(Value::as_str) == Some(sku));
        let status = response
            .and_then(|r| r.get("statusCode"))
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200);
        if (200..300).contains(&status) {
            outcome.delivered.push((*sku).to_owned());
        } else {
            let message = response
                .and_then(|r| r.pointer("/errors/0/message"))
                .and_then(Value::as_str)
                .unwrap_or("rejected")
                .to_owned();
            outcome
                .rejected
                .push(((*sku).to_owned(), ConnectorError::new(class_of_status(status), message).with_status(status)));
        }
    }
    outcome
}

#[async_trait]
impl ChannelConnector for Ebay {
    fn channel(&self) -> Channel {
        Channel::Ebay
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let requests = items
            .iter()
            .map(|i| {
                (
                    i.channel_sku.as_str(),
                    json!({ "sku": i.channel_sku, "shipToLocationAvailability": { "quantity": i.quantity } }),
                )
            })
            .collect();
        self.bulk(requests, ctx).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let mut requests = Vec::new();
        for i in items {
            match &i.channel_item_id {
                Some(offer) => requests.push((
                    i.channel_sku.as_str(),
                    json!({ "sku": i.channel_sku, "offers": [{ "offerId": offer, "price": { "value": decimal(&i.amount), "currency": i.currency.as_str() } }] }),
                )),
                None => outcome.rejected.push((i.channel_sku.clone(), missing_item_id(&i.channel_sku, "offer id"))),
            }
        }
        outcome.merge(self.bulk(requests, ctx).await?);
        Ok(outcome)
    }

    /// One read and one replace per listing (see the module docs): a listing eBay refuses (an unknown
    /// SKU, a title too long) is rejected alone; a retryable failure ends the push.
    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.replace_content(item, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let id = &shipment.channel_order_id;
        let lines: Vec<Value> = if shipment.lines.is_empty() || shipment.lines.iter().any(|l| l.line_id.is_none()) {
            let order = self.fetch_order(id, ctx).await?;
            order
                .get("lineItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|l| json!({ "lineItemId": l.get("lineItemId"), "quantity": l.get("quantity") }))
                .collect()
        } else {
            shipment.lines.iter().map(|l| json!({ "lineItemId": l.line_id, "quantity": l.quantity })).collect()
        };
        let body = json!({
            "lineItems": lines,
            "shippedDate": shipment.shipped_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "shippingCarrierCode": shipment.carrier,
            "trackingNumber": shipment.tracking_number,
        });
        self.api
            .send(Req::post(format!("/sell/fulfillment/v1/order/{id}/shipping_fulfillment"), body), ctx)
            .await
            .map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Ok(self.api.send(Req::get(format!("/sell/fulfillment/v1/order/{channel_order_id}")), ctx).await?.body)
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut req = Req::get("/sell/fulfillment/v1/order")
            .query("filter", format!("lastmodifieddate:[{}..]", since.to_rfc3339_opts(SecondsFormat::Millis, true)))
            .query("limit", "200");
        loop {
            let body = self.api.send(req, ctx).await?.body;
            out.extend(field(&body, "/orders")?.as_array().cloned().unwrap_or_default());
            match body.get("next").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => req = Req::get(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Post-Order API seller cancellation (`legacyOrderId` = the order id; shape unverified).
    async fn cancel_order(
        &self,
        channel_order_id: &str,
        _reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let body = json!({ "legacyOrderId": channel_order_id, "cancelReason": "OUT_OF_STOCK_OR_CANNOT_FULFILL" });
        self.api.send(Req::post(format!("{POST_ORDER}cancellation"), body), ctx).await.map(|_| Accepted::Done)
    }

    /// The returns of the lookback window, open and closed, as one document per order whose returns
    /// changed since the last sweep (see the module docs). A return naming no order, or an order eBay
    /// no longer serves, still gets its document (without the order), so ingest quarantines it with the
    /// reason instead of dropping it.
    async fn sweep_returns(&self, resume: Option<&str>, ctx: &CallContext) -> Result<ReturnsSweep, ConnectorError> {
        let state: Value = resume.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        let seen = state.get("seen").and_then(Value::as_object).cloned().unwrap_or_default();
        let kept_before: std::collections::BTreeSet<String> =
            state.get("kept").and_then(Value::as_array).into_iter().flatten().filter_map(id_text_of).collect();
        let from = Utc::now() - super::returns_lookback(&self.api.parts.settings, MAX_RETURNS_LOOKBACK_DAYS)?;
        let mut members = self.search_returns("ALL_OPEN", from, ctx).await?;
        members.extend(self.search_returns("CLOSED", from, ctx).await?);
        let mut by_order: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
        let mut kept = std::collections::BTreeSet::new();
        for member in members {
            let Some(return_id) = id_text_of(member.get("returnId").unwrap_or(&Value::Null)) else { continue };
            if kept_before.contains(&return_id) || member.get("state").and_then(Value::as_str) == Some("ITEM_KEPT") {
                kept.insert(return_id);
            }
            let order = member.get("orderId").and_then(id_text_of).unwrap_or_default();
            by_order.entry(order).or_default().push(member);
        }
        let (changed, digests) = super::changed_returns(by_order, &seen);
        let mut docs = Vec::new();
        for (order_id, returns) in changed {
            let kept_here: Vec<&String> = returns
                .iter()
                .filter_map(|m| m.get("returnId").and_then(id_text_of))
                .filter_map(|id| kept.get(&id))
                .collect();
            let order = if order_id.is_empty() {
                Value::Null
            } else {
                match self.fetch_order(&order_id, ctx).await {
                    Ok(order) => order,
                    Err(e) if !e.is_retryable() => Value::Null,
                    Err(e) => return Err(e),
                }
            };
            docs.push(json!({ "order": order, "order_id": order_id, "returns": returns, "kept": kept_here }));
        }
        Ok(ReturnsSweep { docs, resume: Some(json!({ "seen": digests, "kept": kept }).to_string()) })
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let mut out = Vec::new();
        for chunk in batches(channel_skus, MAX_BATCH) {
            let body = json!({ "requests": chunk.iter().map(|s| json!({ "sku": s })).collect::<Vec<_>>() });
            let reply = self.api.send(Req::post("/sell/inventory/v1/bulk_get_inventory_item", body), ctx).await?;
            for r in reply.body.get("responses").and_then(Value::as_array).into_iter().flatten() {
                let q = r
                    .pointer("/inventoryItem/availability/shipToLocationAvailability/quantity")
                    .and_then(Value::as_i64);
                if let (Some(sku), Some(q)) = (r.get("sku").and_then(Value::as_str), q) {
                    out.push((sku.to_owned(), q));
                }
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let offset = cursor_number(cursor, 0)?;
        let req = Req::get("/sell/inventory/v1/inventory_item")
            .query("limit", LISTING_PAGE.to_string())
            .query("offset", offset.to_string());
        let body = self.api.send(req, ctx).await?.body;
        let items = body.get("inventoryItems").and_then(Value::as_array).cloned().unwrap_or_default();
        let now = Utc::now();
        let mut listings = Vec::new();
        for item in &items {
            let Some(sku) = item.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
            let offers = self.api.send(Req::get("/sell/inventory/v1/offer").query("sku", sku), ctx).await?.body;
            let offer = offers.pointer("/offers/0");
            let price = offer.and_then(|o| o.pointer("/pricingSummary/price"));
            listings.push(Listing {
                sku: sku.to_owned(),
                ids: ListingIds {
                    offer: id_text(offer.and_then(|o| o.get("offerId"))),
                    listing: id_text(offer.and_then(|o| o.pointer("/listing/listingId"))),
                    ean: id_text(item.pointer("/product/ean/0")),
                    ..ListingIds::default()
                },
                quantity: item.pointer("/availability/shipToLocationAvailability/quantity").and_then(Value::as_i64),
                price: price_of(price.and_then(|p| p.get("value"))),
                currency: price.and_then(|p| p.get("currency")).and_then(Value::as_str).and_then(|c| c.parse().ok()),
                seen_at: now,
            });
        }
        let more = body.get("next").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let next = (more && !items.is_empty()).then(|| (offset + u32::try_from(items.len()).unwrap_or(0)).to_string());
        Ok(ListingPage { listings, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{ContentImages, ContentText};
    use crate::error::FailureClass;

    fn content(sku: &str, title: &str, images: usize) -> ContentUpdate {
        let image = |n: usize| manifold_domain::Image {
            url: format!("https://img.example/{n}.png"),
            alt: None,
            checksum: None,
        };
        ContentUpdate {
            sku: manifold_domain::Sku::new(sku).unwrap(),
            channel_sku: sku.to_owned(),
            ids: ListingIds::default(),
            text: Some(ContentText {
                title: Some(title.to_owned()),
                description: None,
                attributes: [("Material".to_owned(), "Stoneware".to_owned())].into_iter().collect(),
            }),
            images: Some(ContentImages { images: (0..images).map(image).collect(), changed: vec![0] }),
        }
    }

    #[test]
    fn a_replaced_item_keeps_what_the_content_does_not_change() {
        let read = json!({
            "sku": "MUG", "locale": "en_US", "groupIds": ["G"], "condition": "NEW",
            "availability": { "shipToLocationAvailability": { "quantity": 7 } },
            "product": { "title": "Old", "description": "<p>Old</p>", "ean": ["4006381333931"],
                         "aspects": { "Brand": ["Acme"], "Material": ["Clay"] }, "imageUrls": ["https://img.example/old.png"] },
        });
        let put = replaced_item(read, &content("MUG", "Mug", 30)).unwrap();
        assert_eq!(put.get("sku"), None, "read-only fields are not sent");
        assert_eq!((put.get("locale"), put.get("groupIds")), (None, None));
        assert_eq!(put["condition"], "NEW");
        assert_eq!(put["availability"]["shipToLocationAvailability"]["quantity"], 7);
        assert_eq!(put["product"]["title"], "Mug");
        assert_eq!(put["product"]["description"], "<p>Old</p>", "no description given: kept");
        assert_eq!(put["product"]["ean"], json!(["4006381333931"]));
        assert_eq!(put["product"]["aspects"], json!({ "Brand": ["Acme"], "Material": ["Stoneware"] }));
        assert_eq!(put["product"]["imageUrls"].as_array().unwrap().len(), MAX_IMAGES);
        assert_eq!(put["product"]["imageUrls"][0], "https://img.example/0.png");
    }

    #[test]
    fn the_content_language_follows_the_marketplace_when_nothing_else_says() {
        assert_eq!(marketplace_language("EBAY_DE"), "de-DE");
        assert_eq!(marketplace_language("A1PA6795UKMFR9"), "en-US");
    }

    /// Against the simulator: each listing on its own (an unknown SKU and an overlong title are
    /// rejected, the other lands), and a content write leaves the quantity as the stock push set it.
    #[tokio::test]
    async fn content_rejects_only_the_listings_ebay_refuses_and_keeps_stock() {
        let sim =
            manifold_simulator::Simulator::start(manifold_simulator::SimConfig::default().unlimited(Channel::Ebay))
                .await
                .unwrap();
        let item = |sku: &str| manifold_simulator::CatalogItem::by_sku(sku, 4);
        sim.seed_catalog(Channel::Ebay, vec![item("A"), item("B")]);
        let account: AccountConfig = serde_json::from_value(json!({
            "channel": "ebay", "account": "a-1", "api_version": "v1", "secret": "s",
            "endpoint": sim.base_url(Channel::Ebay), "rate_limit": { "kind": "unlimited" },
        }))
        .unwrap();
        let http = crate::http_client(std::time::Duration::from_secs(5)).unwrap();
        let ebay = crate::build(&account, [("access_token", "t")].into_iter().collect(), http);
        let ctx = CallContext::new("t");
        let stock = StockUpdate {
            sku: manifold_domain::Sku::new("B").unwrap(),
            channel_sku: "B".into(),
            quantity: 9,
            channel_item_id: None,
        };
        assert_eq!(ebay.push_stock(&[stock], &ctx).await.unwrap().delivered, ["B"]);
        let items = [content("GONE", "Mug", 1), content("A", &"x".repeat(81), 1), content("B", "Mug", 2)];
        let outcome = ebay.push_content(&items, &ctx).await.unwrap();
        assert_eq!(outcome.delivered, ["B"]);
        let rejected: Vec<(&str, FailureClass)> = outcome.rejected.iter().map(|(s, e)| (s.as_str(), e.class)).collect();
        assert_eq!(rejected, [("GONE", FailureClass::Permanent), ("A", FailureClass::Permanent)]);
        assert!(outcome.rejected[0].1.message.contains("25710"), "{}", outcome.rejected[0].1);
        assert!(outcome.rejected[1].1.message.contains("product.title"), "{}", outcome.rejected[1].1);
        let snapshot = sim.snapshot();
        assert_eq!(snapshot.stock[&Channel::Ebay]["B"], 9, "the quantity the stock push set");
        let shown = &snapshot.content[&Channel::Ebay];
        assert_eq!(shown.keys().collect::<Vec<_>>(), ["B"]);
        assert_eq!(shown["B"].attributes["Material"], ["Stoneware"]);
        assert_eq!(ebay.read_stock(&[StockRead::sku("B")], &ctx).await.unwrap(), [("B".to_owned(), 9)]);
    }
}
