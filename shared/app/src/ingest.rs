//! Ingest: an envelope in, a canonical record stored and a domain event out.
//!
//! Thin notifications (BigCommerce, Etsy, TikTok, Amazon, eBay) are completed by fetching the resource
//! through the channel's connector, then every document goes through the same pure normalizer. The
//! record and the ingest key are written in one transaction; only a changed order publishes an event.
//! A payload that can never be processed is quarantined with its reason at once; a dependency failure
//! is returned as transient, so SQS retries it and finally parks it in the DLQ.

use chrono::{DateTime, Utc};
use manifold_aws::{events::publish, records::OrderWrite};
use manifold_connectors::CallContext;
use manifold_domain::{
    Order, OrderStatus, Record,
    events::{EventDetail, EventKind},
};
use manifold_normalize::{Context, DocKind, Inbound};
use manifold_telemetry::{
    MetricSet,
    cost::{Billable, CostMeter},
};
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
            // Boxed: the whole ingest future is deep, and every caller nests it further.
            match Box::pin(self.ingest_inner(envelope, now)).await {
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
                let doc = match kind {
                    DocKind::Order | DocKind::Refund | DocKind::Shipment => {
                        connector.fetch_order(&resource_id, &ctx).await
                    }
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
                api_calls = fetch_calls(envelope.channel);
                // A thin refund/shipment notification names the order: the order carries its new state.
                (DocKind::Order, doc)
            }
            Inbound::Ignore { reason } => {
                info!(reason = %reason, "notification ignored");
                return Ok(IngestOutcome::Ignored { reason });
            }
        };
        let ctx = Context { account: &account, received_at: envelope.received_at };
        let record = manifold_normalize::normalize(envelope.channel, kind, &doc, &ctx)
            .map_err(|e| Failure::permanent("normalize", e.to_string()))?;
        let key = envelope.ingest_key();
        match record {
            Record::Order(order) => {
                let outcome = self.store_order(&order, &key, &envelope.trace_id, now).await?;
                if matches!(outcome, IngestOutcome::Stored { .. }) {
                    self.count_order_cost(&order, api_calls, now).await;
                }
                Ok(outcome)
            }
            other => {
                let (kind_name, id) = manifold_aws::records::record_key(&other);
                let written = self.records.put_record(&other, &key, &envelope.trace_id, now).await?;
                if !written {
                    return Ok(IngestOutcome::Unchanged { record_id: id, why: "already applied" });
                }
                let event = match &other {
                    Record::Shipment(_) => Some(EventKind::ShipmentCreated),
                    Record::Refund(_) => Some(EventKind::RefundCreated),
                    Record::Product(_) => Some(EventKind::ProductChanged),
                    _ => None,
                };
                if let Some(kind) = event {
                    publish(self.bus.as_ref(), &EventDetail::new(kind, &envelope.trace_id, now, &other)).await?;
                }
                info!(record = kind_name, record_id = %id, "record stored");
                Ok(IngestOutcome::Stored { record_id: id, event })
            }
        }
    }

    /// What taking one order in costs, estimated from the requests this path makes: published as EMF
    /// metrics and added to the per-channel daily usage that `manifold usage` reports. Best effort: a
    /// usage counter that cannot be written never fails the order.
    async fn count_order_cost(&self, order: &Order, api_calls: u64, now: DateTime<Utc>) {
        let meter = CostMeter::new();
        // Webhook: Lambda, claim + complete, enqueue. Ingest: Lambda, receive + delete, read, the
        // two-item transaction, the event.
        meter.record(Billable::LambdaInvoke, 2);
        meter.record(Billable::DynamoWrite, 2 + 2);
        meter.record(Billable::DynamoRead, 1);
        meter.record(Billable::SqsRequest, 3);
        meter.record(Billable::EventBridgeEvent, 1);
        meter.record(Billable::ChannelApiCall, api_calls);
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
        let write = self.records.put_order(order, key, trace_id, now).await?;
        let event = match &write {
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
            OrderWrite::Stale { stored_version } => {
                info!(stored_version, incoming_version = order.source_version, "older or same version ignored");
                return Ok(IngestOutcome::Unchanged { record_id: order.id.to_string(), why: "not newer than stored" });
            }
            OrderWrite::Duplicate => {
                return Ok(IngestOutcome::Unchanged { record_id: order.id.to_string(), why: "already applied" });
            }
        };
        if let Some(kind) = event {
            publish(self.bus.as_ref(), &EventDetail::new(kind, trace_id, now, order)).await?;
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

/// API calls a thin notification costs to complete: the requests each connector's `fetch_order` makes.
fn fetch_calls(channel: manifold_domain::Channel) -> u64 {
    use manifold_domain::Channel;
    match channel {
        // Order, products, shipping addresses.
        Channel::Bigcommerce => 3,
        // getOrder and getOrderItems.
        Channel::Amazon => 2,
        _ => 1,
    }
}
