//! The capability matrix, proven cell by cell against the channel simulators.
//!
//! Every channel's spec claims, job by job, what Manifold does there (`Cell::Supported`), what the
//! channel's API does not offer (`Cell::NotOffered`) and what is not built yet. A claim nobody runs
//! drifts from the code, so here every supported cell of every channel runs that job's real path
//! (the connector's call, or notification → classify → fetch → normalize for orders coming in)
//! against the channel's simulator, and is judged by what the simulator then holds or recorded, not
//! by an `Ok`. One test per [`Operation`] walks all channels and reports every failing or not yet
//! built (channel, operation) at once, so one broken cell hides no other. A last test holds the
//! not-offered cells to their word: the connector answers "unsupported" and calls nobody.
//!
//! The per-channel facts (catalog ids, how an order is cancelled, what a notification looks like)
//! are small exhaustive `match`es, so a new channel does not compile until it says them.

use std::{collections::BTreeSet, fmt::Display, sync::Arc};

use chrono::{Duration, Utc};
use manifold_connectors::{
    Accepted, CallContext, ChannelConnector, ConnectorError, FailureClass, Listing, PriceUpdate, StockRead,
    StockUpdate, SubmissionState,
};
use manifold_domain::{
    Amount, Channel, Currency, Order, OrderStatus, Record, Shipment, ShipmentLine, Sku,
    channel::{Cell, Inbound, Operation},
    config::{AccountConfig, RateLimit},
};
use manifold_normalize::{Context, DocKind};
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, Simulator, Write};
use serde_json::{Value, json};

use crate::outbound::{account, connector};

/// Why a cell failed, in words for the final report.
type Checked<T = ()> = Result<T, String>;

/// Items seeded per catalog: more than one page of Amazon's listings (20 a page).
const CATALOG: usize = 25;
/// The catalog item the single-SKU jobs (stock, price, read) work on.
const PICK: usize = 4;

/// Channels whose APIs report refunds (money back) and no returns (goods back).
const MONEY_ONLY_REFUNDS: [Channel; 2] = [Channel::Bigcommerce, Channel::Etsy];
const TRACKING: &str = "00340434161094099999";

#[tokio::test]
async fn orders_in() {
    prove(Operation::OrdersIn).await;
}

#[tokio::test]
async fn order_updates_in() {
    prove(Operation::OrderUpdatesIn).await;
}

#[tokio::test]
async fn returns_in() {
    prove(Operation::ReturnsIn).await;
}

#[tokio::test]
async fn stock_out() {
    prove(Operation::StockOut).await;
}

#[tokio::test]
async fn price_out() {
    prove(Operation::PriceOut).await;
}

#[tokio::test]
async fn tracking_out() {
    prove(Operation::TrackingOut).await;
}

#[tokio::test]
async fn cancel_out() {
    prove(Operation::CancelOut).await;
}

#[tokio::test]
async fn acknowledge() {
    prove(Operation::Acknowledge).await;
}

#[tokio::test]
async fn list_orders_since() {
    prove(Operation::ListOrdersSince).await;
}

#[tokio::test]
async fn read_stock() {
    prove(Operation::ReadStock).await;
}

#[tokio::test]
async fn listing_sync() {
    prove(Operation::ListingSync).await;
}

/// A not-offered cell is a promise that nothing happens: the connector's method answers the
/// connector's "unsupported" error, and no request (not even for a token) reaches the channel.
#[tokio::test]
async fn not_offered_cells_answer_unsupported_without_calling_the_channel() {
    let sim = start().await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for channel in Channel::ALL {
        let bench = Bench::new(&sim, channel);
        for op in Operation::ALL {
            if !matches!(channel.spec().capabilities.cell(op), Cell::NotOffered(_)) {
                continue;
            }
            let before = traffic(&sim, channel);
            let Some(answer) = bench.offered_call(op).await else { continue };
            checked += 1;
            let after = traffic(&sim, channel);
            let unsupported = ConnectorError::unsupported(channel, "").message;
            let reason = match answer {
                Ok(()) => Some("answered Ok instead of the unsupported error".to_owned()),
                Err(e) if e.class != FailureClass::Permanent || !e.message.starts_with(&unsupported) => {
                    Some(format!("answered {e}, not the unsupported error"))
                }
                Err(_) => None,
            };
            let reason = reason.or_else(|| {
                (after != before).then(|| {
                    format!("reached the simulator: (requests, token requests, writes) {before:?} -> {after:?}")
                })
            });
            if let Some(reason) = reason {
                failures.push(format!("({channel}, {op:?}): {reason}"));
            }
        }
    }
    assert!(checked > 0, "no not-offered outbound cell was checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} not-offered cells break their promise:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Runs `op` on every channel whose cell says it is supported, then fails once, naming every cell
/// that did not hold.
async fn prove(op: Operation) {
    let sim = start().await;
    let mut failures = Vec::new();
    let mut proven = 0;
    for channel in Channel::ALL {
        let cell = channel.spec().capabilities.cell(op);
        match cell {
            Cell::Supported(_) => {}
            Cell::NotOffered(_) => continue,
            // Every cell the channel's API allows is built: a gap fails its operation's test.
            Cell::NotBuilt(what) => {
                failures.push(format!("({channel}, {op:?}): not yet built: {what}"));
                continue;
            }
        }
        match Bench::new(&sim, channel).exercise(op).await {
            Ok(()) => proven += 1,
            Err(reason) => {
                failures.push(format!("({channel}, {op:?}): {reason}\n      the cell says: {}", cell.detail()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {op:?} cells are not built or fail against their simulator:\n  {}",
        failures.len(),
        failures.len() + proven,
        failures.join("\n  ")
    );
}

/// Every channel without the simulator's rate limits: the matrix proves behaviour, not pacing (the
/// outbound tests do that), and must not depend on how fast a busy CI machine is.
async fn start() -> SimHandle {
    let config = Channel::ALL.into_iter().fold(SimConfig::default(), SimConfig::unlimited);
    Simulator::start(config).await.expect("simulator starts on loopback")
}

/// What reached a channel's simulator so far: (requests, token requests, writes).
fn traffic(sim: &SimHandle, channel: Channel) -> (u64, u64, usize) {
    let snap = sim.snapshot();
    (
        snap.requests.get(&channel).copied().unwrap_or(0),
        snap.token_requests.get(&channel).copied().unwrap_or(0),
        snap.writes.get(&channel).map_or(0, Vec::len),
    )
}

/// One channel's account on the shared simulator, and the exercisers of its cells.
struct Bench<'a> {
    sim: &'a SimHandle,
    channel: Channel,
    account: AccountConfig,
    api: Arc<dyn ChannelConnector>,
}

/// How an inbound order job changes the order before the channel tells Manifold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Created,
    Cancelled,
}

impl<'a> Bench<'a> {
    fn new(sim: &'a SimHandle, channel: Channel) -> Self {
        Self {
            sim,
            channel,
            account: account(sim, channel, RateLimit::Unlimited, &[]),
            api: connector(sim, channel, RateLimit::Unlimited, &[]),
        }
    }

    fn ctx(&self) -> CallContext {
        CallContext::new(format!("matrix-{}", self.channel))
    }

    /// One exerciser per operation, each the operation's real path.
    async fn exercise(&self, op: Operation) -> Checked {
        match op {
            Operation::OrdersIn => self.order_in(Event::Created).await,
            Operation::OrderUpdatesIn => self.order_in(Event::Cancelled).await,
            Operation::ReturnsIn => self.returns_in().await,
            Operation::StockOut => self.stock_out().await,
            Operation::PriceOut => self.price_out().await,
            Operation::TrackingOut => self.tracking_out().await,
            Operation::CancelOut => self.cancel_out().await,
            Operation::Acknowledge => self.acknowledge().await,
            Operation::ListOrdersSince => self.list_orders_since().await,
            Operation::ReadStock => self.read_stock().await,
            Operation::ListingSync => self.listing_sync().await,
        }
    }

    /// The connector call behind an outbound operation, made once with harmless arguments; `None`
    /// for the inbound operations, which no connector method stands for.
    async fn offered_call(&self, op: Operation) -> Option<Result<(), ConnectorError>> {
        let ctx = self.ctx();
        let sku = Sku::new("MATRIX-1").expect("valid SKU");
        let eur = Currency::new("EUR").expect("valid currency");
        Some(match op {
            Operation::OrdersIn | Operation::OrderUpdatesIn | Operation::ReturnsIn => return None,
            Operation::StockOut => {
                let update =
                    StockUpdate { sku: sku.clone(), channel_sku: sku.to_string(), quantity: 1, channel_item_id: None };
                self.api.push_stock(&[update], &ctx).await.map(drop)
            }
            Operation::PriceOut => {
                let amount = Amount::parse("1.00", eur).expect("valid amount");
                let update = PriceUpdate {
                    sku: sku.clone(),
                    channel_sku: sku.to_string(),
                    amount,
                    currency: eur,
                    channel_item_id: None,
                };
                self.api.push_prices(&[update], &ctx).await.map(drop)
            }
            Operation::TrackingOut => {
                let order = manifold_domain::OrderId::new(format!("{}:it-account:1", self.channel)).expect("order id");
                self.api.push_tracking(&shipment(order, &self.account, "1", Vec::new()), &ctx).await
            }
            Operation::CancelOut => self.cancel("1").await,
            Operation::Acknowledge => self.acknowledge_order("1").await,
            Operation::ListOrdersSince => self.api.list_orders_since(Utc::now(), &ctx).await.map(drop),
            Operation::ReadStock => self.api.read_stock(&[StockRead::sku(sku.to_string())], &ctx).await.map(drop),
            Operation::ListingSync => self.api.list_listings(None, &ctx).await.map(drop),
        })
    }

    // The two order state changes whose answer type is changing (to `Accepted`): adapted here only.

    async fn cancel(&self, channel_order_id: &str) -> Result<(), ConnectorError> {
        let accepted = self.api.cancel_order(channel_order_id, "out of stock", &self.ctx()).await?;
        self.settled(accepted).await
    }

    async fn acknowledge_order(&self, channel_order_id: &str) -> Result<(), ConnectorError> {
        let accepted = self.api.acknowledge_order(channel_order_id, &self.ctx()).await?;
        self.settled(accepted).await
    }

    /// Work the channel took for later (an Amazon feed) is asked after until the channel has done it,
    /// as the push consumer's feed checks do; an item it refused is the cell's failure.
    async fn settled(&self, accepted: Accepted) -> Result<(), ConnectorError> {
        let Accepted::Submitted(submission) = accepted else { return Ok(()) };
        for _ in 0..10 {
            match self.api.submission_result(&submission, &self.ctx()).await? {
                SubmissionState::Pending => {}
                SubmissionState::Done(outcome) => {
                    return outcome.rejected.into_iter().next().map_or(Ok(()), |(_, e)| Err(e));
                }
            }
        }
        Err(ConnectorError::transient(format!("submission {} still pending after 10 checks", submission.id)))
    }

    // Orders.

    /// New orders and changes: the order is seeded (and for a change, cancelled on the channel),
    /// then reaches Manifold as the channel delivers it: its notification is classified and what it
    /// names fetched, or the poll lists it; either way the result normalizes to the seeded order.
    async fn order_in(&self, event: Event) -> Checked {
        let (mut doc, seeded) = self.seed_order()?;
        if event == Event::Cancelled {
            doc = cancelled(self.channel, doc);
            step("re-seed the cancelled order", self.sim.seed_order(self.channel, doc.clone()))?;
        }
        let fetched = match self.channel.spec().inbound {
            Inbound::Poll | Inbound::ExportPoll => self.listed(&seeded).await?,
            Inbound::Webhooks | Inbound::Queue => {
                let (topic, body) =
                    notification(self.channel, &doc, &seeded.channel_order_id, event).ok_or_else(|| {
                        format!("{} delivers notifications, but the matrix has none for it", self.channel)
                    })?;
                match step("classify", manifold_normalize::classify(self.channel, topic, &body))? {
                    // The order itself is the body: nothing to fetch.
                    manifold_normalize::Inbound::Full { kind: DocKind::Order, doc } => doc,
                    manifold_normalize::Inbound::Thin { kind: DocKind::Order, resource_id, .. } => {
                        step("fetch_order", self.api.fetch_order(&resource_id, &self.ctx()).await)?
                    }
                    other => return Err(format!("{topic:?} classified as {other:?}, not an order")),
                }
            }
        };
        let order = self.normalize(&fetched)?;
        ensure(order.channel_order_id == seeded.channel_order_id, || {
            format!("arrived as order {:?}, seeded {:?}", order.channel_order_id, seeded.channel_order_id)
        })?;
        ensure(lines(&order) == lines(&seeded), || {
            format!("arrived with lines {:?}, seeded {:?}", lines(&order), lines(&seeded))
        })?;
        let status = if event == Event::Cancelled { OrderStatus::Cancelled } else { seeded.status };
        ensure(order.status == status, || format!("arrived {:?}, expected {status:?}", order.status))
    }

    async fn list_orders_since(&self) -> Checked {
        let (_, seeded) = self.seed_order()?;
        let listed = self.listed(&seeded).await?;
        let order = self.normalize(&listed)?;
        ensure(lines(&order) == lines(&seeded), || {
            format!("listed with lines {:?}, seeded {:?}", lines(&order), lines(&seeded))
        })
    }

    /// Ships every line of the seeded order; the simulator must record a write carrying the tracking
    /// number that names the order (its id, or one of its lines', units' or packages' ids).
    async fn tracking_out(&self) -> Checked {
        let (doc, order) = self.seed_order()?;
        let before = self.writes().len();
        let shipped = order
            .lines
            .iter()
            .map(|l| ShipmentLine { line_id: Some(l.line_id.clone()), sku: l.sku.clone(), quantity: l.quantity })
            .collect();
        let shipment = shipment(order.id.clone(), &self.account, &order.channel_order_id, shipped);
        step("push_tracking", self.api.push_tracking(&shipment, &self.ctx()).await)?;
        let refs = ids_in(&doc);
        let writes = self.writes().split_off(before);
        ensure(writes.iter().any(|w| mentions(w, TRACKING) && refs.iter().any(|r| mentions(w, r))), || {
            format!("no write carries tracking {TRACKING} for the order; writes: {}", summary(&writes))
        })
    }

    /// Cancels the seeded order; the simulator's copy of it must now read as cancelled.
    async fn cancel_out(&self) -> Checked {
        let (_, order) = self.seed_order()?;
        step("cancel_order", self.cancel(&order.channel_order_id).await)?;
        let held = self.normalize(&self.held(&order.channel_order_id)?.doc)?;
        ensure(held.status == OrderStatus::Cancelled, || {
            format!(
                "the simulator's order reads {:?} after the cancel; writes: {}",
                held.status,
                summary(&self.writes())
            )
        })
    }

    async fn acknowledge(&self) -> Checked {
        let (_, order) = self.seed_order()?;
        step("acknowledge_order", self.acknowledge_order(&order.channel_order_id).await)?;
        ensure(self.held(&order.channel_order_id)?.exported, || {
            format!("the simulator's order is not marked taken over; writes: {}", summary(&self.writes()))
        })
    }

    /// Goods come back: the channel reports the return as it documents it (WooCommerce: a refund
    /// with a line and its action webhook; Kaufland: a unit returned and its return notification;
    /// OTTO: a position item RETURNED on the polled order), Manifold fetches what the report names,
    /// and a canonical Return of the seeded order's line comes out.
    async fn returns_in(&self) -> Checked {
        let (mut doc, seeded) = self.seed_order()?;
        let ctx = Context { account: &self.account, received_at: Utc::now() };
        let records = match self.channel {
            Channel::Woocommerce => {
                let line = &doc["line_items"][1];
                let url =
                    format!("{}/wc/v3/orders/{}/refunds", self.sim.base_url(self.channel), seeded.channel_order_id);
                let refund = json!({ "line_items": [{ "id": line["id"], "quantity": 1, "refund_total": 12.0 }] });
                let client = reqwest::Client::new();
                let reply = step(
                    "refund in WooCommerce",
                    client.post(url).basic_auth("ck_sim", Some("cs_sim")).json(&refund).send().await,
                )?;
                ensure(reply.status() == 201, || format!("the simulator refused the refund: {}", reply.status()))?;
                let body = json!({ "action": "woocommerce_order_refunded", "arg": seeded.channel_order_id });
                let fetched = self.thin_returns(Some("action.woocommerce_order_refunded"), &body).await?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Return, &fetched, &ctx))?
            }
            Channel::Kaufland => {
                doc["data"]["order_units"][0]["status"] = json!("returned");
                step("re-seed the returned unit", self.sim.seed_order(self.channel, doc.clone()))?;
                let unit = doc["data"]["order_units"][0]["id_order_unit"].clone();
                let body = json!({ "event_name": "return_unit_status_changed", "id_order_unit": unit });
                let inbound = step("classify", manifold_normalize::classify(self.channel, None, &body))?;
                let manifold_normalize::Inbound::Thin { kind: DocKind::Order, resource_id, .. } = inbound else {
                    return Err(format!("the return notification classified as {inbound:?}"));
                };
                let fetched = step("fetch_order", self.api.fetch_order(&resource_id, &self.ctx()).await)?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Order, &fetched, &ctx))?
            }
            Channel::Zalando => {
                // A unit comes back after the order was exported: its order line reads returned.
                doc["data"]["attributes"]["exported"] = json!(true);
                doc["data"]["attributes"]["modified_at"] = json!(Utc::now().to_rfc3339());
                let line = doc["included"]
                    .as_array_mut()
                    .and_then(|r| r.iter_mut().find(|r| r["type"] == "OrderLine"))
                    .ok_or("the sample order has no order line")?;
                line["attributes"]["status"] = json!("returned");
                step("re-seed the returned line", self.sim.seed_order(self.channel, doc.clone()))?;
                let listed = self.listed(&seeded).await?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Order, &listed, &ctx))?
            }
            Channel::Otto => {
                doc["positionItems"][0]["fulfillmentStatus"] = json!("RETURNED");
                step("re-seed the returned item", self.sim.seed_order(self.channel, doc.clone()))?;
                let listed = self.listed(&seeded).await?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Order, &listed, &ctx))?
            }
            Channel::Shopify => {
                // The merchant opens a return of one unit and closes it once the parcel is back.
                let url =
                    format!("{}/admin/api/{}/graphql.json", self.sim.base_url(self.channel), self.account.api_version);
                let gql = |query: &str, variables: Value| {
                    reqwest::Client::new()
                        .post(url.clone())
                        .header("x-shopify-access-token", "sim")
                        .json(&json!({ "query": query, "variables": variables }))
                        .send()
                };
                let input = json!({ "returnInput": { "orderId": format!("gid://shopify/Order/{}", seeded.channel_order_id),
                    "returnLineItems": [{ "fulfillmentLineItemId": format!("gid://shopify/FulfillmentLineItem/{}", doc["line_items"][0]["id"]),
                                          "quantity": 1, "returnReason": "DEFECTIVE" }] } });
                let created: Value = step(
                    "returnCreate",
                    gql("mutation R($returnInput: ReturnInput!) { returnCreate(returnInput: $returnInput) { return { id status } userErrors { field message } } }", input)
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.error_for_status().map_err(|e| e.to_string())),
                )?
                .json()
                .await
                .map_err(|e| e.to_string())?;
                let gid = created
                    .pointer("/data/returnCreate/return/id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("the simulator created no return: {created}"))?
                    .to_owned();
                step(
                    "returnClose",
                    gql("mutation C($id: ID!) { returnClose(id: $id) { return { id status } userErrors { field message } } }", json!({ "id": gid }))
                        .await,
                )?;
                let id = gid.rsplit('/').next().unwrap_or_default();
                let body = json!({ "id": id.parse::<u64>().ok(), "admin_graphql_api_id": gid, "status": "closed" });
                let fetched = self.thin_returns(Some("returns/close"), &body).await?;
                let records = step(
                    "normalize",
                    manifold_normalize::normalize_all(self.channel, DocKind::Return, &fetched, &ctx),
                )?;
                ensure(
                    records
                        .iter()
                        .all(|r| matches!(r, Record::Return(r) if r.state == manifold_domain::ReturnState::Received)),
                    || format!("a closed return reads as received: {records:?}"),
                )?;
                records
            }
            Channel::Amazon => {
                // A unit of the order came back to the seller; Amazon lists it in its returns report,
                // which one sweep asks for and a later one reads once Amazon has built it.
                let item = &doc["order_items"][0];
                let requested = (Utc::now() - Duration::days(1)).to_rfc3339();
                let row = json!({ "Order ID": seeded.channel_order_id, "Return request date": requested,
                    "Return request status": "Approved", "Amazon RMA ID": "DvK3Lxq1RRMA", "Currency code": doc["order"]["OrderTotal"]["CurrencyCode"],
                    "Merchant SKU": item["SellerSKU"], "Return quantity": "1", "Return Reason": "AMZ-PG-BAD-DESC",
                    "Return delivery date": Utc::now().to_rfc3339(), "Refunded Amount": "" });
                self.sim.seed_return(self.channel, &seeded.channel_order_id, "Amazon RMA ID", row);
                let mut resume = None;
                let mut docs = Vec::new();
                for _ in 0..3 {
                    let sweep = step("sweep_returns", self.api.sweep_returns(resume.as_deref(), &self.ctx()).await)?;
                    ensure(sweep.resume.is_some(), || "a sweep leaves what the next starts from".to_owned())?;
                    resume = sweep.resume;
                    docs.extend(sweep.docs);
                }
                let [doc] = docs.as_slice() else { return Err(format!("expected one order's returns, got {docs:?}")) };
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Return, doc, &ctx))?
            }
            Channel::Tiktok => {
                // The buyer returns one unit in the app; the seller has received it.
                let unit = &doc["line_items"][0];
                let ret = json!({ "return_id": "4035463945335048707", "order_id": seeded.channel_order_id,
                    "return_type": "RETURN_AND_REFUND", "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS",
                    "return_reason": "ecom_order_delivered_refund_and_return_reason_damaged",
                    "refund_amount": { "currency": doc["payment"]["currency"], "refund_total": unit["sale_price"] },
                    "create_time": 1_767_348_000, "update_time": 1_767_348_600,
                    "return_line_items": [{ "order_line_item_id": unit["id"], "sku_id": unit["sku_id"], "seller_sku": unit["seller_sku"] }] });
                self.sim.seed_return(self.channel, &seeded.channel_order_id, "return_id", ret);
                let body = json!({ "type": 12, "tts_notification_id": "matrix-return", "shop_id": "7494049642642441621",
                                   "timestamp": 1_767_348_600, "data": { "order_id": seeded.channel_order_id,
                                   "return_id": "4035463945335048707", "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS", "update_time": 1_767_348_600 } });
                let fetched = self.thin_returns(None, &body).await?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Return, &fetched, &ctx))?
            }
            Channel::Bigcommerce => {
                let product = &doc["products"][0];
                let url = format!(
                    "{}/v3/orders/{}/payment_actions/refunds",
                    self.sim.base_url(self.channel),
                    seeded.channel_order_id
                );
                let refund = json!({
                    "items": [{ "item_type": "PRODUCT", "item_id": product["id"], "quantity": 1, "amount": 10.0 }],
                    "payments": [{ "provider_id": "storecredit", "amount": 10.0, "offline": true }],
                });
                let reply = step(
                    "refund in BigCommerce",
                    reqwest::Client::new().post(url).header("x-auth-token", "sim").json(&refund).send().await,
                )?;
                ensure(reply.status() == 201, || format!("the simulator refused the refund: {}", reply.status()))?;
                let body = json!({ "scope": "store/order/refund/created", "store_id": "1025646", "hash": "matrix-refund",
                                   "created_at": 1_767_348_000, "data": { "type": "order", "id": doc["order"]["id"], "refund": { "refund_id": 1 } } });
                let fetched = self.thin_returns(None, &body).await?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Return, &fetched, &ctx))?
            }
            Channel::Etsy => {
                doc["refunds"] = json!([{ "amount": { "amount": 1000, "divisor": 100, "currency_code": doc["grandtotal"]["currency_code"] },
                                          "created_timestamp": 1_767_348_000, "reason": "damaged", "note_from_issuer": null, "status": "Refunded" }]);
                step("re-seed the refunded receipt", self.sim.seed_order(self.channel, doc.clone()))?;
                let body = json!({ "event_type": "order.updated",
                                   "resource_url": format!("https://openapi.etsy.com/v3/application/shops/12345678/receipts/{}", seeded.channel_order_id) });
                let inbound = step("classify", manifold_normalize::classify(self.channel, None, &body))?;
                let manifold_normalize::Inbound::Thin { kind: DocKind::Order, resource_id, .. } = inbound else {
                    return Err(format!("the receipt notification classified as {inbound:?}"));
                };
                let fetched = step("fetch_order", self.api.fetch_order(&resource_id, &self.ctx()).await)?;
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Order, &fetched, &ctx))?
            }
            Channel::Ebay => {
                // The buyer opened a return of one unit; it reached the seller. eBay notifies none:
                // the reconciliation tier's sweep searches open and closed returns.
                let line = &doc["lineItems"][0];
                let summary = json!({ "returnId": "5000099001", "orderId": seeded.channel_order_id, "state": "ITEM_DELIVERED",
                    "creationInfo": { "item": { "itemId": line["legacyItemId"], "transactionId": line["lineItemId"], "returnQuantity": 1 },
                                      "reason": "NOT_AS_DESCRIBED", "creationDate": { "value": (Utc::now() - Duration::days(2)).to_rfc3339() } } });
                self.sim.seed_return(self.channel, &seeded.channel_order_id, "returnId", summary);
                let first = step("sweep_returns", self.api.sweep_returns(None, &self.ctx()).await)?;
                let again = step("sweep_returns", self.api.sweep_returns(first.resume.as_deref(), &self.ctx()).await)?;
                ensure(again.docs.is_empty(), || format!("an unchanged return is handed on again: {:?}", again.docs))?;
                let [doc] = first.docs.as_slice() else {
                    return Err(format!("expected one order's returns, got {:?}", first.docs));
                };
                step("normalize", manifold_normalize::normalize_all(self.channel, DocKind::Return, doc, &ctx))?
            }
        };
        if MONEY_ONLY_REFUNDS.contains(&self.channel) {
            // The channel reports money back, never goods: a Refund of the order, and no Return.
            let refunds: Vec<&manifold_domain::Refund> =
                records.iter().filter_map(|r| if let Record::Refund(r) = r { Some(r) } else { None }).collect();
            let [refund] = refunds.as_slice() else { return Err(format!("expected one Refund, got {records:?}")) };
            ensure(refund.order_id == seeded.id, || format!("a Refund of {}, seeded {}", refund.order_id, seeded.id))?;
            let ten = manifold_domain::Amount::parse("10.00", seeded.currency).map_err(|e| e.to_string())?;
            ensure(refund.amount == ten, || format!("refunded {:?}", refund.amount))?;
            ensure(refund.lines.iter().all(|l| seeded.lines.iter().any(|s| s.line_id == l.line_id)), || {
                format!("a refund line names no line of the order: {:?}", refund.lines)
            })?;
            return ensure(!records.iter().any(|r| matches!(r, Record::Return(_))), || format!("{records:?}"));
        }
        let returns: Vec<&manifold_domain::Return> =
            records.iter().filter_map(|r| if let Record::Return(r) = r { Some(r) } else { None }).collect();
        let [ret] = returns.as_slice() else { return Err(format!("expected one Return, got {records:?}")) };
        ensure(ret.order_id == seeded.id, || format!("a Return of {}, seeded {}", ret.order_id, seeded.id))?;
        ensure(ret.lines.iter().map(|l| l.quantity).sum::<u32>() == 1, || format!("{:?}", ret.lines))?;
        ensure(seeded.lines.iter().any(|l| l.line_id == ret.lines[0].line_id), || {
            format!("the Return names line {}, not a line of the order", ret.lines[0].line_id)
        })
    }

    /// A returns notification classified as the channel's thin `Return` kind, and what it names
    /// fetched through `fetch_returns`.
    async fn thin_returns(&self, topic: Option<&str>, body: &Value) -> Checked<Value> {
        let inbound = step("classify", manifold_normalize::classify(self.channel, topic, body))?;
        let manifold_normalize::Inbound::Thin { kind: DocKind::Return, resource_id, .. } = inbound else {
            return Err(format!("the returns notification classified as {inbound:?}"));
        };
        step("fetch_returns", self.api.fetch_returns(&resource_id, &self.ctx()).await)
    }

    /// The channel's sample order, seeded as its simulator serves it, and normalized.
    fn seed_order(&self) -> Checked<(Value, Order)> {
        let doc = order_doc(self.channel);
        step("seed the sample order", self.sim.seed_order(self.channel, doc.clone()))?;
        let order = self.normalize(&doc)?;
        Ok((doc, order))
    }

    /// The order as a sweep lists it: orders changed since an hour before its last update.
    async fn listed(&self, order: &Order) -> Checked<Value> {
        let since = order.updated_at - Duration::hours(1);
        let docs = step("list_orders_since", self.api.list_orders_since(since, &self.ctx()).await)?;
        let count = docs.len();
        docs.into_iter()
            .find(|d| self.normalize(d).is_ok_and(|o| o.channel_order_id == order.channel_order_id))
            .ok_or_else(|| format!("order {} is not among the {count} listed since {since}", order.channel_order_id))
    }

    /// The simulator's copy of an order.
    fn held(&self, channel_order_id: &str) -> Checked<manifold_simulator::state::SeededOrder> {
        let mut snap = self.sim.snapshot();
        snap.orders
            .remove(&self.channel)
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.id == channel_order_id)
            .ok_or_else(|| format!("the simulator holds no order {channel_order_id}"))
    }

    fn normalize(&self, doc: &Value) -> Checked<Order> {
        let ctx = Context { account: &self.account, received_at: Utc::now() };
        step("normalize", manifold_normalize::normalize_order(self.channel, doc, &ctx))
    }

    // Catalog.

    /// Writes one quantity by the id the listing gave; the simulator must hold it under its key.
    async fn stock_out(&self) -> Checked {
        let (item, listing) = self.pick().await?;
        let update = StockUpdate {
            sku: sku(&listing)?,
            channel_sku: listing.sku.clone(),
            quantity: 37,
            channel_item_id: listing.ids.item_id(self.channel),
        };
        let outcome = step("push_stock", self.api.push_stock(&[update], &self.ctx()).await)?;
        ensure(outcome.rejected.is_empty(), || format!("rejected: {:?}", outcome.rejected))?;
        let held = self.sim.snapshot().stock.get(&self.channel).and_then(|s| s.get(&item.id).copied());
        ensure(held == Some(37), || format!("the simulator holds {held:?} for {}, not 37", item.id))
    }

    /// Writes one price by the id the listing gave; the simulator must record a write naming the
    /// item (by its SKU or any of its listed ids) and carrying the price (as a decimal or in cents).
    async fn price_out(&self) -> Checked {
        let (item, listing) = self.pick().await?;
        let currency = listing.currency.unwrap_or_else(|| Currency::new("EUR").expect("valid currency"));
        let update = PriceUpdate {
            sku: sku(&listing)?,
            channel_sku: listing.sku.clone(),
            amount: step("amount", Amount::parse("23.45", currency))?,
            currency,
            channel_item_id: listing.ids.item_id(self.channel),
        };
        let before = self.writes().len();
        let outcome = step("push_prices", self.api.push_prices(&[update], &self.ctx()).await)?;
        ensure(outcome.rejected.is_empty(), || format!("rejected: {:?}", outcome.rejected))?;
        let ids = &listing.ids;
        let names: Vec<&str> = [&ids.product, &ids.variant, &ids.inventory_item, &ids.listing, &ids.offer, &ids.ean]
            .into_iter()
            .filter_map(Option::as_deref)
            .chain([listing.sku.as_str(), item.id.as_str()])
            .collect();
        let writes = self.writes().split_off(before);
        ensure(
            writes
                .iter()
                .any(|w| (mentions(w, "23.45") || mentions(w, "2345")) && names.iter().any(|n| mentions(w, n))),
            || format!("no write carries 23.45 for {names:?}; writes: {}", summary(&writes)),
        )
    }

    /// Sets a quantity as the channel's own admin would; the read (by the SKU and the id its listing
    /// gave, as reconciliation passes them) must give it back.
    async fn read_stock(&self) -> Checked {
        let (item, listing) = self.pick().await?;
        self.sim.set_stock(self.channel, &item.id, 29);
        let read_item =
            StockRead { channel_sku: listing.sku.clone(), channel_item_id: listing.ids.item_id(self.channel) };
        let read = step("read_stock", self.api.read_stock(&[read_item], &self.ctx()).await)?;
        ensure(read.contains(&(listing.sku.clone(), 29)), || {
            format!("read {read:?}, the channel shows 29 for {}", listing.sku)
        })
    }

    /// Pages through the seeded catalog to its end: every SKU once, with the ids its writes take.
    async fn listing_sync(&self) -> Checked {
        let seeded = self.seed_catalog();
        let listings = self.listings().await?;
        ensure(listings.len() == seeded.len(), || {
            format!("{} listings for {} seeded items", listings.len(), seeded.len())
        })?;
        for (item, item_id) in &seeded {
            let listing =
                listings.iter().find(|l| l.sku == item.sku).ok_or_else(|| format!("{} is not listed", item.sku))?;
            ensure(listing.ids.item_id(self.channel) == *item_id, || {
                format!(
                    "{} listed with item id {:?}, its writes take {item_id:?}",
                    item.sku,
                    listing.ids.item_id(self.channel)
                )
            })?;
            ensure(listing.quantity == Some(item.quantity), || {
                format!("{} listed with quantity {:?}, seeded {}", item.sku, listing.quantity, item.quantity)
            })?;
        }
        Ok(())
    }

    /// The catalog seeded and read back as the push path reads it, and the item [`PICK`] of it with
    /// its listing.
    async fn pick(&self) -> Checked<(CatalogItem, Listing)> {
        let (item, _) = self.seed_catalog().swap_remove(PICK);
        let listing = self
            .listings()
            .await?
            .into_iter()
            .find(|l| l.sku == item.sku)
            .ok_or_else(|| format!("{} is not listed", item.sku))?;
        Ok((item, listing))
    }

    fn seed_catalog(&self) -> Vec<(CatalogItem, Option<String>)> {
        let seeded: Vec<_> = (0..CATALOG).map(|n| catalog_item(self.channel, n)).collect();
        self.sim.seed_catalog(self.channel, seeded.iter().map(|(item, _)| item.clone()).collect());
        seeded
    }

    async fn listings(&self) -> Checked<Vec<Listing>> {
        let (mut all, mut cursor) = (Vec::new(), None::<String>);
        for _ in 0..100 {
            let page = step("list_listings", self.api.list_listings(cursor.as_deref(), &self.ctx()).await)?;
            all.extend(page.listings);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
        Err("list_listings pages never end".into())
    }

    fn writes(&self) -> Vec<Write> {
        self.sim.snapshot().writes.remove(&self.channel).unwrap_or_default()
    }
}

fn step<T, E: Display>(what: &str, result: Result<T, E>) -> Checked<T> {
    result.map_err(|e| format!("{what}: {e}"))
}

fn ensure(holds: bool, why: impl FnOnce() -> String) -> Checked {
    if holds { Ok(()) } else { Err(why()) }
}

fn sku(listing: &Listing) -> Checked<Sku> {
    step("listed SKU", Sku::new(listing.sku.clone()))
}

/// What a cell's assertions compare of an order: each line's id, SKU and quantity.
fn lines(order: &Order) -> Vec<(String, Option<Sku>, u32)> {
    order.lines.iter().map(|l| (l.line_id.clone(), l.sku.clone(), l.quantity)).collect()
}

fn shipment(
    order_id: manifold_domain::OrderId,
    account: &AccountConfig,
    channel_order_id: &str,
    lines: Vec<ShipmentLine>,
) -> Shipment {
    Shipment {
        id: "matrix-shipment".into(),
        order_id,
        channel: account.channel,
        account: account.account.clone(),
        channel_order_id: channel_order_id.to_owned(),
        carrier: Some("DHL".into()),
        tracking_number: Some(TRACKING.into()),
        tracking_url: None,
        lines,
        shipped_at: Utc::now(),
    }
}

/// Whether a recorded write names `needle` in its path, query or body.
pub(crate) fn mentions(write: &Write, needle: &str) -> bool {
    write.path.contains(needle) || write.query.contains(needle) || write.body.to_string().contains(needle)
}

fn summary(writes: &[Write]) -> String {
    if writes.is_empty() {
        return "none".into();
    }
    writes.iter().map(|w| format!("{} {} {}", w.method, w.path, w.body)).collect::<Vec<_>>().join("; ")
}

/// Every id an order document carries (fields named `id`, `…id`, `…Id` or `id_…`): the order's, its
/// lines', units' and packages', whichever the channel's shipment write names.
fn ids_in(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let k = k.to_ascii_lowercase();
                    let text = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    if (k.ends_with("id") || k.starts_with("id_"))
                        && let Some(t) = text.filter(|t| t.len() >= 3)
                    {
                        out.insert(t);
                    }
                    stack.push(v);
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

// Per-channel facts.

/// The channel's sample order (what ingest receives) as its simulator serves it. TikTok's sample has
/// no packages yet, and its shipment is written per package: one is added, as TikTok creates it once
/// the order awaits shipment.
fn order_doc(channel: Channel) -> Value {
    let (_, bytes) = manifold_normalize::samples::orders()
        .into_iter()
        .find(|(c, _)| *c == channel)
        .expect("every channel has a sample order");
    let mut doc: Value = serde_json::from_slice(&bytes).expect("the sample is JSON");
    if channel == Channel::Tiktok && doc.get("packages").is_none() {
        doc["packages"] = json!([{ "id": "1152321127278713123" }]);
    }
    doc
}

/// The same order as the channel shows it once cancelled.
fn cancelled(channel: Channel, mut doc: Value) -> Value {
    let each = |doc: &mut Value, list: &str, field: &str, status: &str| {
        for item in doc.pointer_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            item[field] = json!(status);
        }
    };
    match channel {
        Channel::Shopify => {
            doc["cancelled_at"] = json!("2026-01-02T10:00:00Z");
            doc["cancel_reason"] = json!("inventory");
        }
        Channel::Woocommerce => doc["status"] = json!("cancelled"),
        Channel::Bigcommerce => {
            doc["order"]["status_id"] = json!(5);
            doc["order"]["status"] = json!("Cancelled");
        }
        Channel::Amazon => doc["order"]["OrderStatus"] = json!("Canceled"),
        Channel::Etsy => doc["status"] = json!("Canceled"),
        Channel::Tiktok => doc["status"] = json!("CANCELLED"),
        // Zalando's order reads fulfilled once every line is canceled (its order status has no cancelled).
        Channel::Zalando => {
            doc["data"]["attributes"]["status"] = json!("fulfilled");
            for line in doc["included"].as_array_mut().into_iter().flatten().filter(|r| r["type"] == "OrderLine") {
                line["attributes"]["status"] = json!("canceled");
            }
        }
        Channel::Ebay => doc["cancelStatus"]["cancelState"] = json!("CANCELED"),
        Channel::Kaufland => each(&mut doc, "/data/order_units", "status", "cancelled"),
        Channel::Otto => each(&mut doc, "/positionItems", "fulfillmentStatus", "CANCELLED_BY_MARKETPLACE"),
    }
    doc
}

/// What the channel sends when the order `id` is created or cancelled: the topic header (where the
/// channel sends one) and the body. `None` where the channel sends nothing and its orders are polled.
fn notification(channel: Channel, doc: &Value, id: &str, event: Event) -> Option<(Option<&'static str>, Value)> {
    let created = event == Event::Created;
    let at = "2026-01-02T10:00:00Z";
    Some(match channel {
        // The order itself is the body.
        Channel::Shopify => (Some(if created { "orders/create" } else { "orders/cancelled" }), doc.clone()),
        Channel::Woocommerce => (Some(if created { "order.created" } else { "order.updated" }), doc.clone()),
        Channel::Bigcommerce => {
            let scope = if created { "store/order/created" } else { "store/order/statusUpdated" };
            (
                None,
                json!({ "scope": scope, "store_id": "1025646", "created_at": 1_767_348_000, "hash": "matrix", "data": { "type": "order", "id": id.parse::<u64>().ok()? } }),
            )
        }
        Channel::Amazon => (
            None,
            json!({ "NotificationVersion": "1.0", "NotificationType": "ORDER_CHANGE", "EventTime": at,
                    "Payload": { "OrderChangeNotification": { "AmazonOrderId": id, "OrderChangeType": if created { "OrderStatusChange" } else { "BuyerRequestedChange" } } },
                    "NotificationMetadata": { "NotificationId": format!("matrix-{id}") } }),
        ),
        Channel::Etsy => (
            None,
            json!({ "event_type": if created { "order.paid" } else { "order.canceled" },
                    "resource_url": format!("https://openapi.etsy.com/v3/application/shops/12345678/receipts/{id}") }),
        ),
        Channel::Tiktok => (
            None,
            json!({ "type": if created { 1 } else { 3 }, "tts_notification_id": format!("matrix-{id}"), "shop_id": "7494049642642441621",
                    "timestamp": 1_767_348_000, "data": { "order_id": id, "update_time": 1_767_348_000 } }),
        ),
        Channel::Ebay => (
            None,
            json!({ "metadata": { "topic": if created { "ORDER_CONFIRMATION" } else { "ORDER_CANCELLATION" }, "schemaVersion": "1.0" },
                    "notification": { "notificationId": format!("matrix-{id}"), "eventDate": at, "data": { "orderId": id } } }),
        ),
        // A new order is named by its id, a unit's change by the unit.
        Channel::Kaufland if created => {
            (None, json!({ "event_name": "order_new", "ts_created_iso": at, "id_order": id }))
        }
        Channel::Kaufland => {
            let unit = doc.pointer("/data/order_units/0/id_order_unit")?.clone();
            (None, json!({ "event_name": "order_unit_status_changed", "ts_created_iso": at, "id_order_unit": unit }))
        }
        Channel::Zalando | Channel::Otto => return None,
    })
}

/// Catalog item `n` of `channel` (see [`CatalogItem::sample`]).
pub(crate) fn catalog_item(channel: Channel, n: usize) -> (CatalogItem, Option<String>) {
    CatalogItem::sample(channel, n, "MTX")
}
