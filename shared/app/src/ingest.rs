//! Ingest: an envelope in, a canonical record stored and a domain event out.
//!
//! Thin notifications (BigCommerce, Etsy, TikTok, Amazon, eBay) are completed by fetching the resource
//! through the channel's connector, then every document goes through the same pure normalizer. The
//! record, the ingest key and the events the write implies (the outbox) are committed in one
//! transaction; the events are published after the commit and marked sent one by one. A redelivery
//! that finds the ingest key publishes whatever is still pending, so an event is published at least
//! once (with a stable id for the consumers to deduplicate on) and never lost between the commit and
//! the publish.
//! A payload that can never be processed is quarantined with its reason at once; a dependency failure
//! is returned as transient, so SQS retries it and finally parks it in the DLQ.

use chrono::{DateTime, Utc};
use manifold_aws::{
    StoreError,
    events::EventPublisher,
    records::{OrderWrite, OutboxEvent, RecordStore},
};
use manifold_connectors::{CallContext, FetchedShipment};
use manifold_domain::{
    Order, OrderStatus, Record,
    events::{EventDetail, EventKind, OrderEventV1, event_id},
};
use manifold_normalize::{Context, DocKind, Inbound};
use manifold_telemetry::{MetricSet, cost::CostMeter};
use tracing::{Instrument, info};

use crate::{App, IngestEnvelope, outcome::Failure};

/// What happened to one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored and published (`kind` of the event).
    Stored { record_id: String, event: Option<EventKind> },
    /// Already applied, or older than what we hold.
    Unchanged { record_id: String, why: &'static str },
    /// Acknowledged without a record (an event type we do not consume).
    Ignored { reason: String },
    /// Could not be processed; kept for replay.
    Quarantined { id: Option<String>, reason: String },
}

impl IngestOutcome {
    /// Whether this store of `order` is one its channel expects to hear about
    /// ([`ChannelSpec::acknowledges_after_ingest`](manifold_domain::channel::ChannelSpec)): the order
    /// is open (paid, not yet shipped) and was just stored or accepted, or this is a redelivery of the
    /// message that stored it (the first delivery may have failed before the acknowledgement was
    /// queued). An acknowledgement sent twice is harmless; one never sent leaves the order
    /// unacknowledged on the channel.
    fn needs_acknowledgement(&self, order: &Order) -> bool {
        if !order.channel.spec().acknowledges_after_ingest() || order.status != OrderStatus::Paid {
            return false;
        }
        match self {
            IngestOutcome::Stored { event, .. } => {
                matches!(event, Some(EventKind::OrderAccepted | EventKind::OrderUpdated))
            }
            IngestOutcome::Unchanged { why, .. } => why.starts_with(ALREADY_APPLIED),
            IngestOutcome::Ignored { .. } | IngestOutcome::Quarantined { .. } => false,
        }
    }
}

impl App {
    /// Processes one envelope. Permanent failures are quarantined here and returned as `Ok`, so the
    /// queue consumer only sees (and retries) transient ones.
    pub async fn ingest(&self, envelope: &IngestEnvelope, now: DateTime<Utc>) -> Result<IngestOutcome, Failure> {
        let span =
            manifold_telemetry::business_span!("ingest", source = ?envelope.source, event_id = %envelope.event_id);
        span.record("trace_id", envelope.trace_id.as_str());
        span.record("channel", envelope.channel.as_str());
        span.record("account", envelope.account.as_str());
        async {
            // Boxed: the whole ingest future is deep, and every caller nests it further. Scoped: the AWS
            // calls this envelope makes are counted on their own, for its order's cost.
            let counted = manifold_aws::usage::scoped(std::sync::Arc::default(), self.ingest_inner(envelope, now));
            match Box::pin(counted).await {
                Err(Failure::Permanent { stage, reason }) => {
                    let id = self.quarantine_envelope(envelope, stage, &reason, now).await;
                    MetricSet::new()
                        .dim("Channel", envelope.channel.as_str())
                        .dim("Operation", "ingest")
                        .count("Quarantined", 1)
                        .emit();
                    if id.is_none() {
                        // Could not even keep it: let SQS retry rather than lose it.
                        return Err(Failure::Transient(format!("quarantine unavailable for {reason}").into()));
                    }
                    Ok(IngestOutcome::Quarantined { id, reason })
                }
                other => other,
            }
        }
        .instrument(span)
        .await
    }

    async fn ingest_inner(&self, envelope: &IngestEnvelope, now: DateTime<Utc>) -> Result<IngestOutcome, Failure> {
        let account = self.account(envelope.channel, &envelope.account).await?;
        let body: serde_json::Value = serde_json::from_str(&envelope.body)
            .map_err(|e| Failure::permanent("parse", format!("body is not JSON: {e}")))?;
        let inbound = match envelope.document {
            Some(kind) => Inbound::Full { kind, doc: body },
            None => manifold_normalize::classify(envelope.channel, envelope.topic.as_deref(), &body)
                .map_err(|e| Failure::permanent("classify", e.to_string()))?,
        };
        let mut api_calls = 0;
        let (kind, doc) = match inbound {
            Inbound::Full { kind, doc } => (kind, doc),
            Inbound::Thin { kind, resource_id, .. } => {
                let connector = self.connector(&account).await?;
                let ctx = CallContext { trace_id: envelope.trace_id.clone() };
                let fetched = match kind {
                    // A thin refund notification names the order: the order carries its new state.
                    DocKind::Order | DocKind::Refund => {
                        connector.fetch_order(&resource_id, &ctx).await.map(|doc| (DocKind::Order, doc))
                    }
                    DocKind::Return => {
                        connector.fetch_returns(&resource_id, &ctx).await.map(|doc| (DocKind::Return, doc))
                    }
                    DocKind::Shipment => connector.fetch_shipment(&resource_id, &ctx).await.map(|f| match f {
                        FetchedShipment::Shipment(doc) => (DocKind::Shipment, doc),
                        FetchedShipment::Order(doc) => (DocKind::Order, doc),
                    }),
                    other => {
                        return Ok(IngestOutcome::Ignored {
                            reason: format!("thin {other:?} notifications are reconciled by the scheduled sync"),
                        });
                    }
                }
                .map_err(|e| {
                    if e.is_retryable() {
                        Failure::Transient(Box::new(e))
                    } else {
                        Failure::permanent("fetch", format!("fetching {resource_id}: {e}"))
                    }
                })?;
                api_calls = envelope.channel.spec().fetch_calls;
                fetched
            }
            Inbound::Ignore { reason } => {
                info!(reason = %reason, "notification ignored");
                return Ok(IngestOutcome::Ignored { reason });
            }
        };
        let ctx = Context { account: &account, received_at: envelope.received_at };
        let key = envelope.ingest_key();
        if kind == DocKind::Return {
            // An order's returns and refunds: every record the document holds, each under its own
            // ingest key (derived from the delivery's), so a repeated delivery stores none twice.
            let records = manifold_normalize::normalize_all(envelope.channel, kind, &doc, &ctx)
                .map_err(|e| Failure::permanent("normalize", e.to_string()))?;
            if records.is_empty() {
                return Ok(IngestOutcome::Ignored { reason: "the order has no returns or refunds".into() });
            }
            let mut first = None;
            for (i, record) in records.into_iter().enumerate() {
                let record_key = if i == 0 { key.clone() } else { format!("{key}#{i}") };
                let outcome = self.store_record(record, &record_key, &envelope.trace_id, now).await?;
                if first.is_none() || matches!(outcome, IngestOutcome::Stored { .. }) {
                    first.get_or_insert(outcome);
                }
            }
            return Ok(first.unwrap_or(IngestOutcome::Ignored { reason: "nothing to store".into() }));
        }
        if kind == DocKind::Order {
            // The order, then any returns its lines report (Kaufland units, OTTO position items
            // returned), each under a key derived from the delivery's.
            let mut records = manifold_normalize::normalize_all(envelope.channel, kind, &doc, &ctx)
                .map_err(|e| Failure::permanent("normalize", e.to_string()))?
                .into_iter();
            let Some(Record::Order(order)) = records.next() else {
                return Err(Failure::permanent("normalize", "an order document gave no order first"));
            };
            let outcome = self.store_order(&order, &key, &envelope.trace_id, now).await?;
            if matches!(outcome, IngestOutcome::Stored { .. }) {
                self.count_order_cost(&order, api_calls, now).await;
            }
            if outcome.needs_acknowledgement(&order) {
                self.enqueue_acknowledgement(&order, &envelope.trace_id).await?;
            }
            if matches!(outcome, IngestOutcome::Stored { .. } | IngestOutcome::Unchanged { .. }) {
                for (i, record) in records.enumerate() {
                    self.store_record(record, &format!("{key}#{}", i + 1), &envelope.trace_id, now).await?;
                }
            }
            return Ok(outcome);
        }
        let record = manifold_normalize::normalize(envelope.channel, kind, &doc, &ctx)
            .map_err(|e| Failure::permanent("normalize", e.to_string()))?;
        self.store_record(record, &key, &envelope.trace_id, now).await
    }

    /// Stores a record other than an order under `key` with its event in the outbox, and publishes it.
    async fn store_record(
        &self,
        record: Record,
        key: &str,
        trace: &str,
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome, Failure> {
        let (kind_name, id) = manifold_aws::records::record_key(&record);
        // The event's data is the record itself (a Shipment, a Refund, a Return, a Product), as the
        // ledger and every other consumer read it, not the `Record` envelope around it.
        let (event, outbox) = match &record {
            Record::Shipment(r) => record_event(EventKind::ShipmentCreated, key, trace, now, r)?,
            Record::Refund(r) => record_event(EventKind::RefundCreated, key, trace, now, r)?,
            Record::Return(r) => record_event(EventKind::ReturnUpdated, key, trace, now, r)?,
            Record::Product(r) => record_event(EventKind::ProductChanged, key, trace, now, r)?,
            _ => (None, None),
        };
        let outbox = outbox.as_slice();
        let written = self.records.put_record(&record, key, trace, now, outbox).await?;
        if !written {
            let finished = publish_pending(self.records.as_ref(), self.bus.as_ref(), key).await?;
            return Ok(IngestOutcome::Unchanged { record_id: id, why: unchanged_why(finished) });
        }
        publish_outbox(self.records.as_ref(), self.bus.as_ref(), key, outbox).await?;
        info!(record = kind_name, record_id = %id, "record stored");
        Ok(IngestOutcome::Stored { record_id: id, event })
    }

    /// What taking one order in cost ingest, counted: the AWS calls this envelope made (as the SDK
    /// interceptor counted them, DynamoDB units as DynamoDB reported them) and the channel API calls of
    /// a thin notification's fetch; published as EMF metrics and added to the per-channel daily usage
    /// that `manifold usage` reports. Best effort: a usage counter that cannot be written never fails
    /// the order. The pushes add their own work to the same counter (`App::count_push_cost`); the
    /// webhook's and the ledger's is in their `aws usage` log lines, which the bench adds up per order.
    async fn count_order_cost(&self, order: &Order, api_calls: u64, now: DateTime<Utc>) {
        let meter = CostMeter::new();
        meter.add_usage(&manifold_aws::usage::in_scope().unwrap_or_default());
        meter.add_api_calls(api_calls);
        meter.to_metrics(order.channel.as_str(), "order").emit();
        if let Err(e) = self
            .state
            .add_usage(
                order.channel.as_str(),
                now.date_naive(),
                meter.api_calls(),
                meter.aws_requests(),
                1,
                meter.micro_usd(),
            )
            .await
        {
            tracing::warn!(error = %e, "usage counter not updated");
        }
    }

    /// Stores an order if it is new or newer, and publishes what changed.
    pub async fn store_order(
        &self,
        order: &Order,
        key: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome, Failure> {
        tracing::Span::current().record("order_id", order.id.as_str());
        let order = &self.routed(order, now).await?;
        // What the store keeps: an order routed before keeps its routing (see `crate::rules`).
        let stored = |write: &OrderWrite| match write {
            OrderWrite::Updated { previous } => Order { fulfillment: previous.fulfillment.clone(), ..order.clone() },
            _ => order.clone(),
        };
        let events = |write: &OrderWrite| -> Result<Vec<OutboxEvent>, StoreError> {
            let stored = stored(write);
            order_event(&stored, write)
                .map(|kind| outbox_event(kind, key, order_detail(kind, &stored, trace_id, now)))
                .into_iter()
                .collect()
        };
        let write = self.records.put_order(order, key, trace_id, now, &events).await?;
        let (event, outbox) = match &write {
            OrderWrite::Stale { stored_version } => {
                // A redelivery of a message whose record was stored finds itself stale too.
                let finished = publish_pending(self.records.as_ref(), self.bus.as_ref(), key).await?;
                info!(stored_version, incoming_version = order.source_version, "older or same version ignored");
                let why = if finished > 0 { unchanged_why(finished) } else { "not newer than stored" };
                return Ok(IngestOutcome::Unchanged { record_id: order.id.to_string(), why });
            }
            OrderWrite::Duplicate => {
                let finished = publish_pending(self.records.as_ref(), self.bus.as_ref(), key).await?;
                return Ok(IngestOutcome::Unchanged { record_id: order.id.to_string(), why: unchanged_why(finished) });
            }
            written => (order_event(order, written), events(written)?),
        };
        if matches!(write, OrderWrite::Created) {
            for applied in order.fulfillment.iter().flat_map(|f| &f.rules) {
                info!(rule = %applied.rule, kind = %applied.kind, effect = %applied.effect, "rule applied");
            }
        }
        publish_outbox(self.records.as_ref(), self.bus.as_ref(), key, &outbox).await?;
        if let Some(kind) = event {
            MetricSet::new()
                .dim("Channel", order.channel.as_str())
                .dim("Operation", "ingest")
                .count("OrdersStored", 1)
                .property("trace_id", trace_id)
                .emit();
            info!(event = kind.as_str(), status = order.status.as_str(), lines = order.lines.len(), "order stored");
        }
        Ok(IngestOutcome::Stored { record_id: order.id.to_string(), event })
    }
}

/// The event a stored order write announces (none for a write that stored nothing).
fn order_event(order: &Order, write: &OrderWrite) -> Option<EventKind> {
    match write {
        OrderWrite::Created => Some(if order.status == OrderStatus::Cancelled {
            EventKind::OrderCancelled
        } else {
            EventKind::OrderAccepted
        }),
        OrderWrite::Updated { previous } => {
            Some(if order.status == OrderStatus::Cancelled && previous.status != OrderStatus::Cancelled {
                EventKind::OrderCancelled
            } else {
                EventKind::OrderUpdated
            })
        }
        OrderWrite::Stale { .. } | OrderWrite::Duplicate => None,
    }
}

/// The detail of an order event: the order's ids and business fields ([`OrderEventV1`]), never its
/// buyer or addresses (the bus archive keeps every event; consumers that need more read the record).
pub(crate) fn order_detail(
    kind: EventKind,
    order: &Order,
    trace_id: &str,
    now: DateTime<Utc>,
) -> EventDetail<OrderEventV1> {
    EventDetail::new(kind, trace_id, now, OrderEventV1::from(order))
}

/// An outbox entry for an event about what `ingest_key` stored; its id is stable for that message.
/// The event a stored non-order record implies, with the record as its data.
fn record_event<T: serde::Serialize>(
    kind: EventKind,
    ingest_key: &str,
    trace_id: &str,
    now: DateTime<Utc>,
    record: &T,
) -> Result<(Option<EventKind>, Option<OutboxEvent>), StoreError> {
    let event = outbox_event(kind, ingest_key, EventDetail::new(kind, trace_id, now, record))?;
    Ok((Some(kind), Some(event)))
}

fn outbox_event<T: serde::Serialize>(
    kind: EventKind,
    ingest_key: &str,
    detail: EventDetail<T>,
) -> Result<OutboxEvent, StoreError> {
    let id = event_id(kind, &[ingest_key]);
    let detail = serde_json::to_string(&detail.with_id(id.clone()))
        .map_err(|e| StoreError::Invalid { what: "event", reason: e.to_string() })?;
    Ok(OutboxEvent { id, kind, detail })
}

/// How an [`IngestOutcome::Unchanged`] of a redelivered message starts.
const ALREADY_APPLIED: &str = "already applied";

fn unchanged_why(finished: usize) -> &'static str {
    if finished > 0 { "already applied; its pending events are now published" } else { ALREADY_APPLIED }
}

/// Publishes committed outbox events, marking each sent as soon as it is out. The first failure
/// stops: the message is retried and the redelivery publishes what is still pending.
pub async fn publish_outbox(
    records: &dyn RecordStore,
    bus: &dyn EventPublisher,
    ingest_key: &str,
    events: &[OutboxEvent],
) -> Result<(), StoreError> {
    for e in events {
        bus.publish_json(e.kind, e.detail.clone()).await?;
        records.mark_sent(ingest_key, &e.id).await?;
    }
    Ok(())
}

/// The redelivery path: publishes the outbox events of `ingest_key` that were never marked sent.
pub async fn publish_pending(
    records: &dyn RecordStore,
    bus: &dyn EventPublisher,
    ingest_key: &str,
) -> Result<usize, StoreError> {
    let pending = records.pending_events(ingest_key).await?;
    if !pending.is_empty() {
        info!(events = pending.len(), "publishing outbox events a previous attempt left pending");
        publish_outbox(records, bus, ingest_key, &pending).await?;
    }
    Ok(pending.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use manifold_aws::{
        events::{FailingCalls, MemoryBus},
        records::MemoryRecords,
    };
    use manifold_domain::{AccountId, Channel, OrderId};

    use super::*;

    fn order() -> Order {
        let account = AccountId::new("shop-eu").unwrap();
        let at = Utc::now();
        let zero = manifold_domain::Amount::ZERO;
        Order {
            id: OrderId::for_channel(Channel::Shopify, &account, "1001").unwrap(),
            channel: Channel::Shopify,
            account,
            channel_order_id: "1001".into(),
            order_number: "#1001".into(),
            status: OrderStatus::Paid,
            created_at: at,
            updated_at: at,
            currency: "EUR".parse().unwrap(),
            lines: Vec::new(),
            totals: manifold_domain::Totals { subtotal: zero, shipping: zero, tax: zero, discount: zero, total: zero },
            customer: manifold_domain::OrderCustomer::default(),
            shipping_address: None,
            billing_address: None,
            source_version: 1,
            warnings: Vec::new(),
            ship_by: None,
            oversold: None,
            fulfillment: None,
            customer_id: None,
            contact_erased_at: None,
        }
    }

    #[tokio::test]
    async fn a_publish_that_fails_after_the_commit_is_finished_by_the_redelivery_exactly_once() {
        let records = MemoryRecords::default();
        let memory = Arc::new(MemoryBus::default());
        let bus = FailingCalls::new(memory.clone(), [1]);
        let order = order();
        let events = |w: &OrderWrite| -> Result<Vec<OutboxEvent>, StoreError> {
            order_event(&order, w)
                .map(|k| outbox_event(k, "key-1", order_detail(k, &order, "t", Utc::now())))
                .into_iter()
                .collect()
        };
        let write = records.put_order(&order, "key-1", "t", Utc::now(), &events).await.unwrap();
        assert_eq!(write, OrderWrite::Created);
        let outbox = events(&write).unwrap();
        assert!(publish_outbox(&records, &bus, "key-1", &outbox).await.is_err(), "the first publish fails");
        assert_eq!(records.pending_events("key-1").await.unwrap().len(), 1, "still pending after the failure");

        // The SQS retry: the write is a duplicate, the pending event goes out, then nothing is left.
        let again = records.put_order(&order, "key-1", "t", Utc::now(), &events).await.unwrap();
        assert!(matches!(again, OrderWrite::Stale { .. } | OrderWrite::Duplicate));
        assert_eq!(publish_pending(&records, &bus, "key-1").await.unwrap(), 1);
        assert_eq!(publish_pending(&records, &bus, "key-1").await.unwrap(), 0, "marked sent");
        let published = memory.events.lock().unwrap().clone();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].0, EventKind::OrderAccepted);
        let detail: serde_json::Value = serde_json::from_str(&published[0].1).unwrap();
        assert_eq!(detail["event_id"], "OrderAccepted:key-1", "a stable id consumers deduplicate on");
    }

    /// Real published orders, each with a buyer and addresses, by channel.
    const FIXTURE_ORDERS: &[(Channel, &str, &str)] = &[
        (
            Channel::Shopify,
            "shopify/order-1073459981-rest-2026-07-create-paid.json",
            include_str!("../../normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json"),
        ),
        (
            Channel::Shopify,
            "shopify/order-450789469-rest-2026-07-get.json",
            include_str!("../../normalize/fixtures/shopify/order-450789469-rest-2026-07-get.json"),
        ),
        (
            Channel::Woocommerce,
            "woocommerce/order-727-rest-v3-retrieve.json",
            include_str!("../../normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json"),
        ),
        (
            Channel::Etsy,
            "etsy/receipt-written-from-v3-schema.json",
            include_str!("../../normalize/fixtures/etsy/receipt-written-from-v3-schema.json"),
        ),
        (
            Channel::Tiktok,
            "tiktok/order-detail-202309-written-from-docs.json",
            include_str!("../../normalize/fixtures/tiktok/order-detail-202309-written-from-docs.json"),
        ),
        (
            Channel::Ebay,
            "ebay/getorder-written-from-docs.json",
            include_str!("../../normalize/fixtures/ebay/getorder-written-from-docs.json"),
        ),
        (
            Channel::Zalando,
            "zalando/order-jsonapi-written-from-docs.json",
            include_str!("../../normalize/fixtures/zalando/order-jsonapi-written-from-docs.json"),
        ),
        (
            Channel::Otto,
            "otto/order-processable-written-from-docs.json",
            include_str!("../../normalize/fixtures/otto/order-processable-written-from-docs.json"),
        ),
    ];

    /// The contact data an order holds: every buyer and address value long enough not to match by
    /// chance (two-letter country and region codes would match a currency or a SKU).
    fn personal_values(order: &Order) -> Vec<String> {
        let c = &order.customer;
        let mut out: Vec<Option<String>> = vec![c.email.clone(), c.name.clone(), c.phone.clone()];
        for a in [&order.shipping_address, &order.billing_address].into_iter().flatten() {
            out.extend([&a.name, &a.line1, &a.line2, &a.city, &a.region, &a.postal_code].map(Clone::clone));
        }
        out.into_iter().flatten().map(|v| v.trim().to_owned()).filter(|v| v.chars().count() >= 4).collect()
    }

    /// Every event kind as the code builds it about `order`, serialized as it goes on the bus. The
    /// match is exhaustive: a new kind does not compile until it is covered here.
    fn every_event(order: &Order) -> Vec<(EventKind, String)> {
        use manifold_domain::{
            Oversell, OversellAction, Refund, RefundLine, Return, ReturnLine, ReturnState, Shipment, ShipmentLine,
            ShortLine, events::EventKind as K,
        };
        let now = Utc::now();
        let kinds = [
            K::OrderAccepted,
            K::OrderUpdated,
            K::OrderCancelled,
            K::OrderOversold,
            K::InventoryChanged,
            K::ShipmentCreated,
            K::RefundCreated,
            K::ReturnUpdated,
            K::ProductChanged,
            K::OrderLate,
            K::TrackingUnconfirmed,
        ];
        let record = |kind, r: Record| serde_json::to_string(&EventDetail::new(kind, "t", now, &r));
        kinds
            .into_iter()
            .map(|kind| {
                let json = match kind {
                    K::OrderAccepted | K::OrderUpdated | K::OrderCancelled => {
                        serde_json::to_string(&order_detail(kind, order, "t", now))
                    }
                    K::OrderOversold => {
                        // As the ledger announces it: the order with its oversell decision.
                        let mut marked = order.clone();
                        let short_lines = order
                            .quantities_by_sku()
                            .into_iter()
                            .map(|(sku, requested)| ShortLine { sku, requested, available: 0 })
                            .collect();
                        marked.oversold =
                            Some(Oversell { short_lines, action: OversellAction::Cancel, detected_at: now });
                        serde_json::to_string(&order_detail(kind, &marked, "t", now))
                    }
                    K::ShipmentCreated => record(
                        kind,
                        Record::Shipment(Shipment {
                            id: "s1".into(),
                            order_id: order.id.clone(),
                            channel: order.channel,
                            account: order.account.clone(),
                            channel_order_id: order.channel_order_id.clone(),
                            carrier: Some("DHL".into()),
                            tracking_number: Some("00340434161094042557".into()),
                            tracking_url: None,
                            lines: order
                                .lines
                                .iter()
                                .map(|l| ShipmentLine {
                                    line_id: Some(l.line_id.clone()),
                                    sku: l.sku.clone(),
                                    quantity: l.quantity,
                                })
                                .collect(),
                            shipped_at: now,
                        }),
                    ),
                    K::RefundCreated => record(
                        kind,
                        Record::Refund(Refund {
                            id: "r1".into(),
                            order_id: order.id.clone(),
                            channel: order.channel,
                            account: order.account.clone(),
                            currency: order.currency,
                            amount: order.totals.total,
                            lines: order
                                .lines
                                .iter()
                                .map(|l| RefundLine {
                                    line_id: l.line_id.clone(),
                                    sku: l.sku.clone(),
                                    quantity: l.quantity,
                                    restock: true,
                                })
                                .collect(),
                            created_at: now,
                        }),
                    ),
                    K::ReturnUpdated => record(
                        kind,
                        Record::Return(Return {
                            id: "woocommerce:shop:refund-1".into(),
                            order_id: order.id.clone(),
                            channel: order.channel,
                            account: order.account.clone(),
                            channel_order_id: order.channel_order_id.clone(),
                            channel_return_id: "refund-1".into(),
                            state: ReturnState::Received,
                            reason: Some("too small".into()),
                            lines: order
                                .lines
                                .iter()
                                .map(|l| ReturnLine {
                                    line_id: l.line_id.clone(),
                                    sku: l.sku.clone(),
                                    quantity: l.quantity,
                                    reason: None,
                                })
                                .collect(),
                            created_at: now,
                            updated_at: now,
                        }),
                    ),
                    K::OrderLate | K::TrackingUnconfirmed => {
                        let data = manifold_domain::events::DeadlineV1 {
                            order_id: order.id.clone(),
                            channel: order.channel,
                            account: order.account.clone(),
                            shipment_id: None,
                            deadline: now,
                            reason: "still paid on the channel, not shipped".into(),
                        };
                        serde_json::to_string(&EventDetail::new(kind, "t", now, data))
                    }
                    // Positions and products are about SKUs, not orders: what they carry of an order is
                    // its SKUs, as here.
                    K::InventoryChanged | K::ProductChanged => {
                        let skus: Vec<_> = order.lines.iter().filter_map(|l| l.sku.clone()).collect();
                        serde_json::to_string(&EventDetail::new(kind, "t", now, serde_json::json!({ "skus": skus })))
                    }
                };
                (kind, json.unwrap())
            })
            .collect()
    }

    #[test]
    fn no_event_carries_the_buyers_contact_data() {
        use manifold_domain::config::ChannelConfig;
        use manifold_normalize::{Context, DocKind};

        let config =
            ChannelConfig::parse("channels.example.toml", include_str!("../../../infra/channels.example.toml"))
                .unwrap();
        for (channel, name, text) in FIXTURE_ORDERS {
            let account = config.accounts.iter().find(|a| a.channel == *channel).unwrap();
            let ctx = Context { account, received_at: Utc::now() };
            let doc: serde_json::Value = serde_json::from_str(text).unwrap();
            let Record::Order(order) = manifold_normalize::normalize(*channel, DocKind::Order, &doc, &ctx)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
            else {
                panic!("{name} is not an order");
            };
            let personal = personal_values(&order);
            assert!(
                !personal.is_empty(),
                "{name}: the fixture names a buyer or an address, so this test checks something"
            );
            for (kind, json) in every_event(&order) {
                for value in &personal {
                    assert!(!json.contains(value.as_str()), "{name}: {kind:?} carries {value:?}: {json}");
                }
                let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
                for field in ["customer", "email", "phone", "shipping_address", "billing_address"] {
                    assert!(!has_key(&detail, field), "{name}: {kind:?} has a {field} field");
                }
            }
        }
    }

    #[test]
    fn the_ledger_reads_an_order_event_as_the_order_without_its_buyer() {
        let order = order();
        let json = serde_json::to_value(order_detail(EventKind::OrderAccepted, &order, "t", Utc::now())).unwrap();
        let back: OrderEventV1 = serde_json::from_value(json["data"].clone()).unwrap();
        assert_eq!(back.into_order(), order, "every business field survives");
    }

    fn has_key(v: &serde_json::Value, key: &str) -> bool {
        match v {
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| k == key || has_key(v, key)),
            serde_json::Value::Array(a) => a.iter().any(|v| has_key(v, key)),
            _ => false,
        }
    }
}
