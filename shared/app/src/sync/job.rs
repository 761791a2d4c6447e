//! Runs, page by page, through the `SyncQueue`.
//!
//! A run starts with one message, `{"run": id, "page": 0}`. The consumer ([`App::sync_batch`], the
//! scheduler function) reads the run, does one page of work from the run's cursor (a stock page
//! hands one ledger page to the push gate and queues what the gate takes; other kinds are one page),
//! then records the page with [`SyncStore::complete_page`]: counts, next cursor and page count in ONE
//! conditional write on the page number, and only then sends the message for the next page. So:
//!
//! - a page that fails before its write (a fault, a killed function) is redone from the same cursor
//!   when SQS redelivers its message; what it had already queued is in flight at the gate and is
//!   coalesced, so each SKU is pushed once;
//! - a duplicate message, or a page raced by two consumers, finds the page recorded: nothing is
//!   counted twice, and the earlier message re-sends its successor in case the function died between
//!   the write and the send;
//! - a page that keeps failing goes to the `SyncDLQ`; redriven, it resumes from the run's cursor.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use manifold_domain::config::{AccountConfig, Cadence, ChannelConfig};
use manifold_ledger::fanout::PushQueue;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    PageDone, RunStatus, SLOT_LEASE, Slot, SyncKind, SyncRun, Trigger,
    catalog::{CatalogPage, MAX_SLICES},
    due_before, is_due,
    store::{Claim, SyncStore},
};
use crate::{App, outcome::Failure};

/// The longest gap since the previous run that a stock run walks through the `Changed` index (an
/// index query per hour and shard); a longer one is a filtered scan.
const MAX_CHANGED_WALK: chrono::TimeDelta = chrono::TimeDelta::hours(48);

/// Prefix of a stock run's cursor once it walks its slice of the catalog.
const SLICE_CURSOR: &str = "slice:";

/// Which slice of how many a scheduled stock run walks: `verify_within` over the stock cadence
/// slices (at least one), and the run's start in stock periods, modulo that, picks one; consecutive
/// runs take consecutive slices.
fn slice_of(run: &SyncRun, account: &AccountConfig) -> (u32, u32) {
    let (Cadence::Every(stock), Cadence::Every(verify)) = (account.sync.stock, account.sync.verify_within) else {
        return (0, 1);
    };
    let period = stock.as_secs().max(1);
    let slices = verify.as_secs().div_ceil(period).clamp(1, u64::from(MAX_SLICES));
    let index = u64::try_from(run.started_at.timestamp()).unwrap_or_default() / period % slices;
    (u32::try_from(index).unwrap_or_default(), u32::try_from(slices).unwrap_or(1))
}

/// Counts what a page attempt hands to the push queue, so an attempt that fails halfway still
/// counts the jobs it queued.
struct Counted<'a, Q> {
    inner: &'a Q,
    queued: AtomicU64,
}

impl<Q: PushQueue> PushQueue for Counted<'_, Q> {
    async fn enqueue(&self, job: &manifold_ledger::fanout::PushJob) -> Result<(), manifold_ledger::fanout::PushError> {
        self.inner.enqueue(job).await?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One page of a run, as the `SyncQueue` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMessage {
    pub run: String,
    pub page: u32,
}

/// What handling one page message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// The page was done and recorded.
    Recorded(PageDone),
    /// The page was already recorded, or the run is over: nothing changed.
    AlreadyDone,
    /// No such run (it expired, or the message is not ours).
    UnknownRun,
}

/// What one scheduler tick started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// The runs started, one per due slot this tick claimed.
    pub started: Vec<StartedRun>,
    /// Due slots another tick claimed first.
    pub contended: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartedRun {
    pub slot: String,
    pub run: String,
}

/// Claims every slot of `config`'s enabled accounts that is due at `now` and creates its run. Two
/// ticks at once each claim a slot at most once between them (the claim is a conditional write).
pub async fn claim_due(
    config: &ChannelConfig,
    store: &dyn SyncStore,
    now: DateTime<Utc>,
) -> Result<(Vec<SyncRun>, usize), Failure> {
    let states: std::collections::HashMap<Slot, super::SlotState> = store.slots().await?.into_iter().collect();
    let mut runs = Vec::new();
    let mut contended = 0;
    for account in config.enabled_accounts() {
        for kind in SyncKind::ALL {
            let cadence = kind.cadence(&account.sync);
            let slot = Slot::new(account.channel, account.account.clone(), kind);
            if !is_due(cadence, states.get(&slot), now) {
                continue;
            }
            let manifold_domain::config::Cadence::Every(period) = cadence else { continue };
            // A stock run after the slot's first walks what changed since the previous one plus a
            // slice of the catalog (`App::stock_page`); the first, and other kinds, walk everything.
            let since = states.get(&slot).and_then(|s| s.last_started).filter(|_| kind == SyncKind::Stock);
            let run = SyncRun::new(&slot, Trigger::Scheduled, since.is_none(), since, now);
            let claim = Claim {
                now,
                due_before: due_before(period, now),
                lease_until: now + SLOT_LEASE,
                run_id: run.id.clone(),
            };
            if store.claim(&slot, &claim).await? {
                store.create_run(&run).await?;
                runs.push(run);
            } else {
                contended += 1;
            }
        }
    }
    Ok((runs, contended))
}

/// The body of `POST /v1/sync/{channel}/{account}/{kind}` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The whole catalog rather than what changed since the last scheduled run.
    #[serde(default)]
    pub full: bool,
}

impl SyncRequest {
    /// The slot a request's path names and its body; a permanent failure names what is wrong.
    pub fn parse(channel: &str, account: &str, kind: &str, body: &str) -> Result<(Slot, Self), Failure> {
        let bad = |m: String| Failure::permanent("sync", m);
        let channel = channel.parse().map_err(|_| bad(format!("unknown channel {channel:?}")))?;
        let account = manifold_domain::AccountId::new(account).map_err(|e| bad(format!("bad account: {e}")))?;
        let kind = kind.parse().map_err(bad)?;
        let request = if body.trim().is_empty() {
            Self::default()
        } else {
            serde_json::from_str(body).map_err(|e| bad(format!("body must be {{\"full\": true|false}}: {e}")))?
        };
        Ok((Slot::new(channel, account, kind), request))
    }
}

impl App {
    fn sync_queue_url(&self) -> Result<&str, Failure> {
        self.settings
            .sync_queue_url
            .as_deref()
            .ok_or_else(|| Failure::permanent("sync", "SYNC_QUEUE_URL is not set: the template sets it"))
    }

    async fn send_page(&self, run: &str, page: u32, trace_id: &str) -> Result<(), Failure> {
        let body = serde_json::to_string(&PageMessage { run: run.to_owned(), page })
            .map_err(|e| Failure::permanent("sync", e.to_string()))?;
        self.queue.send(self.sync_queue_url()?, &body, trace_id, None).await?;
        Ok(())
    }

    /// One scheduler tick: starts a run for every (account, kind) whose cadence is due. A run whose
    /// first page cannot be queued is ended as failed (visible in `manifold sync runs`) and its slot
    /// freed, so the next period tries again; the others still start.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, Failure> {
        let config = self.config().await;
        let store = &**self.sync_store;
        let (runs, contended) = claim_due(&config, store, now).await?;
        let mut report = TickReport { contended, ..TickReport::default() };
        let mut first_error = None;
        for run in runs {
            if let Err(e) = self.send_page(&run.id, 0, &crate::trace::mint()).await {
                warn!(run = %run.id, error = %e, "could not queue a scheduled run's first page");
                let failed = PageDone {
                    errors: 1,
                    note: Some(format!("its first page could not be queued: {e}")),
                    end: Some(RunStatus::Failed),
                    ..PageDone::default()
                };
                store.complete_page(&run.id, 0, &failed, now).await?;
                store.release(&run.slot(), &run.id, now).await?;
                first_error.get_or_insert(e);
                continue;
            }
            report.started.push(StartedRun { slot: run.slot().to_string(), run: run.id });
        }
        if let Err(e) = self.start_window_runs(now, &mut report).await {
            warn!(error = %e, "promotion windows not checked: the next tick checks them again");
            first_error.get_or_insert(e);
        }
        info!(started = report.started.len(), contended, "scheduler tick");
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Starts a prices run of every account a promotion window opened or closed for in the last day
    /// and not yet re-priced for (a marker per window edge), so prices change at the window's edge.
    async fn start_window_runs(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<(), Failure> {
        let due = self.price_windows_due(now - chrono::Duration::days(1), now).await?;
        for ((channel, account), edges) in due {
            let mut unmarked = Vec::new();
            for (rule, edge) in edges {
                let marker = format!("price-window#{channel}#{account}#{rule}#{}", edge.timestamp());
                if self.state.get_marker(&marker).await?.is_none() {
                    unmarked.push((marker, rule));
                }
            }
            if unmarked.is_empty() {
                continue;
            }
            let run =
                self.start_sync(Slot::new(channel, account, SyncKind::Prices), Trigger::Window, true, now).await?;
            for (marker, rule) in &unmarked {
                self.state.set_marker(marker, &run.id).await?;
                info!(run = %run.id, rule = %rule, "promotion window edge: prices run started");
            }
            report.started.push(StartedRun { slot: run.slot().to_string(), run: run.id });
        }
        Ok(())
    }

    /// Starts a run on demand (`POST /v1/sync/...`, `manifold sync`): the whole catalog with `full`,
    /// else what changed since the slot's last scheduled run (the whole catalog if it never ran).
    pub async fn start_sync(
        &self,
        slot: Slot,
        trigger: Trigger,
        full: bool,
        now: DateTime<Utc>,
    ) -> Result<SyncRun, Failure> {
        self.account(slot.channel, slot.account.as_str()).await?;
        let since = if full {
            None
        } else {
            self.sync_store.slots().await?.into_iter().find(|(s, _)| *s == slot).and_then(|(_, st)| st.last_started)
        };
        let run = SyncRun::new(&slot, trigger, since.is_none(), since, now);
        self.sync_store.create_run(&run).await?;
        self.send_page(&run.id, 0, &crate::trace::mint()).await?;
        info!(run = %run.id, slot = %slot, trigger = trigger.as_str(), full = run.full, "sync started");
        Ok(run)
    }

    /// `POST /v1/sync/{channel}/{account}/{kind}`: 202 with the job id (the run's id), 400 for a
    /// request that names no configured account or kind, 503 when the run could not be started.
    pub async fn sync_http(
        &self,
        channel: &str,
        account: &str,
        kind: &str,
        body: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<lambda_http::Response<lambda_http::Body>, http::Error> {
        let started = match SyncRequest::parse(channel, account, kind, body) {
            Ok((slot, request)) => self.start_sync(slot, Trigger::Api, request.full, now).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(run) => {
                let mut r = crate::http::json_response(202, "accepted", trace_id)?;
                *r.body_mut() = serde_json::json!({ "job_id": run.id, "run": run }).to_string().into();
                Ok(r)
            }
            Err(Failure::Permanent { reason, .. }) => crate::http::json_response(400, &reason, trace_id),
            Err(e) => crate::http::json_response(503, &format!("retry later: {e}"), trace_id),
        }
    }

    /// The `SyncQueue` consumer: one page per message, pushes through the channels' push queues.
    pub async fn sync_batch(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        // One message at a time: pages of one run follow each other anyway, and a page already runs
        // its gate writes and enqueues concurrently.
        crate::sqs::process_batch(event, 1, |m| async move {
            let body = m.body.unwrap_or_default();
            let message: PageMessage = serde_json::from_str(&body)
                .map_err(|e| Failure::permanent("sync", format!("not a sync page message: {e}")))?;
            self.sync_page(&message, Utc::now()).await.map(|_| ())
        })
        .await
    }

    /// Does one page of a run and records it (see the module docs).
    pub async fn sync_page(&self, message: &PageMessage, now: DateTime<Utc>) -> Result<PageOutcome, Failure> {
        self.sync_page_with(message, &*self.push_queue, now).await
    }

    /// [`App::sync_page`] with the push queue given (tests count what a run queues).
    pub async fn sync_page_with<Q: PushQueue>(
        &self,
        message: &PageMessage,
        queue: &Q,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, Failure> {
        let store = &**self.sync_store;
        let Some(run) = store.run(&message.run).await? else {
            warn!(run = %message.run, "page of an unknown sync run: dropped");
            return Ok(PageOutcome::UnknownRun);
        };
        if run.status != RunStatus::Running || message.page > run.pages {
            return Ok(PageOutcome::AlreadyDone);
        }
        if message.page < run.pages {
            // Recorded already; its successor may not have been sent if the function died in between.
            if message.page + 1 == run.pages {
                self.send_page(&run.id, run.pages, &crate::trace::mint()).await?;
            }
            return Ok(PageOutcome::AlreadyDone);
        }
        let counted = Counted { inner: queue, queued: AtomicU64::new(0) };
        let done = match self.page_work(&run, &counted, now).await {
            Ok(done) => done,
            Err(Failure::Permanent { reason, .. }) => {
                warn!(run = %run.id, reason, "sync run failed");
                PageDone { errors: 1, note: Some(reason), end: Some(RunStatus::Failed), ..PageDone::default() }
            }
            Err(e) => {
                // The page is redone from the same cursor; what this attempt queued is out all the same.
                let queued = counted.queued.load(Ordering::Relaxed);
                if queued > 0
                    && let Err(count) = store.add_pushed(&run.id, queued).await
                {
                    warn!(run = %run.id, error = %count, "could not count the jobs a failed page attempt queued");
                }
                return Err(e);
            }
        };
        if !store.complete_page(&run.id, message.page, &done, now).await? {
            return Ok(PageOutcome::AlreadyDone);
        }
        match done.end {
            None => self.send_page(&run.id, message.page + 1, &crate::trace::mint()).await?,
            Some(status) => {
                if run.trigger == Trigger::Scheduled {
                    store.release(&run.slot(), &run.id, now).await?;
                }
                info!(run = %run.id, kind = %run.kind, status = status.as_str(), pages = message.page + 1, "sync run ended");
            }
        }
        Ok(PageOutcome::Recorded(done))
    }

    /// The work of the run's next page.
    async fn page_work<Q: PushQueue>(&self, run: &SyncRun, queue: &Q, now: DateTime<Utc>) -> Result<PageDone, Failure> {
        let account = self.account(run.channel, run.account.as_str()).await?;
        let finished = Some(RunStatus::Finished);
        Ok(match run.kind {
            SyncKind::Stock => {
                let page = self.stock_page(run, &account).await?;
                let end = page.next.is_none().then_some(RunStatus::Finished);
                if run.trigger == Trigger::Scheduled {
                    // The tier's own runs read what the channel shows and correct drift
                    // (`drift`); a triggered run pushes what changed, calling the channel only
                    // for that.
                    let trace_id = crate::trace::mint();
                    let d = self.reconcile_stock(&account, &page.positions, queue, &trace_id, now).await?;
                    PageDone {
                        end,
                        cursor: page.next,
                        examined: page.positions.len() as u64,
                        pushed: d.pushed,
                        drift: d.drift_units,
                        errors: u64::from(d.read_error.is_some()),
                        note: d.read_error,
                    }
                } else {
                    let pushed = self.offer_to_account(&account, &page.positions, queue).await?;
                    PageDone {
                        end,
                        cursor: page.next,
                        examined: page.positions.len() as u64,
                        pushed,
                        ..PageDone::default()
                    }
                }
            }
            SyncKind::Reconcile | SyncKind::Orders => {
                let cadence = run.kind.cadence(&account.sync);
                let poll = self.reconcile_account(&account, cadence, now).await?;
                PageDone {
                    examined: poll.orders_seen as u64,
                    drift: poll.drift as u64,
                    errors: u64::from(poll.failed),
                    note: poll.note,
                    end: finished,
                    ..PageDone::default()
                }
            }
            SyncKind::Listings => {
                // A page of the channel's listings per page of the run, from the run's cursor.
                let (page, next) =
                    self.sync_listings_page(&account, run.cursor.as_deref(), run.started_at, now).await?;
                PageDone {
                    end: next.is_none().then_some(RunStatus::Finished),
                    cursor: next,
                    examined: page.listed as u64,
                    pushed: page.pushed as u64,
                    drift: (page.new + page.gone) as u64,
                    ..PageDone::default()
                }
            }
            SyncKind::Prices => {
                let page = self.price_page(&account, run.cursor.as_deref(), &crate::trace::mint(), now).await?;
                PageDone {
                    end: page.next.is_none().then_some(RunStatus::Finished),
                    cursor: page.next,
                    examined: page.examined,
                    pushed: page.pushed,
                    errors: page.refused,
                    note: (page.refused > 0).then(|| {
                        format!("{} price(s) refused by the rules and quarantined (stage price)", page.refused)
                    }),
                    ..PageDone::default()
                }
            }
            SyncKind::Images => {
                // All product content (titles, descriptions, images), a page of the content book at a time.
                let page = self.content_page(&account, run.cursor.as_deref(), &crate::trace::mint()).await?;
                PageDone {
                    end: page.next.is_none().then_some(RunStatus::Finished),
                    cursor: page.next,
                    examined: page.examined,
                    pushed: page.pushed,
                    note: page.note,
                    ..PageDone::default()
                }
            }
        })
    }

    /// The next page of a stock run. A run with `since` (a scheduled run after the slot's first)
    /// walks the positions changed since then, and then, when it is the tier's own run, one slice of
    /// the whole catalog (`SLICE_CURSOR` marks that walk's cursor): the slice is the run's place in
    /// the account's `verify_within` period, so the runs of one period read every SKU from the
    /// channel, while no run walks the whole catalog.
    async fn stock_page(&self, run: &SyncRun, account: &AccountConfig) -> Result<CatalogPage, Failure> {
        if let Some(inner) = run.cursor.as_deref().and_then(|c| c.strip_prefix(SLICE_CURSOR)) {
            let (slice, slices) = slice_of(run, account);
            let page = self.catalog.slice_page(Some(inner).filter(|c| !c.is_empty()), slice, slices).await?;
            return Ok(CatalogPage { next: page.next.map(|c| format!("{SLICE_CURSOR}{c}")), ..page });
        }
        let mut page = match run.since {
            // What changed, from the ledger's index of positions by the hour they changed in; a
            // run whose last one is long past (its slot paused for days) scans for it instead.
            Some(since) if run.started_at - since <= MAX_CHANGED_WALK => {
                self.catalog.changed_page(run.cursor.as_deref(), since, run.started_at).await?
            }
            since => self.catalog.page(run.cursor.as_deref(), since).await?,
        };
        if page.next.is_none() && run.since.is_some() && run.trigger == Trigger::Scheduled {
            page.next = Some(SLICE_CURSOR.to_owned());
        }
        self.whole_positions(page).await
    }

    /// `page` with each hot SKU's shards replaced by the position they are shards of, read as their
    /// sum (`manifold_ledger::shard`): channels list the SKU, not its shards.
    pub async fn whole_positions(&self, page: CatalogPage) -> Result<CatalogPage, Failure> {
        use manifold_ledger::{Ledger, shard};
        let shards = self.ledger.store().shards().clone();
        let is_part = |p: &manifold_ledger::Position| shard::shard_of(&p.location).is_some() || shards.of(&p.sku) > 1;
        if !page.positions.iter().any(is_part) {
            return Ok(page);
        }
        let CatalogPage { positions, next } = page;
        let mut wholes = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            if is_part(&p) {
                wholes.insert(shard::logical(&p.key()));
            } else {
                out.push(p);
            }
        }
        for key in wholes {
            out.push(self.ledger.position(&key).await.map_err(|e| crate::ledger::failure(&e))?);
        }
        Ok(CatalogPage { positions: out, next })
    }

    /// Hands `positions` to the push gate for this one account and queues what it takes; returns how
    /// many were queued (the others were unchanged or already in flight).
    async fn offer_to_account<Q: PushQueue>(
        &self,
        account: &AccountConfig,
        positions: &[manifold_ledger::Position],
        queue: &Q,
    ) -> Result<u64, Failure> {
        let config = self.config().await;
        let only = ChannelConfig { accounts: vec![account.clone()], ..(*config).clone() };
        // Bundles whose components are on this page go with it (their other components read).
        let fanned = self.fan_out_with_bundles(&only, positions, queue, None).await?;
        Ok(fanned.enqueued.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeDelta;
    use manifold_domain::{Channel, config::Cadence};

    use super::*;
    use crate::sync::store::MemorySyncStore;

    const EXAMPLE: &str = include_str!("../../../../infra/channels.example.toml");

    fn at(mins: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(mins)
    }

    /// Two accounts with cadences the test controls.
    fn config() -> ChannelConfig {
        let mut config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        config.accounts.retain(|a| matches!(a.channel, Channel::Shopify | Channel::Etsy));
        let every = |m: u64| Cadence::Every(Duration::from_mins(m));
        for a in &mut config.accounts {
            a.sync.orders = Cadence::Realtime;
            a.sync.stock = every(5);
            a.sync.prices = every(60);
            a.sync.images = Cadence::OnDemand;
            a.sync.reconcile = every(15);
            a.sync.listings = Cadence::OnDemand;
        }
        config
    }

    /// Records a finished run of `slot` started at `started`.
    async fn seed(store: &MemorySyncStore, slot: &Slot, started: DateTime<Utc>) {
        let claim = Claim { now: started, due_before: started, lease_until: started, run_id: "seed".into() };
        assert!(store.claim(slot, &claim).await.unwrap());
        store.release(slot, "seed", started).await.unwrap();
    }

    fn names(runs: &[SyncRun]) -> Vec<String> {
        let mut v: Vec<String> = runs.iter().map(|r| r.slot().to_string()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_tick_claims_exactly_the_due_slots_and_the_next_tick_none() {
        let config = config();
        let store = MemorySyncStore::default();
        let shop = |k| Slot::new(Channel::Shopify, config.accounts[0].account.clone(), k);
        let etsy = |k| Slot::new(Channel::Etsy, config.accounts[1].account.clone(), k);
        assert_eq!(config.accounts[1].channel, Channel::Etsy);
        seed(&store, &shop(SyncKind::Stock), at(-6)).await; // due
        seed(&store, &shop(SyncKind::Reconcile), at(-1)).await; // not due
        seed(&store, &shop(SyncKind::Prices), at(-30)).await; // not due
        seed(&store, &etsy(SyncKind::Stock), at(-2)).await; // not due
        seed(&store, &etsy(SyncKind::Reconcile), at(-15)).await; // due
        // etsy prices: never ran, due. Orders (realtime) and images (on demand): never.
        let (runs, contended) = claim_due(&config, &store, at(0)).await.unwrap();
        let mut expected = vec![
            shop(SyncKind::Stock).to_string(),
            etsy(SyncKind::Reconcile).to_string(),
            etsy(SyncKind::Prices).to_string(),
        ];
        expected.sort();
        assert_eq!(names(&runs), expected);
        assert_eq!(contended, 0);
        assert!(runs.iter().all(|r| r.trigger == Trigger::Scheduled && r.status == RunStatus::Running));
        for r in &runs {
            assert_eq!(store.run(&r.id).await.unwrap().as_ref(), Some(r), "each run is recorded");
        }
        let (again, _) = claim_due(&config, &store, at(0) + TimeDelta::seconds(5)).await.unwrap();
        assert!(again.is_empty(), "a second tick right after runs none: {:?}", names(&again));
        // Five minutes on, the stock slot is still held by its unfinished run until the lease expires...
        let (held, _) = claim_due(&config, &store, at(5)).await.unwrap();
        assert!(held.iter().all(|r| r.kind != SyncKind::Stock || r.channel != Channel::Shopify));
        // ...and due again at once when that run finishes.
        let stock = runs.iter().find(|r| r.slot() == shop(SyncKind::Stock)).unwrap();
        store.release(&stock.slot(), &stock.id, at(1)).await.unwrap();
        let (next, _) = claim_due(&config, &store, at(5)).await.unwrap();
        assert!(names(&next).contains(&shop(SyncKind::Stock).to_string()), "{:?}", names(&next));
    }

    /// A tick that read the slots before the other tick's claims landed: every slot looks due to it.
    struct StaleReads<'a>(&'a MemorySyncStore);

    #[async_trait::async_trait]
    impl SyncStore for StaleReads<'_> {
        async fn slots(&self) -> Result<Vec<(Slot, crate::sync::SlotState)>, manifold_aws::StoreError> {
            Ok(Vec::new())
        }
        async fn claim(&self, slot: &Slot, claim: &Claim) -> Result<bool, manifold_aws::StoreError> {
            self.0.claim(slot, claim).await
        }
        async fn release(&self, slot: &Slot, run: &str, at: DateTime<Utc>) -> Result<(), manifold_aws::StoreError> {
            self.0.release(slot, run, at).await
        }
        async fn create_run(&self, run: &SyncRun) -> Result<(), manifold_aws::StoreError> {
            self.0.create_run(run).await
        }
        async fn run(&self, id: &str) -> Result<Option<SyncRun>, manifold_aws::StoreError> {
            self.0.run(id).await
        }
        async fn complete_page(
            &self,
            id: &str,
            page: u32,
            done: &PageDone,
            now: DateTime<Utc>,
        ) -> Result<bool, manifold_aws::StoreError> {
            self.0.complete_page(id, page, done, now).await
        }
        async fn add_pushed(&self, id: &str, pushed: u64) -> Result<(), manifold_aws::StoreError> {
            self.0.add_pushed(id, pushed).await
        }
        async fn runs(
            &self,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> Result<Vec<SyncRun>, manifold_aws::StoreError> {
            self.0.runs(from, to).await
        }
    }

    #[tokio::test]
    async fn two_overlapping_ticks_start_each_slot_once() {
        let config = config();
        let store = MemorySyncStore::default();
        let (first, _) = claim_due(&config, &store, at(0)).await.unwrap();
        assert_eq!(first.len(), 2 * 3, "stock, prices and reconcile of both accounts");
        // The overlapping tick saw every slot due, and lost every claim: the conditional write decides.
        let (second, contended) = claim_due(&config, &StaleReads(&store), at(0)).await.unwrap();
        assert!(second.is_empty(), "started twice: {:?}", names(&second));
        assert_eq!(contended, first.len());
        assert_eq!(store.runs(at(0).date_naive(), at(0).date_naive()).await.unwrap().len(), first.len());
    }

    #[tokio::test]
    async fn a_page_is_recorded_once() {
        let store = MemorySyncStore::default();
        let slot = Slot::new(Channel::Shopify, manifold_domain::AccountId::new("s").unwrap(), SyncKind::Stock);
        let run = SyncRun::new(&slot, Trigger::Api, true, None, at(0));
        store.create_run(&run).await.unwrap();
        let page = PageDone { cursor: Some("c1".into()), examined: 10, pushed: 3, ..PageDone::default() };
        assert!(store.complete_page(&run.id, 0, &page, at(1)).await.unwrap());
        assert!(!store.complete_page(&run.id, 0, &page, at(1)).await.unwrap(), "a duplicate changes nothing");
        let last = PageDone { examined: 5, end: Some(RunStatus::Finished), ..PageDone::default() };
        assert!(store.complete_page(&run.id, 1, &last, at(2)).await.unwrap());
        let stored = store.run(&run.id).await.unwrap().unwrap();
        assert_eq!((stored.pages, stored.examined, stored.pushed, stored.cursor), (2, 15, 3, None));
        assert_eq!((stored.status, stored.finished_at), (RunStatus::Finished, Some(at(2))));
    }
}
