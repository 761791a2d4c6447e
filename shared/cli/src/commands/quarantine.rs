//! `manifold quarantine list|show|replay`: the payloads the pipeline could not process, and replaying
//! them through the very ingest path (`App::ingest`) once the cause (a mapping, an account, a
//! normalizer bug) is fixed.
//!
//! `list` and `show` say when each item expires: the table's TTL removes it then, replayed or not
//! (`QUARANTINE_RETENTION_DAYS` after it was quarantined; a replay does not extend it).
//!
//! An item is marked replayed only when ingest succeeds (stored, unchanged because already applied, or
//! deliberately ignored). When it fails again, ingest keeps the payload in the quarantine under a new
//! id with the new reason, and the original stays unreplayed.

use chrono::{DateTime, Utc};
use manifold_app::{App, IngestEnvelope, Source, ingest::IngestOutcome};
use manifold_aws::quarantine::{Quarantine, QuarantinedPayload, StoredPayload};
use serde::Serialize;

use crate::{
    CliError,
    output::{self, Human, Table, excerpt},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined payloads not yet replayed.
    List {
        /// Include replayed ones.
        #[arg(long)]
        all: bool,
    },
    /// One quarantined payload in full.
    Show { id: String },
    /// Replays payloads through the ingest path; marks each replayed only on success.
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every payload not yet replayed.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineList {
    pub items: Vec<StoredPayload>,
}

/// When an item expires, as `list` and `show` print it.
fn expiry(expires_at: Option<DateTime<Utc>>, format: &str) -> String {
    expires_at.map_or_else(|| "never".to_owned(), |t| t.format(format).to_string())
}

impl Human for QuarantineList {
    fn human(&self) -> String {
        if self.items.is_empty() {
            return "the quarantine is empty\n".to_owned();
        }
        let mut t = Table::new(&["ID", "RECEIVED", "CHANNEL", "ACCOUNT", "STAGE", "REPLAYED", "EXPIRES", "REASON"]);
        for StoredPayload { payload: q, expires_at } in &self.items {
            t.row(vec![
                q.id.clone(),
                q.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                q.channel.clone(),
                q.account.clone(),
                q.stage.clone(),
                q.replayed_at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                expiry(*expires_at, "%Y-%m-%d %H:%M"),
                excerpt(&q.reason, 60),
            ]);
        }
        format!("{}\n{} item(s)\n", t.render(), self.items.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QuarantineItem(pub StoredPayload);

impl Human for QuarantineItem {
    fn human(&self) -> String {
        let q = &self.0.payload;
        let payload = serde_json::from_str::<serde_json::Value>(&q.payload)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| q.payload.clone());
        format!(
            "id        {}\nchannel   {} / {}\nstage     {}\nreason    {}\ntrace_id  {}\nreceived  {}\nreplayed  {}\nexpires   {}\n\n{payload}\n",
            q.id,
            q.channel,
            q.account,
            q.stage,
            q.reason,
            q.trace_id,
            q.received_at.to_rfc3339(),
            q.replayed_at.map_or_else(|| "no".to_owned(), |t| t.to_rfc3339()),
            expiry(self.0.expires_at, "%Y-%m-%dT%H:%M:%SZ"),
        )
    }
}

/// What replaying one item did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Replay {
    /// Stored (or recognised as already applied, or deliberately ignored): marked replayed.
    Succeeded { detail: String },
    /// Failed permanently again: kept in the quarantine under `requarantined_as`.
    FailedAgain { reason: String, requarantined_as: Option<String> },
    /// A dependency failed: nothing changed, try again later.
    Error { error: String },
}

impl Replay {
    pub fn succeeded(&self) -> bool {
        matches!(self, Replay::Succeeded { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayItem {
    pub id: String,
    pub channel: String,
    #[serde(flatten)]
    pub replay: Replay,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub items: Vec<ReplayItem>,
}

impl ReplayReport {
    pub fn failed(&self) -> usize {
        self.items.iter().filter(|i| !i.replay.succeeded()).count()
    }
}

impl Human for ReplayReport {
    fn human(&self) -> String {
        if self.items.is_empty() {
            return "nothing to replay\n".to_owned();
        }
        let mut t = Table::new(&["ID", "CHANNEL", "OUTCOME", "DETAIL"]);
        for i in &self.items {
            let (outcome, detail) = match &i.replay {
                Replay::Succeeded { detail } => ("replayed", detail.clone()),
                Replay::FailedAgain { reason, requarantined_as } => (
                    "failed again",
                    format!("{} (kept as {})", excerpt(reason, 60), requarantined_as.as_deref().unwrap_or("-")),
                ),
                Replay::Error { error } => ("error", excerpt(error, 80)),
            };
            t.row(vec![i.id.clone(), i.channel.clone(), outcome.to_owned(), detail]);
        }
        let ok = self.items.len() - self.failed();
        format!("{}\n{ok} of {} replayed\n", t.render(), self.items.len())
    }
}

/// Replays one quarantined payload through `App::ingest` and marks it replayed on success.
pub async fn replay_one(app: &App, item: &QuarantinedPayload, now: DateTime<Utc>) -> Result<ReplayItem, CliError> {
    let done = |replay| ReplayItem { id: item.id.clone(), channel: item.channel.clone(), replay };
    let mut envelope: IngestEnvelope = match serde_json::from_str(&item.payload) {
        Ok(e) => e,
        Err(e) => {
            return Ok(done(Replay::Error { error: format!("the stored payload is not an ingest envelope: {e}") }));
        }
    };
    // Same channel, account and event id, hence the same ingest key: a payload applied meanwhile is
    // recognised, never applied twice.
    envelope.source = Source::Replay;
    let replay = match app.ingest(&envelope, now).await {
        Ok(IngestOutcome::Quarantined { id, reason }) => {
            // The same failure is kept under the same id; a failure at another stage is a new item,
            // which supersedes this one (so the unreplayed list holds each payload once).
            if id.as_deref().is_some_and(|new| new != item.id) {
                app.quarantine.mark_replayed(&item.id, now).await?;
            }
            Replay::FailedAgain { reason, requarantined_as: id }
        }
        Ok(outcome) => {
            let detail = match outcome {
                IngestOutcome::Stored { record_id, event } => format!(
                    "stored {record_id}{}",
                    event.map(|e| format!(", published {}", e.as_str())).unwrap_or_default()
                ),
                IngestOutcome::Unchanged { record_id, why } => format!("{record_id} unchanged: {why}"),
                IngestOutcome::Ignored { reason } => format!("ignored: {reason}"),
                IngestOutcome::Quarantined { .. } => String::new(),
            };
            app.quarantine.mark_replayed(&item.id, now).await?;
            Replay::Succeeded { detail }
        }
        Err(e) => Replay::Error { error: e.to_string() },
    };
    Ok(done(replay))
}

/// Replays `id`, or every unreplayed item.
pub async fn replay(app: &App, id: Option<&str>, now: DateTime<Utc>) -> Result<ReplayReport, CliError> {
    let items = match id {
        Some(id) => vec![get(app.quarantine.as_ref(), id).await?.payload],
        None => app.quarantine.list(false).await?,
    };
    let mut report = ReplayReport::default();
    for item in &items {
        report.items.push(replay_one(app, item, now).await?);
    }
    Ok(report)
}

async fn get(quarantine: &dyn Quarantine, id: &str) -> Result<StoredPayload, CliError> {
    quarantine.get_stored(id).await?.ok_or_else(|| CliError::Usage(format!("no quarantined payload with id {id:?}")))
}

/// Runs a `quarantine` subcommand against the deployment named by the environment.
pub async fn run(cmd: QuarantineCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        QuarantineCommand::List { all } => {
            let quarantine = store().await?;
            output::print(&QuarantineList { items: quarantine.list_stored(all).await? }, json)
        }
        QuarantineCommand::Show { id } => {
            let quarantine = store().await?;
            output::print(&QuarantineItem(get(&quarantine, &id).await?), json)
        }
        QuarantineCommand::Replay { id, all: _ } => {
            let app = App::from_env().await?;
            let report = replay(&app, id.as_deref(), Utc::now()).await?;
            output::print(&report, json)?;
            match report.failed() {
                0 => Ok(()),
                failed => Err(CliError::Partial { failed, total: report.items.len() }),
            }
        }
    }
}

async fn store() -> Result<manifold_aws::quarantine::DynamoQuarantine, CliError> {
    let env = manifold_aws::AwsEnv::from_env()?;
    let sdk = manifold_aws::sdk_config().await;
    Ok(manifold_aws::quarantine::DynamoQuarantine::new(aws_sdk_dynamodb::Client::new(&sdk), env.quarantine_table))
}
