//! The one outbound contract every channel implements, and the one place that picks the implementation.
//!
//! Callers (the push consumers, the order poller, reconciliation) hold an `Arc<dyn ChannelConnector>`
//! and never learn a channel's wire format. Each channel lives in its own folder under `channels/`;
//! adding a channel is one folder plus one arm in [`build`], which the compiler checks is exhaustive.
//!
//! Most channels answer a write with its result. Some only accept it and finish later (Amazon's feeds:
//! an order cancellation, an acknowledgement, a bulk stock push are applied minutes after the call).
//! Such a write answers with a [`Submission`], the handle the caller keeps (on a queue, since a Lambda
//! does not wait minutes) and later asks [`ChannelConnector::submission_result`] about, until the
//! channel says per item what became of it. A write that can be either says so in its type
//! ([`Accepted`]); a push reports the submissions it made in [`PushOutcome::submitted`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manifold_domain::{Amount, Channel, Currency, Shipment, Sku, config::AccountConfig};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Credentials, channels, content::ContentUpdate, error::ConnectorError};

/// What the caller already stores, asked by a listing before it reads an order's details.
#[async_trait]
pub trait HeldOrders: Send + Sync {
    /// Whether the order `channel_order_id` is held as of `updated_at` (its listed last update) or
    /// later. When unsure (the store cannot be read), `false`: the order is read in full.
    async fn holds(&self, channel_order_id: &str, updated_at: DateTime<Utc>) -> bool;
}

/// Holds nothing: every listed order is read in full.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoneHeld;

#[async_trait]
impl HeldOrders for NoneHeld {
    async fn holds(&self, _: &str, _: DateTime<Utc>) -> bool {
        false
    }
}

/// Per-call context: correlation only (no business data, no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// Sent as `X-Request-Id` so the channel's logs (and the simulator's) can be correlated.
    pub trace_id: String,
}

impl CallContext {
    pub fn new(trace_id: impl Into<String>) -> Self {
        Self { trace_id: trace_id.into() }
    }
}

/// Set one channel SKU's sellable quantity (absolute, never a delta: safe to repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockUpdate {
    pub sku: Sku,
    pub channel_sku: String,
    pub quantity: u32,
    /// The channel's own id where its API keys stock by id rather than SKU (see each channel's docs).
    pub channel_item_id: Option<String>,
}

/// One item whose stock is read back ([`ChannelConnector::read_stock`]): its channel SKU, and the
/// channel's own id where the listing sync found one (the channels whose stock reads go by id, not by
/// SKU, need it: Etsy listings, TikTok products).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRead {
    pub channel_sku: String,
    pub channel_item_id: Option<String>,
}

impl StockRead {
    /// An item known by its SKU only.
    pub fn sku(channel_sku: impl Into<String>) -> Self {
        Self { channel_sku: channel_sku.into(), channel_item_id: None }
    }

    /// The channel SKUs of `items`, for the channels that read by SKU.
    pub fn skus(items: &[StockRead]) -> Vec<String> {
        items.iter().map(|i| i.channel_sku.clone()).collect()
    }
}

/// What one returns sweep found ([`ChannelConnector::sweep_returns`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReturnsSweep {
    /// Documents of kind `Return`, one per order, in the shape the channel's normalizer reads.
    pub docs: Vec<serde_json::Value>,
    /// What the next sweep starts from (Amazon: the report it asked for); kept by the caller.
    pub resume: Option<String>,
}

/// Set one channel SKU's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceUpdate {
    pub sku: Sku,
    pub channel_sku: String,
    pub amount: Amount,
    pub currency: Currency,
    /// As for [`StockUpdate::channel_item_id`]: WooCommerce product (or `product/variation`), BigCommerce
    /// variant id, Etsy listing id, TikTok `product/sku`, eBay offer id. Unused by SKU-keyed channels.
    pub channel_item_id: Option<String>,
}

/// What happened to each item of a push. A retryable failure of a whole call is an `Err` of the push
/// instead, so the caller retries (absolute quantities make a repeat harmless).
///
/// Items the channel accepted for later processing count as delivered (the call succeeded); the
/// submissions carrying them are in `submitted`, and their per-item verdict comes later from
/// [`ChannelConnector::submission_result`].
#[derive(Debug, Default)]
pub struct PushOutcome {
    pub delivered: Vec<String>,
    pub rejected: Vec<(String, ConnectorError)>,
    /// Work the channel accepted but has not finished (Amazon's `JSON_LISTINGS_FEED`).
    pub submitted: Vec<Submission>,
}

/// Work a channel accepted and finishes later: what the caller keeps to ask
/// [`ChannelConnector::submission_result`] about it. Serializable, since it waits on a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The channel's id of the work (Amazon: the feed id).
    pub id: String,
    /// What it does: one of [`Submission::CANCEL`], [`Submission::ACKNOWLEDGE`], [`Submission::STOCK`],
    /// [`Submission::PRICE`]; it decides how the result is read.
    pub operation: String,
    /// The items it carries (order ids or channel SKUs), in message order: the channel's per-message
    /// verdicts are matched back to them by position.
    pub items: Vec<String>,
}

impl Submission {
    pub const CANCEL: &'static str = "cancel";
    pub const ACKNOWLEDGE: &'static str = "acknowledge";
    pub const STOCK: &'static str = "stock";
    pub const PRICE: &'static str = "price";
}

/// How a channel took an order state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Applied: nothing left to check.
    Done,
    /// Accepted for later processing: ask [`ChannelConnector::submission_result`] until it is done.
    Submitted(Submission),
}

/// What became of a [`Submission`] so far.
#[derive(Debug)]
pub enum SubmissionState {
    /// The channel is still processing it: ask again later.
    Pending,
    /// Processed: every item of the submission is delivered or rejected with a classified error (a
    /// retryable class means the same item may succeed when sent again).
    Done(PushOutcome),
}

impl PushOutcome {
    pub(crate) fn reject_all<'a>(&mut self, skus: impl IntoIterator<Item = &'a str>, err: &ConnectorError) {
        self.rejected.extend(skus.into_iter().map(|s| (s.to_owned(), err.summary())));
    }

    pub(crate) fn merge(&mut self, other: PushOutcome) {
        self.delivered.extend(other.delivered);
        self.rejected.extend(other.rejected);
        self.submitted.extend(other.submitted);
    }
}

/// What completes a thin shipment notification (see [`ChannelConnector::fetch_shipment`]).
#[derive(Debug, Clone, PartialEq)]
pub enum FetchedShipment {
    /// The shipment itself, in the normalizer's Shipment input shape.
    Shipment(serde_json::Value),
    /// The order the notification names, in the [`ChannelConnector::fetch_order`] shape: for channels
    /// without a shipment resource, whose order state carries the shipment.
    Order(serde_json::Value),
}

/// The channel's own ids of one listed item, as far as the channel has them. Which one a write keys
/// by differs per channel: [`ListingIds::item_id`] is that table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingIds {
    /// Shopify product gid, WooCommerce and BigCommerce product id, Amazon ASIN, TikTok product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Shopify variant gid, WooCommerce variation id, BigCommerce variant id, Etsy product id, TikTok SKU id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Shopify inventory item gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_item: Option<String>,
    /// Etsy listing id, eBay listing id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// eBay offer id, Etsy offering id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// The EAN/GTIN where the channel shows one (Zalando keys stock by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ean: Option<String>,
}

impl ListingIds {
    /// The id a stock or price write of `channel` keys by ([`StockUpdate::channel_item_id`]), or `None`
    /// where the channel keys by SKU (Amazon, Zalando by EAN = its channel SKU).
    pub fn item_id(&self, channel: Channel) -> Option<String> {
        (crate::channels::module(channel).item_id)(self)
    }
}

/// One item an account sells, as the channel shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The channel's SKU (Zalando: the EAN, which is what its stock writes take).
    pub sku: String,
    pub ids: ListingIds,
    /// The sellable quantity the channel shows, where the listing read carries it.
    pub quantity: Option<i64>,
    /// The price the channel shows, in its currency where it says which.
    pub price: Option<Decimal>,
    pub currency: Option<Currency>,
    pub seen_at: DateTime<Utc>,
}

/// One page of an account's listings; `next` is the opaque cursor of the following page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingPage {
    pub listings: Vec<Listing>,
    pub next: Option<String>,
}

/// A channel's outbound API: stock, prices, tracking, order reads and order state changes.
///
/// Wrappers (`Guarded`, `Reauthorizing`) forward every method, provided ones included: a provided method
/// left to its default in a wrapper would bypass the wrapped channel's own implementation.
#[async_trait]
pub trait ChannelConnector: Send + Sync + std::fmt::Debug {
    fn channel(&self) -> Channel;
    /// Stock items per API call.
    fn max_batch(&self) -> usize;
    /// Sets quantities, batching internally at [`max_batch`](Self::max_batch).
    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError>;
    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError>;
    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError>;
    /// Changes listings' content (text, images or both), in the channel's own flow; items are the
    /// channel SKUs in the outcome. Only what [`crate::content::support`] says the channel takes is
    /// ever asked for; channels that take none answer [`ConnectorError::unsupported`] without a call.
    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let _ = (items, ctx);
        Err(ConnectorError::unsupported(self.channel(), "change product content"))
    }
    /// The order exactly as the normalizer takes it (see each channel's module docs for the shape).
    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext)
    -> Result<serde_json::Value, ConnectorError>;
    /// The shipment a thin notification names (`resource_id` as the channel's `classify` builds it).
    /// By default the order is fetched instead; BigCommerce fetches the shipment itself.
    async fn fetch_shipment(&self, resource_id: &str, ctx: &CallContext) -> Result<FetchedShipment, ConnectorError> {
        self.fetch_order(resource_id, ctx).await.map(FetchedShipment::Order)
    }
    /// The returns and refunds a thin notification names (`resource_id` as the channel's `classify`
    /// builds it: usually the order), in the shape the channel's normalizer reads as
    /// `DocKind::Return`. Channels that report returns otherwise do not implement it.
    async fn fetch_returns(&self, resource_id: &str, ctx: &CallContext) -> Result<serde_json::Value, ConnectorError> {
        let _ = (resource_id, ctx);
        Err(ConnectorError::unsupported(self.channel(), "fetch returns"))
    }
    /// Orders changed at or after `since`, every page of them, each in the
    /// [`fetch_order`](Self::fetch_order) shape. The bound is inclusive, whatever the channel's own
    /// filter does, so sweeps whose windows meet (or overlap) miss no order updated at the seam.
    async fn list_orders_since(
        &self,
        since: DateTime<Utc>,
        ctx: &CallContext,
    ) -> Result<Vec<serde_json::Value>, ConnectorError>;
    /// [`list_orders_since`](Self::list_orders_since), without reading the details of the orders
    /// `held` already has at their listed update: where a channel's list gives summaries only
    /// (Amazon's order items, BigCommerce's products and addresses each cost a call per order), a
    /// sweep whose window overlaps the previous one then spends its rate limit on new orders only.
    /// Held orders are left out of the answer. By default everything is listed.
    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        _held: &dyn HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<serde_json::Value>, ConnectorError> {
        self.list_orders_since(since, ctx).await
    }
    /// The returns and refunds the channel reports in a listing or a report rather than in
    /// notifications (Amazon's returns report). `resume` is what the previous sweep answered, so work
    /// the channel does between runs (a report it builds) is read by the next run. Channels that
    /// report returns otherwise answer [`ConnectorError::unsupported`].
    async fn sweep_returns(&self, resume: Option<&str>, ctx: &CallContext) -> Result<ReturnsSweep, ConnectorError> {
        let _ = (resume, ctx);
        Err(ConnectorError::unsupported(self.channel(), "sweep returns"))
    }
    /// Every order the channel holds as not yet taken over (Zalando: `exported=false`), for channels
    /// whose new orders are found that way ([`Inbound::ExportPoll`](manifold_domain::channel::Inbound))
    /// and marked with [`acknowledge_order`](Self::acknowledge_order) once stored. Others answer
    /// [`ConnectorError::unsupported`].
    async fn list_unexported_orders(&self, ctx: &CallContext) -> Result<Vec<serde_json::Value>, ConnectorError> {
        let _ = ctx;
        Err(ConnectorError::unsupported(self.channel(), "list orders not yet exported"))
    }
    /// Tells the channel the order has been taken over (Zalando: mark exported; Amazon: an
    /// order-acknowledgement feed). Channels without an acknowledgement step answer
    /// [`ConnectorError::unsupported`] without a call: an `Ok` would say the channel was told
    /// something it has no way to hear.
    async fn acknowledge_order(&self, _channel_order_id: &str, _ctx: &CallContext) -> Result<Accepted, ConnectorError> {
        Err(ConnectorError::unsupported(self.channel(), "acknowledge an order"))
    }
    /// [`acknowledge_order`](Self::acknowledge_order) for many orders at once, for channels whose
    /// acknowledgement is a quota-bound batch (Amazon: one feed for all of them). Answers the
    /// submissions still to be checked (none when the channel applied them). By default one
    /// `acknowledge_order` per id, stopping at the first failure.
    async fn acknowledge_orders(&self, ids: &[String], ctx: &CallContext) -> Result<Vec<Submission>, ConnectorError> {
        let mut submitted = Vec::new();
        for id in ids {
            if let Accepted::Submitted(s) = self.acknowledge_order(id, ctx).await? {
                submitted.push(s);
            }
        }
        Ok(submitted)
    }
    /// Cancels the order on the channel, wholly. `reason` is free text for channels that take one;
    /// channels with a fixed list of reasons use their account's setting (see the channel's docs).
    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError>;
    /// What became of work the channel accepted for later ([`Accepted::Submitted`],
    /// [`PushOutcome::submitted`]). A failure to ask is an `Err` (retry the question); per-item
    /// failures are in the [`SubmissionState::Done`] outcome. By default the channel has no such work.
    async fn submission_result(
        &self,
        _submission: &Submission,
        _ctx: &CallContext,
    ) -> Result<SubmissionState, ConnectorError> {
        Err(ConnectorError::unsupported(self.channel(), "report on submitted work"))
    }
    /// The channel's current sellable quantity per channel SKU (reconciliation). Items the channel
    /// does not show are left out of the answer.
    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError>;
    /// One page of what the account lists (`cursor`: `None` for the first page, then the previous
    /// page's `next`), each listing with the channel's own ids, within the channel's limits.
    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError>;
}

/// The HTTP client connectors are built with: rustls, and bounded connect and request timeouts so a
/// hung channel becomes a `Transient` failure instead of a stuck Lambda.
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectorError::permanent("cannot build the HTTP client").with_source(e))
}

/// Builds the connector for an account. Credentials each channel reads are listed in its module docs;
/// missing ones surface as `Auth` failures on first use, missing settings as `Permanent` ones. A refresh
/// token the channel rotates is kept in memory only: deployed code uses [`build_writing_back`].
#[allow(clippy::needless_pass_by_value)] // the signature the callers agreed on: the connector owns what it is given
pub fn build(account: &AccountConfig, creds: Credentials, http: reqwest::Client) -> Arc<dyn ChannelConnector> {
    connector(account, &creds, http, None)
}

/// [`build`], with rotated refresh tokens written back to the account's secret through `writer`.
#[allow(clippy::needless_pass_by_value)]
pub fn build_writing_back(
    account: &AccountConfig,
    creds: Credentials,
    http: reqwest::Client,
    writer: Arc<dyn crate::token::SecretWriter>,
) -> Arc<dyn ChannelConnector> {
    let write_back = crate::token::WriteBack { writer, secret: account.secret.clone() };
    connector(account, &creds, http, Some(write_back))
}

fn connector(
    account: &AccountConfig,
    creds: &Credentials,
    http: reqwest::Client,
    write_back: Option<crate::token::WriteBack>,
) -> Arc<dyn ChannelConnector> {
    let tokens = crate::token::provider(account, creds, &http, write_back);
    let api = crate::transport::ApiParts::new(account, http, tokens);
    (channels::module(account.channel).build)(account, creds, api)
}
