//! OTTO Market (api.otto.market), one seller's own app.
//!
//! Verified from OTTO's own texts (its 2024 developer guide and its OpenAPI, as copied into public
//! generated clients; not checked against the live API):
//! - Credentials: `client_id`, `client_secret` of the app created in OTTO Partner Connect: an OAuth 2
//!   client-credentials token from `POST {endpoint}/v1/token` (form: `client_id`, `client_secret`,
//!   `grant_type=client_credentials`, `scope` space separated), living 30 minutes; [`crate::token`]
//!   replaces it a minute before it expires.
//! - Orders (v4; the account's `api_version` names the version): `GET /v4/orders/{salesOrderId}`;
//!   `GET /v4/orders?fromDate=&limit=128`, the earliest change date included, then `links[rel=next]`
//!   followed by passing its `nextcursor` alone (with `limit`): with a cursor OTTO ignores every other
//!   filter. OTTO pushes nothing; the scheduler's orders tier calls [`Otto::list_orders_since`].
//! - Stock: `POST /v1/availability/quantities` `[{sku, quantity}]`, answered 200, or 207 multi-status
//!   `{results, errors}` (the SKUs in `results` were taken), or 413 when the payload is too large (a
//!   permanent failure of the batch). Keyed by the seller's SKU (no item id).
//! - Prices: `POST /{products_version}/products/prices` `[{sku, standardPrice: {amount, currency:
//!   "EUR"}}]`, at most 500 per call, EUR only, at most two decimals. Asynchronous: the answer is a
//!   process `{state, pingAfter, links}`, polled at its `self` link
//!   (`/v4/products/update-tasks/{processUuid}`) until `done`, then its `failed` results name the
//!   refused SKUs. A process still pending after [`PRICE_POLLS`] polls is a transient failure, so the
//!   queue retries (OTTO answers a resent unchanged price as "unchanged").
//! - Shipments: `POST /v1/shipments` `{trackingKey: {carrier, trackingNumber}, shipDate, shipFromAddress:
//!   {city, countryCode (alpha-3), zipCode}, positionItems: [{positionItemId, salesOrderId}]}`, the
//!   carrier one of [`CARRIERS`]; the position items are read from the order (PROCESSABLE ones only).
//! - Cancellation: `POST /v4/orders/{salesOrderId}/cancellation` cancels the PROCESSABLE items; 409
//!   when none can be, a permanent failure carrying OTTO's text.
//! - Reads: `GET /v1/availability/quantities?limit=200&page=` (listings, `{resources: {variations:
//!   [{sku, quantity}]}, links}`) and `GET /v1/availability/quantities/{sku}` (stock reads).
//! - Errors: `{errors: [{path, title, code, detail, logref}]}` (an object on some shipment errors)
//!   become the failure's message; the class is the status's (429 throttled with `Retry-After`, 401/403
//!   auth, 5xx transient, other 4xx permanent).
//!
//! Unverified, and therefore settings or configuration rather than code:
//! - the scope names (setting `scope`, default [`DEFAULT_SCOPE`]: OTTO's 2024 list has `quantities`,
//!   public clients ask for `availability`);
//! - the stock batch size (200, the read side's page size; lowered with the `batch_size` setting);
//! - whether Products v4 or v5 is live (setting `products_version`, default `v4`);
//! - the rate limit (20 requests/s in the 2024 guide: the account's `rate_limit`);
//! - how a 207 error names its SKU (see [`quantities_outcome`]).
//!
//! Not sent: a shipment's `returnTrackingKey`. OTTO requires one for products created with
//! `deliveryType=PARCEL`; the canonical shipment carries no return tracking number yet, so such a
//! shipment is refused by OTTO (a permanent failure with OTTO's text).

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use http::Method;
use manifold_domain::channel::otto::CARRIERS;
use manifold_domain::{Channel, Shipment, ShipmentLine, config::AccountConfig};
use serde_json::{Value, json};

use super::{cursor_number, encode, id_text, number, settle};
use crate::client::StockRead;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    error::ConnectorError,
    token::{CLIENT_ID, ClientAuth, Flow, Grant, Lifecycle},
    transport::{Api, ApiParts, Bearer, Reply, Req, batches},
    verify::scheme::Scheme,
};

/// The scopes asked for when the account's `scope` setting names none (unverified names).
pub const DEFAULT_SCOPE: &str = "orders shipments availability products";

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Otto::new(account, creds, api)),
    // A seller's own app: client credentials, the secret in the form body, 30-minute tokens.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::ClientCredentials,
        endpoint: "/v1/token",
        auth: ClientAuth::SecretInBody,
        client_id: CLIENT_ID,
        client_secret: "client_secret",
        scope: Some(DEFAULT_SCOPE),
    }),
    // Orders are polled.
    webhooks: Scheme::NoWebhooks,
    // Stock and prices are keyed by the seller's SKU.
    item_id: |_| None,
    content: crate::content::ContentSupport {
        note: Some(
            "OTTO's product API replaces whole product variations (category, brand, attributes), not content alone",
        ),
        ..crate::content::ContentSupport::NONE
    },
};

/// Stock updates per call (unverified: the read side pages by 200 and public clients send 200).
const MAX_STOCK_BATCH: usize = 200;
/// Price updates per call (documented).
const MAX_PRICE_BATCH: usize = 500;
/// Orders per list page (documented default and maximum).
const ORDER_PAGE: usize = 128;
/// Quantities per availability page (documented maximum).
const LISTING_PAGE: usize = 200;
/// How often a price process is read before the push gives up for now.
pub const PRICE_POLLS: u32 = 5;
/// The longest wait between two reads of a price process, whatever its `pingAfter` says.
const MAX_PING_WAIT: Duration = Duration::from_secs(2);
/// The wait when a pending process gives no `pingAfter`.
const DEFAULT_PING_WAIT: Duration = Duration::from_millis(500);

/// Other spellings a WMS uses for OTTO's parcel carriers (after upper-casing, separators as `_`).
const CARRIER_ALIASES: &[(&str, &str)] = &[
    ("DHL_PAKET", "DHL"),
    ("DEUTSCHE_POST", "DHL"),
    ("DHL_PARCEL", "DHL"),
    ("HERMES_GERMANY", "HERMES"),
    ("KUEHNE_UND_NAGEL", "KUEHNE_NAGEL"),
    ("SCHENKER", "DB_SCHENKER"),
];

/// An OTTO Market seller.
#[derive(Debug)]
pub struct Otto {
    api: Api,
    /// For the SKU map: a shipment names master SKUs, OTTO's items carry channel SKUs.
    account: AccountConfig,
    stock_batch: usize,
}

impl Otto {
    pub fn new(account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let stock_batch = parts.batch(MAX_STOCK_BATCH);
        Self { api: Api::new(parts, Bearer), account: account.clone(), stock_batch }
    }

    /// Sends `req`; a refusal carries OTTO's error text.
    async fn send(&self, req: Req, ctx: &CallContext) -> Result<Reply, ConnectorError> {
        self.api.send(req, ctx).await.map_err(described)
    }

    /// A path of the Orders API, at the account's pinned version.
    fn orders(&self, rest: &str) -> String {
        format!("/{}/orders{rest}", self.api.parts.api_version)
    }

    /// A path of the Products API, at the `products_version` setting (default `v4`).
    fn products(&self, rest: &str) -> Result<String, ConnectorError> {
        let version = self.api.parts.settings.get("products_version").map_or("v4", String::as_str);
        let valid = version.strip_prefix('v').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            return Err(ConnectorError::permanent(format!(
                "setting `products_version` {version:?} is not a version such as \"v4\""
            )));
        }
        Ok(format!("/{version}/products{rest}"))
    }

    /// The `shipFromAddress` of shipments, from the account's settings.
    fn ship_from(&self) -> Result<Value, ConnectorError> {
        let parts = &self.api.parts;
        let country = parts.setting("ship_from_country")?.trim().to_ascii_uppercase();
        if country.len() != 3 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ConnectorError::permanent(format!(
                "setting `ship_from_country` {country:?} must be an ISO 3166-1 alpha-3 code such as \"DEU\""
            )));
        }
        Ok(json!({
            "city": parts.setting("ship_from_city")?,
            "countryCode": country,
            "zipCode": parts.setting("ship_from_zip_code")?,
        }))
    }

    /// One price call: the process it starts, read until done, then its failed SKUs rejected.
    async fn update_prices(
        &self,
        body: Value,
        skus: &[&str],
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let mut process = self.send(Req::post(self.products("/prices")?, body), ctx).await?.body;
        let this = link(&process, "self")
            .ok_or_else(|| ConnectorError::transient("malformed response: the price process has no `self` link"))?;
        let mut polls = 0;
        while !is_done(&process) {
            if polls == PRICE_POLLS {
                return Err(ConnectorError::transient(format!(
                    "price update process {this} is still {} after {PRICE_POLLS} reads: retried later",
                    process.get("state").and_then(Value::as_str).unwrap_or("pending")
                )));
            }
            tokio::time::sleep(ping_wait(&process, Utc::now())).await;
            process = self.send(Req::get(this.clone()), ctx).await?.body;
            polls += 1;
        }
        let mut refused: Vec<(String, String)> = Vec::new();
        if process.get("failed").and_then(Value::as_u64) != Some(0) {
            let failed = link(&process, "failed").unwrap_or_else(|| format!("{this}/failed"));
            let body = self.send(Req::get(failed), ctx).await?.body;
            for r in body.get("results").and_then(Value::as_array).into_iter().flatten() {
                let Some(sku) = id_text(r.get("variation")) else { continue };
                let why = r.get("errors").and_then(error_text).unwrap_or_else(|| "refused by OTTO".to_owned());
                refused.push((sku, why));
            }
        }
        let mut outcome = PushOutcome::default();
        for sku in skus {
            match refused.iter().find(|(s, _)| s == sku) {
                Some((_, why)) => outcome.rejected.push(((*sku).to_owned(), ConnectorError::permanent(why.clone()))),
                None => outcome.delivered.push((*sku).to_owned()),
            }
        }
        Ok(outcome)
    }
}

/// A refusal whose body is OTTO's error document, with that document's text as the message.
fn described(mut e: ConnectorError) -> ConnectorError {
    if let Some(text) =
        serde_json::from_str::<Value>(&e.message).ok().as_ref().and_then(|b| b.get("errors")).and_then(error_text)
    {
        e.message = text;
    }
    if e.status == Some(413) {
        e.message = format!("payload too large (lower the `batch_size` setting): {}", e.message);
    }
    e
}

/// A non-blank string member of an error.
fn text<'a>(e: &'a Value, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// `title: detail (path)` of each error, joined; `errors` is a list, or one object on some endpoints.
fn error_text(errors: &Value) -> Option<String> {
    let list: Vec<&Value> = match errors {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![errors],
        _ => return None,
    };
    let parts: Vec<String> = list
        .iter()
        .filter_map(|e| {
            let head = match (text(e, "title"), text(e, "detail")) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (t, d) => t.or(d)?.to_owned(),
            };
            Some(match text(e, "path").or_else(|| text(e, "jsonPath")) {
                Some(p) => format!("{head} ({p})"),
                None => head,
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The `href` of a `links[]` entry with `rel`.
fn link(body: &Value, rel: &str) -> Option<String> {
    body.get("links")?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some(rel))?
        .get("href")?
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// The `nextcursor` of a list's `next` link: the only thing a next request passes (with `limit`).
fn next_cursor(body: &Value) -> Result<Option<String>, ConnectorError> {
    let Some(href) = link(body, "next") else { return Ok(None) };
    let url = reqwest::Url::parse("https://api.otto.market/")
        .and_then(|base| base.join(&href))
        .map_err(|e| ConnectorError::transient(format!("malformed next link {href:?}")).with_source(e))?;
    url.query_pairs()
        .find(|(k, _)| k == "nextcursor")
        .map(|(_, v)| Some(v.into_owned()))
        .ok_or_else(|| ConnectorError::transient(format!("malformed response: next link {href:?} has no nextcursor")))
}

fn is_done(process: &Value) -> bool {
    process.get("state").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("done"))
}

/// How long to wait before reading a pending process again: until its `pingAfter`, at most
/// [`MAX_PING_WAIT`].
fn ping_wait(process: &Value, now: DateTime<Utc>) -> Duration {
    let Some(at) = process.get("pingAfter").and_then(Value::as_str) else { return DEFAULT_PING_WAIT };
    DateTime::parse_from_rfc3339(at)
        .map_or(DEFAULT_PING_WAIT, |at| (at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
        .min(MAX_PING_WAIT)
}

/// What a stock call's answer says of each SKU. 200: every SKU was taken. 207: the SKUs in `results`
/// were taken; each other one was refused with the errors that name it (an error's `detail`, `title` or
/// `path` containing the SKU: how OTTO names the SKU of an error is unverified), else every error's
/// text.
fn quantities_outcome(status: u16, body: &Value, skus: &[&str]) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    if status != 207 {
        outcome.delivered.extend(skus.iter().map(|s| (*s).to_owned()));
        return outcome;
    }
    let taken: BTreeSet<String> = body
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| id_text(r.get("sku")))
        .collect();
    let errors: Vec<&Value> = body.get("errors").and_then(Value::as_array).into_iter().flatten().collect();
    for sku in skus {
        if taken.contains(*sku) {
            outcome.delivered.push((*sku).to_owned());
            continue;
        }
        let naming: Vec<Value> = errors
            .iter()
            .filter(|e| {
                ["detail", "title", "path"]
                    .iter()
                    .any(|k| e.get(*k).and_then(Value::as_str).is_some_and(|v| v.contains(sku)))
            })
            .map(|e| (*e).clone())
            .collect();
        let why = error_text(&Value::Array(naming))
            .or_else(|| error_text(&Value::Array(errors.iter().map(|e| (*e).clone()).collect())))
            .unwrap_or_else(|| "not among the SKUs OTTO took (207 multi-status)".to_owned());
        outcome.rejected.push(((*sku).to_owned(), ConnectorError::permanent(why)));
    }
    outcome
}

/// OTTO's code for a carrier name: one of [`CARRIERS`] (case, spaces and dashes aside) or a known
/// alias; anything else is a permanent failure naming the accepted codes.
fn carrier_code(raw: Option<&str>) -> Result<&'static str, ConnectorError> {
    let accepted = || CARRIERS.join(", ");
    let raw = raw.map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
        ConnectorError::permanent(format!("OTTO needs the shipment's carrier, one of {}", accepted()))
    })?;
    let mut key = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_uppercase());
        } else if !key.ends_with('_') {
            key.push('_');
        }
    }
    let key = key.trim_matches('_');
    CARRIERS
        .iter()
        .copied()
        .find(|c| *c == key)
        .or_else(|| CARRIER_ALIASES.iter().find(|(alias, _)| *alias == key).map(|(_, c)| *c))
        .ok_or_else(|| ConnectorError::permanent(format!("carrier {raw:?} is not one OTTO takes: {}", accepted())))
}

/// One position item of an order, as far as a shipment needs it.
struct Unit<'a> {
    id: &'a str,
    status: &'a str,
    sku: Option<&'a str>,
    tracking: Option<&'a str>,
}

/// Which position items a shipment ships.
#[derive(Debug, PartialEq, Eq)]
enum Selection {
    /// These PROCESSABLE items.
    Items(Vec<String>),
    /// Every unit it names is already SENT under this tracking number (a repeated push).
    AlreadySent,
}

/// The PROCESSABLE position items `shipment` ships: each line's units, named by the line id's position
/// item ids (the normalizer's lines keep them all) or else by SKU; every PROCESSABLE unit when the
/// shipment names no line. Units already SENT under the same tracking number count as shipped.
fn select_units(order: &Value, shipment: &Shipment, account: &AccountConfig) -> Result<Selection, ConnectorError> {
    let units: Vec<Unit<'_>> = order
        .get("positionItems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| {
            Some(Unit {
                id: u.get("positionItemId")?.as_str()?,
                status: u.get("fulfillmentStatus").and_then(Value::as_str).unwrap_or_default(),
                sku: u.pointer("/product/sku").and_then(Value::as_str),
                tracking: u.pointer("/trackingInfo/trackingNumber").and_then(Value::as_str),
            })
        })
        .collect();
    let order_id = &shipment.channel_order_id;
    let tracking = shipment.tracking_number.as_deref();
    let open = |u: &Unit<'_>| u.status == "PROCESSABLE";
    let sent = |u: &Unit<'_>| u.status == "SENT" && tracking.is_some() && u.tracking == tracking;
    let (mut chosen, mut already): (Vec<String>, usize) = (Vec::new(), 0);
    if shipment.lines.is_empty() {
        chosen = units.iter().filter(|u| open(u)).map(|u| u.id.to_owned()).collect();
        already = units.iter().filter(|u| sent(u)).count();
    }
    for line in shipment.lines.iter().filter(|l| l.quantity > 0) {
        let of_line = line_units(line, &units, account)
            .ok_or_else(|| ConnectorError::permanent(format!("order {order_id}: a shipment line names no unit")))?;
        let wanted = line.quantity as usize;
        let free: Vec<&Unit<'_>> =
            units.iter().filter(|u| of_line.contains(u) && open(u) && !chosen.iter().any(|c| c == u.id)).collect();
        let done = units.iter().filter(|u| of_line.contains(u) && sent(u)).count().min(wanted);
        if free.len() + done < wanted {
            return Err(ConnectorError::permanent(format!(
                "order {order_id}: the shipment ships {wanted} unit(s) of {} but only {} are PROCESSABLE on OTTO",
                line.line_id.as_deref().or(line.sku.as_ref().map(manifold_domain::Sku::as_str)).unwrap_or("a line"),
                free.len()
            )));
        }
        chosen.extend(free.iter().take(wanted - done).map(|u| u.id.to_owned()));
        already += done;
    }
    match (chosen.is_empty(), already) {
        (false, _) => Ok(Selection::Items(chosen)),
        (true, 0) => {
            Err(ConnectorError::permanent(format!("order {order_id} has no PROCESSABLE position item to ship")))
        }
        (true, _) => Ok(Selection::AlreadySent),
    }
}

/// Which units a shipment line names: position item ids (its line id, as the normalizer wrote it), or
/// a SKU (the master SKU and this account's channel SKU for it).
enum LineUnits<'a> {
    Ids(Vec<&'a str>),
    Sku(&'a str, String),
}

impl LineUnits<'_> {
    fn contains(&self, unit: &Unit<'_>) -> bool {
        match self {
            LineUnits::Ids(ids) => ids.contains(&unit.id),
            LineUnits::Sku(master, channel) => unit.sku.is_some_and(|s| s == channel || s == *master),
        }
    }
}

/// The units `line` names: by the line id's position item ids when one of them is in the order, else
/// by the line's SKU. `None`: the line names no unit.
fn line_units<'a>(line: &'a ShipmentLine, units: &[Unit<'_>], account: &AccountConfig) -> Option<LineUnits<'a>> {
    if let Some(ids) = line.line_id.as_deref() {
        let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
        if units.iter().any(|u| ids.contains(&u.id)) {
            return Some(LineUnits::Ids(ids));
        }
    }
    let sku = line.sku.as_ref()?;
    Some(LineUnits::Sku(sku.as_str(), account.channel_sku_for(sku)))
}

#[async_trait]
impl ChannelConnector for Otto {
    fn channel(&self) -> Channel {
        Channel::Otto
    }

    fn max_batch(&self) -> usize {
        self.stock_batch
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        for batch in batches(items, self.stock_batch) {
            let body: Vec<Value> =
                batch.iter().map(|i| json!({ "sku": i.channel_sku, "quantity": i.quantity })).collect();
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result = self
                .send(Req::post("/v1/availability/quantities", Value::Array(body)), ctx)
                .await
                .map(|r| quantities_outcome(r.status, &r.body, &skus));
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let (eur, other): (Vec<&PriceUpdate>, Vec<&PriceUpdate>) =
            items.iter().partition(|i| i.currency.as_str() == "EUR" && i.amount.value().normalize().scale() <= 2);
        for i in other {
            let why = if i.currency.as_str() == "EUR" {
                format!("OTTO takes prices with at most two decimals, not {}", i.amount)
            } else {
                format!("OTTO takes prices in EUR only; {} is priced in {}", i.channel_sku, i.currency)
            };
            outcome.rejected.push((i.channel_sku.clone(), ConnectorError::permanent(why)));
        }
        for batch in batches(&eur, MAX_PRICE_BATCH) {
            let body: Vec<Value> = batch
                .iter()
                .map(|i| json!({ "sku": i.channel_sku, "standardPrice": { "amount": number(&i.amount), "currency": "EUR" } }))
                .collect();
            let skus: Vec<&str> = batch.iter().map(|i| i.channel_sku.as_str()).collect();
            let result = self.update_prices(Value::Array(body), &skus, ctx).await;
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let carrier = carrier_code(shipment.carrier.as_deref())?;
        let tracking = shipment
            .tracking_number
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConnectorError::permanent("OTTO needs the shipment's tracking number"))?;
        let ship_from = self.ship_from()?;
        let order = self.fetch_order(&shipment.channel_order_id, ctx).await?;
        let ids = match select_units(&order, shipment, &self.account)? {
            Selection::Items(ids) => ids,
            Selection::AlreadySent => return Ok(()),
        };
        let body = json!({
            "trackingKey": { "carrier": carrier, "trackingNumber": tracking },
            "shipDate": shipment.shipped_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "shipFromAddress": ship_from,
            "positionItems": ids.iter().map(|id| json!({ "positionItemId": id, "salesOrderId": shipment.channel_order_id })).collect::<Vec<_>>(),
        });
        self.send(Req::post("/v1/shipments", body), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Ok(self.send(Req::get(self.orders(&format!("/{}", encode(channel_order_id)))), ctx).await?.body)
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut cursors = BTreeSet::new();
        // `fromDate` is the earliest change date returned: the bound is included.
        let mut req = Req::get(self.orders(""))
            .query("fromDate", since.to_rfc3339_opts(SecondsFormat::Millis, true))
            .query("limit", ORDER_PAGE.to_string());
        loop {
            let body = self.send(req, ctx).await?.body;
            out.extend(body.get("resources").and_then(Value::as_array).into_iter().flatten().cloned());
            match next_cursor(&body)? {
                None => return Ok(out),
                Some(cursor) if !cursors.insert(cursor.clone()) => {
                    return Err(ConnectorError::transient(format!("OTTO served the order cursor {cursor:?} twice")));
                }
                Some(cursor) => {
                    req = Req::get(self.orders("")).query("nextcursor", cursor).query("limit", ORDER_PAGE.to_string());
                }
            }
        }
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        _reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let path = self.orders(&format!("/{}/cancellation", encode(channel_order_id)));
        self.send(Req::new(Method::POST, path), ctx).await.map(|_| Accepted::Done)
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let mut out = Vec::new();
        for sku in channel_skus {
            let req = Req::get(format!("/v1/availability/quantities/{}", encode(sku)));
            match self.send(req, ctx).await {
                Ok(reply) => {
                    if let Some(q) = reply.body.get("quantity").and_then(Value::as_i64) {
                        out.push((sku.clone(), q));
                    }
                }
                // A SKU OTTO holds no quantity for shows nothing.
                Err(e) if e.status == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let page = cursor_number(cursor, 0)?;
        let req = Req::get("/v1/availability/quantities")
            .query("limit", LISTING_PAGE.to_string())
            .query("page", page.to_string());
        let body = self.send(req, ctx).await?.body;
        let now = Utc::now();
        let listings: Vec<Listing> = body
            .pointer("/resources/variations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some(Listing {
                    sku: id_text(v.get("sku"))?,
                    ids: ListingIds::default(),
                    quantity: v.get("quantity").and_then(Value::as_i64),
                    price: None,
                    currency: None,
                    seen_at: now,
                })
            })
            .collect();
        let next = (!listings.is_empty() && link(&body, "next").is_some()).then(|| (page + 1).to_string());
        Ok(ListingPage { listings, next })
    }
}

#[cfg(test)]
mod tests {
    use manifold_domain::{AccountId, OrderId, Sku};

    use super::*;

    fn shipment(lines: Vec<ShipmentLine>) -> Shipment {
        Shipment {
            id: "wms-1".into(),
            order_id: OrderId::new("otto:acct:SO-1").unwrap(),
            channel: Channel::Otto,
            account: AccountId::new("acct").unwrap(),
            channel_order_id: "SO-1".into(),
            carrier: Some("DHL".into()),
            tracking_number: Some("00340434161094042557".into()),
            tracking_url: None,
            lines,
            shipped_at: Utc::now(),
        }
    }

    fn line(line_id: Option<&str>, sku: Option<&str>, quantity: u32) -> ShipmentLine {
        ShipmentLine { line_id: line_id.map(str::to_owned), sku: sku.map(|s| Sku::new(s).unwrap()), quantity }
    }

    fn account() -> AccountConfig {
        serde_json::from_value(json!({
            "channel": "otto", "account": "acct", "api_version": "v4", "secret": "s",
            "endpoint": "https://api.otto.market", "rate_limit": { "kind": "unlimited" },
            "sku_map": { "OTTO-TEE": "TEE" },
        }))
        .unwrap()
    }

    fn order() -> Value {
        let unit = |id: &str, status: &str, sku: &str| json!({ "positionItemId": id, "fulfillmentStatus": status, "product": { "sku": sku } });
        json!({ "salesOrderId": "SO-1", "positionItems": [
            unit("p1", "PROCESSABLE", "OTTO-TEE"),
            unit("p2", "PROCESSABLE", "OTTO-TEE"),
            unit("p3", "PROCESSABLE", "MUG"),
            unit("p4", "CANCELLED_BY_PARTNER", "MUG"),
            unit("p5", "ANNOUNCED", "CAP"),
        ] })
    }

    fn items(s: Selection) -> Vec<String> {
        match s {
            Selection::Items(ids) => ids,
            Selection::AlreadySent => panic!("nothing selected"),
        }
    }

    #[test]
    fn a_shipment_ships_the_units_its_lines_name_by_id_or_by_mapped_sku() {
        let acct = account();
        // By the line id the normalizer gave (every unit's id), one unit of it.
        let got = select_units(&order(), &shipment(vec![line(Some("p1,p2"), Some("TEE"), 1)]), &acct).unwrap();
        assert_eq!(items(got), ["p1"]);
        // By master SKU, mapped to the channel SKU; the cancelled mug is never shipped.
        let got =
            select_units(&order(), &shipment(vec![line(None, Some("TEE"), 2), line(None, Some("MUG"), 1)]), &acct);
        assert_eq!(items(got.unwrap()), ["p1", "p2", "p3"]);
        // No lines: every PROCESSABLE unit (not the ANNOUNCED cap, not the cancelled mug).
        assert_eq!(items(select_units(&order(), &shipment(vec![]), &acct).unwrap()), ["p1", "p2", "p3"]);
    }

    #[test]
    fn more_units_than_are_processable_is_a_permanent_failure() {
        let err = select_units(&order(), &shipment(vec![line(None, Some("CAP"), 1)]), &account()).unwrap_err();
        assert_eq!(err.class, crate::error::FailureClass::Permanent);
        assert!(err.message.contains("only 0 are PROCESSABLE"), "{err}");
        let err = select_units(&order(), &shipment(vec![line(None, Some("MUG"), 2)]), &account()).unwrap_err();
        assert!(err.message.contains("only 1 are PROCESSABLE"), "{err}");
    }

    #[test]
    fn a_repeated_shipment_of_units_already_sent_under_its_tracking_is_done() {
        let mut o = order();
        for u in o["positionItems"].as_array_mut().unwrap().iter_mut().take(2) {
            u["fulfillmentStatus"] = json!("SENT");
            u["trackingInfo"] = json!({ "carrier": "DHL", "trackingNumber": "00340434161094042557" });
        }
        let got = select_units(&o, &shipment(vec![line(Some("p1,p2"), None, 2)]), &account()).unwrap();
        assert_eq!(got, Selection::AlreadySent);
        // Sent under another tracking number: not this shipment's, so nothing is left to ship.
        o["positionItems"][0]["trackingInfo"]["trackingNumber"] = json!("other");
        assert!(select_units(&o, &shipment(vec![line(Some("p1,p2"), None, 2)]), &account()).is_err());
    }

    #[test]
    fn carriers_map_to_otto_codes_and_unknown_ones_name_the_list() {
        assert_eq!(carrier_code(Some("dhl express")).unwrap(), "DHL_EXPRESS");
        assert_eq!(carrier_code(Some("DHL-Paket")).unwrap(), "DHL");
        assert_eq!(carrier_code(Some(" Hermes ")).unwrap(), "HERMES");
        assert_eq!(carrier_code(Some("Kuehne + Nagel")).unwrap(), "KUEHNE_NAGEL");
        let err = carrier_code(Some("Pigeon Post")).unwrap_err();
        assert_eq!(err.class, crate::error::FailureClass::Permanent);
        assert!(err.message.contains("Pigeon Post") && err.message.contains("DHL_EXPRESS, DHL_FREIGHT"), "{err}");
        assert!(carrier_code(None).is_err());
    }

    #[test]
    fn a_multi_status_answer_takes_the_listed_skus_and_refuses_the_others_with_their_error() {
        let body = json!({
            "results": [{ "sku": "A", "quantity": 3 }],
            "errors": [
                { "code": 404, "title": "unknown sku", "detail": "SKU B is not known", "path": "/v1/availability/quantities", "logref": "x" },
                { "code": 404, "title": "unknown sku", "detail": "SKU C is not known", "path": "/v1/availability/quantities", "logref": "y" }
            ]
        });
        let outcome = quantities_outcome(207, &body, &["A", "B", "C"]);
        assert_eq!(outcome.delivered, ["A"]);
        let rejected: Vec<(&str, &str)> =
            outcome.rejected.iter().map(|(s, e)| (s.as_str(), e.message.as_str())).collect();
        assert_eq!(
            rejected,
            [
                ("B", "unknown sku: SKU B is not known (/v1/availability/quantities)"),
                ("C", "unknown sku: SKU C is not known (/v1/availability/quantities)")
            ]
        );
        assert_eq!(quantities_outcome(200, &Value::Null, &["A", "B"]).delivered, ["A", "B"]);
    }

    #[test]
    fn otto_error_bodies_become_the_message_and_keep_the_status_class() {
        let body = r#"{"errors":[{"path":"/v4/orders/SO-1/cancellation","title":"Conflict","code":"409","detail":"no position item can be cancelled"}]}"#;
        let e = described(crate::error::classify(409, &http::HeaderMap::new(), body));
        assert_eq!(e.class, crate::error::FailureClass::Permanent);
        assert_eq!(e.message, "Conflict: no position item can be cancelled (/v4/orders/SO-1/cancellation)");
        let e = described(crate::error::classify(413, &http::HeaderMap::new(), "too large"));
        assert!(e.message.contains("batch_size"), "{e}");
        let one = json!({ "title": "Bad Request", "jsonPath": "$.trackingKey.carrier" });
        assert_eq!(error_text(&one).as_deref(), Some("Bad Request ($.trackingKey.carrier)"));
    }

    #[test]
    fn a_pending_process_is_read_again_at_its_ping_after_within_a_bound() {
        let now = Utc::now();
        let at = |secs: i64| json!({ "state": "pending", "pingAfter": (now + chrono::Duration::seconds(secs)).to_rfc3339() });
        assert_eq!(ping_wait(&at(-5), now), Duration::ZERO);
        assert_eq!(ping_wait(&at(1), now), Duration::from_secs(1));
        assert_eq!(ping_wait(&at(600), now), MAX_PING_WAIT);
        assert_eq!(ping_wait(&json!({ "state": "pending" }), now), DEFAULT_PING_WAIT);
        assert!(is_done(&json!({ "state": "DONE" })) && !is_done(&at(0)));
    }

    #[test]
    fn the_next_link_gives_its_cursor_alone() {
        let body = json!({ "links": [{ "rel": "next", "href": "/v4/orders?nextcursor=eyJm%3D%3D&limit=128" }] });
        assert_eq!(next_cursor(&body).unwrap().as_deref(), Some("eyJm=="));
        assert_eq!(next_cursor(&json!({ "links": [] })).unwrap(), None);
        assert!(next_cursor(&json!({ "links": [{ "rel": "next", "href": "/v4/orders?limit=1" }] })).is_err());
    }
}
