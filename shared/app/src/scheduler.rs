//! The scheduler function: one tick a minute starts the (account, kind) syncs that are due from each
//! account's cadence ([`crate::sync`]: slots, leases, runs and their pages on the `SyncQueue`), and
//! the work of each kind for one account:
//!
//! - `stock`: re-offers the ledger's positions to the account's push gate, page by page from a cursor
//!   ([`crate::sync::job`]), so a push lost on the way is re-sent; unchanged values are coalesced
//!   away by the gate (the delta).
//! - `reconcile` (and `orders` when it has a period rather than `realtime`): polls the account's
//!   recent orders and ingests them like webhooks; orders we already hold are recognised by their
//!   `source_version`, and the ones webhooks missed are stored and counted as drift
//!   (`ReconcileDrift`).
//! - `prices`: prices every SKU of the price book for each account through the rules and queues what
//!   differs from what the channel last took ([`crate::prices`]).
//! - `images`: all product content (titles, descriptions, images): each listing is brought to the
//!   content book's content by the parts that changed ([`crate::content`]); a channel that takes no
//!   content, or not some field, says so once in the run.
//! - Legacy ERP data is on demand: the inventory import endpoint, or a triggered sync.
//!
//! [`App::run_tier`] runs one kind for every account at once (the tests' and operators' way to force
//! a tier without the schedule).

use chrono::{DateTime, Duration, Utc};
use manifold_connectors::{CallContext, ChannelConnector, ConnectorError};
use manifold_domain::{
    channel::Inbound,
    config::{AccountConfig, Cadence},
};
use manifold_normalize::DocKind;
use manifold_telemetry::MetricSet;
use serde::Serialize;
use tracing::{info, warn};

use crate::{App, IngestEnvelope, Source, envelope::body_hash, ingest::IngestOutcome, outcome::Failure};

/// The orders of one account the records store holds, as a sweep's listing asks before it reads an
/// order's details.
struct StoredOrders<'a> {
    records: std::sync::Arc<dyn manifold_aws::records::RecordStore>,
    account: &'a AccountConfig,
}

#[async_trait::async_trait]
impl manifold_connectors::HeldOrders for StoredOrders<'_> {
    async fn holds(&self, channel_order_id: &str, updated_at: DateTime<Utc>) -> bool {
        let id = format!("{}:{}:{channel_order_id}", self.account.channel, self.account.account);
        let Ok(id) = manifold_domain::OrderId::new(id) else { return false };
        match self.records.get_order(&id).await {
            Ok(Some(order)) => order.updated_at >= updated_at,
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, order_id = %id, "records unavailable: the listed order is read in full");
                false
            }
        }
    }
}

/// What a scheduled run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TierReport {
    pub tier: String,
    pub positions: usize,
    pub push_jobs: usize,
    pub orders_seen: usize,
    /// Orders a reconciliation found that no webhook had delivered.
    pub drift: usize,
    pub note: Option<String>,
}

impl App {
    /// Runs one sync tier (`stock`, `reconcile`, `listings`, `prices`, `images`, `crm`).
    pub async fn run_tier(&self, tier: &str, now: DateTime<Utc>) -> Result<TierReport, Failure> {
        let mut report = TierReport { tier: tier.to_owned(), ..TierReport::default() };
        match tier {
            "stock" => {
                self.rebalance_hot_skus().await;
                self.refresh_stock(&mut report).await?;
            }
            "reconcile" => self.reconcile(&mut report, now).await?,
            "listings" => self.sync_every_listing(&mut report).await,
            "prices" => self.price_every_account(&mut report, now).await?,
            "images" => self.content_every_account(&mut report).await?,
            "crm" => {
                for run in self.run_crm_syncs(now, true).await? {
                    report.positions += run.examined;
                    report.push_jobs += run.jobs;
                    if run.without_email > 0 {
                        let note =
                            format!("{}: {} customer(s) without an email to upsert by", run.crm, run.without_email);
                        report.note = Some(report.note.take().map_or(note.clone(), |n| format!("{n}; {note}")));
                    }
                }
            }
            other => return Err(Failure::permanent("scheduler", format!("unknown tier {other:?}"))),
        }
        info!(
            tier,
            positions = report.positions,
            push_jobs = report.push_jobs,
            drift = report.drift,
            "scheduled sync done"
        );
        Ok(report)
    }

    /// Evens out each hot SKU's shards at every location an account publishes from
    /// (`manifold_ledger::shard::rebalance`); returns the units moved. Best effort: a shard that
    /// changed meanwhile, or a failed read, leaves it to the next tick.
    pub async fn rebalance_hot_skus(&self) -> i64 {
        use manifold_ledger::shard::{Rebalanced, rebalance};
        let config = self.config().await;
        if config.hot_skus.is_empty() {
            return 0;
        }
        let locations: std::collections::BTreeSet<String> =
            config.enabled_accounts().map(|a| a.stock.location.clone()).collect();
        let mut moved = 0;
        for hot in &config.hot_skus {
            for location in &locations {
                let key = manifold_ledger::PositionKey::new(hot.sku.clone(), location.clone());
                match rebalance(self.ledger.store().inner(), &key, hot.shards).await {
                    Ok(Rebalanced::Moved(n)) => {
                        info!(sku = %hot.sku, location = %location, moved = n, "hot SKU shards rebalanced");
                        moved += n;
                    }
                    Ok(Rebalanced::Even | Rebalanced::Conflict) => {}
                    Err(e) => warn!(sku = %hot.sku, error = %e, "hot SKU rebalance failed: the next tick retries"),
                }
            }
        }
        moved
    }

    async fn refresh_stock(&self, report: &mut TierReport) -> Result<(), Failure> {
        let config = self.config().await;
        let mut cursor = None;
        loop {
            let page = self.whole_positions(self.catalog.page(cursor.as_deref(), None).await?).await?;
            report.positions += page.positions.len();
            // Bundles whose components are on this page are re-sent too (their other components read).
            let fanned = self.fan_out_with_bundles(&config, &page.positions, &*self.push_queue, None).await?;
            report.push_jobs += fanned.enqueued.len();
            cursor = page.next;
            if cursor.is_none() {
                return Ok(());
            }
        }
    }

    async fn price_every_account(&self, report: &mut TierReport, now: DateTime<Utc>) -> Result<(), Failure> {
        let accounts: Vec<_> = self.config().await.enabled_accounts().cloned().collect();
        let trace_id = crate::trace::mint();
        let mut refused = 0;
        for account in accounts {
            let mut cursor = None;
            loop {
                let page = self.price_page(&account, cursor.as_deref(), &trace_id, now).await?;
                report.positions += usize::try_from(page.examined).unwrap_or(usize::MAX);
                report.push_jobs += usize::try_from(page.pushed).unwrap_or(usize::MAX);
                refused += page.refused;
                cursor = page.next;
                if cursor.is_none() {
                    break;
                }
            }
        }
        if refused > 0 {
            report.note = Some(format!("{refused} price(s) refused by the rules and quarantined (stage price)"));
        }
        Ok(())
    }

    /// Every account's content run at once (the scheduler's `{"tier": "images"}` event), each channel's note on
    /// what it does not take said once.
    async fn content_every_account(&self, report: &mut TierReport) -> Result<(), Failure> {
        let accounts: Vec<_> = self.config().await.enabled_accounts().cloned().collect();
        let trace_id = crate::trace::mint();
        let mut notes = std::collections::BTreeSet::new();
        for account in accounts {
            let mut cursor = None;
            loop {
                let page = self.content_page(&account, cursor.as_deref(), &trace_id).await?;
                report.positions += usize::try_from(page.examined).unwrap_or(usize::MAX);
                report.push_jobs += usize::try_from(page.pushed).unwrap_or(usize::MAX);
                notes.extend(page.note);
                cursor = page.next;
                if cursor.is_none() {
                    break;
                }
            }
        }
        report.note = (!notes.is_empty()).then(|| notes.into_iter().collect::<Vec<_>>().join("; "));
        Ok(())
    }

    async fn reconcile(&self, report: &mut TierReport, now: DateTime<Utc>) -> Result<(), Failure> {
        let accounts: Vec<_> = self.config().await.enabled_accounts().cloned().collect();
        for account in accounts {
            let poll = self.reconcile_account(&account, account.sync.reconcile, now).await?;
            report.orders_seen += poll.orders_seen;
            report.drift += poll.drift;
        }
        Ok(())
    }

    /// Polls one account's orders of the last two `cadence` periods (so one missed run leaves no gap)
    /// and ingests them; the ones no webhook had delivered are drift. For a channel that pushes nothing
    /// this poll is how its orders arrive ([`Inbound::Poll`]) or change after they were taken over
    /// ([`Inbound::ExportPoll`]: lines returned or canceled), so what it stores is not drift.
    pub async fn reconcile_account(
        &self,
        account: &AccountConfig,
        cadence: Cadence,
        now: DateTime<Utc>,
    ) -> Result<OrderPoll, Failure> {
        let mut poll = OrderPoll::default();
        let inbound = account.channel.spec().inbound;
        let trace_id = crate::trace::mint();
        let ctx = CallContext { trace_id: trace_id.clone() };
        let window = match cadence {
            Cadence::Every(d) => Duration::from_std(d * 2).unwrap_or(Duration::hours(1)),
            _ => Duration::hours(1),
        };
        let connector = self.connector(account).await?;
        let held = StoredOrders { records: self.records.get().clone(), account };
        let orders = match connector.list_orders_since_unheld(now - window, &held, &ctx).await {
            Ok(o) => o,
            Err(e) => {
                poll.failed_with(account, "reconcile", "order poll", &e);
                return Ok(poll);
            }
        };
        for doc in orders {
            poll.orders_seen += 1;
            let envelope = swept(account, &doc, DocKind::Order, &trace_id, now);
            if let Ok(IngestOutcome::Stored { .. }) = self.ingest(&envelope, now).await
                && matches!(inbound, Inbound::Webhooks | Inbound::Queue)
            {
                poll.drift += 1;
            }
        }
        MetricSet::new()
            .dim("Channel", account.channel.as_str())
            .dim("Operation", "reconcile")
            .count("ReconcileDrift", poll.drift as u64)
            .emit();
        self.sweep_returns(account, &*connector, &mut poll, &trace_id, now).await?;
        Ok(poll)
    }

    /// The returns a channel reports only in a listing or report (Amazon): what the previous sweep
    /// left (`resume`, in the state table) is read on, each document ingested as the channel's
    /// returns of one order; the new resume is kept only once they are all ingested, so a failure
    /// reads the same report again rather than losing it. Channels without such a sweep are skipped.
    async fn sweep_returns(
        &self,
        account: &AccountConfig,
        connector: &dyn ChannelConnector,
        poll: &mut OrderPoll,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let marker = format!("RETURNS_SWEEP#{}#{}", account.channel, account.account);
        let resume = self.state.get_marker(&marker).await?;
        let ctx = CallContext { trace_id: trace_id.to_owned() };
        let sweep = match connector.sweep_returns(resume.as_deref(), &ctx).await {
            Ok(s) => s,
            Err(e) if e.unsupported => return Ok(()),
            Err(e) => {
                poll.failed_with(account, "returns_sweep", "returns sweep", &e);
                return Ok(());
            }
        };
        for doc in sweep.docs {
            poll.returns_seen += 1;
            let envelope = swept(account, &doc, DocKind::Return, trace_id, now);
            // Permanent failures are quarantined by ingest; a transient one keeps the old resume.
            self.ingest(&envelope, now).await?;
        }
        if let Some(next) = sweep.resume.filter(|n| Some(n) != resume.as_ref()) {
            self.state.set_marker(&marker, &next).await?;
        }
        Ok(())
    }
}

/// A document a sweep found, as the envelope ingest takes (its id: the document's hash, so the same
/// document found again is recognised).
fn swept(
    account: &AccountConfig,
    doc: &serde_json::Value,
    kind: DocKind,
    trace_id: &str,
    now: DateTime<Utc>,
) -> IngestEnvelope {
    let body = doc.to_string();
    IngestEnvelope {
        v: 1,
        channel: account.channel,
        account: account.account.to_string(),
        source: Source::Reconcile,
        topic: None,
        event_id: body_hash(body.as_bytes()),
        trace_id: trace_id.to_owned(),
        received_at: now,
        body,
        document: Some(kind),
    }
}

/// What one account's order poll found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrderPoll {
    pub orders_seen: usize,
    /// Return documents (one order's returns each) a returns sweep read.
    pub returns_seen: usize,
    /// Orders no webhook had delivered.
    pub drift: usize,
    /// The channel could not be polled (counted as `SyncFailed`).
    pub failed: bool,
    pub note: Option<String>,
}

impl OrderPoll {
    /// Records that `what` failed on the channel: logged, counted as a failed sync of `operation`.
    fn failed_with(&mut self, account: &AccountConfig, operation: &'static str, what: &str, e: &ConnectorError) {
        warn!(channel = %account.channel, account = %account.account, error = %e, "{what} failed");
        MetricSet::new()
            .dim("Channel", account.channel.as_str())
            .dim("Operation", operation)
            .count("SyncFailed", 1)
            .emit();
        self.failed = true;
        self.note = Some(format!("{what} failed: {e}"));
    }
}

impl App {
    /// What the scheduler function does with one invocation: an SQS batch from the `SyncQueue` (a
    /// `Records` array) runs its pages, `{"tier": kind}` runs that kind for every account
    /// (`{"tier": "deadlines"}` the shipping deadline check, `{"tier": "exports"}` every CSV drop now),
    /// anything else (the schedule's event) is a tick, followed by the deadline check and the due exports.
    pub async fn scheduler_event(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, Failure> {
        let encode = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| Failure::permanent("scheduler", format!("cannot encode the answer: {e}")))
        };
        if event.get("Records").is_some() {
            let batch = serde_json::from_value(event)
                .map_err(|e| Failure::permanent("scheduler", format!("not an SQS event: {e}")))?;
            return encode(serde_json::to_value(self.sync_batch(batch).await));
        }
        if let Some(tier) = event.get("tier").and_then(|t| t.as_str()) {
            if tier == "deadlines" {
                return encode(serde_json::to_value(self.check_deadlines(now).await?));
            }
            if tier == "exports" {
                return encode(serde_json::to_value(self.run_exports(now, true).await?));
            }
            let report = self.run_tier(tier, now).await?;
            return encode(serde_json::to_value(report));
        }
        // Every tick also settles the shipping deadlines that passed (`crate::late`): a few queries
        // when nothing is due. Its failure does not hold back the syncs, nor theirs it. And it evens
        // out the hot SKUs' shards: one read per hot SKU when they are even.
        let tick = self.tick(now).await;
        self.rebalance_hot_skus().await;
        match self.check_deadlines(now).await {
            Ok(deadlines) if deadlines.due > 0 => info!(?deadlines, "deadlines settled"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "deadline check failed: the next tick retries"),
        }
        // And it runs the CSV drops that are due (`crate::export`): one marker read each when none is.
        match self.run_exports(now, false).await {
            Ok(runs) if runs.iter().any(|r| r.file.is_some()) => info!(?runs, "exports written"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "exports failed: the next tick retries"),
        }
        // And the CRM runs that are due (`crate::crm`): one marker read per CRM account when none is.
        match self.run_crm_syncs(now, false).await {
            Ok(runs) if runs.iter().any(|r| r.skipped.is_none()) => info!(?runs, "CRM runs queued"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "CRM runs failed: the next tick retries"),
        }
        encode(serde_json::to_value(tick?))
    }
}
