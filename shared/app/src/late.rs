//! Shipping deadlines: orders paid and not shipped in time, and tracking a channel never showed.
//!
//! Marketplaces rank sellers on dispatch time and valid tracking; a merchant learns of a miss from a
//! bad review. Nothing else notices: a late order raises no error anywhere. So every order the ledger
//! takes is watched until its deadline ([`Watch`] in the `StateTable`, see `manifold_aws::watch`):
//!
//! - **Ship-by**: the channel's own latest ship time where it gives one (Amazon's `LatestShipDate`),
//!   otherwise the order's creation plus the account's `shipping.ship_within_hours`. At the deadline,
//!   an order still open (not fulfilled, cancelled or refunded on the channel, not shipped or released
//!   in the ledger) raises `OrderLate` exactly once: a metric (alarmed), an event, and an entry in
//!   `manifold orders late`.
//! - **Tracking**: when a channel accepts a tracking push, the order must show as fulfilled there
//!   within `shipping.confirm_within_hours`. If it does not, the tracking is pushed once more and
//!   watched again; still missing after that, it raises `TrackingUnconfirmed` the same way.
//!
//! The scheduler runs [`App::check_deadlines`]; it reads only what is due (deadline-sorted keys).

use chrono::{DateTime, Duration, Utc};
use manifold_aws::watch::{Reported, Watch, WatchKind};
use manifold_connectors::CallContext;
use manifold_domain::{
    AccountId, Channel, Order, OrderStatus, OversellAction, Shipment,
    config::ShippingRules,
    events::{DeadlineV1, EventDetail, EventKind, event_id},
};
use manifold_ledger::ReservationState;
use manifold_telemetry::MetricSet;
use serde::Serialize;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// Deadlines handled per check and kind (the next check takes the rest).
const PER_CHECK: usize = 500;

/// What one check did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlineReport {
    /// Deadlines that had passed.
    pub due: usize,
    /// Orders that had shipped (or were cancelled) in time: nothing to report.
    pub shipped: usize,
    /// `OrderLate` raised now.
    pub late: usize,
    /// Tracking the channel shows.
    pub confirmed: usize,
    /// Tracking pushed once more.
    pub pushed_again: usize,
    /// `TrackingUnconfirmed` raised now.
    pub unconfirmed: usize,
    /// Deadlines left for the next check because a dependency failed.
    pub errors: usize,
}

/// Whether the channel's view of an order says it left the warehouse or will never need to.
fn closed_on_channel(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Fulfilled | OrderStatus::Cancelled | OrderStatus::Refunded)
}

impl App {
    async fn shipping_rules(&self, channel: Channel, account: &AccountId) -> ShippingRules {
        self.config().await.account(channel, account.as_str()).map(|a| a.shipping).unwrap_or_default()
    }

    /// Watches a paid order's ship-by deadline (the ledger consumer, once it has taken the order).
    /// Repeating it for the same order and deadline changes nothing; orders not yet paid, or already
    /// closed, are not watched.
    pub async fn watch_ship_by(&self, order: &Order, trace_id: &str) -> Result<(), Failure> {
        if !matches!(order.status, OrderStatus::Paid | OrderStatus::PartiallyFulfilled) {
            return Ok(());
        }
        let rules = self.shipping_rules(order.channel, &order.account).await;
        let deadline = order.ship_by.unwrap_or(order.created_at + Duration::hours(i64::from(rules.ship_within_hours)));
        let watch = Watch {
            kind: WatchKind::ShipBy,
            key: order.id.to_string(),
            order_id: order.id.clone(),
            channel: order.channel,
            account: order.account.to_string(),
            deadline,
            attempt: 1,
            shipment: None,
            trace_id: trace_id.to_owned(),
        };
        self.watch.watch(&watch).await?;
        Ok(())
    }

    /// Watches a tracking the channel accepted until the channel shows the order fulfilled (the push
    /// consumer, after delivery). `attempt` is 1 for the first push.
    pub async fn watch_tracking(
        &self,
        shipment: &Shipment,
        attempt: u32,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let rules = self.shipping_rules(shipment.channel, &shipment.account).await;
        let watch = Watch {
            kind: WatchKind::Tracking,
            key: format!("{}#{}", shipment.order_id, shipment.id),
            order_id: shipment.order_id.clone(),
            channel: shipment.channel,
            account: shipment.account.to_string(),
            deadline: now + Duration::hours(i64::from(rules.confirm_within_hours)),
            attempt,
            shipment: Some(shipment.clone()),
            trace_id: trace_id.to_owned(),
        };
        self.watch.watch(&watch).await?;
        Ok(())
    }

    /// Settles every deadline that has passed by `now` (the scheduler). A deadline whose check fails
    /// stays watched for the next run; nothing is reported twice.
    pub async fn check_deadlines(&self, now: DateTime<Utc>) -> Result<DeadlineReport, Failure> {
        let mut report = DeadlineReport::default();
        for kind in WatchKind::ALL {
            for watch in self.watch.due(kind, now, PER_CHECK).await? {
                report.due += 1;
                let settled = match kind {
                    WatchKind::ShipBy => self.settle_ship_by(&watch, now, &mut report).await,
                    WatchKind::Tracking => self.settle_tracking(&watch, now, &mut report).await,
                };
                if let Err(e) = settled {
                    report.errors += 1;
                    warn!(order_id = %watch.order_id, kind = kind.as_str(), error = %e, "deadline check failed: retried next run");
                }
            }
        }
        info!(
            due = report.due,
            late = report.late,
            unconfirmed = report.unconfirmed,
            pushed_again = report.pushed_again,
            "deadlines checked"
        );
        Ok(report)
    }

    async fn settle_ship_by(
        &self,
        watch: &Watch,
        now: DateTime<Utc>,
        report: &mut DeadlineReport,
    ) -> Result<(), Failure> {
        let on_channel = self.records.get_order(&watch.order_id).await?.map(|o| o.status);
        let in_ledger = self.ledger.reservation(&watch.order_id).await.map_err(|e| Failure::Transient(Box::new(e)))?;
        let left_or_dropped = in_ledger.as_ref().is_some_and(|r| {
            matches!(r.state, ReservationState::Shipped | ReservationState::Released)
                || (r.state == ReservationState::Rejected && r.oversell == OversellAction::Cancel)
        });
        if on_channel.is_none_or(closed_on_channel) || left_or_dropped {
            report.shipped += 1;
        } else {
            let reason =
                format!("still {} on the channel, not shipped", on_channel.map_or("open", OrderStatus::as_str));
            if self.raise(EventKind::OrderLate, watch, &reason, now).await? {
                report.late += 1;
            }
        }
        self.watch.forget(watch).await?;
        Ok(())
    }

    async fn settle_tracking(
        &self,
        watch: &Watch,
        now: DateTime<Utc>,
        report: &mut DeadlineReport,
    ) -> Result<(), Failure> {
        let Some(shipment) = &watch.shipment else {
            self.watch.forget(watch).await?;
            return Ok(());
        };
        let account = self.account(watch.channel, &watch.account).await?;
        let connector = self.connector(&account).await?;
        let ctx = CallContext { trace_id: watch.trace_id.clone() };
        let doc = connector
            .fetch_order(&shipment.channel_order_id, &ctx)
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
        let seen = manifold_normalize::normalize_order(
            watch.channel,
            &doc,
            &manifold_normalize::Context { account: &account, received_at: now },
        )
        .map_err(|e| Failure::permanent("deadline", format!("the channel's order does not read: {e}")))?;
        if matches!(seen.status, OrderStatus::Fulfilled | OrderStatus::PartiallyFulfilled) {
            report.confirmed += 1;
        } else if watch.attempt < 2 {
            // The push consumer watches it again (attempt 2) once the channel accepts it.
            self.enqueue_tracking_attempt(shipment, watch.attempt + 1, &watch.trace_id).await?;
            report.pushed_again += 1;
            info!(order_id = %watch.order_id, shipment_id = %shipment.id, "tracking not shown by the channel: pushed again");
        } else {
            let reason =
                format!("the channel still shows the order {} after two tracking pushes", seen.status.as_str());
            if self.raise(EventKind::TrackingUnconfirmed, watch, &reason, now).await? {
                report.unconfirmed += 1;
            }
        }
        self.watch.forget(watch).await?;
        Ok(())
    }

    /// Reports a missed deadline once: the entry, then the metric and the event (a replay after a
    /// failed publish re-publishes with the same event id).
    async fn raise(&self, kind: EventKind, watch: &Watch, reason: &str, now: DateTime<Utc>) -> Result<bool, Failure> {
        let entry = Reported {
            kind: watch.kind,
            key: watch.key.clone(),
            order_id: watch.order_id.clone(),
            channel: watch.channel,
            account: watch.account.clone(),
            deadline: watch.deadline,
            reported_at: now,
            reason: reason.to_owned(),
            trace_id: watch.trace_id.clone(),
        };
        let first = self.watch.report(&entry).await?;
        if first {
            MetricSet::new()
                .dim("Channel", watch.channel.as_str())
                .count(kind.as_str(), 1)
                .aggregate()
                .property("order_id", watch.order_id.as_str())
                .property("account", watch.account.as_str())
                .property("trace_id", watch.trace_id.as_str())
                .emit();
            warn!(order_id = %watch.order_id, deadline = %watch.deadline, reason, "{}", kind.as_str());
        }
        let data = DeadlineV1 {
            order_id: watch.order_id.clone(),
            channel: watch.channel,
            account: AccountId::new(&watch.account).map_err(|e| Failure::permanent("deadline", e.to_string()))?,
            shipment_id: watch.shipment.as_ref().map(|s| s.id.clone()),
            deadline: watch.deadline,
            reason: reason.to_owned(),
        };
        // Published whether or not this run wrote the entry: a run that wrote it and then failed to
        // publish leaves the watch in place, and the next run publishes (same id; consumers dedupe).
        let detail = EventDetail::new(kind, &watch.trace_id, now, data).with_id(event_id(kind, &[&watch.key]));
        manifold_aws::events::publish(self.bus.as_ref(), &detail).await?;
        Ok(first)
    }
}
