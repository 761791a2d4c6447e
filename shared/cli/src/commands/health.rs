//! `manifold health`: every channel account at a glance, flagged on the alarms' own thresholds.
//!
//! Per account: its breaker, when a push last got through, failed pushes and throttled calls in the
//! last hour (`manifold_aws::health`), its channel's push DLQ depth, the last sync run of each kind
//! with its drift, and when its stored refresh token expires. An account is flagged when:
//!
//! - its breaker is open (pushes are held);
//! - it failed [`SYNC_FAILED_THRESHOLD`] pushes or more in the last [`SYNC_FAILED_WINDOW_MINUTES`]
//!   minutes (the `SyncFailed{{Name}}Alarm` rule, per account);
//! - its channel's push DLQ holds a message (the `Push{{Name}}DLQAlarm` fires on one arrival);
//! - its last run of a kind failed;
//! - its refresh token expires within [`TOKEN_WARNING_DAYS`] days.
//!
//! The operations console's Channels page is this report.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use manifold_app::{
    App,
    sync::{RunStatus, SyncKind, SyncRun},
};
use manifold_aws::{
    breaker::DynamoBreakerStore,
    health::{self, AccountHealth, SYNC_FAILED_THRESHOLD, SYNC_FAILED_WINDOW_MINUTES},
};
use manifold_connectors::breaker::{BreakerStore, Phase};
use manifold_domain::Channel;
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    commands::dlq::{Depth, Routes, depth},
    output::{Human, Table},
};

/// A refresh token expiring sooner than this flags its account.
pub const TOKEN_WARNING_DAYS: i64 = 7;
/// The secret key holding a refresh token's expiry (RFC 3339), where the channel gives one.
pub const TOKEN_EXPIRY_KEY: &str = "refresh_token_expires_at";
/// How far back the failed and throttled counts go.
pub const WINDOW: TimeDelta = TimeDelta::hours(1);

/// The last run of one kind for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub kind: SyncKind,
    pub id: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub drift: u64,
    pub errors: u64,
}

impl From<&SyncRun> for LastRun {
    fn from(r: &SyncRun) -> Self {
        Self {
            kind: r.kind,
            id: r.id.clone(),
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            drift: r.drift,
            errors: r.errors,
        }
    }
}

/// One channel account's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    pub channel: Channel,
    pub account: String,
    pub enabled: bool,
    /// `closed`, `open until ...`, `half-open since ...`.
    pub breaker: String,
    pub breaker_open: bool,
    #[serde(flatten)]
    pub health: AccountHealth,
    /// The channel's push DLQ (shared by its accounts); `None` when not configured here.
    pub dlq: Option<Depth>,
    /// The last run of each kind, over the last [`RUN_DAYS`] days.
    pub runs: Vec<LastRun>,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Why the row is flagged (empty: healthy).
    pub alerts: Vec<String>,
}

/// Days of sync runs read for the last run of each kind.
pub const RUN_DAYS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    pub at: DateTime<Utc>,
    pub accounts: Vec<AccountRow>,
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

impl Human for HealthReport {
    fn human(&self) -> String {
        let mut t = Table::new(&[
            "CHANNEL",
            "ACCOUNT",
            "BREAKER",
            "LAST PUSH OK",
            "FAILED 1H",
            "THROTTLED 1H",
            "DLQ",
            "TOKEN EXPIRES",
            "ALERTS",
        ])
        .numeric(&[4, 5, 6]);
        for a in &self.accounts {
            t.row(vec![
                a.channel.to_string(),
                a.account.clone(),
                a.breaker.clone(),
                time(a.health.last_success_at),
                a.health.failed.to_string(),
                a.health.throttled.to_string(),
                a.dlq.map_or_else(|| "-".to_owned(), |d| (d.visible + d.in_flight).to_string()),
                time(a.token_expires_at),
                if a.alerts.is_empty() { "ok".to_owned() } else { a.alerts.join("; ") },
            ]);
        }
        let flagged = self.accounts.iter().filter(|a| !a.alerts.is_empty()).count();
        format!("{}\n{flagged} of {} account(s) flagged\n", t.render(), self.accounts.len())
    }
}

fn breaker_text(phase: Option<&Phase>, now: DateTime<Utc>) -> (String, bool) {
    match phase {
        None | Some(Phase::Closed) => ("closed".to_owned(), false),
        Some(Phase::Open { until }) if *until > now => (format!("open until {}", until.format("%H:%M:%S")), true),
        // Its cool-down is over: the next push probes the channel.
        Some(Phase::Open { .. }) => ("open, probing next".to_owned(), false),
        Some(Phase::HalfOpen { since }) => (format!("half-open since {}", since.format("%H:%M:%S")), false),
    }
}

/// The health of every configured account at `now`.
pub async fn health(app: &App, aws: &Aws, routes: &Routes, now: DateTime<Utc>) -> Result<HealthReport, CliError> {
    let config = app.config().await;
    let breakers = DynamoBreakerStore::new(aws.ddb.clone(), &aws.env.state_table);
    let store = manifold_app::sync::store::DynamoSyncStore::new(aws.ddb.clone(), &aws.env.state_table);
    let today = now.date_naive();
    let from = today.checked_sub_days(chrono::Days::new(u64::from(RUN_DAYS - 1))).unwrap_or(today);
    let runs = manifold_app::sync::store::SyncStore::runs(&store, from, today).await?;
    let mut dlqs: BTreeMap<Channel, Option<Depth>> = BTreeMap::new();
    let mut accounts = Vec::new();
    for account in &config.accounts {
        // A read that fails flags its row and leaves the rest of the report standing.
        let mut alerts = Vec::new();
        let key = format!("{}#{}", account.channel, account.account);
        let (breaker, breaker_open) = match breakers.load(&key).await {
            Ok(state) => breaker_text(state.as_ref().map(|s| &s.phase), now),
            Err(e) => {
                alerts.push(format!("breaker unreadable: {e}"));
                ("unknown".to_owned(), false)
            }
        };
        let (channel, name) = (account.channel.as_str(), account.account.as_str());
        let health =
            health::read(&aws.ddb, &aws.env.state_table, channel, name, WINDOW, now).await.unwrap_or_else(|e| {
                alerts.push(format!("push health unreadable: {e}"));
                AccountHealth::default()
            });
        let dlq = if let Some(d) = dlqs.get(&account.channel) {
            *d
        } else {
            let d = match routes.select(Some(account.channel)).find(|r| r.name.starts_with("push-")) {
                Some(route) => depth(&aws.sqs, &route.dlq_url).await.map_or_else(
                    |e| {
                        alerts.push(format!("push DLQ unreadable: {}", e.chain()));
                        None
                    },
                    Some,
                ),
                None => None,
            };
            dlqs.insert(account.channel, d);
            d
        };
        let mut last: BTreeMap<SyncKind, &SyncRun> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.channel == account.channel && r.account == account.account) {
            let slot = last.entry(r.kind).or_insert(r);
            if r.id > slot.id {
                *slot = r;
            }
        }
        let runs: Vec<LastRun> = last.values().map(|r| LastRun::from(*r)).collect();
        let token_expires_at = token_expiry(app, &account.secret).await;
        if breaker_open {
            alerts.push(format!("breaker {breaker}"));
        }
        if health.failing() {
            alerts.push(format!(
                "{} failed pushes in {SYNC_FAILED_WINDOW_MINUTES} min (alarm at {SYNC_FAILED_THRESHOLD})",
                health.failed_in_alarm_window
            ));
        }
        if let Some(d) = dlq.filter(|d| d.visible + d.in_flight > 0) {
            alerts.push(format!("{} in the {} push DLQ", d.visible + d.in_flight, account.channel));
        }
        for r in runs.iter().filter(|r| r.status == RunStatus::Failed) {
            alerts.push(format!("last {} run failed", r.kind.as_str()));
        }
        if let Some(at) = token_expires_at.filter(|at| *at < now + TimeDelta::days(TOKEN_WARNING_DAYS)) {
            alerts.push(if at <= now {
                "refresh token expired".to_owned()
            } else {
                format!("refresh token expires in {} h", (at - now).num_hours())
            });
        }
        accounts.push(AccountRow {
            channel: account.channel,
            account: account.account.to_string(),
            enabled: account.enabled,
            breaker,
            breaker_open,
            health,
            dlq,
            runs,
            token_expires_at,
            alerts,
        });
    }
    channel_alarms(&mut accounts);
    Ok(HealthReport { at: now, accounts })
}

/// The failed-sync alarm counts a channel, not an account: three accounts failing twice each make
/// the alarm fire with no account over the threshold. Such a channel's accounts are flagged too.
fn channel_alarms(accounts: &mut [AccountRow]) {
    let mut per_channel: BTreeMap<Channel, u64> = BTreeMap::new();
    for a in accounts.iter() {
        *per_channel.entry(a.channel).or_default() += a.health.failed_in_alarm_window;
    }
    for a in accounts.iter_mut().filter(|a| !a.health.failing()) {
        let total = per_channel.get(&a.channel).copied().unwrap_or_default();
        if total >= SYNC_FAILED_THRESHOLD {
            a.alerts.push(format!(
                "{total} failed pushes on {} in {SYNC_FAILED_WINDOW_MINUTES} min across its accounts (alarm at {SYNC_FAILED_THRESHOLD})",
                a.channel
            ));
        }
    }
}

/// The refresh token's expiry recorded in the account's secret, if any (an unreadable secret shows
/// as none: the credentials' own failures show in the failed count).
async fn token_expiry(app: &App, secret: &str) -> Option<DateTime<Utc>> {
    let raw = app.secrets.secret(secret).await.ok()?;
    let json: serde_json::Value = serde_json::from_str(&raw).ok()?;
    let at = json.get(TOKEN_EXPIRY_KEY)?.as_str()?;
    DateTime::parse_from_rfc3339(at).ok().map(|t| t.to_utc())
}

pub async fn run(json: bool) -> Result<(), CliError> {
    let app = App::from_env().await?;
    let aws = Aws::from_env().await?;
    crate::output::print(&health(&app, &aws, &Routes::from_env(), Utc::now()).await?, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(channel: Channel, account: &str, failed_in_alarm_window: u64) -> AccountRow {
        AccountRow {
            channel,
            account: account.to_owned(),
            enabled: true,
            breaker: "closed".into(),
            breaker_open: false,
            health: AccountHealth { failed_in_alarm_window, ..AccountHealth::default() },
            dlq: None,
            runs: Vec::new(),
            token_expires_at: None,
            alerts: Vec::new(),
        }
    }

    #[test]
    fn a_channel_over_the_alarm_flags_its_accounts_when_none_is_over_alone() {
        let mut rows = vec![
            row(Channel::Shopify, "a", 2),
            row(Channel::Shopify, "b", 2),
            row(Channel::Shopify, "c", 1),
            row(Channel::Ebay, "d", 4),
        ];
        channel_alarms(&mut rows);
        for r in &rows[..3] {
            assert_eq!(r.alerts.len(), 1, "{r:?}");
            assert!(r.alerts[0].starts_with("5 failed pushes on shopify"), "{:?}", r.alerts);
        }
        assert!(rows[3].alerts.is_empty(), "4 on eBay is under the alarm");
        // An account over the threshold alone carries its own alert, not a second one.
        let mut rows = vec![row(Channel::Ebay, "d", 5), row(Channel::Ebay, "e", 0)];
        channel_alarms(&mut rows);
        assert!(rows[0].alerts.is_empty() && rows[1].alerts.len() == 1, "{rows:?}");
    }

    #[test]
    fn an_open_breaker_past_its_cool_down_is_not_flagged() {
        let now = Utc::now();
        assert_eq!(breaker_text(None, now), ("closed".to_owned(), false));
        assert!(breaker_text(Some(&Phase::Open { until: now + TimeDelta::seconds(30) }), now).1);
        assert!(!breaker_text(Some(&Phase::Open { until: now - TimeDelta::seconds(1) }), now).1);
    }
}
