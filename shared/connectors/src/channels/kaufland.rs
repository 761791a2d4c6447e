//! Kaufland Global Marketplace, Seller API v2 (`https://sellerapi.kaufland.com/{api_version}`).
//!
//! - Credentials: `client_key` (32 characters) and `secret_key` (64); no access token. Every request
//!   carries `Shop-Client-Key`, `Shop-Timestamp` (Unix seconds) and `Shop-Signature` = lowercase hex
//!   HMAC-SHA256 (key: the secret as text) of `METHOD\nURL\nBODY\nTIMESTAMP`, where URL is the full
//!   absolute URL with its query string and BODY the exact JSON sent (`""` for a GET), as in Kaufland's
//!   official code examples. The URL is built once ([`url::Url`], form-encoded query) and sent as
//!   signed; the body is the same `serde_json` serialization reqwest sends.
//! - Settings: `storefront` (`de`, `cz`, `sk`, `pl`, `at`, `fr`, `it`), whose currency prices are
//!   written in; `callback_url` (the URL push subscriptions were registered with, for
//!   [`verify_notification`]); optional `signature_tolerance_seconds` (default 300, unverified),
//!   `cancel_reason` (overrides the reason mapping below), `batch_size`.
//! - Stock and prices: `POST /units/bulk?storefront=` `[{id_unit, unit_data: {amount | listing_price}}]`,
//!   at most 150 units and no unit twice per call (either fails the whole request); 207 multi-status
//!   `{data: [{id_unit, status_code, message, errors}]}` read per unit. Units are per storefront and
//!   keyed by `id_unit` (the listing's id, from `GET /units` or the configuration's `item_ids`);
//!   prices are integer cents of the storefront's currency (CZK for cz, PLN for pl, EUR otherwise).
//! - Orders: `GET /orders/{id_order}` embeds the units (the normalizer's input, `{data: ...}`). A
//!   notification about a unit names `unit:{id_order_unit}`: `GET /order-units/{id}` gives its order.
//!   `GET /orders?storefront=&ts_units_updated_from_iso=&limit=100&offset=` lists summaries only, so
//!   each listed order is read in full unless already held at its `ts_units_updated_iso`.
//! - Tracking: `PATCH /order-units/{id}/send` `{tracking_numbers: "a,b", carrier_code}` per unit still
//!   to send (the numbers are one comma-separated string). Carrier codes are passed as given (the
//!   list is `GET /carriers`); a code Kaufland does not know comes back as its 400.
//! - Cancellation: `PATCH /order-units/{id}/cancel` `{reason}` for every unit not yet sent, the reason
//!   one of Kaufland's list (more than 1 % seller cancellations a month are charged).
//! - Limits: 111 requests per second per seller across every endpoint, 429 beyond; no allowance or
//!   `Retry-After` header is documented (one is honoured when sent).
//! - Errors: `{type: "/problems/...", message, errors: [{field, message}]}`; the type names the cause
//!   (`/problems/corrupted-signature` and `/problems/invalid-credentials` are 401s).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use manifold_domain::channel::kaufland::CANCEL_REASONS;
use manifold_domain::{Channel, Currency, Shipment, config::AccountConfig};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{id_text, missing_item_id, settle};
use crate::client::StockRead;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, HeldOrders, Listing, ListingIds, ListingPage, PriceUpdate,
        PushOutcome, StockUpdate,
    },
    error::ConnectorError,
    token::{Lifecycle, Token},
    transport::{Api, ApiParts, Dialect, Req, batches, credential, field},
    verify::{
        Headers, Verified, VerifyError,
        scheme::{Scheme, SignedDelivery, header_map},
    },
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Kaufland::new(account, creds, api)),
    // Requests are signed with the seller's keys; there is no token to obtain.
    tokens: Lifecycle::None,
    webhooks: Scheme::Signed(SignedDelivery { verify: verify_notification, sign: sign_notification }),
    item_id: |ids| ids.listing.clone(),
    content: crate::content::ContentSupport {
        note: Some("Kaufland's product data is shared by every seller of the EAN; sellers do not change it per unit"),
        ..crate::content::ContentSupport::NONE
    },
};

/// "SHOULD NOT have more than 150 units"; more fails the whole request.
const MAX_BULK: usize = 150;
const PAGE: usize = 100;
const SHOP_CLIENT_KEY: &str = "Shop-Client-Key";
const SHOP_TIMESTAMP: &str = "Shop-Timestamp";
const SHOP_SIGNATURE: &str = "Shop-Signature";
/// Unverified (a secondary source, and the rule of METRO's clone of this API): ±5 minutes.
const DEFAULT_TOLERANCE_SECONDS: i64 = 300;
/// Units that can still be sent or cancelled.
const UNSENT: &[&str] = &["open", "need_to_be_sent"];
/// Lowercase hex HMAC-SHA256 of `METHOD\nURL\nBODY\nTIMESTAMP` with the secret key as text.
pub(crate) fn signature(secret: &str, method: &str, url: &str, body: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    for part in [method.as_bytes(), b"\n", url.as_bytes(), b"\n", body, b"\n", timestamp.to_string().as_bytes()] {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn callback_url(settings: &BTreeMap<String, String>) -> Result<&str, VerifyError> {
    settings
        .get("callback_url")
        .map(String::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(VerifyError::Unconfigured("callback_url"))
}

/// A push notification: `Shop-Timestamp` within the tolerance and `Shop-Signature` the request
/// signature of `POST` to the registered `callback_url` with this body (unverified: "the same function
/// that you use to sign your API requests", by a secondary source), with the seller's `secret_key`.
fn verify_notification(
    headers: Headers<'_>,
    body: &[u8],
    creds: &Credentials,
    settings: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Verified, VerifyError> {
    let secret = creds
        .get("secret_key")
        .or_else(|| creds.get("webhook_secret"))
        .ok_or(VerifyError::Unconfigured("secret_key"))?;
    let url = callback_url(settings)?;
    let timestamp: i64 = headers
        .require(SHOP_TIMESTAMP)?
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed(format!("`{SHOP_TIMESTAMP}` is not Unix seconds")))?;
    let tolerance = settings
        .get("signature_tolerance_seconds")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    let skew_seconds = now.timestamp().saturating_sub(timestamp);
    if skew_seconds.unsigned_abs() > tolerance.unsigned_abs() {
        return Err(VerifyError::Expired { skew_seconds });
    }
    let sent = hex::decode(headers.require(SHOP_SIGNATURE)?.trim())
        .map_err(|_| VerifyError::Malformed(format!("`{SHOP_SIGNATURE}` is not hex")))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| VerifyError::Unconfigured("secret_key"))?;
    for part in [b"POST".as_slice(), b"\n", url.as_bytes(), b"\n", body, b"\n", timestamp.to_string().as_bytes()] {
        mac.update(part);
    }
    mac.verify_slice(&sent).map_err(|_| VerifyError::Mismatch)?;
    Ok(Verified::Authentic)
}

/// The headers of a notification as [`verify_notification`] checks them (the simulator, the demo, tests).
fn sign_notification(
    secret: &str,
    settings: &BTreeMap<String, String>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<HeaderMap, VerifyError> {
    let timestamp = now.timestamp();
    let url = callback_url(settings)?;
    header_map([
        (SHOP_TIMESTAMP, timestamp.to_string()),
        (SHOP_SIGNATURE, signature(secret, "POST", url, body, timestamp)),
    ])
}

/// Signs every request with the seller's keys.
#[derive(Debug)]
struct KauflandDialect {
    base: String,
    creds: Credentials,
}

impl Dialect for KauflandDialect {
    fn authorize(&self, req: &mut Req, _token: Option<&Token>) -> Result<(), ConnectorError> {
        let client_key = credential(&self.creds, "client_key")?;
        let secret = credential(&self.creds, "secret_key")?;
        let absolute = if req.path.starts_with("http://") || req.path.starts_with("https://") {
            req.path.clone()
        } else {
            format!("{}{}", self.base, req.path)
        };
        let url = url::Url::parse_with_params(&absolute, &req.query)
            .map_err(|e| ConnectorError::permanent(format!("{absolute} is not a URL: {e}")))?;
        // The URL is sent exactly as signed: its query is in it now.
        let url = url.as_str().trim_end_matches('?').to_owned();
        req.query.clear();
        let body = match &req.body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ConnectorError::permanent(format!("unsendable body: {e}")))?,
            None => Vec::new(),
        };
        let timestamp = Utc::now().timestamp();
        let signed = signature(&secret, req.method.as_str(), &url, &body, timestamp);
        req.path = url;
        req.headers.push(("accept", "application/json".to_owned()));
        req.headers.push((SHOP_CLIENT_KEY, client_key));
        req.headers.push((SHOP_TIMESTAMP, timestamp.to_string()));
        req.headers.push((SHOP_SIGNATURE, signed));
        Ok(())
    }
}

/// A Kaufland seller on one storefront.
#[derive(Debug)]
pub struct Kaufland {
    api: Api,
    batch: usize,
}

impl Kaufland {
    pub fn new(_account: &AccountConfig, creds: &Credentials, parts: ApiParts) -> Self {
        let batch = parts.batch(MAX_BULK);
        let base = format!("{}/{}", parts.base, parts.api_version);
        Self { api: Api::new(parts, KauflandDialect { base, creds: creds.clone() }), batch }
    }

    fn storefront(&self) -> Result<&str, ConnectorError> {
        self.api.parts.setting("storefront")
    }

    /// The currency the storefront's prices are written in.
    fn currency(&self) -> Result<Currency, ConnectorError> {
        let code = match self.storefront()? {
            "cz" => "CZK",
            "pl" => "PLN",
            _ => "EUR",
        };
        Currency::new(code).map_err(|e| ConnectorError::permanent(e.to_string()))
    }

    /// Writes `unit_data` to each unit in bulk: at most [`MAX_BULK`] per call and never one unit twice
    /// (the last write of a unit wins), each unit's 207 entry read on its own.
    async fn bulk(
        &self,
        writes: Vec<(String, String, Value)>,
        outcome: &mut PushOutcome,
        ctx: &CallContext,
    ) -> Result<(), ConnectorError> {
        let mut last: Vec<(String, String, Value)> = Vec::with_capacity(writes.len());
        for (sku, unit, data) in writes {
            if let Some(i) = last.iter().position(|(_, u, _)| *u == unit) {
                let (superseded, _, _) = last.remove(i);
                outcome.delivered.push(superseded);
            }
            last.push((sku, unit, data));
        }
        for batch in batches(&last, self.batch) {
            let body: Vec<Value> = batch
                .iter()
                .map(|(_, unit, data)| json!({ "id_unit": unit.parse::<u64>().map_or_else(|_| json!(unit), |n| json!(n)), "unit_data": data }))
                .collect();
            let skus: Vec<&str> = batch.iter().map(|(sku, _, _)| sku.as_str()).collect();
            let req = Req::post("/units/bulk", Value::Array(body)).query("storefront", self.storefront()?);
            let result = self.api.send(req, ctx).await.map(|reply| per_unit(&reply.body, batch));
            settle(outcome, &skus, result)?;
        }
        Ok(())
    }

    async fn get(&self, path: String, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Ok(self.api.send(Req::get(path), ctx).await?.body)
    }

    /// The units of an order that are still to be sent, with their offer.
    async fn unsent_units(
        &self,
        order_id: &str,
        ctx: &CallContext,
    ) -> Result<Vec<(String, Option<String>)>, ConnectorError> {
        let order = self.fetch_order(order_id, ctx).await?;
        let units = field(&order, "/data/order_units")?.as_array().cloned().unwrap_or_default();
        Ok(units
            .iter()
            .filter(|u| u.get("status").and_then(Value::as_str).is_some_and(|s| UNSENT.contains(&s)))
            .filter_map(|u| Some((id_text(u.get("id_order_unit"))?, id_text(u.get("id_offer")))))
            .collect())
    }
}

/// The 207 answer of a bulk write, per unit: a 2xx `status_code` is delivered, anything else rejected
/// with Kaufland's message; a unit the answer does not mention was not written (transient, so the job
/// is retried rather than counted as done).
fn per_unit(body: &Value, batch: &[(String, String, Value)]) -> PushOutcome {
    let entries = body.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut outcome = PushOutcome::default();
    for (sku, unit, _) in batch {
        let entry = entries.iter().find(|e| id_text(e.get("id_unit")).as_deref() == Some(unit.as_str()));
        let status = entry.and_then(|e| e.get("status_code")).and_then(Value::as_f64);
        match (entry, status) {
            (Some(_), Some(s)) if (200.0..300.0).contains(&s) => outcome.delivered.push(sku.clone()),
            (Some(e), _) => {
                let why = e.get("message").and_then(Value::as_str).unwrap_or("rejected by Kaufland");
                let details = e.get("errors").map(Value::to_string).unwrap_or_default();
                outcome
                    .rejected
                    .push((sku.clone(), ConnectorError::permanent(format!("unit {unit}: {why} {details}"))));
            }
            (None, _) => outcome
                .rejected
                .push((sku.clone(), ConnectorError::transient(format!("unit {unit} is missing from the bulk answer")))),
        }
    }
    outcome
}

/// Kaufland's reason for a cancellation we make: stock first (the usual cause), the configured one if set.
fn cancel_reason(reason: &str, configured: Option<&str>) -> Result<&'static str, ConnectorError> {
    if let Some(c) = configured {
        return CANCEL_REASONS.iter().copied().find(|r| *r == c).ok_or_else(|| {
            ConnectorError::permanent(format!(
                "cancel_reason {c:?} is not one of Kaufland's: {}",
                CANCEL_REASONS.join(", ")
            ))
        });
    }
    let r = reason.to_ascii_lowercase();
    Ok(if r.contains("stock") || r.contains("inventory") || r.contains("oversold") {
        "NoInventory"
    } else if r.contains("price") {
        "WrongPrice"
    } else if r.contains("buyer") || r.contains("customer") {
        "BuyerCancelled"
    } else {
        "GeneralAdjustment"
    })
}

#[async_trait]
impl ChannelConnector for Kaufland {
    fn channel(&self) -> Channel {
        Channel::Kaufland
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let mut writes = Vec::with_capacity(items.len());
        for i in items {
            match &i.channel_item_id {
                Some(unit) => writes.push((i.channel_sku.clone(), unit.clone(), json!({ "amount": i.quantity }))),
                None => outcome.rejected.push((i.channel_sku.clone(), missing_item_id(&i.channel_sku, "id_unit"))),
            }
        }
        self.bulk(writes, &mut outcome, ctx).await?;
        Ok(outcome)
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let currency = self.currency()?;
        let mut outcome = PushOutcome::default();
        let mut writes = Vec::with_capacity(items.len());
        for i in items {
            let cents = (i.amount.value() * rust_decimal::Decimal::ONE_HUNDRED).trunc();
            let cents = i64::try_from(cents).ok().filter(|c| *c > 0);
            match (&i.channel_item_id, cents) {
                (None, _) => outcome.rejected.push((i.channel_sku.clone(), missing_item_id(&i.channel_sku, "id_unit"))),
                _ if i.currency != currency => outcome.rejected.push((
                    i.channel_sku.clone(),
                    ConnectorError::permanent(format!(
                        "{}: the {} storefront takes prices in {currency}, not {}",
                        i.channel_sku,
                        self.storefront()?,
                        i.currency
                    )),
                )),
                (Some(_), None) => outcome.rejected.push((
                    i.channel_sku.clone(),
                    ConnectorError::permanent(format!("{}: a listing price must be above zero", i.channel_sku)),
                )),
                (Some(unit), Some(cents)) => {
                    writes.push((i.channel_sku.clone(), unit.clone(), json!({ "listing_price": cents })));
                }
            }
        }
        self.bulk(writes, &mut outcome, ctx).await?;
        Ok(outcome)
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let carrier = shipment
            .carrier
            .clone()
            .ok_or_else(|| ConnectorError::permanent("Kaufland needs a carrier code to mark units sent"))?;
        let mut units = self.unsent_units(&shipment.channel_order_id, ctx).await?;
        // Units of the shipment's lines (by offer, as many as each line ships); all unsent units when
        // the shipment names no lines.
        let mut chosen = Vec::new();
        if shipment.lines.iter().any(|l| l.line_id.is_some()) {
            for line in &shipment.lines {
                let Some(offer) = line.line_id.as_deref().map(|l| l.split(':').next().unwrap_or(l)) else { continue };
                for _ in 0..line.quantity {
                    if let Some(i) = units.iter().position(|(_, o)| o.as_deref() == Some(offer)) {
                        chosen.push(units.remove(i).0);
                    }
                }
            }
        } else {
            chosen = units.into_iter().map(|(u, _)| u).collect();
        }
        if chosen.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "order {} has no unit left to send for this shipment",
                shipment.channel_order_id
            )));
        }
        let body = json!({ "tracking_numbers": shipment.tracking_number.clone().unwrap_or_default(), "carrier_code": carrier });
        for unit in chosen {
            self.api.send(Req::patch(format!("/order-units/{unit}/send"), body.clone()), ctx).await?;
        }
        Ok(())
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let order_id = match channel_order_id.strip_prefix("unit:") {
            Some(unit) => {
                let unit = self.get(format!("/order-units/{unit}"), ctx).await?;
                id_text(Some(field(&unit, "/data/id_order")?))
                    .ok_or_else(|| ConnectorError::transient("malformed response: no `/data/id_order`"))?
            }
            None => channel_order_id.to_owned(),
        };
        self.get(format!("/orders/{order_id}"), ctx).await
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.list_orders_since_unheld(since, &crate::NoneHeld, ctx).await
    }

    /// The list is summaries (`id_order`, `ts_units_updated_iso`): an order held at its listed update
    /// is not read again. Offset pages can shift while walked; the sweeps' overlapping windows and the
    /// ingest's idempotency absorb it.
    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let req = Req::get("/orders")
                .query("storefront", self.storefront()?)
                .query("ts_units_updated_from_iso", since.to_rfc3339_opts(SecondsFormat::Secs, true))
                .query("limit", PAGE.to_string())
                .query("offset", offset.to_string());
            let body = self.api.send(req, ctx).await?.body;
            let listed = field(&body, "/data")?.as_array().cloned().unwrap_or_default();
            for summary in &listed {
                let Some(id) = id_text(summary.get("id_order")) else { continue };
                let updated = summary
                    .get("ts_units_updated_iso")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if let Some(updated) = updated
                    && held.holds(&id, updated).await
                {
                    continue;
                }
                out.push(self.fetch_order(&id, ctx).await?);
            }
            let total = body.pointer("/pagination/total").and_then(Value::as_u64).unwrap_or(0);
            offset += listed.len();
            if listed.is_empty() || offset as u64 >= total {
                return Ok(out);
            }
        }
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let reason = cancel_reason(reason, self.api.parts.settings.get("cancel_reason").map(String::as_str))?;
        let units = self.unsent_units(channel_order_id, ctx).await?;
        if units.is_empty() {
            return Err(ConnectorError::permanent(format!("order {channel_order_id} has no unit left to cancel")));
        }
        for (unit, _) in units {
            self.api.send(Req::patch(format!("/order-units/{unit}/cancel"), json!({ "reason": reason })), ctx).await?;
        }
        Ok(Accepted::Done)
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let mut out = Vec::new();
        for sku in channel_skus {
            let req = Req::get("/units").query("storefront", self.storefront()?).query("id_offer", sku.as_str());
            let body = self.api.send(req, ctx).await?.body;
            let amount: i64 = field(&body, "/data")?
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.get("amount").and_then(Value::as_i64))
                .sum();
            out.push((sku.clone(), amount));
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let offset = super::cursor_number(cursor, 0)? as usize;
        let req = Req::get("/units")
            .query("storefront", self.storefront()?)
            .query("limit", PAGE.to_string())
            .query("offset", offset.to_string())
            .query("embedded", "product");
        let body = self.api.send(req, ctx).await?.body;
        let units = field(&body, "/data")?.as_array().cloned().unwrap_or_default();
        let now = Utc::now();
        let listings = units
            .iter()
            .filter_map(|u| {
                let sku = id_text(u.get("id_offer"))?;
                Some(Listing {
                    sku,
                    ids: ListingIds {
                        listing: id_text(u.get("id_unit")),
                        product: id_text(u.get("id_product")),
                        ean: u.pointer("/product/eans/0").and_then(|e| id_text(Some(e))),
                        ..ListingIds::default()
                    },
                    quantity: u.get("amount").and_then(Value::as_i64),
                    price: u.get("listing_price").and_then(Value::as_i64).map(|c| rust_decimal::Decimal::new(c, 2)),
                    currency: self.currency().ok(),
                    seen_at: now,
                })
            })
            .collect();
        let total = body.pointer("/pagination/total").and_then(Value::as_u64).unwrap_or(0);
        let next = offset + units.len();
        Ok(ListingPage { listings, next: (!units.is_empty() && (next as u64) < total).then(|| next.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently: `printf 'GET\nhttps://sellerapi.kaufland.com/v2/units/?storefront=de\n\n1411055926'
    /// | openssl dgst -sha256 -hmac 'b3575f222f7b768c25160b879699118b331c0883e26a03d46f23ab4e7e1b9cf1'`.
    #[test]
    fn the_signature_is_hex_hmac_over_method_url_body_and_timestamp() {
        let secret = "b3575f222f7b768c25160b879699118b331c0883e26a03d46f23ab4e7e1b9cf1";
        let got =
            signature(secret, "GET", "https://sellerapi.kaufland.com/v2/units/?storefront=de", b"", 1_411_055_926);
        assert_eq!(got, EXPECTED_GET);
        assert_eq!(got, got.to_ascii_lowercase());
        assert_ne!(
            signature(secret, "POST", "https://sellerapi.kaufland.com/v2/units/?storefront=de", b"", 1_411_055_926),
            got
        );
    }

    const EXPECTED_GET: &str = "95036198f3a6a270826e8bc34ad3fab859136b09567d5c4605258e4104661bbd";

    #[test]
    fn cancellation_reasons_come_from_kauflands_list() {
        assert_eq!(cancel_reason("out of stock", None).unwrap(), "NoInventory");
        assert_eq!(cancel_reason("buyer asked", None).unwrap(), "BuyerCancelled");
        assert_eq!(cancel_reason("other", None).unwrap(), "GeneralAdjustment");
        assert_eq!(cancel_reason("out of stock", Some("DelayedInventory")).unwrap(), "DelayedInventory");
        assert!(cancel_reason("x", Some("Because")).is_err());
    }

    #[test]
    fn a_bulk_answer_is_read_per_unit() {
        let batch = vec![
            ("A".to_owned(), "11".to_owned(), json!({})),
            ("B".to_owned(), "12".to_owned(), json!({})),
            ("C".to_owned(), "13".to_owned(), json!({})),
        ];
        let body = json!({ "data": [
            { "id_unit": 11, "status_code": 200 },
            { "id_unit": 12, "status_code": 404, "message": "unit not found", "errors": [] },
        ] });
        let outcome = per_unit(&body, &batch);
        assert_eq!(outcome.delivered, ["A"]);
        assert_eq!(outcome.rejected.len(), 2);
        assert!(!outcome.rejected[0].1.is_retryable() && outcome.rejected[0].1.to_string().contains("unit not found"));
        assert!(outcome.rejected[1].1.is_retryable(), "a unit missing from the answer is retried");
    }
}
