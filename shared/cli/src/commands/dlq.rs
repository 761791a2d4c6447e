//! `manifold dlq list|show|redrive`: the dead-letter queues, their depth and content, and moving their
//! messages back to the queue they came from once the cause is fixed.
//!
//! Every DLQ and its source come from one naming table ([`ROUTES`] plus one push queue per channel),
//! read from the variables `infra/local/stack.py` writes and the template sets: `INGEST_DLQ_URL` goes
//! back to `INGEST_QUEUE_URL`, `PUSH_SHOPIFY_DLQ_URL` to `PUSH_QUEUE_SHOPIFY`, and so on.
//!
//! # Redrive guarantee
//!
//! SQS's own `StartMessageMoveTask` is not available everywhere (moto lacks it), and receive + send +
//! delete can be interrupted between any two calls. Each dead letter is therefore moved under a marker
//! in the StateTable, `REDRIVE#{dlq message id}` (its message id is unique within the DLQ, and a
//! message that fails again returns to the DLQ under the new id its redriven copy got):
//!
//! 1. conditional put of the marker in state `sending` (only if absent);
//! 2. `SendMessage` to the source queue: same body, same message attributes, plus `redrive_id` = the
//!    DLQ message id;
//! 3. marker set to `sent`;
//! 4. `DeleteMessage` from the DLQ.
//!
//! - **Nothing is lost**: a dead letter is deleted only after SQS accepted its copy (step 3 follows a
//!   successful step 2). Any failure before that leaves it in the DLQ, visible again after the receive's
//!   visibility timeout ([`REDRIVE_VISIBILITY_SECONDS`]), for the next run.
//! - **Nothing is duplicated by a re-run**: a re-run that meets a marker in state `sent` (interrupted
//!   between steps 3 and 4) deletes the dead letter without sending it again.
//! - **The one remaining window**: interrupted between steps 2 and 3, the marker says `sending` and
//!   nobody can tell whether SQS accepted the send. The re-run sends again (a copy is recoverable, a
//!   loss is not) and counts it as `resent`. The copy carries the same `redrive_id`, and every consumer
//!   is idempotent on its own key (ingest key, ledger reservation record, push gate version), so it has
//!   no second effect.
//!
//! Markers expire after [`MARKER_TTL_DAYS`] days (the StateTable's TTL), longer than the 14-day DLQ
//! retention, so a marker outlives every message it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use aws_sdk_dynamodb::{operation::put_item::PutItemError, types::AttributeValue};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use chrono::{DateTime, Utc};
use manifold_app::push::LastError;
use manifold_domain::Channel;
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    commands::parse_channel,
    output::{self, Human, Table, excerpt},
};

/// The message attribute a redriven copy carries: the id the message had in the DLQ.
pub const REDRIVE_ATTRIBUTE: &str = "redrive_id";
/// The message attribute (or body field) consumers put their last error in.
pub const LAST_ERROR_ATTRIBUTE: &str = "last_error";
/// How long a received dead letter stays invisible while it is being moved.
pub const REDRIVE_VISIBILITY_SECONDS: i32 = 120;
/// How long a redrive marker is kept.
pub const MARKER_TTL_DAYS: i64 = 15;

/// The shared queues: (name, channel, DLQ URL variable, source URL variable). Push queues, one per
/// channel, follow in [`Routes::from_lookup`].
const ROUTES: [(&str, Option<Channel>, &str, &str); 4] = [
    ("ingest", None, "INGEST_DLQ_URL", "INGEST_QUEUE_URL"),
    ("amazon-notifications", Some(Channel::Amazon), "AMAZON_NOTIFICATIONS_DLQ_URL", "AMAZON_NOTIFICATIONS_QUEUE_URL"),
    ("ledger", None, "LEDGER_DLQ_URL", "LEDGER_QUEUE_URL"),
    // Sync run pages: redriven, a run resumes from its cursor.
    ("sync", None, "SYNC_DLQ_URL", "SYNC_QUEUE_URL"),
];

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// Every dead-letter queue with its depth.
    List {
        /// Only the queues dedicated to this channel.
        #[arg(long, value_parser = parse_channel)]
        channel: Option<Channel>,
    },
    /// The dead letters of one queue (they stay in the queue).
    Show {
        /// Queue name as `dlq list` prints it (`ingest`, `ledger`, `push-shopify`...).
        queue: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Moves dead letters back to their source queue (see the guarantee in `manifold dlq --help`).
    Redrive {
        /// Queue name as `dlq list` prints it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        queue: Option<String>,
        /// Every dead-letter queue (or every one of `--channel`).
        #[arg(long)]
        all: bool,
        #[arg(long, value_parser = parse_channel, requires = "all")]
        channel: Option<Channel>,
        /// Only this dead letter (its message id as `dlq show` prints it); the others stay.
        #[arg(long, requires = "queue", conflicts_with = "all")]
        message: Option<String>,
    },
}

/// One dead-letter queue and the queue its messages came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub name: String,
    /// The channel the queue is dedicated to (`None` for shared queues: ingest, ledger).
    pub channel: Option<Channel>,
    pub dlq_url: String,
    pub source_url: String,
}

/// Every configured route, and the names of those whose variables are not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub routes: Vec<Route>,
    pub unconfigured: Vec<String>,
}

impl Routes {
    /// Builds the table from variables read through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let push = Channel::ALL.iter().map(|c| {
            let upper = c.as_str().to_uppercase();
            (format!("push-{c}"), Some(*c), format!("PUSH_{upper}_DLQ_URL"), format!("PUSH_QUEUE_{upper}"))
        });
        let specs = ROUTES
            .iter()
            .map(|(name, channel, dlq, source)| ((*name).to_owned(), *channel, (*dlq).to_owned(), (*source).to_owned()))
            .chain(push);
        let mut out = Self::default();
        for (name, channel, dlq_var, source_var) in specs {
            let var = |k: &str| get(k).filter(|v| !v.is_empty());
            match (var(&dlq_var), var(&source_var)) {
                (Some(dlq_url), Some(source_url)) => out.routes.push(Route { name, channel, dlq_url, source_url }),
                _ => out.unconfigured.push(format!("{name} ({dlq_var}, {source_var})")),
            }
        }
        out
    }

    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The route called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Route, CliError> {
        self.routes.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
            CliError::Usage(if known.is_empty() {
                format!("unknown queue {name:?}: no DLQ variables are set (source .local/stack.env)")
            } else {
                format!("unknown queue {name:?}; configured: {}", known.join(", "))
            })
        })
    }

    /// Routes dedicated to `channel`, or all of them.
    pub fn select(&self, channel: Option<Channel>) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| channel.is_none() || r.channel == channel)
    }
}

/// A queue's approximate counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
}

/// `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible` of a queue.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Depth, CliError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| CliError::sqs("GetQueueAttributes", e))?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Depth {
        visible: n(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// One line of `dlq list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    #[serde(flatten)]
    pub route: Route,
    #[serde(flatten)]
    pub depth: Depth,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqList {
    pub queues: Vec<QueueDepth>,
    pub unconfigured: Vec<String>,
}

impl Human for DlqList {
    fn human(&self) -> String {
        let mut t = Table::new(&["QUEUE", "CHANNEL", "MESSAGES", "IN FLIGHT", "REDRIVES TO"]).numeric(&[2, 3]);
        for q in &self.queues {
            t.row(vec![
                q.route.name.clone(),
                q.route.channel.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                q.depth.visible.to_string(),
                q.depth.in_flight.to_string(),
                queue_name(&q.route.source_url).to_owned(),
            ]);
        }
        let mut out = if t.is_empty() { "no dead-letter queue is configured\n".to_owned() } else { t.render() };
        let total: u64 = self.queues.iter().map(|q| q.depth.visible + q.depth.in_flight).sum();
        let _ = writeln!(out, "\n{total} dead letter(s) in {} queue(s)", self.queues.len());
        if !self.unconfigured.is_empty() {
            let _ = writeln!(out, "not configured: {}", self.unconfigured.join(", "));
        }
        out
    }
}

/// The last path segment of a queue URL.
fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Depth of every route dedicated to `channel`, or of all.
pub async fn list(sqs: &aws_sdk_sqs::Client, routes: &Routes, channel: Option<Channel>) -> Result<DlqList, CliError> {
    let mut queues = Vec::new();
    for route in routes.select(channel) {
        queues.push(QueueDepth { route: route.clone(), depth: depth(sqs, &route.dlq_url).await? });
    }
    Ok(DlqList { queues, unconfigured: routes.unconfigured.clone() })
}

/// A dead letter as `dlq show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub trace_id: Option<String>,
    pub receive_count: Option<u64>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// String-valued message attributes.
    pub attributes: BTreeMap<String, String>,
    pub body: String,
}

impl DeadLetter {
    pub fn from_message(m: &Message) -> Self {
        let attributes: BTreeMap<String, String> = m
            .message_attributes()
            .map(|a| a.iter().filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned()))).collect())
            .unwrap_or_default();
        let body = m.body().unwrap_or_default().to_owned();
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        let from_body = |k: &str| json.as_ref().and_then(|j| j.get(k)).and_then(|v| v.as_str()).map(str::to_owned);
        let system = |k: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&k)).cloned();
        Self {
            message_id: m.message_id().unwrap_or_default().to_owned(),
            trace_id: attributes
                .get(manifold_telemetry::TRACE_ATTRIBUTE)
                .cloned()
                .or_else(|| from_body(manifold_telemetry::TRACE_ATTRIBUTE)),
            receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount).and_then(|v| v.parse().ok()),
            sent_at: system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis),
            last_error: attributes.get(LAST_ERROR_ATTRIBUTE).cloned().or_else(|| from_body(LAST_ERROR_ATTRIBUTE)),
            attributes,
            body,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqShow {
    pub queue: String,
    pub depth: Depth,
    pub messages: Vec<DeadLetter>,
}

impl Human for DlqShow {
    fn human(&self) -> String {
        let mut out = format!(
            "{}: {} dead letter(s), {} in flight; showing {}\n",
            self.queue,
            self.depth.visible,
            self.depth.in_flight,
            self.messages.len()
        );
        for m in &self.messages {
            let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(out, "\n{}", m.message_id);
            let _ = writeln!(out, "  trace_id    {}", opt(&m.trace_id));
            let _ = writeln!(out, "  sent        {}", m.sent_at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()));
            let _ =
                writeln!(out, "  receives    {}", m.receive_count.map_or_else(|| "-".to_owned(), |n| n.to_string()));
            let _ = writeln!(out, "  last error  {}", opt(&m.last_error));
            let other: Vec<String> = m
                .attributes
                .iter()
                .filter(|(k, _)| ![manifold_telemetry::TRACE_ATTRIBUTE, LAST_ERROR_ATTRIBUTE].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", excerpt(v, 40)))
                .collect();
            if !other.is_empty() {
                let _ = writeln!(out, "  attributes  {}", other.join(" "));
            }
            let _ = writeln!(out, "  body        {}", excerpt(&m.body, 160));
        }
        out
    }
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, max: i32, visibility: i32) -> Result<Vec<Message>, CliError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(visibility)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| CliError::sqs("ReceiveMessage", e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Up to `limit` dead letters of `route`, left in the queue: they are received briefly and made
/// visible again at once. Receiving counts as a receive (`ApproximateReceiveCount` grows by one).
///
/// The last error comes from the message (`last_error` attribute or body field) or, for consumers that
/// cannot annotate a message (SQS messages are immutable), from the StateTable item the push consumer
/// writes on the last attempt (`LAST_ERROR#{message id}`; the message id survives the move to the DLQ).
pub async fn show(aws: &Aws, route: &Route, limit: usize) -> Result<DlqShow, CliError> {
    let sqs = &aws.sqs;
    let mut seen = BTreeSet::new();
    let mut messages = Vec::new();
    let mut handles = Vec::new();
    while messages.len() < limit {
        let want = i32::try_from(limit - messages.len()).unwrap_or(10);
        let batch = receive(sqs, &route.dlq_url, want, 30).await?;
        let mut new = 0;
        for m in batch {
            handles.extend(m.receipt_handle().map(str::to_owned));
            if seen.insert(m.message_id().unwrap_or_default().to_owned()) && messages.len() < limit {
                messages.push(DeadLetter::from_message(&m));
                new += 1;
            }
        }
        if new == 0 {
            break;
        }
    }
    release(sqs, &route.dlq_url, &handles).await?;
    for m in messages.iter_mut().filter(|m| m.last_error.is_none()) {
        m.last_error = recorded_error(&aws.ddb, &aws.env.state_table, &m.message_id).await?;
    }
    messages.sort_by_key(|m| m.sent_at);
    Ok(DlqShow { queue: route.name.clone(), depth: depth(sqs, &route.dlq_url).await?, messages })
}

/// The error a consumer recorded in the StateTable for `message_id` before it was dead-lettered (the
/// key the push consumer writes: `LAST_ERROR#{message id}` / `last_error`).
async fn recorded_error(
    ddb: &aws_sdk_dynamodb::Client,
    state_table: &str,
    message_id: &str,
) -> Result<Option<String>, CliError> {
    let out = ddb
        .get_item()
        .table_name(state_table)
        .key("pk", AttributeValue::S(format!("LAST_ERROR#{message_id}")))
        .key("sk", AttributeValue::S("last_error".to_owned()))
        .send()
        .await
        .map_err(|e| CliError::dynamodb("GetItem", e))?;
    let Some(mut item) = out.item else { return Ok(None) };
    for k in ["pk", "sk", "expires_at"] {
        item.remove(k);
    }
    Ok(Some(match serde_dynamo::from_item::<_, LastError>(item) {
        Ok(e) => format!("{} after attempt {} at {}: {}", e.error_class, e.attempt, e.at.to_rfc3339(), e.error),
        Err(e) => format!("(unreadable last-error record: {e})"),
    }))
}

/// Makes received messages visible again.
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String]) -> Result<(), CliError> {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .map_err(|e| CliError::sqs("ChangeMessageVisibilityBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| CliError::sqs("ChangeMessageVisibilityBatch", e))?;
        if let Some(f) = out.failed().first() {
            return Err(CliError::Usage(format!(
                "{} message(s) not made visible again: {} {}",
                out.failed().len(),
                f.code(),
                f.message().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// What forwarding one dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forward {
    /// Sent to the source queue for the first time.
    Sent,
    /// An earlier run already sent it (marker `sent`): not sent again.
    AlreadySent,
    /// An earlier run was interrupted around its send (marker `sending`): sent again.
    Resent,
}

/// The result of redriving one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    pub queue: String,
    pub source: String,
    /// Dead letters sent to the source and deleted from the DLQ.
    pub moved: usize,
    /// Of `moved`: sent by an earlier, interrupted run and only deleted now.
    pub already_sent: usize,
    /// Of `moved`: sent again because an earlier run was interrupted between send and marker.
    pub resent: usize,
    /// Dead letters left in the DLQ, with the reason.
    pub failed: Vec<RedriveFailure>,
    /// Other dead letters looked at while searching for one ([`Redriver::run_one`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub examined: usize,
    /// Why messages received while searching could not be made visible again (they reappear when
    /// their visibility timeout ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_released: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveFailure {
    pub message_id: String,
    pub error: String,
}

/// Dead letters [`Redriver::run_one`] looks at before it gives up on finding one (they stay hidden
/// while it searches, for the receive's visibility timeout).
pub const SEARCH_LIMIT: usize = 1_000;

/// Moves the dead letters of one route back to its source, exactly as the module docs describe.
#[derive(Debug, Clone)]
pub struct Redriver<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    ddb: &'a aws_sdk_dynamodb::Client,
    state_table: &'a str,
    route: &'a Route,
}

impl<'a> Redriver<'a> {
    pub fn new(
        sqs: &'a aws_sdk_sqs::Client,
        ddb: &'a aws_sdk_dynamodb::Client,
        state_table: &'a str,
        route: &'a Route,
    ) -> Self {
        Self { sqs, ddb, state_table, route }
    }

    /// Receives up to 10 dead letters, invisible to others for [`REDRIVE_VISIBILITY_SECONDS`].
    pub async fn receive(&self) -> Result<Vec<Message>, CliError> {
        receive(self.sqs, &self.route.dlq_url, 10, REDRIVE_VISIBILITY_SECONDS).await
    }

    fn marker_key(message_id: &str) -> [(String, AttributeValue); 2] {
        [
            ("pk".to_owned(), AttributeValue::S(format!("REDRIVE#{message_id}"))),
            ("sk".to_owned(), AttributeValue::S("marker".to_owned())),
        ]
    }

    /// Steps 1 to 3: marker, send, marker `sent`. The dead letter stays in the DLQ.
    pub async fn forward(&self, m: &Message) -> Result<Forward, CliError> {
        let id = m.message_id().ok_or_else(|| CliError::Usage("received a message without id".to_owned()))?;
        let now = Utc::now();
        let claimed = self
            .ddb
            .put_item()
            .table_name(self.state_table)
            .set_item(Some(
                Self::marker_key(id)
                    .into_iter()
                    .chain([
                        ("state".to_owned(), AttributeValue::S("sending".to_owned())),
                        ("queue".to_owned(), AttributeValue::S(self.route.name.clone())),
                        ("started_at".to_owned(), AttributeValue::S(now.to_rfc3339())),
                        (
                            "expires_at".to_owned(),
                            AttributeValue::N((now.timestamp() + MARKER_TTL_DAYS * 86_400).to_string()),
                        ),
                    ])
                    .collect(),
            ))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let outcome = match claimed {
            Ok(_) => Forward::Sent,
            Err(e) if e.as_service_error().is_some_and(PutItemError::is_conditional_check_failed_exception) => {
                match self.marker_state(id).await?.as_deref() {
                    Some("sent") => return Ok(Forward::AlreadySent),
                    _ => Forward::Resent,
                }
            }
            Err(e) => return Err(CliError::dynamodb("PutItem", e)),
        };
        self.send_copy(m, id).await?;
        self.ddb
            .update_item()
            .table_name(self.state_table)
            .set_key(Some(Self::marker_key(id).into_iter().collect()))
            .update_expression("SET #s = :sent, sent_at = :t")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":sent", AttributeValue::S("sent".to_owned()))
            .expression_attribute_values(":t", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| CliError::dynamodb("UpdateItem", e))?;
        Ok(outcome)
    }

    async fn marker_state(&self, id: &str) -> Result<Option<String>, CliError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.state_table)
            .set_key(Some(Self::marker_key(id).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CliError::dynamodb("GetItem", e))?;
        Ok(out.item.and_then(|i| i.get("state").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn send_copy(&self, m: &Message, id: &str) -> Result<(), CliError> {
        let mut attributes = m.message_attributes().cloned().unwrap_or_default();
        attributes.insert(
            REDRIVE_ATTRIBUTE.to_owned(),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(id)
                .build()
                .map_err(|e| CliError::sqs("SendMessage", e))?,
        );
        self.sqs
            .send_message()
            .queue_url(&self.route.source_url)
            .message_body(m.body().unwrap_or_default())
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| CliError::sqs("SendMessage", e))?;
        Ok(())
    }

    /// Step 4: deletes the dead letter (only after [`Redriver::forward`] succeeded).
    pub async fn settle(&self, m: &Message) -> Result<(), CliError> {
        self.sqs
            .delete_message()
            .queue_url(&self.route.dlq_url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .map_err(|e| CliError::sqs("DeleteMessage", e))?;
        Ok(())
    }

    /// Moves the one dead letter `message_id`, under the same guarantee; every other message received
    /// while looking for it (at most [`SEARCH_LIMIT`]) is made visible again at once. `moved` is 0 when the queue does not hold it
    /// (moved already, or never there).
    pub async fn run_one(&self, message_id: &str) -> Result<RedriveReport, CliError> {
        let mut report = RedriveReport {
            queue: self.route.name.clone(),
            source: queue_name(&self.route.source_url).to_owned(),
            ..RedriveReport::default()
        };
        let mut seen = BTreeSet::new();
        let mut held = Vec::new();
        let result = loop {
            // A failed receive ends the search, but what is held is still released below.
            let batch = match self.receive().await {
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            let mut fresh = 0;
            let mut target = None;
            for m in batch {
                let id = m.message_id().unwrap_or_default().to_owned();
                if id == message_id {
                    target = Some(m);
                } else {
                    fresh += usize::from(seen.insert(id));
                    held.extend(m.receipt_handle().map(str::to_owned));
                }
            }
            if let Some(m) = target {
                break match self.forward(&m).await {
                    Ok(f) => self.settle(&m).await.map(|()| Some(f)),
                    Err(e) => {
                        held.extend(m.receipt_handle().map(str::to_owned));
                        Err(e)
                    }
                };
            }
            // Nothing new: the queue has shown all it holds. Past the limit, the first messages held
            // would soon reappear and be taken for new ones: stop and say how far the search went.
            if fresh == 0 || seen.len() >= SEARCH_LIMIT {
                break Ok(None);
            }
        };
        report.examined = seen.len();
        // The move stands whatever the release does: report both.
        if let Err(e) = release(self.sqs, &self.route.dlq_url, &held).await {
            report.not_released = Some(e.chain().to_string());
        }
        match result {
            Ok(Some(f)) => {
                report.moved = 1;
                report.already_sent = usize::from(f == Forward::AlreadySent);
                report.resent = usize::from(f == Forward::Resent);
            }
            Ok(None) => {}
            Err(e) => {
                report.failed.push(RedriveFailure { message_id: message_id.to_owned(), error: e.chain().to_string() });
            }
        }
        Ok(report)
    }

    /// Moves every dead letter it can receive. A message that fails is reported and left in the DLQ
    /// (not retried in this run); the run ends when a receive brings nothing new.
    pub async fn run(&self) -> Result<RedriveReport, CliError> {
        let mut report = RedriveReport {
            queue: self.route.name.clone(),
            source: queue_name(&self.route.source_url).to_owned(),
            ..RedriveReport::default()
        };
        let mut failed = BTreeSet::new();
        loop {
            let batch = self.receive().await?;
            let fresh: Vec<&Message> =
                batch.iter().filter(|m| !failed.contains(m.message_id().unwrap_or_default())).collect();
            if fresh.is_empty() {
                return Ok(report);
            }
            for m in fresh {
                let moved = match self.forward(m).await {
                    Ok(f) => self.settle(m).await.map(|()| f),
                    Err(e) => Err(e),
                };
                match moved {
                    Ok(f) => {
                        report.moved += 1;
                        report.already_sent += usize::from(f == Forward::AlreadySent);
                        report.resent += usize::from(f == Forward::Resent);
                    }
                    Err(e) => {
                        let message_id = m.message_id().unwrap_or_default().to_owned();
                        failed.insert(message_id.clone());
                        report.failed.push(RedriveFailure { message_id, error: e.chain().to_string() });
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveSummary {
    pub queues: Vec<RedriveReport>,
}

impl RedriveSummary {
    pub fn failed(&self) -> usize {
        self.queues.iter().map(|q| q.failed.len()).sum()
    }

    pub fn total(&self) -> usize {
        self.queues.iter().map(|q| q.moved + q.failed.len()).sum()
    }
}

impl Human for RedriveSummary {
    fn human(&self) -> String {
        let mut t = Table::new(&["QUEUE", "MOVED", "ALREADY SENT", "RESENT", "FAILED", "TO"]).numeric(&[1, 2, 3, 4]);
        for q in &self.queues {
            t.row(vec![
                q.queue.clone(),
                q.moved.to_string(),
                q.already_sent.to_string(),
                q.resent.to_string(),
                q.failed.len().to_string(),
                q.source.clone(),
            ]);
        }
        let mut out = if t.is_empty() { "no dead letters to redrive\n".to_owned() } else { t.render() };
        for q in &self.queues {
            for f in &q.failed {
                let _ = writeln!(out, "{}: {} left in the DLQ: {}", q.queue, f.message_id, f.error);
            }
        }
        out
    }
}

/// Runs a `dlq` subcommand against the deployment named by the environment.
pub async fn run(cmd: DlqCommand, json: bool) -> Result<(), CliError> {
    let routes = Routes::from_env();
    match cmd {
        DlqCommand::List { channel } => {
            let sqs = aws_sdk_sqs::Client::new(&manifold_aws::sdk_config().await);
            output::print(&list(&sqs, &routes, channel).await?, json)
        }
        DlqCommand::Show { queue, limit } => {
            let route = routes.get(&queue)?;
            output::print(&show(&Aws::from_env().await?, route, limit).await?, json)
        }
        DlqCommand::Redrive { queue, all, channel, message } => {
            let aws = Aws::from_env().await?;
            let summary = if let (Some(name), Some(id)) = (&queue, &message) {
                let route = routes.get(name)?;
                let report = Redriver::new(&aws.sqs, &aws.ddb, &aws.env.state_table, route).run_one(id).await?;
                if report.moved == 0 && report.failed.is_empty() {
                    return Err(CliError::Usage(format!("{name} holds no dead letter {id:?} (moved already?)")));
                }
                RedriveSummary { queues: vec![report] }
            } else {
                let selected: Vec<&Route> = match (queue, all) {
                    (Some(name), false) => vec![routes.get(&name)?],
                    _ => routes.select(channel).collect(),
                };
                redrive(&aws, &selected, all).await?
            };
            output::print(&summary, json)?;
            match summary.failed() {
                0 => Ok(()),
                failed => Err(CliError::Partial { failed, total: summary.total() }),
            }
        }
    }
}

/// Redrives `routes`; with `skip_empty`, queues reporting no visible message are not polled.
pub async fn redrive(aws: &Aws, routes: &[&Route], skip_empty: bool) -> Result<RedriveSummary, CliError> {
    let mut summary = RedriveSummary::default();
    for route in routes {
        if skip_empty && depth(&aws.sqs, &route.dlq_url).await?.visible == 0 {
            continue;
        }
        summary.queues.push(Redriver::new(&aws.sqs, &aws.ddb, &aws.env.state_table, route).run().await?);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn every_dlq_redrives_to_the_source_the_template_names() {
        let vars: HashMap<String, String> = [
            ("INGEST_DLQ_URL", "q/IngestDLQ"),
            ("INGEST_QUEUE_URL", "q/IngestQueue"),
            ("PUSH_SHOPIFY_DLQ_URL", "q/PushShopifyDLQ"),
            ("PUSH_QUEUE_SHOPIFY", "q/PushShopifyQueue"),
            ("PUSH_EBAY_DLQ_URL", "q/PushEbayDLQ"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let routes = Routes::from_lookup(|k| vars.get(k).cloned());
        let names: Vec<&str> = routes.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ingest", "push-shopify"]);
        assert_eq!(routes.get("push-shopify").unwrap().source_url, "q/PushShopifyQueue");
        assert_eq!(routes.select(Some(Channel::Shopify)).count(), 1);
        assert!(routes.unconfigured.iter().any(|u| u.starts_with("push-ebay (PUSH_EBAY_DLQ_URL")));
        assert!(matches!(routes.get("push-ebay"), Err(CliError::Usage(m)) if m.contains("ingest, push-shopify")));
    }
}
