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
//! over, and what was written so far is only refreshed. A walk that finds no listing at all changes
//! nothing either (a missing API scope looks the same as an empty store): pushes stay unfiltered.

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

/// Pages per walk at most ([`sync_account`]): a runaway cursor ends the walk instead of the function's time.
const MAX_PAGES: usize = 100_000;

/// What one page of a listing walk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkPage {
    /// Listings the page showed (a SKU twice on one page counts once).
    pub listed: usize,
    /// Of those, new to the store (never seen, or back after being gone; every one on an account's
    /// first walk): the caller publishes their availability.
    pub new: Vec<StoredListing>,
    /// The cursor of the next page; `None`: this was the last one and the walk is [finished](finish_walk).
    pub next: Option<String>,
}

/// One page of the account's listing walk: reads the channel's page at `cursor` and writes it to
/// `store`, each listing seen at `now`. A walk is its pages in order (a Lambda invocation each, in a
/// sync run), so no invocation has to walk a whole catalog; [`finish_walk`] ends it.
pub async fn walk_page(
    store: &dyn ListingStore,
    connector: &dyn ChannelConnector,
    account: &AccountConfig,
    cursor: Option<&str>,
    ctx: &CallContext,
    now: DateTime<Utc>,
) -> Result<WalkPage, ListingSyncError> {
    let page = connector.list_listings(cursor, ctx).await?;
    // A cursor that repeats would walk forever, and end no walk: refuse.
    if let Some(next) = page.next.as_deref()
        && Some(next) == cursor
    {
        return Err(ConnectorError::permanent(format!("{} listing cursor {next:?} repeats", account.channel)).into());
    }
    let mut seen = BTreeSet::new();
    let listings: Vec<_> = page.listings.into_iter().filter(|l| seen.insert(l.sku.clone())).collect();
    let keys: Vec<ListingKey> = listings
        .iter()
        .map(|l| ListingKey { channel: account.channel, account: account.account.clone(), channel_sku: l.sku.clone() })
        .collect();
    let before = if keys.is_empty() { Vec::new() } else { store.lookup(&keys).await? };
    let mut out = WalkPage { listed: listings.len(), next: page.next, ..WalkPage::default() };
    let mut batch = Vec::with_capacity(listings.len());
    for (mut listing, before) in listings.into_iter().zip(before) {
        listing.seen_at = now;
        let master = account.master_sku(&listing.sku).cloned().or_else(|| Sku::new(listing.sku.clone()).ok());
        let (first_seen, new) = match &before {
            Lookup::Listed(previous) => (previous.first_seen, false),
            Lookup::Unsynced | Lookup::NotListed => (now, true),
        };
        let stored = StoredListing {
            channel: account.channel,
            account: account.account.clone(),
            master,
            first_seen,
            gone_at: None,
            listing,
        };
        if new {
            out.new.push(stored.clone());
        }
        batch.push(stored);
    }
    store.put_listings(&batch).await?;
    Ok(out)
}

/// Ends a complete walk that started at `started`: every stored listing it did not see is marked gone
/// at `now`, and the account is marked synced (from then on its pushes follow its listings). Returns
/// how many went. Only a walk that reached its last page may end, so a failed one marks nothing gone;
/// and a walk that saw no listing at all ends nothing (see below).
pub async fn finish_walk(
    store: &dyn ListingStore,
    account: &AccountConfig,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let (seen, unseen): (Vec<StoredListing>, Vec<StoredListing>) = store
        .account_listings(account.channel, &account.account)
        .await?
        .into_iter()
        .filter(StoredListing::is_listed)
        .partition(|l| l.listing.seen_at >= started);
    if seen.is_empty() {
        // A walk that found nothing at all is likelier a missing API scope or an empty test store
        // than an account selling nothing: it ends no walk, so the account keeps getting every SKU.
        tracing::warn!(channel = %account.channel, account = %account.account, "the channel listed nothing: the account stays unfiltered");
        return Ok(0);
    }
    let gone: Vec<StoredListing> = unseen
        .into_iter()
        .map(|mut l| {
            l.gone_at = Some(now);
            l
        })
        .collect();
    store.put_listings(&gone).await?;
    store.mark_synced(account.channel, &account.account, now).await?;
    Ok(gone.len())
}

/// Walks all of the account's listings at `now` (see the module docs): [`walk_page`] until the last
/// page, then [`finish_walk`]. Returns the report and the listings new to the store, for the caller to
/// publish their availability.
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
    let mut new = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = walk_page(store, connector, account, cursor.as_deref(), ctx, now).await?;
        report.pages += 1;
        report.listed += page.listed;
        new.extend(page.new);
        match page.next {
            Some(_) if report.pages >= MAX_PAGES => {
                return Err(ConnectorError::permanent(format!(
                    "{} listings run past {MAX_PAGES} pages",
                    account.channel
                ))
                .into());
            }
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    report.gone = finish_walk(store, account, now, now).await?;
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
    /// The account's listing sync in one go (see the module docs): every page of its walk, then the
    /// walk's end. [`App::sync_listings_page`](crate::App::sync_listings_page) is the same a page at a
    /// time, as a sync run does it.
    pub async fn sync_listings(&self, account: &AccountConfig) -> Result<ListingSyncReport, crate::outcome::Failure> {
        let started = Utc::now();
        let mut report = ListingSyncReport {
            channel: account.channel.to_string(),
            account: account.account.to_string(),
            ..ListingSyncReport::default()
        };
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = self.sync_listings_page(account, cursor.as_deref(), started, Utc::now()).await?;
            report.pages += 1;
            report.listed += page.listed;
            report.new += page.new;
            report.gone += page.gone;
            report.pushed += page.pushed;
            match next {
                Some(_) if report.pages >= MAX_PAGES => {
                    return Err(crate::outcome::Failure::permanent(
                        "listings",
                        format!("{} listings run past {MAX_PAGES} pages", account.channel),
                    ));
                }
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// One page of the account's listing walk that started at `started`: the channel's page at
    /// `cursor` into the store, the current availability of the listings new there published to this
    /// account (push gate and queue), and on the last page the walk's end (gone listings, the sync
    /// marker). Returns what the page did and the next cursor.
    pub async fn sync_listings_page(
        &self,
        account: &AccountConfig,
        cursor: Option<&str>,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(ListingSyncReport, Option<String>), crate::outcome::Failure> {
        let trace_id = crate::trace::mint();
        let ctx = CallContext::new(trace_id.clone());
        let connector = self.connector(account).await?;
        let failure = |e: ListingSyncError| {
            if e.is_retryable() {
                crate::outcome::Failure::Transient(Box::new(e))
            } else {
                crate::outcome::Failure::permanent("listings", format!("{e}: {}", error_chain(&e)))
            }
        };
        let page = walk_page(&**self.listings, &*connector, account, cursor, &ctx, now).await.map_err(failure)?;
        let mut report = ListingSyncReport {
            channel: account.channel.to_string(),
            account: account.account.to_string(),
            pages: 1,
            listed: page.listed,
            new: page.new.len(),
            ..ListingSyncReport::default()
        };
        report.pushed = self.publish_new(account, page.new, &trace_id).await?;
        if page.next.is_none() {
            report.gone = finish_walk(&**self.listings, account, started, now).await?;
            tracing::info!(channel = %account.channel, account = %account.account, gone = report.gone, "listing walk done");
        }
        manifold_telemetry::MetricSet::new()
            .dim("Channel", account.channel.as_str())
            .dim("Operation", "listings")
            .count("ListingsNew", report.new as u64)
            .count("ListingsGone", report.gone as u64)
            .emit();
        Ok((report, page.next))
    }

    /// Publishes the current availability of `new` listings to their account alone: the positions of
    /// their master SKUs at the account's location, through the push gate and queue. Returns the jobs
    /// queued.
    async fn publish_new(
        &self,
        account: &AccountConfig,
        new: Vec<StoredListing>,
        trace_id: &str,
    ) -> Result<usize, crate::outcome::Failure> {
        use futures::{StreamExt, TryStreamExt, stream};
        use manifold_ledger::{Ledger, PositionKey, fanout::fan_out};

        let masters: BTreeSet<Sku> = new.into_iter().filter_map(|l| l.master).collect();
        if masters.is_empty() {
            return Ok(0);
        }
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
        if positions.is_empty() {
            return Ok(0);
        }
        let mut only = (*self.config().await).clone();
        only.accounts.retain(|a| a.channel == account.channel && a.account == account.account);
        let fanned = fan_out(&only, &positions, &self.push_gate, &*self.push_queue, Some(trace_id))
            .await
            .map_err(|e| crate::outcome::Failure::Transient(Box::new(e)))?;
        Ok(fanned.enqueued.len())
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
