//! Stock reconciliation against what the channels show.
//!
//! The push gate knows what was handed to each channel and what each channel confirmed, but not
//! what it shows now: a merchant who edits a quantity in the channel's admin, an app that writes
//! stock, or a write the channel lost all leave the channel selling a number the ledger never
//! published. A scheduled stock run therefore reads, for each page of positions, the account's
//! current stock in the channel's bulk shape (`ChannelConnector::read_stock`, with the ids the
//! listing sync gave, through the account's rate limiter, breaker and token lifecycle), compares it
//! with what the ledger says the account should show, and pushes only the differences through the
//! normal push queue:
//!
//! - the channel shows what the ledger publishes: nothing is sent (verified);
//! - it shows something else and no push is on its way ([`GateState::in_flight`]): drift. The value
//!   is offered again even though its version was delivered before (`PushGate::resend`), and the
//!   difference in units counts as drift for the run and in the `StockDrift` metric per account;
//! - it shows something else while a push is on its way: that push settles it, nothing is counted;
//! - the channel does not return the SKU, or cannot be read now: the page falls back to the gate's
//!   usual offer (what changed still goes out), and a failed read is counted as a failed sync. A
//!   channel whose API offers no stock read (the capability matrix says so) is not read at all.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt, stream};
use manifold_connectors::{CallContext, StockRead};
use manifold_domain::config::{AccountConfig, ChannelConfig};
use manifold_ledger::{
    Position,
    fanout::{
        FANOUT_CONCURRENCY, GateState, PushJob, PushQueue, hand_over, hand_over_again, publishable_positions, push_jobs,
    },
};
use manifold_telemetry::MetricSet;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// What one page's reconciliation did for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPage {
    /// Values the account should show for the page (listed SKUs only).
    pub examined: u64,
    /// Values queued: drift corrections and ordinary changes the gate took.
    pub pushed: u64,
    /// Values the channel showed as the ledger publishes them.
    pub verified: u64,
    /// Values the channel showed otherwise with nothing on its way, and the units they were off by.
    pub drifted: u64,
    pub drift_units: u64,
    /// Why the channel could not be read (the page then only offered what changed).
    pub read_error: Option<String>,
}

impl App {
    /// Reconciles `positions` on one account (see the module docs).
    pub(crate) async fn reconcile_stock<Q: PushQueue>(
        &self,
        account: &AccountConfig,
        positions: &[Position],
        queue: &Q,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DriftPage, Failure> {
        let config = self.config().await;
        let only = ChannelConfig { accounts: vec![account.clone()], ..(*config).clone() };
        let components = self.bundle_components(&only, positions).await?;
        let jobs: Vec<PushJob> = publishable_positions(&only, positions, &components)
            .iter()
            .flat_map(|p| push_jobs(&only, p, Some(trace_id)))
            .collect();
        let gate = &*self.push_gate;
        let (jobs, _unlisted) = gate.listed_only(jobs).await.map_err(push_failure)?;
        let mut page = DriftPage { examined: jobs.len() as u64, ..DriftPage::default() };
        if jobs.is_empty() {
            return Ok(page);
        }
        let skus: Vec<String> =
            jobs.iter().map(|j| j.channel_sku.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let shown: HashMap<String, i64> = match self.read_channel_stock(account, &skus, trace_id).await {
            Ok(shown) => shown.into_iter().collect(),
            Err(reason) => {
                page.read_error = Some(reason);
                HashMap::new()
            }
        };
        let mut offers = Vec::new();
        let mut mismatched = Vec::new();
        for job in jobs {
            match shown.get(&job.channel_sku) {
                Some(&q) if q == i64::from(job.quantity) => page.verified += 1,
                Some(&q) => mismatched.push((job, q)),
                None => offers.push(job),
            }
        }
        // A mismatch while a push is on its way is that push's to settle.
        let reads: Vec<_> = mismatched.iter().map(|(job, _)| gate.state(job)).collect();
        let states: Vec<Result<Option<GateState>, _>> =
            stream::iter(reads).buffered(FANOUT_CONCURRENCY).collect().await;
        let mut corrections = Vec::new();
        for ((job, shown), state) in mismatched.into_iter().zip(states) {
            if state.map_err(push_failure)?.is_some_and(|s| s.in_flight(&job, now)) {
                continue;
            }
            page.drifted += 1;
            page.drift_units += shown.abs_diff(i64::from(job.quantity));
            info!(
                channel = %job.channel, account = %job.account, sku = %job.sku, shown, publishes = job.quantity,
                "stock drift: the channel shows another quantity than the ledger publishes"
            );
            corrections.push(job);
        }
        // Boxed, so the futures of both kinds share one type (and the batch stays `Send`).
        let mut work: Vec<futures::future::BoxFuture<'_, Result<Option<PushJob>, _>>> = Vec::new();
        work.extend(corrections.into_iter().map(|job| hand_over_again(gate, queue, job).boxed()));
        work.extend(offers.into_iter().map(|job| hand_over(gate, queue, job).boxed()));
        let sent: Vec<Result<Option<PushJob>, _>> =
            stream::iter(work).buffer_unordered(FANOUT_CONCURRENCY).collect().await;
        for result in sent {
            if result.map_err(push_failure)?.is_some() {
                page.pushed += 1;
            }
        }
        MetricSet::new()
            .dim("Channel", account.channel.as_str())
            .dim("Account", account.account.as_str())
            .count("StockDrift", page.drift_units)
            .emit();
        Ok(page)
    }

    /// The account's current stock for `skus`, or why it could not be read (counted as a failed sync).
    async fn read_channel_stock(
        &self,
        account: &AccountConfig,
        skus: &[String],
        trace_id: &str,
    ) -> Result<Vec<(String, i64)>, String> {
        self.channel_stock(account, skus, trace_id).await.map_err(|e| {
            warn!(channel = %account.channel, account = %account.account, error = %e, "could not read the channel's stock");
            MetricSet::new()
                .dim("Channel", account.channel.as_str())
                .dim("Operation", "read_stock")
                .count("SyncFailed", 1)
                .emit();
            format!("reading {} stock failed: {e}", account.channel)
        })
    }

    /// What the account shows now for `skus` (channel SKUs), read from the channel through the
    /// account's connector (rate limiter, breaker, token lifecycle) with the ids its listings gave.
    /// A channel whose API has no stock read answers nothing; SKUs the channel does not return are
    /// left out. The reconciliation and the operations console both read the channel this way.
    pub async fn channel_stock(
        &self,
        account: &AccountConfig,
        skus: &[String],
        trace_id: &str,
    ) -> Result<Vec<(String, i64)>, Failure> {
        if !account.channel.spec().capabilities.read_stock.is_supported() {
            // Zalando documents no stock read: nothing to compare, and nothing failed.
            return Ok(Vec::new());
        }
        let connector = self.connector(account).await?;
        let ctx = CallContext::new(trace_id.to_owned());
        // The ids the listing sync gave (or the account's overrides), for channels that read by id.
        let ids = crate::listings::item_ids(&**self.listings, account, skus).await.unwrap_or_else(|e| {
            warn!(error = %e, "listing ids unavailable: reading the channel's stock by SKU only");
            std::collections::BTreeMap::default()
        });
        let items: Vec<StockRead> =
            skus.iter().map(|s| StockRead { channel_sku: s.clone(), channel_item_id: ids.get(s).cloned() }).collect();
        connector.read_stock(&items, &ctx).await.map_err(Failure::from)
    }
}

fn push_failure(e: manifold_ledger::fanout::PushError) -> Failure {
    if e.is_retryable() { Failure::Transient(Box::new(e)) } else { Failure::permanent("reconcile", e.to_string()) }
}
