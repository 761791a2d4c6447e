//! The push consumer: one channel's push queue drained into that channel's API, within its limits,
//! without losing a job and without hammering a channel that is down.
//!
//! Each SQS message is a [`PushMessage`]: a stock job from the ledger fan-out (the ledger's own
//! `PushJob` JSON, untagged, exactly what `SqsPushQueue` sends), a price job, a tracking push-back, or
//! a feed check. A batch is handled per account:
//!
//! - stale stock jobs (a newer version went to the queue, `PushGate::is_current` on [`App::push_gate`]) and older jobs for
//!   the same SKU in the same batch are dropped; what is left goes out in ONE connector call, which
//!   batches at the channel's own limits (never one API call per SKU);
//! - every call goes through the account's circuit breaker, whose state lives in DynamoDB
//!   ([`DynamoBreakerStore`]) so all concurrent instances agree. An open breaker sends nothing: the
//!   messages go back with their visibility set to the remaining cool-down;
//! - failures are classified by their [`FailureClass`], per message (per item where the connector
//!   reports items), and settled by [`sqs::settle`] like every consumer's: rate-limited waits for
//!   `retry_after` and transient backs off exponentially with jitter (retries, visibility set to the
//!   wait), permanent is quarantined (stage `push`) and acknowledged; an open breaker and refused
//!   credentials park the message (re-sent with a delay, the original acknowledged), so waiting for a
//!   channel or a person never burns receives and an outage alone never fills the DLQ;
//! - work a channel accepted and finishes later (an Amazon feed: an order cancel, a bulk stock push)
//!   is followed by a [`PushMessage::FeedCheck`] holding its [`Submission`]. The check asks the
//!   channel; while it is still processing, the next check is queued with a delay
//!   ([`PushSettings::feed_check_delay`], up to [`PushSettings::feed_check_rounds`] checks, then the
//!   check is quarantined); once done, every rejected item is quarantined with its class and reason
//!   (a retryable one says it can be replayed: its original payload is gone) and counted as a failed
//!   sync. A failure to ask takes the usual retry, backoff and breaker path.
//!
//! Dead letters: SQS cannot annotate a message, so on the last allowed attempt the error is written to
//! the `StateTable` under `LAST_ERROR#{message id}` before the message fails again; SQS then moves the
//! untouched message (same message id) to the DLQ, and `manifold dlq show` reads the reason back with
//! [`App::last_error`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::{StreamExt, future::join_all, stream};
use manifold_aws::{StoreError, breaker::DynamoBreakerStore, health, quarantine::QuarantinedPayload};
use manifold_connectors::{
    CallContext, ChannelConnector, ConnectorError, FailureClass, PriceUpdate, PushOutcome, StockUpdate, Submission,
    SubmissionState,
    breaker::{Admission, BreakerPolicy, CircuitBreaker},
};
use manifold_domain::{AccountId, Amount, Channel, Currency, Order, Shipment, Sku, config::AccountConfig};
use manifold_ledger::fanout::PushJob;
use manifold_telemetry::{
    MetricSet,
    cost::{CostMeter, UsageCounter},
};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info, warn};

use crate::{
    App,
    outcome::Failure,
    sqs::{self, Disposition, Received},
};
/// How long a dead-letter annotation is kept: the DLQ's retention.
const LAST_ERROR_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(14);

/// Tunables of the push consumers, with production defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushSettings {
    /// When the breaker opens and how long it stays open (`BREAKER_FAILURE_THRESHOLD`,
    /// `BREAKER_COOL_DOWN_SECS`).
    pub breaker: BreakerPolicy,
    /// The queue's `maxReceiveCount` (`MAX_RECEIVE_COUNT`): the attempt that records the last error.
    pub max_receive_count: u32,
    /// First transient retry waits about this long, doubling per attempt...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_cap: Duration,
    /// How long a message waits after an auth failure (a human has to fix the credentials).
    pub auth_delay: Duration,
    /// How long after a channel accepted work it is first asked about it, and between checks while
    /// it is still processing (`FEED_CHECK_DELAY_SECS`; SQS delays at most 15 minutes).
    pub feed_check_delay: Duration,
    /// How many checks a submission gets before it is given up and quarantined
    /// (`FEED_CHECK_ROUNDS`): with the default delay, an hour.
    pub feed_check_rounds: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            breaker: BreakerPolicy::default(),
            max_receive_count: 5,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_mins(15),
            auth_delay: Duration::from_mins(15),
            feed_check_delay: Duration::from_mins(1),
            feed_check_rounds: 60,
        }
    }
}

impl PushSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut s = Self::default();
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = num("MAX_RECEIVE_COUNT").and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
            s.max_receive_count = n;
        }
        if let Some(n) = num("BREAKER_FAILURE_THRESHOLD").and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
            s.breaker.failure_threshold = n;
        }
        if let Some(n) = num("BREAKER_COOL_DOWN_SECS") {
            s.breaker.cool_down = Duration::from_secs(n);
        }
        if let Some(n) = num("FEED_CHECK_DELAY_SECS") {
            s.feed_check_delay = Duration::from_secs(n).min(crate::sqs::MAX_DELAY);
        }
        if let Some(n) = num("FEED_CHECK_ROUNDS").and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
            s.feed_check_rounds = n;
        }
        s
    }

    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The wait before transient retry `attempt` (1-based): `base * 2^(attempt-1)` capped, with "equal
    /// jitter" (`jitter` in `[0, 1]` picks a point in the upper half) so a burst of failures does not
    /// come back as a burst.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let nominal = self.backoff_base.saturating_mul(1 << exp).min(self.backoff_cap);
        nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// A price to publish to one channel account (latest `effective_at` wins within a batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceJob {
    pub channel: Channel,
    pub account: AccountId,
    pub sku: Sku,
    pub channel_sku: String,
    pub amount: Amount,
    pub currency: Currency,
    #[serde(default)]
    pub channel_item_id: Option<String>,
    pub effective_at: DateTime<Utc>,
    /// The rules that made the price (kept with the delivered price, so `manifold trace` shows why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// A change of one listing's content (text, images or both), with the hashes the listing holds once
/// it is delivered (what the next content run compares against).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentJob {
    pub channel: Channel,
    pub account: AccountId,
    pub update: manifold_connectors::content::ContentUpdate,
    /// The hash of the text the listing shows once delivered.
    pub text_hash: Option<String>,
    /// The hash of each image it shows once delivered.
    #[serde(default)]
    pub image_hashes: Vec<String>,
    /// When the source last changed the content.
    pub updated_at: DateTime<Utc>,
}

/// One job on a channel's push queue. Tagged by `type`; a body without one is a stock job, which is
/// how the ledger's fan-out (`SqsPushQueue`) sends its `PushJob`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushMessage {
    Stock(PushJob),
    Price(PriceJob),
    Content(Box<ContentJob>),
    /// Tracking for an order, pushed back to the channel that sold it.
    Tracking {
        shipment: Shipment,
        /// 1 for the first push; 2 when the deadline watch pushes it again because the channel did
        /// not show it (see `late`).
        #[serde(default = "first_attempt")]
        attempt: u32,
    },
    /// Tells the channel that an order it sold was taken in (Amazon: the order-acknowledgement
    /// feed), for channels that expect it after the order is downloaded. The jobs of one account in
    /// one batch go out as one call, since the channel's quota counts submissions, not orders.
    Acknowledge {
        channel: Channel,
        account: AccountId,
        channel_order_id: String,
    },
    /// Asks the channel what became of work it accepted for later ([`Submission`]): an order
    /// cancellation or acknowledgement, a bulk push.
    FeedCheck {
        channel: Channel,
        account: AccountId,
        submission: Submission,
        /// 1 for the first check; each check of a submission still processing queues the next.
        #[serde(default = "first_attempt")]
        round: u32,
    },
}

fn first_attempt() -> u32 {
    1
}

impl PushMessage {
    /// Reads a queue message body.
    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(body)?;
        if let Some(object) = value.as_object_mut()
            && !object.contains_key("type")
        {
            object.insert("type".into(), "stock".into());
        }
        serde_json::from_value(value)
    }

    pub fn to_body(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn channel(&self) -> Channel {
        match self {
            PushMessage::Stock(j) => j.channel,
            PushMessage::Price(j) => j.channel,
            PushMessage::Content(j) => j.channel,
            PushMessage::Tracking { shipment, .. } => shipment.channel,
            PushMessage::Acknowledge { channel, .. } | PushMessage::FeedCheck { channel, .. } => *channel,
        }
    }

    pub fn account(&self) -> &AccountId {
        match self {
            PushMessage::Stock(j) => &j.account,
            PushMessage::Price(j) => &j.account,
            PushMessage::Content(j) => &j.account,
            PushMessage::Tracking { shipment, .. } => &shipment.account,
            PushMessage::Acknowledge { account, .. } | PushMessage::FeedCheck { account, .. } => account,
        }
    }

    /// What the message is about, for logs: the SKU, the order, or the submission.
    fn subject(&self) -> String {
        match self {
            PushMessage::Stock(j) => j.sku.to_string(),
            PushMessage::Price(j) => j.sku.to_string(),
            PushMessage::Content(j) => j.update.sku.to_string(),
            PushMessage::Tracking { shipment, .. } => shipment.order_id.to_string(),
            PushMessage::Acknowledge { channel_order_id, .. } => channel_order_id.clone(),
            PushMessage::FeedCheck { submission, .. } => format!("{} {}", submission.operation, submission.id),
        }
    }
}

/// Why a message goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    RateLimited,
    Transient,
    Auth,
    /// The account's breaker is open: the channel was not called.
    CircuitOpen,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::Transient => "transient",
            RetryReason::Auth => "auth",
            RetryReason::CircuitOpen => "circuit_open",
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Delivered,
    /// Dropped: a newer value for the same SKU is queued (gate) or in the same batch.
    Superseded,
    /// Can never succeed as is: quarantined with the reason, acknowledged.
    Rejected {
        reason: String,
    },
    /// Back to the queue, visible again after `delay`.
    Retry {
        reason: RetryReason,
        delay: Duration,
        error: String,
    },
    /// The channel is still processing the checked submission: check `round` is queued.
    Awaiting {
        round: u32,
    },
    /// The checked submission is processed: `delivered` items went through, each of `rejected` is
    /// quarantined on its own.
    Checked {
        delivered: usize,
        rejected: Vec<ItemRejection>,
    },
}

impl MessageOutcome {
    /// Adds this outcome to its account's health (`manifold_aws::health`), counted as the metrics
    /// count it: a failed sync is a call the channel failed or refused (a wait for an open breaker is
    /// none), a throttle is a rate-limited call.
    fn tally(&self, t: &mut health::Tally) {
        match self {
            MessageOutcome::Delivered => t.succeeded += 1,
            MessageOutcome::Checked { delivered, rejected } => {
                t.succeeded += u64::try_from(*delivered).unwrap_or(u64::MAX);
                t.failed += u64::try_from(rejected.len()).unwrap_or(u64::MAX);
            }
            MessageOutcome::Rejected { .. }
            | MessageOutcome::Retry { reason: RetryReason::Auth | RetryReason::Transient, .. } => t.failed += 1,
            MessageOutcome::Retry { reason: RetryReason::RateLimited, .. } => t.throttled += 1,
            MessageOutcome::Retry { reason: RetryReason::CircuitOpen, .. }
            | MessageOutcome::Superseded
            | MessageOutcome::Awaiting { .. } => {}
        }
    }
}

/// One item a channel rejected while processing a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRejection {
    pub submission: String,
    pub operation: String,
    pub item: String,
    pub class: FailureClass,
    pub reason: String,
}

/// The error recorded for a message on its last allowed attempt, found again by its message id once
/// SQS has moved the message to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub message_id: String,
    pub channel: Channel,
    pub account: String,
    pub error_class: String,
    pub error: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

impl LastError {
    fn pk(message_id: &str) -> String {
        format!("LAST_ERROR#{message_id}")
    }
}

/// One received message.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    receipt_handle: Option<String>,
    attempt: u32,
    sent_at: Option<DateTime<Utc>>,
    trace_id: String,
    body: String,
}

impl Delivery {
    fn of(m: &SqsMessage) -> Self {
        Self {
            id: m.message_id.clone().unwrap_or_default(),
            receipt_handle: m.receipt_handle.clone(),
            attempt: sqs::receive_count(m),
            sent_at: m
                .attributes
                .get("SentTimestamp")
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis),
            trace_id: sqs::trace_of(m),
            body: m.body.clone().unwrap_or_default(),
        }
    }
}

/// A parsed message waiting for its outcome.
#[derive(Debug)]
struct Job {
    delivery: Delivery,
    message: PushMessage,
}

/// A message with its outcome and what to log about it.
#[derive(Debug)]
struct Settled {
    delivery: Delivery,
    account: String,
    subject: String,
    outcome: MessageOutcome,
}

impl Settled {
    fn of(job: Job, outcome: MessageOutcome) -> Self {
        Self {
            account: job.message.account().to_string(),
            subject: job.message.subject(),
            delivery: job.delivery,
            outcome,
        }
    }
}

/// Why a guarded call did not return a channel answer.
#[derive(Debug)]
enum CallError {
    /// The breaker refused: nothing was sent; try again after this.
    Open(Duration),
    Failed(ConnectorError),
}

/// One account's connector behind its breaker, for one batch.
struct AccountPush<'a> {
    app: &'a App,
    account: &'a AccountConfig,
    channel: Channel,
    connector: Arc<dyn ChannelConnector>,
    breaker: CircuitBreaker<DynamoBreakerStore>,
    ctx: CallContext,
    /// The batch's channel API calls, for its usage.
    api_calls: &'a AtomicU64,
}

impl AccountPush<'_> {
    /// Runs one connector call through the breaker and measures it.
    async fn call<T: Send>(
        &self,
        operation: &'static str,
        api_calls: usize,
        call: impl Future<Output = Result<T, ConnectorError>> + Send,
    ) -> Result<T, CallError> {
        // `admit` fails with a wait when the breaker is open, without one when its store is down.
        let admission = self.breaker.admit(Utc::now()).await.map_err(|e| match e.retry_after {
            Some(wait) => CallError::Open(wait),
            None => CallError::Failed(e),
        })?;
        let started = Instant::now();
        let result = call.await;
        let elapsed = started.elapsed();
        self.api_calls.fetch_add(u64::try_from(api_calls).unwrap_or(u64::MAX), Ordering::Relaxed);
        let failed = result.as_ref().err().is_some_and(ConnectorError::counts_against_channel);
        if let Err(e) = self.breaker.record(admission, failed, Utc::now()).await {
            // The call's outcome stands either way; the breaker just missed one observation.
            warn!(error = %e, "could not record the call in the circuit breaker");
        }
        if failed && admission == Admission::Probe {
            // The channel is still down and the breaker open again: the messages wait for it like
            // any refused by the open breaker, without using up a receive per cool-down.
            if let Err(e) = &result {
                warn!(error = %e, "probe failed: the channel is still down");
            }
            return Err(CallError::Open(self.app.settings.push.breaker.cool_down));
        }
        metrics(self.channel, operation)
            .count("ApiCalls", u64::try_from(api_calls).unwrap_or(u64::MAX))
            .millis("ApiLatency", elapsed.as_secs_f64() * 1000.0)
            .emit();
        result.map_err(CallError::Failed)
    }

    /// The outcome of every message whose item went out in one call, item by item.
    fn settle_items(&self, sent: Vec<(Job, String)>, result: Result<PushOutcome, CallError>) -> Vec<Settled> {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                return sent
                    .into_iter()
                    .map(|(job, _)| {
                        let outcome = self.app.on_call_error(&e, job.delivery.attempt);
                        Settled::of(job, outcome)
                    })
                    .collect();
            }
        };
        let rejected: HashMap<&str, &ConnectorError> = outcome.rejected.iter().map(|(s, e)| (s.as_str(), e)).collect();
        sent.into_iter()
            .map(|(job, channel_sku)| {
                let attempt = job.delivery.attempt;
                let outcome = if let Some(e) = rejected.get(channel_sku.as_str()) {
                    self.app.on_failure(e, attempt)
                } else if outcome.delivered.contains(&channel_sku) {
                    MessageOutcome::Delivered
                } else {
                    self.app.on_failure(
                        &ConnectorError::transient(format!("the connector reported no outcome for {channel_sku}")),
                        attempt,
                    )
                };
                Settled::of(job, outcome)
            })
            .collect()
    }

    async fn push_stock(&self, jobs: Vec<(Job, PushJob)>) -> Vec<Settled> {
        let mut settled = Vec::new();
        let gate = &self.app.push_gate;
        // One read of the gate for the whole batch; when it fails, every job of it waits for a retry.
        let stocks: Vec<PushJob> = jobs.iter().map(|(_, j)| j.clone()).collect();
        let checks: Vec<Result<bool, String>> = match gate.are_current(&stocks).await {
            Ok(current) => current.into_iter().map(Ok).collect(),
            Err(e) => stocks.iter().map(|_| Err(e.to_string())).collect(),
        };
        // Latest version per channel SKU and location; everything older in the batch is superseded.
        let mut latest: BTreeMap<(String, String), (Job, PushJob)> = BTreeMap::new();
        for ((job, stock), current) in jobs.into_iter().zip(checks) {
            match current {
                Ok(false) => settled.push(Settled::of(job, MessageOutcome::Superseded)),
                Err(e) => {
                    let e = ConnectorError::transient(format!("push gate unavailable: {e}"));
                    let outcome = self.app.on_failure(&e, job.delivery.attempt);
                    settled.push(Settled::of(job, outcome));
                }
                Ok(true) => {
                    let key = (stock.channel_sku.clone(), stock.location.clone());
                    match latest.remove(&key) {
                        Some(held) if newer(&held.1, &held.0, &stock, &job) => {
                            settled.push(Settled::of(job, MessageOutcome::Superseded));
                            latest.insert(key, held);
                        }
                        Some(held) => {
                            settled.push(Settled::of(held.0, MessageOutcome::Superseded));
                            latest.insert(key, (job, stock));
                        }
                        None => {
                            latest.insert(key, (job, stock));
                        }
                    }
                }
            }
        }
        if latest.is_empty() {
            return settled;
        }
        let skus: Vec<String> = latest.values().map(|(_, j)| j.channel_sku.clone()).collect();
        let ids = self.item_ids(&skus).await;
        let updates: Vec<StockUpdate> = latest
            .values()
            .map(|(_, j)| StockUpdate {
                sku: j.sku.clone(),
                channel_sku: j.channel_sku.clone(),
                quantity: j.quantity,
                channel_item_id: ids.get(&j.channel_sku).cloned(),
            })
            .collect();
        let api_calls = updates.len().div_ceil(self.connector.max_batch().max(1));
        let result = self.call("push_stock", api_calls, self.connector.push_stock(&updates, &self.ctx)).await;
        if let Ok(outcome) = &result {
            metrics(self.channel, "push_stock")
                .count("ItemsPushed", u64::try_from(outcome.delivered.len()).unwrap_or(u64::MAX))
                .emit();
            self.follow(&outcome.submitted).await;
        }
        let mut pushed: HashMap<String, PushJob> = HashMap::new();
        let sent = latest
            .into_values()
            .map(|(job, stock)| {
                let channel_sku = stock.channel_sku.clone();
                pushed.insert(job.delivery.id.clone(), stock);
                (job, channel_sku)
            })
            .collect();
        let outcomes = self.settle_items(sent, result);
        // What the channel took is recorded as delivered, so the stock tier stops re-offering it.
        let marks = outcomes
            .iter()
            .filter(|s| s.outcome == MessageOutcome::Delivered)
            .filter_map(|s| pushed.get(&s.delivery.id))
            .map(|job| gate.delivered(job));
        for failed in join_all(marks).await.into_iter().filter_map(Result::err) {
            // The push happened; at worst the stock tier sends the same value once more.
            warn!(error = %failed, "could not record a delivered version in the push gate");
        }
        settled.extend(outcomes);
        settled
    }

    /// The id each channel SKU is written by: its `item_ids` override, else the id its listing gave.
    async fn item_ids(&self, skus: &[String]) -> BTreeMap<String, String> {
        crate::listings::item_ids(&**self.app.listings, self.account, skus).await.unwrap_or_else(|e| {
            warn!(error = %e, "listing ids unavailable: pushing with the configured item ids only");
            self.account
                .item_ids
                .iter()
                .filter(|(k, _)| skus.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    async fn push_prices(&self, jobs: Vec<(Job, PriceJob)>) -> Vec<Settled> {
        let mut settled = Vec::new();
        let mut latest: BTreeMap<String, (Job, PriceJob)> = BTreeMap::new();
        for (job, price) in jobs {
            match latest.remove(&price.channel_sku) {
                Some(held) if held.1.effective_at > price.effective_at => {
                    settled.push(Settled::of(job, MessageOutcome::Superseded));
                    latest.insert(price.channel_sku.clone(), held);
                }
                Some(held) => {
                    settled.push(Settled::of(held.0, MessageOutcome::Superseded));
                    latest.insert(price.channel_sku.clone(), (job, price));
                }
                None => {
                    latest.insert(price.channel_sku.clone(), (job, price));
                }
            }
        }
        if latest.is_empty() {
            return settled;
        }
        // A job queued before the account's listing sync carries no id: its listing gives it now.
        let unkeyed: Vec<String> =
            latest.values().filter(|(_, p)| p.channel_item_id.is_none()).map(|(_, p)| p.channel_sku.clone()).collect();
        let ids = if unkeyed.is_empty() { BTreeMap::new() } else { self.item_ids(&unkeyed).await };
        let updates: Vec<PriceUpdate> = latest
            .values()
            .map(|(_, p)| PriceUpdate {
                sku: p.sku.clone(),
                channel_sku: p.channel_sku.clone(),
                amount: p.amount,
                currency: p.currency,
                channel_item_id: p.channel_item_id.clone().or_else(|| ids.get(&p.channel_sku).cloned()),
            })
            .collect();
        let api_calls = updates.len().div_ceil(self.connector.max_batch().max(1));
        let result = self.call("push_prices", api_calls, self.connector.push_prices(&updates, &self.ctx)).await;
        if let Ok(outcome) = &result {
            self.follow(&outcome.submitted).await;
        }
        let prices: HashMap<String, (PriceJob, String)> = latest
            .values()
            .map(|(job, price)| (job.delivery.id.clone(), (price.clone(), job.delivery.trace_id.clone())))
            .collect();
        let sent = latest.into_values().map(|(job, price)| (job, price.channel_sku)).collect();
        let outcomes = self.settle_items(sent, result);
        // What the channel took is recorded, so the next prices run sends only what differs.
        let delivered: Vec<(PriceJob, String)> = outcomes
            .iter()
            .filter(|s| s.outcome == MessageOutcome::Delivered)
            .filter_map(|s| prices.get(&s.delivery.id).cloned())
            .collect();
        self.app.record_delivered_prices(&delivered, Utc::now()).await;
        settled.extend(outcomes);
        settled
    }

    /// Content jobs go out in the order the source changed them (one listing's later change after
    /// its earlier one); what each listing took is recorded for the next content run.
    async fn push_content(&self, mut jobs: Vec<(Job, ContentJob)>) -> Vec<Settled> {
        jobs.sort_by_key(|(_, c)| c.updated_at);
        let updates: Vec<manifold_connectors::content::ContentUpdate> =
            jobs.iter().map(|(_, c)| c.update.clone()).collect();
        let result = self.call("push_content", updates.len(), self.connector.push_content(&updates, &self.ctx)).await;
        let by_id: HashMap<String, (ContentJob, String)> =
            jobs.iter().map(|(job, c)| (job.delivery.id.clone(), (c.clone(), job.delivery.trace_id.clone()))).collect();
        let sent = jobs.into_iter().map(|(job, c)| (job, c.update.channel_sku)).collect();
        let outcomes = self.settle_items(sent, result);
        let delivered: Vec<(ContentJob, String)> = outcomes
            .iter()
            .filter(|s| s.outcome == MessageOutcome::Delivered)
            .filter_map(|s| by_id.get(&s.delivery.id).cloned())
            .collect();
        self.app.record_delivered_content(&delivered, Utc::now()).await;
        outcomes
    }

    async fn push_tracking(&self, jobs: Vec<(Job, Shipment, u32)>) -> Vec<Settled> {
        let mut settled = Vec::new();
        for (job, shipment, attempt) in jobs {
            let ctx = CallContext::new(job.delivery.trace_id.clone());
            let outcome = match self.call("push_tracking", 1, self.connector.push_tracking(&shipment, &ctx)).await {
                Ok(()) => {
                    // Watched until the channel shows it. Not retried on failure: pushing the
                    // tracking again could create a second fulfillment on the channel.
                    let watched = self.app.watch_tracking(&shipment, attempt, &job.delivery.trace_id, Utc::now());
                    if let Err(e) = watched.await {
                        warn!(order_id = %shipment.order_id, error = %e, "tracking delivered but not watched for confirmation");
                    }
                    MessageOutcome::Delivered
                }
                Err(e) => self.app.on_call_error(&e, job.delivery.attempt),
            };
            settled.push(Settled::of(job, outcome));
        }
        settled
    }
}

impl AccountPush<'_> {
    /// Acknowledges the batch's orders in one call (the same order twice in a batch goes once). The
    /// channel's verdict per order comes with the submission's check, which quarantines a refusal.
    async fn acknowledge(&self, jobs: Vec<(Job, String)>) -> Vec<Settled> {
        let mut ids: Vec<String> = jobs.iter().map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let result = self.call("acknowledge", 1, self.connector.acknowledge_orders(&ids, &self.ctx)).await;
        if let Ok(submitted) = &result {
            self.follow(submitted).await;
            info!(orders = ids.len(), submissions = submitted.len(), "orders acknowledged");
        }
        jobs.into_iter()
            .map(|(job, _)| {
                let outcome = match &result {
                    Ok(_) => MessageOutcome::Delivered,
                    Err(e) => self.app.on_call_error(e, job.delivery.attempt),
                };
                Settled::of(job, outcome)
            })
            .collect()
    }

    /// Queues the first check of each submission a push made. The push itself succeeded either way:
    /// a check that cannot be queued loses only the channel's per-item verdict, so it is logged.
    async fn follow(&self, submitted: &[Submission]) {
        for submission in submitted {
            let queued = self
                .app
                .enqueue_feed_check(self.channel, &self.account.account, submission, 1, &self.ctx.trace_id)
                .await;
            if let Err(e) = queued {
                warn!(feed = %submission.id, error = %e, "could not queue the check of a submission: its report will not be read");
            }
        }
    }

    /// Asks the channel about each checked submission (see the module docs).
    async fn check_feeds(&self, jobs: Vec<(Job, Submission, u32)>) -> Vec<Settled> {
        let mut settled = Vec::new();
        for (job, submission, round) in jobs {
            let ctx = CallContext::new(job.delivery.trace_id.clone());
            let result = self.call("feed_check", 1, self.connector.submission_result(&submission, &ctx)).await;
            let outcome = match result {
                Err(e) => self.app.on_call_error(&e, job.delivery.attempt),
                Ok(SubmissionState::Pending) if round >= self.app.settings.push.feed_check_rounds => {
                    MessageOutcome::Rejected {
                        reason: format!(
                            "{} submission {} still processing after {round} checks: its outcome is unknown, check it on the channel",
                            submission.operation, submission.id
                        ),
                    }
                }
                Ok(SubmissionState::Pending) => {
                    let next = round + 1;
                    match self
                        .app
                        .enqueue_feed_check(self.channel, &self.account.account, &submission, next, &ctx.trace_id)
                        .await
                    {
                        Ok(()) => MessageOutcome::Awaiting { round: next },
                        Err(e) => self.app.on_failure(
                            &ConnectorError::transient(format!("cannot queue the next check: {e}")),
                            job.delivery.attempt,
                        ),
                    }
                }
                Ok(SubmissionState::Done(outcome)) => MessageOutcome::Checked {
                    delivered: outcome.delivered.len(),
                    rejected: outcome
                        .rejected
                        .into_iter()
                        .map(|(item, e)| ItemRejection {
                            submission: submission.id.clone(),
                            operation: submission.operation.clone(),
                            item,
                            class: e.class,
                            reason: if e.is_retryable() {
                                format!(
                                    "{e}; retryable: send the {} for this item again (its original payload is gone)",
                                    submission.operation
                                )
                            } else {
                                e.to_string()
                            },
                        })
                        .collect(),
                },
            };
            settled.push(Settled::of(job, outcome));
        }
        settled
    }
}

/// Whether the held job (`a`) is newer than the incoming one (`b`): higher version, then later sent.
fn newer(a: &PushJob, a_job: &Job, b: &PushJob, b_job: &Job) -> bool {
    (a.version, a_job.delivery.sent_at) > (b.version, b_job.delivery.sent_at)
}

/// `SyncFailed` (the "5 failed syncs in 10 minutes" alarm): one per push call that ended without
/// delivery because the channel failed or refused it (permanent, auth, transient). Waiting without
/// calling (open breaker, rate limit) is not a failure of its own.
fn sync_failed(channel: Channel, s: &Settled, class: &'static str) {
    metrics(channel, "push")
        .count("SyncFailed", 1)
        .property("error_class", class)
        .property("account", s.account.as_str())
        .property("trace_id", s.delivery.trace_id.as_str())
        .emit();
}

fn metrics(channel: Channel, operation: &'static str) -> MetricSet {
    MetricSet::new().dim("Channel", channel.as_str()).dim("Operation", operation)
}

impl App {
    /// The push consumer of `channel`'s queue. Every message is settled on its own; only those to be
    /// retried are reported as batch item failures (after their visibility was set to their delay).
    /// What the batch cost is added to the channel's daily usage (see [`App::count_push_cost`]).
    pub async fn push_batch(&self, channel: Channel, event: SqsEvent) -> SqsBatchResponse {
        let counter = Arc::new(UsageCounter::new());
        let api_calls = AtomicU64::new(0);
        let response =
            manifold_aws::usage::scoped(counter.clone(), self.push_batch_counted(channel, event, &api_calls)).await;
        self.count_push_cost(channel, &counter, api_calls.into_inner()).await;
        response
    }

    /// Adds a batch's work to `channel`'s usage for today (`manifold usage`, the console's Usage page):
    /// the channel API calls its pushes made and the AWS calls the batch made, as the SDK interceptor
    /// counted them, priced. Orders are not counted here (ingest counts each once). Best effort, as for
    /// ingest: a counter that cannot be written fails no push. (`ApiCalls` metrics were emitted per call.)
    async fn count_push_cost(&self, channel: Channel, counter: &UsageCounter, api_calls: u64) {
        let meter = CostMeter::new();
        meter.add_usage(&counter.snapshot());
        meter.add_api_calls(api_calls);
        if api_calls == 0 && meter.aws_requests() == 0 {
            return;
        }
        let day = Utc::now().date_naive();
        if let Err(e) =
            self.state.add_usage(channel.as_str(), day, api_calls, meter.aws_requests(), 0, meter.micro_usd()).await
        {
            warn!(error = %e, "usage counter not updated");
        }
    }

    async fn push_batch_counted(&self, channel: Channel, event: SqsEvent, api_calls: &AtomicU64) -> SqsBatchResponse {
        let mut settled = Vec::new();
        let mut by_account: BTreeMap<AccountId, Vec<Job>> = BTreeMap::new();
        for record in &event.records {
            let delivery = Delivery::of(record);
            match PushMessage::from_body(&delivery.body) {
                Ok(message) if message.channel() == channel => {
                    by_account.entry(message.account().clone()).or_default().push(Job { delivery, message });
                }
                Ok(message) => {
                    let reason = format!("a {} job on the {channel} push queue", message.channel());
                    let job = Job { delivery, message };
                    settled.push(Settled::of(job, MessageOutcome::Rejected { reason }));
                }
                Err(e) => settled.push(Settled {
                    delivery,
                    account: String::new(),
                    subject: String::new(),
                    outcome: MessageOutcome::Rejected { reason: format!("not a push message: {e}") },
                }),
            }
        }
        let per_account: Vec<Vec<Settled>> = stream::iter(by_account)
            .map(|(account, jobs)| self.push_account(channel, account, jobs, api_calls))
            .buffer_unordered(4)
            .collect()
            .await;
        settled.extend(per_account.into_iter().flatten());

        let now = Utc::now();
        let mut tallies: BTreeMap<String, health::Tally> = BTreeMap::new();
        for s in settled.iter().filter(|s| !s.account.is_empty()) {
            s.outcome.tally(tallies.entry(s.account.clone()).or_default());
        }
        let mut dispositions = Vec::new();
        for s in settled {
            let span = manifold_telemetry::business_span!("push_message", message_id = %s.delivery.id);
            span.record("trace_id", s.delivery.trace_id.as_str());
            span.record("channel", channel.as_str());
            span.record("account", s.account.as_str());
            span.record("sku", s.subject.as_str());
            span.record("attempt", s.delivery.attempt);
            let disposition = self.settle(channel, &s, now).instrument(span).await;
            let d = s.delivery;
            let received = Received { id: d.id, receipt_handle: d.receipt_handle, body: d.body, trace_id: d.trace_id };
            dispositions.push((received, disposition));
        }
        for (account, tally) in tallies.into_iter().filter(|(_, t)| !t.is_empty()) {
            if let Err(e) =
                health::record(&self.ddb, &self.env.state_table, channel.as_str(), &account, tally, now).await
            {
                warn!(error = %e, account = %account, "could not record the account's push health");
            }
        }
        let own_queue = self.env.push_queues.get(&channel).map(|url| (self.queue.as_ref(), url.as_str()));
        if own_queue.is_none() {
            warn!(
                channel = channel.as_str(),
                "no push queue URL configured: waits and delays use the queue's visibility timeout"
            );
        }
        sqs::settle(own_queue, dispositions).await
    }

    /// Puts a tracking push-back on the push queue of the channel that sold the order.
    pub async fn enqueue_tracking(&self, shipment: &Shipment, trace_id: &str) -> Result<(), Failure> {
        self.enqueue_tracking_attempt(shipment, 1, trace_id).await
    }

    /// Queues a tracking push, numbered (a second attempt is the deadline watch's).
    pub(crate) async fn enqueue_tracking_attempt(
        &self,
        shipment: &Shipment,
        attempt: u32,
        trace_id: &str,
    ) -> Result<(), Failure> {
        let url = self.env.push_queues.get(&shipment.channel).ok_or_else(|| {
            Failure::permanent("push", format!("no push queue is configured for {}", shipment.channel))
        })?;
        let body = PushMessage::Tracking { shipment: shipment.clone(), attempt }
            .to_body()
            .map_err(|e| Failure::permanent("push", format!("cannot encode the tracking job: {e}")))?;
        self.queue.send(url, &body, trace_id, None).await?;
        info!(channel = shipment.channel.as_str(), order_id = %shipment.order_id, "tracking push-back queued");
        Ok(())
    }

    /// Queues the acknowledgement of a stored order on its channel's push queue.
    pub async fn enqueue_acknowledgement(&self, order: &Order, trace_id: &str) -> Result<(), Failure> {
        let url =
            self.env.push_queues.get(&order.channel).ok_or_else(|| {
                Failure::permanent("push", format!("no push queue is configured for {}", order.channel))
            })?;
        let message = PushMessage::Acknowledge {
            channel: order.channel,
            account: order.account.clone(),
            channel_order_id: order.channel_order_id.clone(),
        };
        let body = message
            .to_body()
            .map_err(|e| Failure::permanent("push", format!("cannot encode the acknowledgement: {e}")))?;
        self.queue.send(url, &body, trace_id, None).await?;
        info!(channel = order.channel.as_str(), order_id = %order.id, "acknowledgement queued");
        Ok(())
    }

    /// Queues check `round` of `submission` on `channel`'s push queue, delayed by
    /// [`PushSettings::feed_check_delay`] (a channel's processing takes minutes).
    pub async fn enqueue_feed_check(
        &self,
        channel: Channel,
        account: &AccountId,
        submission: &Submission,
        round: u32,
        trace_id: &str,
    ) -> Result<(), Failure> {
        let url = self
            .env
            .push_queues
            .get(&channel)
            .ok_or_else(|| Failure::permanent("push", format!("no push queue is configured for {channel}")))?;
        let message =
            PushMessage::FeedCheck { channel, account: account.clone(), submission: submission.clone(), round };
        let body =
            message.to_body().map_err(|e| Failure::permanent("push", format!("cannot encode the feed check: {e}")))?;
        let delay = sqs::whole_seconds(self.settings.push.feed_check_delay, sqs::MAX_DELAY);
        self.queue.send(url, &body, trace_id, Some(delay)).await?;
        info!(channel = channel.as_str(), feed = %submission.id, operation = %submission.operation, round, "feed check queued");
        Ok(())
    }

    /// The error recorded for a dead-lettered push message (`manifold dlq show`).
    pub async fn last_error(&self, message_id: &str) -> Result<Option<LastError>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.env.state_table)
            .key("pk", AttributeValue::S(LastError::pk(message_id)))
            .key("sk", AttributeValue::S("last_error".into()))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        let Some(mut item) = out.item else { return Ok(None) };
        for k in ["pk", "sk", "expires_at"] {
            item.remove(k);
        }
        serde_dynamo::from_item(item).map(Some).map_err(|e| StoreError::Corrupt {
            key: LastError::pk(message_id),
            what: "last error",
            source: Box::new(e),
        })
    }

    async fn push_account(
        &self,
        channel: Channel,
        account: AccountId,
        jobs: Vec<Job>,
        api_calls: &AtomicU64,
    ) -> Vec<Settled> {
        let span = manifold_telemetry::business_span!("push", jobs = jobs.len());
        span.record("channel", channel.as_str());
        span.record("account", account.as_str());
        async {
            let config = match self.account(channel, account.as_str()).await {
                Ok(c) => c,
                Err(e) => return self.fail_all(jobs, &e),
            };
            let connector = match self.connector(&config).await {
                Ok(c) => c,
                Err(e) => return self.fail_all(jobs, &e),
            };
            let trace_id = jobs.first().map_or_else(crate::trace::mint, |j| j.delivery.trace_id.clone());
            tracing::Span::current().record("trace_id", trace_id.as_str());
            let pusher = AccountPush {
                app: self,
                account: &config,
                channel,
                connector,
                breaker: self.breaker(&config),
                ctx: CallContext::new(trace_id),
                api_calls,
            };
            let (mut stock, mut prices, mut tracking, mut checks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut acks, mut content) = (Vec::new(), Vec::new());
            for job in jobs {
                match job.message.clone() {
                    PushMessage::Stock(s) => stock.push((job, s)),
                    PushMessage::Price(p) => prices.push((job, p)),
                    PushMessage::Content(c) => content.push((job, *c)),
                    PushMessage::Tracking { shipment, attempt } => tracking.push((job, shipment, attempt)),
                    PushMessage::Acknowledge { channel_order_id, .. } => acks.push((job, channel_order_id)),
                    PushMessage::FeedCheck { submission, round, .. } => checks.push((job, submission, round)),
                }
            }
            let mut settled = Vec::new();
            if !stock.is_empty() {
                settled.extend(pusher.push_stock(stock).await);
            }
            if !prices.is_empty() {
                settled.extend(pusher.push_prices(prices).await);
            }
            if !content.is_empty() {
                settled.extend(pusher.push_content(content).await);
            }
            if !tracking.is_empty() {
                settled.extend(pusher.push_tracking(tracking).await);
            }
            if !acks.is_empty() {
                settled.extend(pusher.acknowledge(acks).await);
            }
            if !checks.is_empty() {
                settled.extend(pusher.check_feeds(checks).await);
            }
            settled
        }
        .instrument(span)
        .await
    }

    /// The breaker of one channel account, shared through the `StateTable`
    /// (`BREAKER#{channel}#{account}`).
    pub fn breaker(&self, account: &AccountConfig) -> CircuitBreaker<DynamoBreakerStore> {
        CircuitBreaker::new(
            DynamoBreakerStore::new(self.ddb.get().clone(), &self.env.state_table),
            format!("{}#{}", account.channel, account.account),
            self.settings.push.breaker,
        )
    }

    fn fail_all(&self, jobs: Vec<Job>, failure: &Failure) -> Vec<Settled> {
        jobs.into_iter()
            .map(|job| {
                let outcome = match failure {
                    Failure::Permanent { reason, .. } => MessageOutcome::Rejected { reason: reason.clone() },
                    Failure::Transient(e) => MessageOutcome::Retry {
                        reason: RetryReason::Transient,
                        delay: self.settings.push.backoff(job.delivery.attempt, rand::random()),
                        error: e.to_string(),
                    },
                };
                Settled::of(job, outcome)
            })
            .collect()
    }

    fn on_call_error(&self, e: &CallError, attempt: u32) -> MessageOutcome {
        match e {
            CallError::Open(wait) => MessageOutcome::Retry {
                reason: RetryReason::CircuitOpen,
                // Never 0: a message visible at once would come straight back while the breaker is open.
                delay: (*wait).max(Duration::from_secs(1)),
                error: "circuit open: the channel was not called".into(),
            },
            CallError::Failed(e) => self.on_failure(e, attempt),
        }
    }

    /// The one place a channel failure becomes a message outcome.
    fn on_failure(&self, e: &ConnectorError, attempt: u32) -> MessageOutcome {
        let p = &self.settings.push;
        let backoff = || p.backoff(attempt, rand::random());
        let (reason, delay) = match e.class {
            FailureClass::Permanent => return MessageOutcome::Rejected { reason: e.to_string() },
            FailureClass::RateLimited => (RetryReason::RateLimited, e.retry_after.unwrap_or_else(backoff)),
            FailureClass::Transient => (RetryReason::Transient, backoff()),
            FailureClass::Auth => (RetryReason::Auth, p.auth_delay),
        };
        MessageOutcome::Retry { reason, delay, error: e.to_string() }
    }

    /// Logs, measures and records one outcome, and decides its disposition: the one place a push
    /// outcome becomes ack, retry or park.
    async fn settle(&self, channel: Channel, s: &Settled, now: DateTime<Utc>) -> Disposition {
        match &s.outcome {
            MessageOutcome::Delivered => {
                let mut m = metrics(channel, "push").count("SyncSucceeded", 1);
                if let Some(sent) = s.delivery.sent_at {
                    #[allow(clippy::cast_precision_loss)] // milliseconds of queue time fit an f64 exactly
                    let ms = (now - sent).num_milliseconds().max(0) as f64;
                    m = m.millis("PropagationMs", ms);
                }
                m.property("trace_id", s.delivery.trace_id.as_str()).emit();
                info!("pushed to the channel");
                Disposition::Ack
            }
            MessageOutcome::Superseded => {
                metrics(channel, "push").count("Superseded", 1).emit();
                debug!("superseded by a newer value: dropped");
                Disposition::Ack
            }
            MessageOutcome::Awaiting { round } => {
                info!(round, "the channel is still processing the submission: checking again later");
                Disposition::Ack
            }
            MessageOutcome::Checked { delivered, rejected } => {
                if *delivered > 0 {
                    metrics(channel, "feed_check")
                        .count("SyncSucceeded", u64::try_from(*delivered).unwrap_or(u64::MAX))
                        .property("trace_id", s.delivery.trace_id.as_str())
                        .emit();
                }
                for r in rejected {
                    if !self.quarantine_item(channel, s, r, now).await {
                        // Could not keep it: the check is asked again rather than the verdict lost.
                        return Disposition::Retry { delay: None };
                    }
                }
                info!(delivered, rejected = rejected.len(), "the channel processed the submission");
                Disposition::Ack
            }
            MessageOutcome::Rejected { reason } => {
                tracing::Span::current().record("error_class", "permanent");
                sync_failed(channel, s, "permanent");
                let item = QuarantinedPayload {
                    // Keyed by the SQS message: a redelivery after a lost ack is kept once.
                    id: QuarantinedPayload::id_for(
                        &format!("push:{channel}:{}", s.delivery.id),
                        s.delivery.sent_at.unwrap_or(now),
                    ),
                    channel: channel.as_str().to_owned(),
                    account: s.account.clone(),
                    stage: "push".into(),
                    reason: reason.clone(),
                    trace_id: s.delivery.trace_id.clone(),
                    received_at: now,
                    payload: s.delivery.body.clone(),
                    replayed_at: None,
                };
                match self.quarantine.put(&item).await {
                    Ok(()) => {
                        warn!(error_class = "permanent", reason = %reason, quarantine_id = %item.id, "push rejected: quarantined, not retried");
                        Disposition::Ack
                    }
                    Err(e) => {
                        // Could not keep it: let SQS retry rather than lose it.
                        warn!(error = %e, reason = %reason, "push rejected and the quarantine is unavailable: retrying");
                        Disposition::Retry { delay: None }
                    }
                }
            }
            MessageOutcome::Retry { reason, delay, error } => {
                tracing::Span::current().record("error_class", reason.as_str());
                match reason {
                    RetryReason::Auth => {
                        sync_failed(channel, s, "auth");
                        warn!(error_class = "auth", error = %error, delay_s = delay.as_secs(), "credentials refused: fix the account's secret; holding its pushes");
                    }
                    RetryReason::RateLimited => {
                        metrics(channel, "push").count("Throttled", 1).emit();
                        info!(
                            error_class = "rate_limited",
                            delay_s = delay.as_secs(),
                            "throttled: retrying after the channel's wait"
                        );
                    }
                    RetryReason::CircuitOpen => {
                        metrics(channel, "push").count("CircuitOpen", 1).emit();
                        info!(
                            error_class = "circuit_open",
                            delay_s = delay.as_secs(),
                            "circuit open: not calling the channel"
                        );
                    }
                    RetryReason::Transient => {
                        // A failed call is a failed sync even though it will be retried: a channel
                        // answering 5xx for an hour must trip the failed-sync alarm, not only the
                        // messages that finally dead-letter.
                        sync_failed(channel, s, "transient");
                        info!(error_class = "transient", error = %error, delay_s = delay.as_secs(), "push failed: retrying with backoff");
                    }
                }
                match reason {
                    // Waiting for the channel or for a person: parked, no receive used up.
                    RetryReason::CircuitOpen | RetryReason::Auth => Disposition::Park { delay: *delay },
                    RetryReason::RateLimited | RetryReason::Transient => {
                        if s.delivery.attempt >= self.settings.push.max_receive_count {
                            // Bound for the DLQ, and only with its reason: a message whose reason
                            // cannot be written is parked instead (a fresh copy, tried again later).
                            if !self.record_last_error(channel, s, reason.as_str(), error, now).await {
                                return Disposition::Park { delay: *delay };
                            }
                            // The gate must not count this version as on its way.
                            if let Ok(PushMessage::Stock(job)) = PushMessage::from_body(&s.delivery.body)
                                && let Err(e) = self.push_gate.withdraw(&job).await
                            {
                                warn!(error = %e, "could not withdraw a dead-lettered version from the push gate");
                            }
                        }
                        Disposition::Retry { delay: Some(*delay) }
                    }
                }
            }
        }
    }

    /// Quarantines one item a processed submission rejected (keyed by submission and item, so a
    /// repeated check keeps it once) and counts it as a failed sync of its class.
    async fn quarantine_item(&self, channel: Channel, s: &Settled, r: &ItemRejection, now: DateTime<Utc>) -> bool {
        let class = match r.class {
            FailureClass::Permanent => "permanent",
            FailureClass::Transient => "transient",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Auth => "auth",
        };
        sync_failed(channel, s, class);
        let item = QuarantinedPayload {
            id: QuarantinedPayload::id_for(
                &format!("submission:{channel}:{}:{}", r.submission, r.item),
                s.delivery.sent_at.unwrap_or(now),
            ),
            channel: channel.as_str().to_owned(),
            account: s.account.clone(),
            stage: "push".into(),
            reason: r.reason.clone(),
            trace_id: s.delivery.trace_id.clone(),
            received_at: now,
            payload: serde_json::json!({ "submission": r.submission, "operation": r.operation, "item": r.item })
                .to_string(),
            replayed_at: None,
        };
        match self.quarantine.put(&item).await {
            Ok(()) => {
                warn!(error_class = class, item = %r.item, reason = %r.reason, quarantine_id = %item.id, "item rejected by the channel: quarantined");
                true
            }
            Err(e) => {
                warn!(error = %e, item = %r.item, "item rejected and the quarantine is unavailable: checking again");
                false
            }
        }
    }

    /// Annotates a message about to be dead-lettered: `LAST_ERROR#{message id}` in the `StateTable`.
    /// Returns whether the reason was written.
    async fn record_last_error(
        &self,
        channel: Channel,
        s: &Settled,
        class: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let last = LastError {
            message_id: s.delivery.id.clone(),
            channel,
            account: s.account.clone(),
            error_class: class.to_owned(),
            error: error.to_owned(),
            attempt: s.delivery.attempt,
            at: now,
        };
        let mut item: HashMap<String, AttributeValue> = match serde_dynamo::to_item(&last) {
            Ok(i) => i,
            Err(e) => {
                warn!(error = %e, "cannot encode the last error");
                return false;
            }
        };
        item.insert("pk".into(), AttributeValue::S(LastError::pk(&last.message_id)));
        item.insert("sk".into(), AttributeValue::S("last_error".into()));
        item.insert("expires_at".into(), AttributeValue::N((now + LAST_ERROR_RETENTION).timestamp().to_string()));
        let put = self.ddb.put_item().table_name(&self.env.state_table).set_item(Some(item)).send().await;
        match put {
            Ok(_) => {
                warn!(error_class = class, "last attempt failed: the message goes to the dead-letter queue");
                true
            }
            Err(e) => {
                warn!(error = %e, "could not record the last error of a message bound for the DLQ: parking it");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEDGER_JOB: &str = r#"{"channel":"ebay","account":"ebay-us","sku":"TEE-BLK-M","location":"default","channel_sku":"TEE-BLK-M","quantity":10,"version":7}"#;

    #[test]
    fn the_ledgers_untagged_push_job_is_a_stock_message() {
        let message = PushMessage::from_body(LEDGER_JOB).unwrap();
        let PushMessage::Stock(job) = &message else { panic!("not a stock job: {message:?}") };
        assert_eq!((job.quantity, job.version, job.channel), (10, 7, Channel::Ebay));
        // Our own encoding tags it, and still reads back (and stays readable as a plain PushJob).
        let body = message.to_body().unwrap();
        assert!(body.contains(r#""type":"stock""#));
        assert_eq!(PushMessage::from_body(&body).unwrap(), message);
        assert_eq!(&serde_json::from_str::<PushJob>(&body).unwrap(), job);
    }

    #[test]
    fn a_feed_check_round_trips_with_its_submission_and_starts_at_round_one() {
        let body = r#"{"type":"feed_check","channel":"amazon","account":"A2EUQ1WTGCTBG2","submission":{"id":"50001018822","operation":"cancel","items":["171-1-1"]}}"#;
        let message = PushMessage::from_body(body).unwrap();
        let PushMessage::FeedCheck { channel, submission, round, .. } = &message else { panic!("{message:?}") };
        assert_eq!(
            (*channel, submission.id.as_str(), submission.items.len(), *round),
            (Channel::Amazon, "50001018822", 1, 1)
        );
        assert_eq!(message.account().as_str(), "A2EUQ1WTGCTBG2");
        assert_eq!(PushMessage::from_body(&message.to_body().unwrap()).unwrap(), message);
    }

    #[test]
    fn unknown_types_and_garbage_are_errors() {
        assert!(PushMessage::from_body(r#"{"type":"image","sku":"X"}"#).is_err());
        assert!(PushMessage::from_body("not json").is_err());
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_the_upper_half() {
        let s = PushSettings::default();
        assert_eq!(s.backoff(1, 1.0), Duration::from_secs(2));
        assert_eq!(s.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(s.backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(s.backoff(20, 1.0), Duration::from_mins(15));
        assert_eq!(s.backoff(u32::MAX, 0.0), Duration::from_secs(450));
        for attempt in 1..10 {
            let d = s.backoff(attempt, 0.37);
            assert!(d >= s.backoff(attempt, 0.0) && d <= s.backoff(attempt, 1.0));
        }
    }

    #[test]
    fn settings_come_from_the_environment() {
        let env: HashMap<&str, &str> = [
            ("MAX_RECEIVE_COUNT", "3"),
            ("BREAKER_FAILURE_THRESHOLD", "7"),
            ("BREAKER_COOL_DOWN_SECS", "60"),
            ("FEED_CHECK_DELAY_SECS", "3600"),
            ("FEED_CHECK_ROUNDS", "10"),
        ]
        .into();
        let s = PushSettings::from_lookup(|k| env.get(k).map(|v| (*v).to_owned()));
        assert_eq!(s.max_receive_count, 3);
        assert_eq!(s.breaker.failure_threshold, 7);
        assert_eq!(s.breaker.cool_down, Duration::from_mins(1));
        assert_eq!(s.feed_check_delay, Duration::from_mins(15), "within SQS's delay limit");
        assert_eq!(s.feed_check_rounds, 10);
        assert_eq!(PushSettings::from_lookup(|_| None), PushSettings::default());
    }
}
