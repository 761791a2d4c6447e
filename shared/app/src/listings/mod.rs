//! Listings: what each account sells, under which of the channel's own ids.
//!
//! Pushing every SKU to every account sends SKUs a channel does not sell: they come back rejected,
//! count as failed syncs and fill the quarantine. And channels that write stock by their own ids
//! (WooCommerce, Etsy, TikTok, eBay) needed those ids typed into the configuration. So a listing sync
//! per account (the `listings` cadence, daily by default) walks the channel's catalog through its
//! connector ([`ChannelConnector::list_listings`]) into the [`store`]:
//!
//! - every listing seen is written with the channel's ids, the quantity and price it shows, and when;
//! - a listing stored before and not seen by a complete walk is marked gone;
//! - a listing seen for the first time (or back after being gone) gets the current availability at
//!   once, through the normal fan-out (push gate, push queue), for this account only;
//! - the account is marked synced: from then on its pushes go only to the SKUs it lists
//!   ([`ListingFilter`]), and the push consumer writes by the ids its listing gave (`item_ids` in the
//!   configuration stay as overrides). An account never synced keeps getting every SKU.
//!
//! A walk that fails part-way marks nothing gone and leaves the marker as it was: the next run starts
//! over, and what was written so far is only refreshed.

pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use manifold_aws::StoreError;
use manifold_connectors::{CallContext, ChannelConnector, ConnectorError};
use manifold_domain::{Sku, config::AccountConfig};
use serde::Serialize;

pub use store::{DynamoListings, ListingKey, ListingStore, Lookup, MemoryListings, StoredListing};

/// What one account's listing sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListingSyncReport {
    pub channel: String,
    pub account: String,
    pub pages: usize,
    /// Listings the channel showed.
    pub listed: usize,
    /// Of those, seen for the first time (or back after being gone).
    pub new: usize,
    /// Stored listings the channel no longer shows.
    pub gone: usize,
    /// Push jobs the new listings' availability produced.
    pub pushed: usize,
}

/// Why a listing sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListingSyncError {
    #[error("listing read failed")]
    Channel(#[from] ConnectorError),
    #[error("listing store failed")]
    Store(#[from] StoreError),
}

impl ListingSyncError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ListingSyncError::Channel(e) => e.is_retryable(),
            ListingSyncError::Store(e) => e.is_retryable(),
        }
    }
}

/// Pages per sync at most: a runaway cursor ends the walk instead of the function's time.
const MAX_PAGES: usize = 100_000;

/// Walks the account's listings into `store` (see the module docs) and returns the report and the
/// listings new to the store, for the caller to publish their availability.
pub async fn sync_account(
    store: &dyn ListingStore,
    connector: &dyn ChannelConnector,
    account: &AccountConfig,
    ctx: &CallContext,
    now: DateTime<Utc>,
) -> Result<(ListingSyncReport, Vec<StoredListing>), ListingSyncError> {
    let mut report = ListingSyncReport {
        channel: account.channel.to_string(),
        account: account.account.to_string(),
        ..ListingSyncReport::default()
    };
    let before: BTreeMap<String, StoredListing> = store
        .account_listings(account.channel, &account.account)
        .await?
        .into_iter()
        .map(|l| (l.listing.sku.clone(), l))
        .collect();
    let mut seen = BTreeSet::new();
    let mut new = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = connector.list_listings(cursor.as_deref(), ctx).await?;
        report.pages += 1;
        let mut batch = Vec::with_capacity(page.listings.len());
        for listing in page.listings {
            if !seen.insert(listing.sku.clone()) {
                continue; // the same SKU twice (two variants sharing it): the first one keys it
            }
            let previous = before.get(&listing.sku);
            let master = account.master_sku(&listing.sku).cloned().or_else(|| Sku::new(listing.sku.clone()).ok());
            let stored = StoredListing {
                channel: account.channel,
                account: account.account.clone(),
                master,
                first_seen: previous.map_or(now, |p| p.first_seen),
                gone_at: None,
                listing,
            };
            if previous.is_none_or(|p| !p.is_listed()) {
                new.push(stored.clone());
            }
            batch.push(stored);
        }
        report.listed += batch.len();
        store.put_listings(&batch).await?;
        match page.next {
            // A cursor that repeats (or never ends) would mark everything after it gone: refuse.
            Some(next) if Some(&next) == cursor.as_ref() || report.pages >= MAX_PAGES => {
                return Err(ConnectorError::permanent(format!(
                    "{} listing cursor {next:?} repeats or runs past {MAX_PAGES} pages",
                    account.channel
                ))
                .into());
            }
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let gone: Vec<StoredListing> = before
        .into_values()
        .filter(|l| l.is_listed() && !seen.contains(&l.listing.sku))
        .map(|mut l| {
            l.gone_at = Some(now);
            l
        })
        .collect();
    report.gone = gone.len();
    store.put_listings(&gone).await?;
    store.mark_synced(account.channel, &account.account, now).await?;
    report.new = new.len();
    Ok((report, new))
}

/// The fan-out's [`Listings`](manifold_ledger::fanout::Listings) port over the store: a job goes out
/// when its account is not synced yet or lists its channel SKU.
#[derive(Clone)]
pub struct ListingFilter {
    store: crate::port::Port<std::sync::Arc<dyn ListingStore>>,
}

impl ListingFilter {
    pub fn new(store: crate::port::Port<std::sync::Arc<dyn ListingStore>>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for ListingFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingFilter").finish_non_exhaustive()
    }
}

impl manifold_ledger::fanout::Listings for ListingFilter {
    fn listed<'a>(
        &'a self,
        jobs: &'a [manifold_ledger::fanout::PushJob],
    ) -> futures::future::BoxFuture<'a, Result<Vec<bool>, manifold_ledger::fanout::PushError>> {
        Box::pin(async move {
            let keys: Vec<ListingKey> = jobs
                .iter()
                .map(|j| ListingKey {
                    channel: j.channel,
                    account: j.account.clone(),
                    channel_sku: j.channel_sku.clone(),
                })
                .collect();
            let found = self.store.lookup(&keys).await.map_err(|e| manifold_ledger::fanout::PushError::Aws {
                operation: "BatchGetItem",
                retryable: e.is_retryable(),
                source: Box::new(e),
            })?;
            Ok(found.iter().map(Lookup::sells).collect())
        })
    }
}

/// The channel item id each of `channel_skus` is written by: the configuration's `item_ids` override
/// first, then the id its listing gave (see [`ListingIds::item_id`](manifold_connectors::ListingIds::item_id)).
/// SKUs with neither are absent (SKU-keyed channels need none). One lookup for the whole batch, made
/// even when every SKU has an override, so every push reads the listings the same way.
pub async fn item_ids(
    store: &dyn ListingStore,
    account: &AccountConfig,
    channel_skus: &[String],
) -> Result<BTreeMap<String, String>, StoreError> {
    let keys: Vec<ListingKey> = channel_skus
        .iter()
        .map(|s| ListingKey { channel: account.channel, account: account.account.clone(), channel_sku: s.clone() })
        .collect();
    let found = if keys.is_empty() { Vec::new() } else { store.lookup(&keys).await? };
    Ok(keys
        .into_iter()
        .zip(found)
        .filter_map(|(key, found)| {
            let listed = match found {
                Lookup::Listed(l) => l.listing.ids.item_id(account.channel),
                Lookup::Unsynced | Lookup::NotListed => None,
            };
            let id = account.item_ids.get(&key.channel_sku).cloned().or(listed)?;
            Some((key.channel_sku, id))
        })
        .collect())
}

#[cfg(test)]
mod tests;

impl crate::App {
    /// The account's listing sync (see the module docs): walks its listings into the store, marks
    /// the ones no longer shown gone, and publishes the current availability of the new ones to this
    /// account through the push gate and its push queue.
    pub async fn sync_listings(&self, account: &AccountConfig) -> Result<ListingSyncReport, crate::outcome::Failure> {
        use futures::{StreamExt, TryStreamExt, stream};
        use manifold_ledger::{Ledger, PositionKey, fanout::fan_out};

        let trace_id = crate::trace::mint();
        let ctx = CallContext::new(trace_id.clone());
        let connector = self.connector(account).await?;
        let now = Utc::now();
        let (mut report, new) = sync_account(&**self.listings, &*connector, account, &ctx, now).await.map_err(|e| {
            if e.is_retryable() {
                crate::outcome::Failure::Transient(Box::new(e))
            } else {
                crate::outcome::Failure::permanent("listings", format!("{e}: {}", error_chain(&e)))
            }
        })?;
        let masters: BTreeSet<Sku> = new.into_iter().filter_map(|l| l.master).collect();
        let positions: Vec<manifold_ledger::Position> =
            stream::iter(masters)
                // The account sells from its own location: that position is what it is published.
                .map(|sku| async move {
                    self.ledger.position(&PositionKey::new(sku, account.stock.location.as_str())).await
                })
                .buffer_unordered(16)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| crate::outcome::Failure::Transient(e.to_string().into()))?
                .into_iter()
                // Version 0: the ledger never heard of the SKU (`manifold listings unknown` reports it).
                .filter(|p| p.version > 0)
                .collect();
        if !positions.is_empty() {
            let mut only = (*self.config().await).clone();
            only.accounts.retain(|a| a.channel == account.channel && a.account == account.account);
            let fanned = fan_out(&only, &positions, &self.push_gate, &*self.push_queue, Some(&trace_id))
                .await
                .map_err(|e| crate::outcome::Failure::Transient(Box::new(e)))?;
            report.pushed = fanned.enqueued.len();
        }
        tracing::info!(
            channel = %account.channel,
            account = %account.account,
            listed = report.listed,
            new = report.new,
            gone = report.gone,
            pushed = report.pushed,
            "listing sync done"
        );
        manifold_telemetry::MetricSet::new()
            .dim("Channel", account.channel.as_str())
            .dim("Operation", "listings")
            .count("ListingsNew", report.new as u64)
            .count("ListingsGone", report.gone as u64)
            .emit();
        Ok(report)
    }
}

impl crate::App {
    /// The `listings` tier ([`App::run_tier`](crate::App::run_tier)): every enabled account's listing
    /// sync, one after the other; an account that fails is logged and counted in the note, the others
    /// still run.
    pub(crate) async fn sync_every_listing(&self, report: &mut crate::scheduler::TierReport) {
        let accounts: Vec<AccountConfig> = self.config().await.enabled_accounts().cloned().collect();
        let mut failed = Vec::new();
        for account in &accounts {
            match self.sync_listings(account).await {
                Ok(r) => {
                    report.positions += r.listed;
                    report.push_jobs += r.pushed;
                    report.drift += r.new + r.gone;
                }
                Err(e) => {
                    tracing::warn!(channel = %account.channel, account = %account.account, error = %e, "listing sync failed");
                    failed.push(format!("{}:{}", account.channel, account.account));
                }
            }
        }
        if !failed.is_empty() {
            report.note = Some(format!("listing sync failed for {}", failed.join(", ")));
        }
    }
}

/// The sources of an error, for a permanent failure's reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
