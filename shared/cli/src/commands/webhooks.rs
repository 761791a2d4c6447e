//! `manifold webhooks deliveries SUBSCRIPTION`: the latest delivery attempts to a subscription's
//! endpoint, with their status codes and latency. `manifold webhooks replay SUBSCRIPTION --since TIME`:
//! every delivery of a window queued again (the ERP was down for a day), each under its original
//! `webhook-id`, so a receiver that got some of them can tell.

use chrono::{DateTime, Utc};
use manifold_app::{App, webhooks_out::Attempt};
use serde::Serialize;

use crate::{
    CliError,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum WebhooksCommand {
    /// The latest delivery attempts of a subscription, newest first.
    Deliveries {
        subscription: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Sends every delivery of a subscription in a window again (RFC 3339 times; `--until` defaults to now).
    Replay {
        subscription: String,
        #[arg(long)]
        since: DateTime<Utc>,
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
}

/// Delivery attempts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptsReport {
    pub subscription: String,
    pub attempts: Vec<Attempt>,
}

impl Human for AttemptsReport {
    fn human(&self) -> String {
        if self.attempts.is_empty() {
            return format!("no delivery attempts to {} in the last 7 days\n", self.subscription);
        }
        let mut t = Table::new(&["AT", "EVENT", "WEBHOOK-ID", "TRY", "STATUS", "MS", "ERROR"]);
        for a in &self.attempts {
            t.row(vec![
                a.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                a.event_type.clone(),
                a.webhook_id.clone(),
                a.attempt.to_string(),
                a.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                a.latency_ms.to_string(),
                a.error.clone().unwrap_or_default(),
            ]);
        }
        t.render()
    }
}

/// What a replay queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub subscription: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub queued: usize,
}

impl Human for ReplayReport {
    fn human(&self) -> String {
        format!(
            "{} deliveries to {} from {} to {} queued again\n",
            self.queued,
            self.subscription,
            self.since.to_rfc3339(),
            self.until.to_rfc3339()
        )
    }
}

/// The command's core, on an `App` (the tests' or the stack's).
pub async fn attempts(app: &App, subscription: &str, limit: usize) -> Result<AttemptsReport, CliError> {
    Ok(AttemptsReport {
        subscription: subscription.to_owned(),
        attempts: app.webhook_attempts(subscription, limit).await?,
    })
}

pub async fn replay(
    app: &App,
    subscription: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<ReplayReport, CliError> {
    if app.config().await.subscription(subscription).is_none() {
        return Err(CliError::Usage(format!("no webhook subscription {subscription} in the configuration")));
    }
    let now = Utc::now();
    let queued = app.replay_webhooks(subscription, since, until, now).await?;
    Ok(ReplayReport { subscription: subscription.to_owned(), since, until: until.unwrap_or(now), queued })
}

pub async fn run(cmd: WebhooksCommand, json: bool) -> Result<(), CliError> {
    let app = App::from_env().await?;
    match cmd {
        WebhooksCommand::Deliveries { subscription, limit } => {
            crate::output::print(&attempts(&app, &subscription, limit).await?, json)
        }
        WebhooksCommand::Replay { subscription, since, until } => {
            crate::output::print(&replay(&app, &subscription, since, until).await?, json)
        }
    }
}
