//! The ledger consumer and the inventory API: domain events and ERP/WMS stock in, atomic stock
//! movements, then availability fanned out to every channel's push queue.
//!
//! Order events arrive from the bus through `LedgerQueue` (an EventBridge rule): accepted and updated
//! orders reserve (idempotently), cancellations and refunds release exactly what was reserved,
//! shipments and fulfilled orders turn reservations into on-hand decrements. An order that cannot be
//! fully reserved is marked `oversold` on the canonical record, announced as `OrderOversold`, counted,
//! and handled per the channel's policy (hold, backorder, cancel through the connector; a channel that
//! cancels asynchronously, Amazon through a feed, gets a feed check on its push queue that reports
//! the cancel's outcome).
//!
//! Everything after the ledger commit is a follow-up that must not be lost when the function fails
//! half-way: marking the order oversold, the `OrderOversold` event, the channel cancel, the push gate
//! and the fan-out. Each is idempotent (the mark is a plain set, events carry a stable id, the cancel
//! and the event are guarded by done-markers in the `StateTable`, the gate coalesces what was already
//! handed over), so a redelivered order event that finds its reservation already applied redoes them
//! from the reservation record (its short lines, oversell decision and positions) until all are done.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use manifold_aws::{StoreError, events::publish};
use manifold_connectors::{Accepted, CallContext};
use manifold_domain::{
    Order, OrderId, OrderStatus, Oversell, OversellAction, Refund, Return, Shipment, Sku,
    config::{ChannelConfig, RestockPolicy},
    events::{EventDetail, EventKind, OrderEventV1, event_id},
};
use manifold_ledger::{
    Change, Ledger, OrderReservation, Position, PositionKey, ReleaseOutcome, ReservationRecord, ReservationState,
    ReserveOutcome, Scope, SetOutcome,
    fanout::{FanoutReport, PushQueue, bundle_component_keys, fan_out_with_bundles},
    import::{Parsed, parse_csv, parse_json},
};
use manifold_telemetry::MetricSet;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, warn};

use crate::{App, outcome::Failure, sqs::process_batch};

/// What a ledger event did, for logs, tests and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerOutcome {
    Reserved {
        jobs: usize,
    },
    /// A later version of the order changed its lines; the reservation follows it.
    Amended {
        jobs: usize,
    },
    AlreadyApplied,
    Oversold {
        action: OversellAction,
        short: usize,
    },
    Released {
        jobs: usize,
    },
    Shipped {
        jobs: usize,
    },
    /// Returned units taken back onto on-hand (sellable or damaged), per the restock policy.
    Restocked {
        jobs: usize,
    },
    Ignored(&'static str),
}

/// An EventBridge event as the rule delivers it to SQS.
#[derive(Debug, Deserialize)]
struct BusEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: serde_json::Value,
}

/// The ERP/WMS absolute stock update (`PUT /v1/inventory/{sku}`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnHandUpdate {
    pub on_hand: i64,
    #[serde(default)]
    pub location: Option<String>,
    /// The source system's reference for this count (idempotency); defaults to `as_of:{as_of}` when
    /// the count has an as-of time, else to the request's trace id.
    #[serde(default)]
    pub source_ref: Option<String>,
    /// When the count was taken (RFC 3339). A count as of a time older than the count the position
    /// last applied is stale: refused (409), nothing changes. Without it, the count applies whatever
    /// its age (once per `source_ref`).
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
}

/// The stage of a [`Failure`] for a stale absolute count (the inventory API answers 409).
pub const STALE_COUNT: &str = "stale_count";

/// The inventory API's status for a failure: 409 for a stale count (it lost to a newer one; nothing
/// changed), 400 for any other refused input, 503 (retry) for the rest.
pub fn inventory_status(failure: &Failure) -> u16 {
    match failure {
        Failure::Permanent { stage: STALE_COUNT, .. } => 409,
        Failure::Permanent { .. } => 400,
        Failure::Transient(_) => 503,
    }
}

/// Concurrent AWS calls of one fan-out (position reads, events).
const FANOUT_CONCURRENCY: usize = 16;

/// The follow-up step of reserving one version of an order (its first reservation, or an edit that
/// changed its lines), whose fan-out a replay of that version finishes.
fn reserve_step(version: i64) -> String {
    format!("reserve#{version}")
}

/// The done-marker of one follow-up of one order (`StateTable`, `MARKER#followup#...`).
fn followup_marker(order: &Order, step: &str) -> String {
    format!("followup#{}#{step}", order.id)
}

pub(crate) fn failure(e: &manifold_ledger::LedgerError) -> Failure {
    if matches!(e, manifold_ledger::LedgerError::Stale { .. }) {
        Failure::permanent(STALE_COUNT, e.to_string())
    } else if e.is_retryable() {
        Failure::Transient(e.to_string().into())
    } else {
        Failure::permanent("ledger", e.to_string())
    }
}

impl App {
    /// The LedgerQueue consumer.
    pub async fn ledger_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        process_batch(event, 4, |m| async move {
            let body = m.body.as_deref().unwrap_or_default();
            let event: BusEvent = serde_json::from_str(body)
                .map_err(|e| Failure::permanent("ledger", format!("not a bus event: {e}")))?;
            match self.apply_event(&event.detail_type, &event.detail, Utc::now()).await {
                // A permanent failure here is a bug or a corrupt item: keep it in the DLQ for a person.
                Err(Failure::Permanent { stage, reason }) => {
                    Err(Failure::Transient(format!("{stage}: {reason}").into()))
                }
                other => other.map(|_| ()),
            }
        })
        .await
    }

    /// Applies one domain event to the ledger.
    pub async fn apply_event(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<LedgerOutcome, Failure> {
        let trace_id = detail.get("trace_id").and_then(|v| v.as_str()).map_or_else(crate::trace::mint, str::to_owned);
        let span = manifold_telemetry::business_span!("ledger", event = detail_type);
        span.record("trace_id", trace_id.as_str());
        let data = detail.get("data").cloned().unwrap_or_default();
        let decode = |what: &'static str| {
            move |e: serde_json::Error| Failure::permanent("ledger", format!("{what} event data: {e}"))
        };
        async {
            match detail_type {
                "OrderAccepted" | "OrderUpdated" | "OrderCancelled" => {
                    // Ids and business fields only (no buyer, no addresses): all a reservation needs.
                    let event: OrderEventV1 = serde_json::from_value(data).map_err(decode("order"))?;
                    let order = event.into_order();
                    tracing::Span::current().record("order_id", order.id.as_str());
                    tracing::Span::current().record("channel", order.channel.as_str());
                    self.apply_order(&order, &trace_id, now).await
                }
                "RefundCreated" => {
                    let refund: Refund = serde_json::from_value(data).map_err(decode("refund"))?;
                    let lines: Vec<(String, u32)> =
                        refund.lines.iter().filter(|l| l.restock).map(|l| (l.line_id.clone(), l.quantity)).collect();
                    if lines.is_empty() {
                        return Ok(LedgerOutcome::Ignored("refund restocks nothing"));
                    }
                    let change = self
                        .ledger
                        .release_order_traced(
                            &refund.order_id,
                            &Scope::Lines(lines),
                            &format!("refund:{}", refund.id),
                            Some(&trace_id),
                        )
                        .await
                        .map_err(|e| failure(&e))?;
                    let refund_ref = format!("refund:{}", refund.id);
                    let jobs = self.after_movement(&refund.order_id, &refund_ref, &change, &trace_id, now).await?;
                    Ok(LedgerOutcome::Released { jobs })
                }
                "ReturnUpdated" => {
                    let ret: Return = serde_json::from_value(data).map_err(decode("return"))?;
                    tracing::Span::current().record("order_id", ret.order_id.as_str());
                    tracing::Span::current().record("channel", ret.channel.as_str());
                    self.apply_return(&ret, &trace_id, now).await
                }
                "ShipmentCreated" => {
                    let shipment: Shipment = serde_json::from_value(data).map_err(decode("shipment"))?;
                    let lines: Vec<(String, u32)> =
                        shipment.lines.iter().filter_map(|l| l.line_id.clone().map(|id| (id, l.quantity))).collect();
                    let scope = if lines.is_empty() { Scope::WholeOrder } else { Scope::Lines(lines) };
                    let change = self
                        .ledger
                        .ship_order_traced(
                            &shipment.order_id,
                            &scope,
                            &format!("shipment:{}", shipment.id),
                            Some(&trace_id),
                        )
                        .await
                        .map_err(|e| failure(&e))?;
                    let shipment_ref = format!("shipment:{}", shipment.id);
                    let jobs = self.after_movement(&shipment.order_id, &shipment_ref, &change, &trace_id, now).await?;
                    Ok(LedgerOutcome::Shipped { jobs })
                }
                _ => Ok(LedgerOutcome::Ignored("event kind does not move stock")),
            }
        }
        .instrument(span)
        .await
    }

    /// A return under its account's restock policy: once the policy says the goods are back, the
    /// returned units go onto on-hand (sellable, or the damaged location under `restock = "never"`),
    /// exactly once per return whatever its later states and however often it is delivered.
    async fn apply_return(&self, ret: &Return, trace_id: &str, now: DateTime<Utc>) -> Result<LedgerOutcome, Failure> {
        let account = self.account(ret.channel, ret.account.as_str()).await?;
        let rules = &account.stock;
        if !rules.restock.takes_back(ret.state) {
            info!(state = ?ret.state, policy = ?rules.restock, "return not taken back yet");
            return Ok(LedgerOutcome::Ignored("the restock policy takes this return back at a later state"));
        }
        let location = (rules.restock == RestockPolicy::Never).then_some(rules.damaged_location.as_str());
        let lines: Vec<(String, u32)> = ret.lines.iter().map(|l| (l.line_id.clone(), l.quantity)).collect();
        let return_ref = format!("return:{}", ret.id);
        let change =
            self.ledger.return_units(&ret.order_id, &lines, location, &return_ref).await.map_err(|e| failure(&e))?;
        if change.outcome == ReleaseOutcome::NothingHeld {
            info!("return names nothing the ledger shipped for this order");
            return Ok(LedgerOutcome::Ignored("the return names nothing the ledger shipped"));
        }
        let jobs = self.after_movement(&ret.order_id, &return_ref, &change, trace_id, now).await?;
        if change.outcome == ReleaseOutcome::AlreadyApplied {
            return Ok(LedgerOutcome::AlreadyApplied);
        }
        info!(jobs, damaged = location.is_some(), "returned units taken back");
        Ok(LedgerOutcome::Restocked { jobs })
    }

    async fn apply_order(&self, order: &Order, trace_id: &str, now: DateTime<Utc>) -> Result<LedgerOutcome, Failure> {
        if order.status.releases_stock() {
            let change = self
                .ledger
                .release_order_traced(&order.id, &Scope::WholeOrder, "cancel", Some(trace_id))
                .await
                .map_err(|e| failure(&e))?;
            let jobs = self.after_movement(&order.id, "cancel", &change, trace_id, now).await?;
            return Ok(LedgerOutcome::Released { jobs });
        }
        if order.is_held() {
            info!(order_id = %order.id, "order held for review: nothing reserved until it is released");
            return Ok(LedgerOutcome::Ignored("the order is held for review"));
        }
        let mut reservation = OrderReservation::from_order(order, &*self.config().await, Some(trace_id.to_owned()));
        if let Some(location) = order.fulfillment.as_ref().and_then(|f| f.location.clone()) {
            reservation.location = location;
        }
        let change = self.ledger.reserve_order(&reservation).await.map_err(|e| failure(&e))?;
        let (outcome, mut jobs) = match &change.outcome {
            ReserveOutcome::Reserved => (LedgerOutcome::Reserved { jobs: 0 }, 0),
            ReserveOutcome::Amended => {
                // An edit that now fits (a held order edited down, say) is no longer oversold.
                if order.oversold.is_some() {
                    self.records.set_oversold(&order.id, None).await?;
                }
                (LedgerOutcome::Amended { jobs: 0 }, 0)
            }
            ReserveOutcome::AlreadyApplied { .. } => {
                (LedgerOutcome::AlreadyApplied, self.finish_reservation(order, trace_id, now).await?)
            }
            ReserveOutcome::Oversold { short_lines, action } => {
                let oversell = Oversell { short_lines: short_lines.clone(), action: *action, detected_at: now };
                self.handle_oversell(order, &oversell, trace_id, now).await?;
                (LedgerOutcome::Oversold { action: *action, short: short_lines.len() }, 0)
            }
        };
        if !matches!(change.outcome, ReserveOutcome::AlreadyApplied { .. }) {
            jobs += self.after_change(&change.positions, trace_id, now).await?;
            self.fanned_out(&order.id, &reserve_step(reservation.version)).await;
        }
        // Watched until it ships (idempotent: a replay writes the same deadline again).
        self.watch_ship_by(order, trace_id).await?;
        if order.status == OrderStatus::Fulfilled {
            // Fulfilled on the channel itself: the reservation leaves the warehouse.
            let shipped: Change<_> = self
                .ledger
                .ship_order_traced(&order.id, &Scope::WholeOrder, "fulfilled", Some(trace_id))
                .await
                .map_err(|e| failure(&e))?;
            jobs += self.after_movement(&order.id, "fulfilled", &shipped, trace_id, now).await?;
            return Ok(LedgerOutcome::Shipped { jobs });
        }
        Ok(match outcome {
            LedgerOutcome::Reserved { .. } => LedgerOutcome::Reserved { jobs },
            LedgerOutcome::Amended { .. } => LedgerOutcome::Amended { jobs },
            other => other,
        })
    }

    /// A redelivered order event whose reservation is already applied: redoes every follow-up of the
    /// first application from the reservation record (each is idempotent), then fans out the
    /// positions the order touches as they are now. Returns the push jobs enqueued.
    async fn finish_reservation(&self, order: &Order, trace_id: &str, now: DateTime<Utc>) -> Result<usize, Failure> {
        let Some(rec) = self.ledger.reservation(&order.id).await.map_err(|e| failure(&e))? else {
            return Ok(0);
        };
        // Short lines on an open reservation: rejected, back-ordered, or an edit's refused increase.
        let open = matches!(
            rec.state,
            ReservationState::Rejected | ReservationState::Backordered | ReservationState::Reserved
        );
        if open && !rec.short_lines.is_empty() {
            let oversell =
                Oversell { short_lines: rec.short_lines.clone(), action: rec.oversell, detected_at: rec.updated_at };
            self.handle_oversell(order, &oversell, trace_id, now).await?;
        }
        self.refan_unless_done(&rec, &reserve_step(rec.order_version), trace_id, now).await
    }

    /// Notes that the fan-out after `step` of an order completed, so replays skip it. Best effort: a
    /// missing marker only makes a replay fan out again, which the gate coalesces.
    async fn fanned_out(&self, order: &OrderId, step: &str) {
        let marker = format!("followup#{order}#fanout#{step}");
        if let Err(e) = self.state.set_marker(&marker, "done").await {
            warn!(error = %e, "could not record a completed fan-out");
        }
    }

    /// A replay's fan-out: the order's positions as they are now, unless the first attempt's fan-out
    /// after `step` completed.
    async fn refan_unless_done(
        &self,
        rec: &ReservationRecord,
        step: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, Failure> {
        let marker = format!("followup#{}#fanout#{step}", rec.order_id);
        if self.state.get_marker(&marker).await?.is_some() {
            return Ok(0);
        }
        let jobs = self.fan_out_record(rec, trace_id, now).await?;
        self.fanned_out(&rec.order_id, step).await;
        Ok(jobs)
    }

    /// The fan-out after a release or shipment; when the reference was applied before (a replay),
    /// the fan-out of the order's positions as they are now, which the first attempt may not have
    /// finished.
    async fn after_movement(
        &self,
        order: &OrderId,
        op_ref: &str,
        change: &Change<ReleaseOutcome>,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, Failure> {
        if change.outcome != ReleaseOutcome::AlreadyApplied {
            let jobs = self.after_change(&change.positions, trace_id, now).await?;
            if !change.positions.is_empty() {
                self.fanned_out(order, op_ref).await;
            }
            return Ok(jobs);
        }
        match self.ledger.reservation(order).await.map_err(|e| failure(&e))? {
            Some(rec) => self.refan_unless_done(&rec, op_ref, trace_id, now).await,
            None => Ok(0),
        }
    }

    /// Fans out every position an order's reservation touches, as they are now.
    async fn fan_out_record(
        &self,
        rec: &ReservationRecord,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, Failure> {
        let mut keys: Vec<PositionKey> = rec
            .lines
            .iter()
            .flat_map(|l| l.components.iter().map(|c| PositionKey::new(c.sku.clone(), rec.location.clone())))
            .collect();
        keys.sort();
        keys.dedup();
        let reads: Vec<_> = keys.iter().map(|k| self.ledger.position(k)).collect();
        let positions: Vec<Position> =
            stream::iter(reads).buffered(FANOUT_CONCURRENCY).try_collect().await.map_err(|e| failure(&e))?;
        self.after_change(&positions, trace_id, now).await
    }

    /// The oversell follow-ups, each idempotent and each redone by a replay until done: the mark on
    /// the canonical order, the `OrderOversold` event (stable id, done-marker) and, per policy, the
    /// cancel through the connector (done-marker).
    async fn handle_oversell(
        &self,
        order: &Order,
        oversell: &Oversell,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let action = oversell.action;
        // Counted once per order: only by the delivery that wrote the mark first (replays and
        // concurrent duplicates find it written and count nothing).
        if self.records.set_oversold(&order.id, Some(oversell)).await? {
            MetricSet::new()
                .dim("Channel", order.channel.as_str())
                .count("Oversell", 1)
                .aggregate()
                .property("trace_id", trace_id)
                .emit();
        }
        let announced = followup_marker(order, "oversold_event");
        if self.state.get_marker(&announced).await?.is_none() {
            let mut marked = order.clone();
            marked.oversold = Some(oversell.clone());
            let detail = EventDetail::new(EventKind::OrderOversold, trace_id, now, OrderEventV1::from(&marked))
                .with_id(event_id(EventKind::OrderOversold, &[order.id.as_str()]));
            publish(self.bus.as_ref(), &detail).await?;
            self.state.set_marker(&announced, &now.to_rfc3339()).await?;
            warn!(rule = ?action, short = oversell.short_lines.len(), "order oversold");
        }
        let cancelled = followup_marker(order, "channel_cancel");
        if action == OversellAction::Cancel && self.state.get_marker(&cancelled).await?.is_none() {
            let account = self.account(order.channel, order.account.as_str()).await?;
            let connector = self.connector(&account).await?;
            let accepted = connector
                .cancel_order(&order.channel_order_id, "out of stock", &CallContext { trace_id: trace_id.to_owned() })
                .await
                .map_err(|e| {
                    if e.is_retryable() {
                        Failure::Transient(Box::new(e))
                    } else {
                        Failure::permanent("cancel", e.to_string())
                    }
                })?;
            // Queued before the done-marker: a crash in between cancels again (harmless: the order is
            // cancelled either way) rather than leaving a cancel nobody checks.
            if let Accepted::Submitted(submission) = &accepted {
                self.enqueue_feed_check(order.channel, &order.account, submission, 1, trace_id).await?;
            }
            self.state.set_marker(&cancelled, &now.to_rfc3339()).await?;
            info!(submitted = matches!(accepted, Accepted::Submitted(_)), "oversold order cancelled on the channel");
        }
        Ok(())
    }

    /// Fans the changed positions out to every channel and announces them on the bus.
    async fn after_change(&self, positions: &[Position], trace_id: &str, now: DateTime<Utc>) -> Result<usize, Failure> {
        if positions.is_empty() {
            return Ok(0);
        }
        let config = self.config().await;
        let report = self.fan_out_with_bundles(&config, positions, &*self.push_queue, Some(trace_id)).await?;
        let announcements: Vec<_> = positions.iter().map(|p| self.announce_position(p, trace_id, now)).collect();
        stream::iter(announcements).buffer_unordered(FANOUT_CONCURRENCY).try_collect::<Vec<()>>().await?;
        info!(enqueued = report.enqueued.len(), coalesced = report.coalesced, "availability fanned out");
        Ok(report.enqueued.len())
    }

    /// Fans `positions` out to `config`'s accounts together with the bundles they are components of:
    /// the bundles' other components are read from the ledger, so a bundle's value counts every
    /// component. Every fan-out goes through here (ledger changes and the stock tier's re-send).
    pub(crate) async fn fan_out_with_bundles<Q: PushQueue>(
        &self,
        config: &ChannelConfig,
        positions: &[Position],
        queue: &Q,
        trace_id: Option<&str>,
    ) -> Result<FanoutReport, Failure> {
        let components = self.bundle_components(config, positions).await?;
        fan_out_with_bundles(config, positions, &components, &self.push_gate, queue, trace_id).await.map_err(|e| {
            if e.is_retryable() { Failure::Transient(Box::new(e)) } else { Failure::permanent("fanout", e.to_string()) }
        })
    }

    /// The positions of the bundles' components that `positions` hold some of (what a bundle's value
    /// is computed from).
    pub(crate) async fn bundle_components(
        &self,
        config: &ChannelConfig,
        positions: &[Position],
    ) -> Result<Vec<Position>, Failure> {
        let component_keys = bundle_component_keys(config, positions);
        let reads: Vec<_> = component_keys.iter().map(|k| self.ledger.position(k)).collect();
        stream::iter(reads).buffered(FANOUT_CONCURRENCY).try_collect().await.map_err(|e| failure(&e))
    }

    /// `InventoryChanged` for one position version (its id names the version: stable on a replay).
    async fn announce_position(&self, p: &Position, trace_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let data = serde_json::json!({"sku": p.sku, "location": p.location, "on_hand": p.on_hand, "reserved": p.reserved, "available": p.available, "version": p.version});
        let id = event_id(EventKind::InventoryChanged, &[p.sku.as_str(), p.location.as_str(), &p.version.to_string()]);
        publish(self.bus.as_ref(), &EventDetail::new(EventKind::InventoryChanged, trace_id, now, data).with_id(id))
            .await
    }

    /// `PUT /v1/inventory/{sku}`: the source of truth's absolute on-hand count. Open reservations stay.
    pub async fn set_on_hand(
        &self,
        sku: &str,
        update: &OnHandUpdate,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Position, Failure> {
        let sku = Sku::new(sku).map_err(|e| Failure::permanent("inventory", e.to_string()))?;
        let key = PositionKey::new(
            sku,
            update.location.clone().unwrap_or_else(|| manifold_ledger::DEFAULT_LOCATION.to_owned()),
        );
        // A count re-sent without its reference but with its as-of time is recognised as that count.
        let source_ref = update.source_ref.clone().unwrap_or_else(|| {
            update.as_of.map_or_else(|| trace_id.to_owned(), |t| format!("as_of:{}", t.to_rfc3339()))
        });
        let change = self
            .ledger
            .set_on_hand_as_of(&key, update.on_hand, &source_ref, update.as_of)
            .await
            .map_err(|e| failure(&e))?;
        let position = self.ledger.position(&key).await.map_err(|e| failure(&e))?;
        // A retried count (same source reference) finishes the fan-out the first attempt may not have.
        let changed =
            if change.outcome == SetOutcome::AlreadyApplied { vec![position.clone()] } else { change.positions };
        self.after_change(&changed, trace_id, now).await?;
        Ok(position)
    }

    /// `POST /v1/shipments`: the WMS shipped (part of) an order. The reserved units leave the
    /// warehouse (once per shipment id), and the tracking goes back to the channel that sold the order.
    pub async fn record_shipment(
        &self,
        shipment: &Shipment,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<LedgerOutcome, Failure> {
        let detail = serde_json::json!({ "trace_id": trace_id, "data": shipment });
        let outcome = self.apply_event("ShipmentCreated", &detail, now).await?;
        self.enqueue_tracking(shipment, trace_id).await?;
        Ok(outcome)
    }

    /// `POST /v1/inventory/import`: a JSON array or a CSV file; bad rows are reported, good rows applied.
    pub async fn import_stock(
        &self,
        body: &str,
        csv: bool,
        import_ref: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, Failure> {
        let parsed: Parsed = if csv { parse_csv(body) } else { parse_json(body) };
        let report =
            manifold_ledger::import::import(self.ledger.as_ref(), parsed, import_ref).await.map_err(|e| failure(&e))?;
        let jobs = self.after_change(&report.positions, trace_id, now).await?;
        Ok(serde_json::json!({
            "applied": report.applied,
            "already_applied": report.already_applied,
            "push_jobs": jobs,
            "errors": report.errors.iter().map(|e| serde_json::json!({"row": e.row, "reason": e.reason})).collect::<Vec<_>>(),
        }))
    }
}
