//! Syncs per account and data kind: when they are due, who runs them, and what each run did.
//!
//! Every account's configuration says how often each kind of data syncs (`sync` in channels.toml:
//! `orders`, `stock`, `prices`, `images`, `reconcile`). One EventBridge schedule fires the scheduler
//! every minute ([`App::tick`](crate::App::tick)); each tick reads the schedule state of every
//! (account, kind) *slot* in one query, and a slot whose cadence has elapsed since its last start is
//! *claimed* with a conditional write (a lease), so two overlapping ticks never both start it. A
//! claimed slot becomes a [`SyncRun`], whose work goes through the `SyncQueue` one page at a time
//! ([`job`]); a triggered sync (`POST /v1/sync/{channel}/{account}/{kind}`, `manifold sync`) is the
//! same run without the slot. `realtime` and `on_demand` cadences are never scheduled.
//!
//! Delta: pages hand their push jobs to the fan-out's push gate, which keeps per account and SKU the
//! quantity last handed over and the version the channel confirmed (`delivered`), so an unchanged
//! SKU is coalesced there and a second full sync with nothing changed calls no channel.
//!
//! Reconciliation: the stock tier's scheduled runs also read what the channel shows and correct
//! drift ([`drift`]); after its first run, each walks the positions changed since the previous one
//! plus one slice of the catalog, the slices of the account's `verify_within` period covering it
//! all ([`catalog::Catalog::slice_page`]).
//!
//! State in the `StateTable` ([`store::DynamoSyncStore`]):
//! - slot `SYNCSLOT` / `{channel}#{account}#{kind}`: `last_started`, `last_finished`, `lease_until`
//!   (epoch milliseconds) and `last_run` (the run id; the run holds the cursor);
//! - run `SYNCRUN#{yyyy-mm-dd}` / `{run id}`: kind, trigger, status, the page cursor and the page
//!   count, examined, pushed, drift, errors. Run ids begin with their start time, so a day's runs sort
//!   by start and a run is found from its id alone.

pub mod catalog;
pub mod drift;
pub mod job;
pub mod store;

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use manifold_domain::{
    AccountId, Channel,
    config::{Cadence, SyncCadences},
};
use serde::{Deserialize, Serialize};

/// A kind of data an account syncs, as named in its `sync` cadences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Orders,
    Stock,
    Prices,
    Images,
    Reconcile,
    /// The account's listings (what it sells, under which ids: [`crate::listings`]).
    Listings,
}

impl SyncKind {
    pub const ALL: [SyncKind; 6] = [
        SyncKind::Orders,
        SyncKind::Stock,
        SyncKind::Prices,
        SyncKind::Images,
        SyncKind::Reconcile,
        SyncKind::Listings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Orders => "orders",
            SyncKind::Stock => "stock",
            SyncKind::Prices => "prices",
            SyncKind::Images => "images",
            SyncKind::Reconcile => "reconcile",
            SyncKind::Listings => "listings",
        }
    }

    /// This kind's cadence in an account's configuration.
    pub fn cadence(self, sync: &SyncCadences) -> Cadence {
        match self {
            SyncKind::Orders => sync.orders,
            SyncKind::Stock => sync.stock,
            SyncKind::Prices => sync.prices,
            SyncKind::Images => sync.images,
            SyncKind::Reconcile => sync.reconcile,
            SyncKind::Listings => sync.listings,
        }
    }
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown sync kind {s:?}; one of: {}",
                Self::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The scheduler tick, from the account's cadence.
    Scheduled,
    /// `POST /v1/sync/{channel}/{account}/{kind}`.
    Api,
    /// `manifold sync`.
    Cli,
    /// A price rule's promotion window opened or closed (`crate::prices`).
    Window,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::Window => "window",
        }
    }
}

impl FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Trigger::Scheduled, Trigger::Api, Trigger::Cli, Trigger::Window]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown trigger {s:?}"))
    }
}

/// One account's one kind of data: what the scheduler claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slot {
    pub channel: Channel,
    pub account: AccountId,
    pub kind: SyncKind,
}

impl Slot {
    pub fn new(channel: Channel, account: AccountId, kind: SyncKind) -> Self {
        Self { channel, account, kind }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}#{}", self.channel, self.account, self.kind)
    }
}

impl FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '#');
        let (Some(c), Some(a), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("not a sync slot: {s:?}"));
        };
        Ok(Self {
            channel: c.parse().map_err(|_| format!("unknown channel in slot {s:?}"))?,
            account: AccountId::new(a).map_err(|e| format!("bad account in slot {s:?}: {e}"))?,
            kind: k.parse()?,
        })
    }
}

/// What the schedule remembers of one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub last_started: Option<DateTime<Utc>>,
    pub last_finished: Option<DateTime<Utc>>,
    /// While a run holds the slot; a crashed run's lease simply expires.
    pub lease_until: Option<DateTime<Utc>>,
    pub last_run: Option<String>,
}

/// Ticks come every minute, give or take EventBridge's jitter: a slot whose period elapses within
/// half a tick is due now rather than a whole tick late, so a `5m` cadence runs every 5 minutes and
/// does not drift to 6.
pub const TICK_SLACK: TimeDelta = TimeDelta::seconds(30);

/// How long a claimed slot is held before another tick may start it again, if its run never
/// finishes (a page dead-lettered, a function killed). A finished run releases it at once.
pub const SLOT_LEASE: TimeDelta = TimeDelta::minutes(15);

/// The latest start that makes a slot with this `period` due at `now`.
pub fn due_before(period: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::from_std(period).unwrap_or(TimeDelta::MAX) + TICK_SLACK
}

/// Whether a slot with this cadence and state is due at `now`: only periodic cadences are, once
/// their period has elapsed since the last start (never started: at once) and no run holds the
/// lease. The claim's condition in the store is this same rule.
pub fn is_due(cadence: Cadence, state: Option<&SlotState>, now: DateTime<Utc>) -> bool {
    let Cadence::Every(period) = cadence else { return false };
    state.is_none_or(|s| {
        s.lease_until.is_none_or(|l| l <= now) && s.last_started.is_none_or(|t| t <= due_before(period, now))
    })
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    /// Stopped for a reason retrying cannot fix (unknown account...): `note` says which.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
        }
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [RunStatus::Running, RunStatus::Finished, RunStatus::Failed]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown run status {s:?}"))
    }
}

/// One sync run: scheduled, or triggered through the API or the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// `{start time}-{random}`: unique, sortable, and it names the day the run is stored under.
    pub id: String,
    pub channel: Channel,
    pub account: AccountId,
    pub kind: SyncKind,
    pub trigger: Trigger,
    /// The whole catalog (`true`), or only what changed since `since`.
    pub full: bool,
    /// For a delta run: positions changed since this instant (the last finished run's start).
    pub since: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Pages done; the next page message carries this number.
    pub pages: u32,
    /// Where the next page starts (opaque to everyone but the catalog); `None` before the first page.
    pub cursor: Option<String>,
    /// SKU positions (or orders) looked at.
    pub examined: u64,
    /// Push jobs handed to the channel's push queue (the rest were unchanged: the delta).
    pub pushed: u64,
    /// Differences found (orders no webhook delivered, for order polls).
    pub drift: u64,
    pub errors: u64,
    pub note: Option<String>,
}

impl SyncRun {
    /// A new run starting `now`.
    pub fn new(slot: &Slot, trigger: Trigger, full: bool, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let id = format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%3fZ"), rand::random::<u32>());
        Self {
            id,
            channel: slot.channel,
            account: slot.account.clone(),
            kind: slot.kind,
            trigger,
            full,
            since,
            status: RunStatus::Running,
            started_at: now,
            finished_at: None,
            pages: 0,
            cursor: None,
            examined: 0,
            pushed: 0,
            drift: 0,
            errors: 0,
            note: None,
        }
    }

    pub fn slot(&self) -> Slot {
        Slot::new(self.channel, self.account.clone(), self.kind)
    }

    /// The day a run id was started (`yyyy-mm-dd`), which partitions the runs.
    pub fn day_of(id: &str) -> Option<String> {
        let d = id.get(..8).filter(|d| d.chars().all(|c| c.is_ascii_digit()))?;
        Some(format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
    }
}

/// What one page did, written together with the cursor and the page count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDone {
    /// Where the next page starts; `None`: this was the last page.
    pub cursor: Option<String>,
    pub examined: u64,
    pub pushed: u64,
    pub drift: u64,
    pub errors: u64,
    pub note: Option<String>,
    /// The run ends with this page: finished (or failed, with the note).
    pub end: Option<RunStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mins: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(mins)
    }

    fn started(mins: i64) -> SlotState {
        SlotState { last_started: Some(at(mins)), ..SlotState::default() }
    }

    #[test]
    fn a_slot_is_due_once_its_period_has_elapsed_and_no_run_holds_it() {
        let five = Cadence::Every(Duration::from_mins(5));
        assert!(is_due(five, None, at(0)), "never run: due at once");
        assert!(!is_due(five, Some(&started(-4)), at(0)));
        assert!(is_due(five, Some(&started(-5)), at(0)));
        // A tick a few seconds early still runs it: no drift to 6 minutes.
        assert!(is_due(five, Some(&started(-5)), at(0) - TimeDelta::seconds(20)));
        let held = SlotState { lease_until: Some(at(1)), ..started(-10) };
        assert!(!is_due(five, Some(&held), at(0)), "a run still holds the lease");
        let expired = SlotState { lease_until: Some(at(-1)), ..started(-10) };
        assert!(is_due(five, Some(&expired), at(0)), "a crashed run's lease expired");
        for never in [Cadence::Realtime, Cadence::OnDemand] {
            assert!(!is_due(never, None, at(0)), "{never} is never scheduled");
        }
    }

    #[test]
    fn names_round_trip() {
        let slot = Slot::new(Channel::Etsy, AccountId::new("etsy-shop").unwrap(), SyncKind::Stock);
        assert_eq!(slot.to_string().parse::<Slot>().unwrap(), slot);
        for k in SyncKind::ALL {
            assert_eq!(k.as_str().parse::<SyncKind>().unwrap(), k);
        }
        let run = SyncRun::new(&slot, Trigger::Cli, true, None, at(0));
        assert_eq!(SyncRun::day_of(&run.id).unwrap(), at(0).format("%Y-%m-%d").to_string());
    }
}
