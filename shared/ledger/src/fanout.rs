//! Availability fan-out: after every ledger change, what each channel account may show, as push jobs.
//!
//! The quantity per account comes from its `StockRules` (buffer, percentage, cap, end-of-listing
//! threshold) applied to the position's `available`. Jobs are coalesced: a [`PushGate`] keeps, per
//! channel, account, SKU and location, the version of the latest quantity handed to the queue
//! (offered, and when) and the latest version the channel confirmed (delivered). A job is enqueued
//! when its version is newer and its quantity differs, or when what was offered never reached the
//! channel: the enqueue failed after the gate write or the job dead-lettered (the offer is then
//! withdrawn), or it is still undelivered long after it was offered (the function died between the
//! gate write and the enqueue). A re-offer of the same or a newer version, by a ledger replay or the
//! stock tier, then goes out again instead of being coalesced away. The push consumer asks [`PushGate::is_current`] before calling the channel, so a stale value
//! is never pushed after a newer one even when queue deliveries are reordered, and records
//! [`PushGate::delivered`] after the channel took it.
//!
//! Only accounts that sell a SKU are offered it: a gate built [`PushGate::with_listings`] asks its
//! [`Listings`] port which jobs' accounts list their channel SKU, and drops the others before the gate
//! is written, so a SKU a channel does not sell is never pushed there (and never rejected, counted as
//! a failed sync and quarantined). An account whose listings are not known yet lists everything.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::Mutex,
};

use futures::{StreamExt, future::BoxFuture, stream};

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    types::{AttributeValue, KeysAndAttributes},
};
use manifold_domain::{
    AccountId, Channel, Sku,
    config::{Bundle, ChannelConfig},
};
use serde::{Deserialize, Serialize};

use crate::model::{Position, PositionKey};

/// One quantity to publish to one channel account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    pub channel: Channel,
    pub account: AccountId,
    pub sku: Sku,
    pub location: String,
    /// The SKU as this account knows it (`sku_map`), or the master SKU when unmapped.
    pub channel_sku: String,
    pub quantity: u32,
    /// The ledger position version this quantity was computed from.
    pub version: u64,
    /// The transaction that moved the stock, carried to the push consumer as the message's `trace_id`
    /// attribute so one trace id follows an order from its webhook to the channel push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The jobs for one position: one per enabled account selling from the position's location (an
/// account sells from exactly one location, its `stock.location`, so stock elsewhere never
/// overwrites what it shows).
pub fn push_jobs(config: &ChannelConfig, position: &Position, trace_id: Option<&str>) -> Vec<PushJob> {
    config
        .enabled_accounts()
        .filter(|a| a.stock.location == position.location)
        .map(|a| PushJob {
            channel: a.channel,
            account: a.account.clone(),
            sku: position.sku.clone(),
            location: position.location.clone(),
            channel_sku: a.channel_sku_for(&position.sku),
            quantity: a.stock.publishable(position.available),
            version: position.version,
            trace_id: trace_id.map(str::to_owned),
        })
        .collect()
}

/// What a bundle can be sold as at one location: as many whole bundles as its scarcest component
/// allows, min over components of floor(available / quantity per bundle), never below zero. Its
/// version is the sum of its components' versions, which grows with every change to any of them, so
/// the push gate orders bundle values as it orders position values. A component missing from
/// `components` counts as never stocked.
pub fn bundle_position(bundle: &Bundle, location: &str, components: &[Position]) -> Position {
    let mut available = i64::MAX;
    let mut version = 0u64;
    for c in &bundle.components {
        let p = components.iter().find(|p| p.sku == c.sku && p.location == location);
        let (avail, v) = p.map_or((0, 0), |p| (p.available, p.version));
        available = available.min(avail.max(0) / i64::from(c.quantity.max(1)));
        version = version.saturating_add(v);
    }
    let available = if bundle.components.is_empty() { 0 } else { available };
    Position {
        sku: bundle.sku.clone(),
        location: location.to_owned(),
        on_hand: available,
        reserved: 0,
        available,
        version,
        as_of: None,
    }
}

/// The bundles (and locations) whose availability a change to `changed` affects.
fn affected_bundles<'a>(config: &'a ChannelConfig, changed: &[Position]) -> Vec<(&'a Bundle, String)> {
    let mut out: Vec<(&Bundle, String)> = Vec::new();
    for p in changed {
        for b in config.bundles.iter().filter(|b| b.components.iter().any(|c| c.sku == p.sku)) {
            if !out.iter().any(|(o, l)| o.sku == b.sku && *l == p.location) {
                out.push((b, p.location.clone()));
            }
        }
    }
    out
}

/// The component positions the bundles affected by `changed` are computed from: the caller reads
/// those it does not hold and passes them to [`fan_out_with_bundles`].
pub fn bundle_component_keys(config: &ChannelConfig, changed: &[Position]) -> Vec<PositionKey> {
    let mut keys: Vec<PositionKey> = affected_bundles(config, changed)
        .into_iter()
        .flat_map(|(b, loc)| b.components.iter().map(move |c| PositionKey::new(c.sku.clone(), loc.clone())))
        .filter(|k| !changed.iter().any(|p| p.key() == *k))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The bundle values to publish after `changed` moved: one per affected bundle and location,
/// computed from `changed` and `components` (the other component positions). A bundle with a
/// component in neither is left out rather than guessed (a never-written position read from the
/// ledger comes back empty, so a caller that read [`bundle_component_keys`] knows every component).
pub fn bundle_positions(config: &ChannelConfig, changed: &[Position], components: &[Position]) -> Vec<Position> {
    let known: Vec<Position> = changed.iter().chain(components).cloned().collect();
    affected_bundles(config, changed)
        .into_iter()
        .filter(|(b, loc)| b.components.iter().all(|c| known.iter().any(|p| p.sku == c.sku && p.location == *loc)))
        .map(|(b, loc)| bundle_position(b, &loc, &known))
        .collect()
}

/// Why a fan-out step failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("no push queue configured for {0}")]
    NoQueue(Channel),
    #[error("{operation} failed")]
    Aws {
        operation: &'static str,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot encode push job")]
    Encode(#[source] serde_json::Error),
}

impl PushError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Aws { retryable, .. } => *retryable,
            PushError::NoQueue(_) | PushError::Encode(_) => false,
        }
    }
}

fn aws_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> PushError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = manifold_aws::error::classify(&err) != manifold_aws::error::AwsErrorClass::Permanent;
    PushError::Aws { operation, retryable, source: Box::new(err) }
}

/// Where push jobs go: SQS in production, memory in tests.
pub trait PushQueue: Send + Sync {
    fn enqueue(&self, job: &PushJob) -> impl Future<Output = Result<(), PushError>> + Send;

    /// Enqueues every one of `jobs`; returns those that could not be, with why. One at a time unless
    /// the queue can do better.
    fn enqueue_all(&self, jobs: &[PushJob]) -> impl Future<Output = Vec<(PushJob, PushError)>> + Send {
        async move {
            let mut failed = Vec::new();
            for job in jobs {
                if let Err(e) = self.enqueue(job).await {
                    failed.push((job.clone(), e));
                }
            }
            failed
        }
    }
}

/// SQS takes at most this many messages per `SendMessageBatch`.
const SQS_BATCH: usize = 10;

/// One SQS queue per channel (the channel's push consumer drains it at the channel's rate).
#[derive(Debug, Clone)]
pub struct SqsPushQueue {
    client: aws_sdk_sqs::Client,
    urls: BTreeMap<Channel, String>,
}

impl SqsPushQueue {
    pub fn new(client: aws_sdk_sqs::Client, urls: BTreeMap<Channel, String>) -> Self {
        Self { client, urls }
    }
}

impl PushQueue for SqsPushQueue {
    async fn enqueue(&self, job: &PushJob) -> Result<(), PushError> {
        let url = self.urls.get(&job.channel).ok_or(PushError::NoQueue(job.channel))?;
        let body = serde_json::to_string(job).map_err(PushError::Encode)?;
        let mut send = self.client.send_message().queue_url(url).message_body(body);
        if let Some(trace) = &job.trace_id {
            let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .map_err(|e| PushError::Aws { operation: "SendMessage", retryable: false, source: Box::new(e) })?;
            send = send.message_attributes("trace_id", attr);
        }
        send.send().await.map_err(|e| aws_error("SendMessage", e))?;
        Ok(())
    }

    /// Per channel queue, ten jobs per `SendMessageBatch` (an order's three SKUs reach each channel's
    /// queue in one request, not three).
    async fn enqueue_all(&self, jobs: &[PushJob]) -> Vec<(PushJob, PushError)> {
        let mut by_channel: BTreeMap<Channel, Vec<PushJob>> = BTreeMap::new();
        for job in jobs {
            by_channel.entry(job.channel).or_default().push(job.clone());
        }
        let mut failed = Vec::new();
        let mut sends = Vec::new();
        for (channel, jobs) in &by_channel {
            let Some(url) = self.urls.get(channel) else {
                failed.extend(jobs.iter().map(|j| (j.clone(), PushError::NoQueue(*channel))));
                continue;
            };
            for chunk in jobs.chunks(SQS_BATCH) {
                sends.push(self.send_batch(url, chunk));
            }
        }
        for batch in futures::future::join_all(sends).await {
            failed.extend(batch);
        }
        failed
    }
}

impl SqsPushQueue {
    /// One `SendMessageBatch` of up to ten jobs for one channel's queue; the jobs it did not take.
    async fn send_batch(&self, url: &str, jobs: &[PushJob]) -> Vec<(PushJob, PushError)> {
        let entries: Result<Vec<_>, PushError> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let body = serde_json::to_string(job).map_err(PushError::Encode)?;
                let mut entry =
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body);
                if let Some(trace) = &job.trace_id {
                    let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(trace)
                        .build()
                        .map_err(|e| PushError::Aws {
                            operation: "SendMessageBatch",
                            retryable: false,
                            source: Box::new(e),
                        })?;
                    entry = entry.message_attributes("trace_id", attr);
                }
                entry.build().map_err(|e| PushError::Aws {
                    operation: "SendMessageBatch",
                    retryable: false,
                    source: Box::new(e),
                })
            })
            .collect();
        let all_failed = |e: &dyn Fn() -> PushError| jobs.iter().map(|j| (j.clone(), e())).collect::<Vec<_>>();
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                let message = e.to_string();
                return all_failed(&|| PushError::Aws {
                    operation: "SendMessageBatch",
                    retryable: false,
                    source: message.clone().into(),
                });
            }
        };
        match self.client.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await {
            Ok(out) => out
                .failed()
                .iter()
                .filter_map(|f| {
                    let job = jobs.get(f.id().parse::<usize>().ok()?)?.clone();
                    let reason = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                    Some((
                        job,
                        PushError::Aws {
                            operation: "SendMessageBatch",
                            retryable: !f.sender_fault(),
                            source: reason.into(),
                        },
                    ))
                })
                .collect(),
            Err(e) => {
                let e = aws_error("SendMessageBatch", e);
                let (retryable, message) = (e.is_retryable(), e.to_string());
                all_failed(&|| PushError::Aws {
                    operation: "SendMessageBatch",
                    retryable,
                    source: message.clone().into(),
                })
            }
        }
    }
}

/// Jobs kept in memory, in enqueue order.
#[derive(Debug, Default)]
pub struct MemoryPushQueue {
    jobs: Mutex<Vec<PushJob>>,
}

impl MemoryPushQueue {
    pub fn jobs(&self) -> Vec<PushJob> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl PushQueue for MemoryPushQueue {
    async fn enqueue(&self, job: &PushJob) -> Result<(), PushError> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(job.clone());
        Ok(())
    }
}

/// Which channel accounts sell which SKUs: the port a gate filters its fan-out by.
pub trait Listings: Send + Sync + std::fmt::Debug {
    /// Whether each job's account lists the job's channel SKU, in order. An account whose listings
    /// are not known yet (never synced) lists every SKU.
    fn listed<'a>(&'a self, jobs: &'a [PushJob]) -> BoxFuture<'a, Result<Vec<bool>, PushError>>;
}

/// The latest version handed to the queue per channel, account, SKU and location, in DynamoDB
/// (`PUSH#{channel}#{account}` / `SKU#{sku}#LOC#{location}`).
#[derive(Debug, Clone)]
pub struct PushGate {
    client: aws_sdk_dynamodb::Client,
    table: String,
    listings: Option<std::sync::Arc<dyn Listings>>,
}

/// An offer still undelivered this long after it was made is presumed lost and may be re-sent (a
/// push normally lands within seconds; the stock tier runs every 5 minutes).
pub const PRESUMED_LOST_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

impl PushGate {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), listings: None }
    }

    /// The gate offers a job only when `listings` says its account lists its channel SKU.
    #[must_use]
    pub fn with_listings(mut self, listings: std::sync::Arc<dyn Listings>) -> Self {
        self.listings = Some(listings);
        self
    }

    /// `jobs` without those whose account does not list their channel SKU, and how many those were.
    pub async fn listed_only(&self, jobs: Vec<PushJob>) -> Result<(Vec<PushJob>, usize), PushError> {
        let Some(listings) = &self.listings else { return Ok((jobs, 0)) };
        if jobs.is_empty() {
            return Ok((jobs, 0));
        }
        let listed = listings.listed(&jobs).await?;
        let before = jobs.len();
        let kept: Vec<PushJob> =
            jobs.into_iter().zip(listed).filter_map(|(job, listed)| listed.then_some(job)).collect();
        let dropped = before - kept.len();
        Ok((kept, dropped))
    }

    fn key(job: &PushJob) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("PUSH#{}#{}", job.channel, job.account))),
            ("sk".to_owned(), AttributeValue::S(format!("SKU#{}#LOC#{}", job.sku, job.location))),
        ])
    }

    /// One conditional update of `job`'s gate item: `true` when it was written, `false` when its
    /// condition did not hold.
    async fn update_if(
        &self,
        job: &PushJob,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, PushError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(job)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(aws_error("UpdateItem", e)),
        }
    }

    /// The values of an offer of `job` made now: version, quantity, channel SKU and time.
    fn offered(job: &PushJob, now: chrono::DateTime<chrono::Utc>) -> Vec<(&'static str, AttributeValue)> {
        vec![
            (":v", AttributeValue::N(job.version.to_string())),
            (":q", AttributeValue::N(job.quantity.to_string())),
            (":c", AttributeValue::S(job.channel_sku.clone())),
            (":now", AttributeValue::N(now.timestamp().to_string())),
        ]
    }

    /// Records `job` as the latest offered value when [`GateState::accepts`] it (the condition below
    /// is that rule). `true`: enqueue it; `false`: it is stale or the channel already has it, drop it.
    ///
    /// The offer records the transaction that made it (`offered_by`, the job's trace id): the same
    /// transaction offering the same version again is its retry, after a failure that may have come
    /// between the offer and the enqueue with the withdrawal failing too, so it goes out again (a
    /// duplicate of an absolute quantity is harmless; a value stuck until presumed lost is not).
    pub async fn offer(&self, job: &PushJob) -> Result<bool, PushError> {
        let now = chrono::Utc::now();
        let mut values = Self::offered(job, now);
        values.push((":lost", AttributeValue::N((now - PRESUMED_LOST_AFTER).timestamp().to_string())));
        let mut condition = "attribute_not_exists(pk) OR (version < :v AND quantity <> :q) \
             OR (version <= :v AND (attribute_not_exists(channel_sku) OR channel_sku <> :c)) \
             OR (version <= :v AND (attribute_not_exists(delivered) OR delivered < version) \
                 AND (withdrawn = version OR attribute_not_exists(offered_at) OR offered_at < :lost))"
            .to_owned();
        let update = match &job.trace_id {
            Some(trace) => {
                values.push((":t", AttributeValue::S(trace.clone())));
                condition.push_str(
                    " OR (version = :v AND offered_by = :t AND (attribute_not_exists(delivered) OR delivered < version))",
                );
                "SET version = :v, quantity = :q, channel_sku = :c, offered_at = :now, offered_by = :t"
            }
            None => "SET version = :v, quantity = :q, channel_sku = :c, offered_at = :now REMOVE offered_by",
        };
        self.update_if(job, update, &condition, values).await
    }

    /// Records `job` as offered whatever was delivered before: the channel was seen showing another
    /// quantity than the one it confirmed (an edit on the channel, a lost write), so its delivered
    /// version no longer holds. Never over a newer offer: `false` when one was made since.
    pub async fn resend(&self, job: &PushJob) -> Result<bool, PushError> {
        self.update_if(
            job,
            "SET version = :v, quantity = :q, channel_sku = :c, offered_at = :now REMOVE delivered, withdrawn",
            "attribute_not_exists(pk) OR version <= :v",
            Self::offered(job, chrono::Utc::now()),
        )
        .await
    }

    /// `job` was offered but will never reach the channel (its enqueue failed, or it is about to be
    /// dead-lettered): the next offer of its version or a newer one goes out. Best effort by nature:
    /// if this fails too, the offer is presumed lost after [`PRESUMED_LOST_AFTER`]. A newer version
    /// offered since is the one that matters now: nothing to withdraw then.
    pub async fn withdraw(&self, job: &PushJob) -> Result<(), PushError> {
        let version = vec![(":v", AttributeValue::N(job.version.to_string()))];
        self.update_if(job, "SET withdrawn = :v", "version = :v", version).await.map(drop)
    }

    /// For the push consumer: the channel took `job`, so re-offering its version is coalesced. A
    /// newer version delivered already (or a gate never written) leaves nothing to record.
    pub async fn delivered(&self, job: &PushJob) -> Result<(), PushError> {
        let version = vec![(":v", AttributeValue::N(job.version.to_string()))];
        let condition = "attribute_exists(pk) AND (attribute_not_exists(delivered) OR delivered < :v)";
        self.update_if(job, "SET delivered = :v", condition, version).await.map(drop)
    }

    /// What the gate holds for `job`'s channel SKU (`None`: never offered).
    pub async fn state(&self, job: &PushJob) -> Result<Option<GateState>, PushError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(job)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        Ok(out.item.as_ref().map(GateState::from_item))
    }

    /// [`PushGate::state`] of each of `jobs`, in order, read a hundred at a time (`BatchGetItem`): a
    /// push batch's checks in one request rather than one per job.
    pub async fn states(&self, jobs: &[PushJob]) -> Result<Vec<Option<GateState>>, PushError> {
        let mut found: HashMap<(String, String), GateState> = HashMap::new();
        let key_of = |item: &HashMap<String, AttributeValue>| {
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (s("pk"), s("sk"))
        };
        let mut keys: Vec<HashMap<String, AttributeValue>> = jobs.iter().map(Self::key).collect();
        keys.sort_by_key(|k| key_of(k));
        keys.dedup_by_key(|k| key_of(k));
        for chunk in keys.chunks(100) {
            let mut pending =
                Some(
                    KeysAndAttributes::builder().set_keys(Some(chunk.to_vec())).consistent_read(true).build().map_err(
                        |e| PushError::Aws { operation: "BatchGetItem", retryable: false, source: Box::new(e) },
                    )?,
                );
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| aws_error("BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    found.insert(key_of(&item), GateState::from_item(&item));
                }
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
            }
        }
        Ok(jobs.iter().map(|j| found.get(&key_of(&Self::key(j))).cloned()).collect())
    }

    /// For the push consumer: is `job` still the latest value for its channel SKU?
    pub async fn is_current(&self, job: &PushJob) -> Result<bool, PushError> {
        Ok(self.state(job).await?.is_none_or(|s| s.version == job.version))
    }

    /// [`PushGate::is_current`] of each of `jobs`, in one read of the batch.
    pub async fn are_current(&self, jobs: &[PushJob]) -> Result<Vec<bool>, PushError> {
        let states = self.states(jobs).await?;
        Ok(jobs.iter().zip(states).map(|(j, s)| s.is_none_or(|s| s.version == j.version)).collect())
    }
}

/// What the gate holds for one channel SKU: the rule its DynamoDB condition implements, in one place
/// a test can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    /// The latest version handed to the queue, its quantity and when.
    pub version: u64,
    pub quantity: u32,
    /// The channel SKU it was written under (`None`: recorded before the gate kept it).
    pub channel_sku: Option<String>,
    pub offered_at: chrono::DateTime<chrono::Utc>,
    /// The latest version the channel confirmed.
    pub delivered: Option<u64>,
    /// A version known never to reach the channel.
    pub withdrawn: Option<u64>,
    /// The transaction (trace id) that made the latest offer.
    pub offered_by: Option<String>,
}

impl GateState {
    /// The gate's item (`PUSH#{channel}#{account}` / `SKU#{sku}#LOC#{location}`) as read from the table.
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        let un = |k: &str| n(k).and_then(|v| u64::try_from(v).ok());
        Self {
            version: un("version").unwrap_or_default(),
            quantity: n("quantity").and_then(|q| u32::try_from(q).ok()).unwrap_or_default(),
            channel_sku: item.get("channel_sku").and_then(|v| v.as_s().ok()).cloned(),
            offered_at: n("offered_at").and_then(|t| chrono::DateTime::from_timestamp(t, 0)).unwrap_or_default(),
            delivered: un("delivered"),
            withdrawn: un("withdrawn"),
            offered_by: item.get("offered_by").and_then(|v| v.as_s().ok()).cloned(),
        }
    }

    /// Whether the channel confirmed the latest version offered.
    pub fn confirmed(&self) -> bool {
        self.delivered.is_some_and(|d| d >= self.version)
    }

    /// Whether an offer of `job` at `now` goes to the queue: nothing recorded yet; a newer version that
    /// changes the quantity; the same or a newer version under another channel SKU (a mapping change:
    /// the new SKU never got this quantity); or the same or a newer version while the one offered never
    /// reached the channel (withdrawn, or undelivered for longer than [`PRESUMED_LOST_AFTER`]). An offer
    /// still in flight is not duplicated, unless the transaction that offered it offers it again (its
    /// retry, see [`PushGate::offer`]).
    /// Whether a value for `job`'s channel SKU is on its way at `now`: a newer version was offered,
    /// or this one was offered, not withdrawn, not yet delivered and not yet presumed lost. What the
    /// channel shows then may simply not have caught up, which is not drift.
    pub fn in_flight(&self, job: &PushJob, now: chrono::DateTime<chrono::Utc>) -> bool {
        let undelivered = self.delivered.is_none_or(|d| d < self.version);
        let lost = self.withdrawn == Some(self.version) || self.offered_at < now - PRESUMED_LOST_AFTER;
        self.version > job.version || (undelivered && !lost)
    }

    pub fn accepts(stored: Option<&GateState>, job: &PushJob, now: chrono::DateTime<chrono::Utc>) -> bool {
        stored.is_none_or(|s| {
            let undelivered = s.delivered.is_none_or(|d| d < s.version);
            let lost = s.withdrawn == Some(s.version) || s.offered_at < now - PRESUMED_LOST_AFTER;
            let remapped = s.channel_sku.as_deref() != Some(job.channel_sku.as_str());
            let retried = job.trace_id.is_some() && s.offered_by == job.trace_id;
            (s.version < job.version && s.quantity != job.quantity)
                || (s.version <= job.version && remapped)
                || (s.version <= job.version && undelivered && lost)
                || (s.version == job.version && undelivered && retried)
        })
    }
}

/// What one fan-out did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    pub enqueued: Vec<PushJob>,
    /// Jobs dropped because a newer (or equal) value was already handed to the queue.
    pub coalesced: usize,
    /// Jobs dropped because their account does not list the SKU ([`PushGate::with_listings`]).
    pub unlisted: usize,
}

/// Offers one job to the gate and enqueues it if the gate takes it (`None`: coalesced).
pub async fn hand_over<Q: PushQueue>(gate: &PushGate, queue: &Q, job: PushJob) -> Result<Option<PushJob>, PushError> {
    if !gate.offer(&job).await? {
        return Ok(None);
    }
    enqueue_offered(gate, queue, job).await
}

/// [`hand_over`] for a value the channel was seen not to show ([`PushGate::resend`]): it goes out
/// even though its version was delivered before (`None`: a newer offer was made since).
pub async fn hand_over_again<Q: PushQueue>(
    gate: &PushGate,
    queue: &Q,
    job: PushJob,
) -> Result<Option<PushJob>, PushError> {
    if !gate.resend(&job).await? {
        return Ok(None);
    }
    enqueue_offered(gate, queue, job).await
}

/// Enqueues a job the gate took, withdrawing the offer when the enqueue fails.
async fn enqueue_offered<Q: PushQueue>(gate: &PushGate, queue: &Q, job: PushJob) -> Result<Option<PushJob>, PushError> {
    if let Err(e) = queue.enqueue(&job).await {
        // The gate holds a version the channel will never get from this offer: say so, so the retry
        // (or the stock tier) re-sends it instead of coalescing it away.
        if let Err(w) = gate.withdraw(&job).await {
            tracing::warn!(error = %w, "could not withdraw a failed offer: it is re-sent once presumed lost");
        }
        return Err(e);
    }
    Ok(Some(job))
}

/// Positions per fan-out page.
pub const FANOUT_PAGE: usize = 25;

/// Gate writes and enqueues in flight at once within a page (well under DynamoDB and SQS limits,
/// and what lets a large order's fan-out fit in the function timeout).
pub const FANOUT_CONCURRENCY: usize = 16;

/// Computes, gates and enqueues the push jobs for `positions` (the positions a ledger call changed,
/// or every position for the stock tier's re-send), and for the bundles they are components of,
/// computed from `positions` alone (see [`fan_out_with_bundles`]).
pub async fn fan_out<Q: PushQueue>(
    config: &ChannelConfig,
    positions: &[Position],
    gate: &PushGate,
    queue: &Q,
    trace_id: Option<&str>,
) -> Result<FanoutReport, PushError> {
    fan_out_with_bundles(config, positions, &[], gate, queue, trace_id).await
}

/// What is published for `positions`: each one that is not a bundle's own position, and the bundles
/// they are components of (computed with `components`, see [`bundle_positions`]).
pub fn publishable_positions(config: &ChannelConfig, positions: &[Position], components: &[Position]) -> Vec<Position> {
    let mut all: Vec<Position> = positions.iter().filter(|p| config.bundle(&p.sku).is_none()).cloned().collect();
    all.extend(bundle_positions(config, positions, components));
    all
}

/// [`fan_out`], with the bundles' other component positions (`components`, as read by the caller
/// from [`bundle_component_keys`]) so a bundle's value counts every component. A bundle SKU's own
/// position, if one was ever written, is not published: a bundle is what its components allow.
pub async fn fan_out_with_bundles<Q: PushQueue>(
    config: &ChannelConfig,
    positions: &[Position],
    components: &[Position],
    gate: &PushGate,
    queue: &Q,
    trace_id: Option<&str>,
) -> Result<FanoutReport, PushError> {
    let positions = publishable_positions(config, positions, components);
    let positions = positions.as_slice();
    let mut report = FanoutReport::default();
    // Page by page (bounded memory and in-flight work for any order size), each page concurrently;
    // a failure stops the fan-out and the caller's retry redoes it: what was already handed over is
    // coalesced by the gate.
    for page in positions.chunks(FANOUT_PAGE) {
        let jobs: Vec<PushJob> = page.iter().flat_map(|p| push_jobs(config, p, trace_id)).collect();
        let (jobs, unlisted) = gate.listed_only(jobs).await?;
        report.unlisted += unlisted;
        // The gate first, job by job; then what it took, batched per channel queue.
        let offers: Vec<_> =
            jobs.into_iter().map(|job| async move { gate.offer(&job).await.map(|taken| (job, taken)) }).collect();
        let offered: Vec<Result<(PushJob, bool), PushError>> =
            stream::iter(offers).buffer_unordered(FANOUT_CONCURRENCY).collect().await;
        let mut taken = Vec::new();
        let mut first_error = None;
        for result in offered {
            match result {
                Ok((job, true)) => taken.push(job),
                Ok((_, false)) => report.coalesced += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let failed = queue.enqueue_all(&taken).await;
        for (job, _) in &failed {
            // The gate holds versions the channel will never get from these offers: say so, so the
            // retry (or the stock tier) re-sends them instead of coalescing them away.
            if let Err(w) = gate.withdraw(job).await {
                tracing::warn!(error = %w, "could not withdraw a failed offer: it is re-sent once presumed lost");
            }
        }
        report.enqueued.extend(taken.into_iter().filter(|j| !failed.iter().any(|(f, _)| f == j)));
        if let Some(e) = first_error.or_else(|| failed.into_iter().next().map(|(_, e)| e)) {
            return Err(e);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../infra/channels.example.toml");

    #[test]
    fn every_enabled_account_gets_its_own_quantity_and_sku() {
        let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        let sku = Sku::new("TEE-BLK-M").unwrap();
        let position = Position {
            sku: sku.clone(),
            location: "default".into(),
            on_hand: 30,
            reserved: 10,
            available: 20,
            version: 7,
            as_of: None,
        };
        let jobs = push_jobs(&config, &position, None);
        assert_eq!(jobs.len(), config.enabled_accounts().count());
        let shopify = jobs.iter().find(|j| j.channel == Channel::Shopify).unwrap();
        assert_eq!((shopify.channel_sku.as_str(), shopify.quantity, shopify.version), ("SHOP-TEE-BLK-M", 18, 7));
        let tiktok = jobs.iter().find(|j| j.channel == Channel::Tiktok).unwrap();
        assert_eq!((tiktok.channel_sku.as_str(), tiktok.quantity), ("TEE-BLK-M", 14), "(20-2)*80% rounded down");
    }

    fn pos(sku: &str, location: &str, available: i64, version: u64) -> Position {
        Position {
            sku: Sku::new(sku).unwrap(),
            location: location.into(),
            on_hand: available,
            reserved: 0,
            available,
            version,
            as_of: None,
        }
    }

    /// The example configuration with Shopify selling from `wh-2`.
    fn two_locations() -> ChannelConfig {
        let text = EXAMPLE.replacen("stock = { buffer = 2,", "stock = { location = \"wh-2\", buffer = 2,", 1);
        ChannelConfig::parse("x.toml", &text).unwrap()
    }

    #[test]
    fn each_account_is_published_only_the_position_at_its_location() {
        let config = two_locations();
        let at_default = push_jobs(&config, &pos("TEE-BLK-M", "default", 20, 3), None);
        assert_eq!(at_default.len(), config.enabled_accounts().count() - 1);
        assert!(at_default.iter().all(|j| j.channel != Channel::Shopify));
        let at_wh2 = push_jobs(&config, &pos("TEE-BLK-M", "wh-2", 5, 1), None);
        assert_eq!(at_wh2.len(), 1);
        assert_eq!((at_wh2[0].channel, at_wh2[0].location.as_str(), at_wh2[0].quantity), (Channel::Shopify, "wh-2", 3));
        assert!(push_jobs(&config, &pos("TEE-BLK-M", "wh-9", 5, 1), None).is_empty(), "nobody sells from wh-9");
    }

    #[test]
    fn a_bundle_is_as_available_as_its_scarcest_component_allows() {
        let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        // GIFT-SET = 1 TEE-BLK-M + 2 MUG-WHITE.
        let tee = pos("TEE-BLK-M", "default", 10, 4);
        let mug = pos("MUG-WHITE", "default", 7, 9);
        let changed = [tee.clone()];
        assert_eq!(
            bundle_component_keys(&config, &changed),
            vec![PositionKey::new(Sku::new("MUG-WHITE").unwrap(), "default")],
            "the caller reads the component that did not change"
        );
        let bundles = bundle_positions(&config, &changed, std::slice::from_ref(&mug));
        assert_eq!(bundles.len(), 1);
        assert_eq!((bundles[0].sku.as_str(), bundles[0].available, bundles[0].version), ("GIFT-SET", 3, 13));
        // A back-ordered (negative) component, or a missing one, makes zero bundles, never negative.
        let short = bundle_positions(&config, &[pos("TEE-BLK-M", "default", -2, 5)], &[mug]);
        assert_eq!(short[0].available, 0);
        assert!(bundle_positions(&config, &changed, &[]).is_empty(), "not guessed without every component");
        let never_written = Position::empty(&PositionKey::new(Sku::new("MUG-WHITE").unwrap(), "default"));
        assert_eq!(bundle_positions(&config, &changed, &[never_written])[0].available, 0);
        // Every account at the location gets the bundle under its own rules.
        let jobs = push_jobs(&config, &bundles[0], None);
        assert_eq!(jobs.len(), config.enabled_accounts().count());
        assert!(jobs.iter().all(|j| j.sku.as_str() == "GIFT-SET"));
        // A position no bundle uses affects none.
        assert!(bundle_positions(&config, &[pos("OTHER", "default", 5, 1)], &[]).is_empty());
    }

    /// Lists every SKU on Shopify accounts only.
    #[derive(Debug)]
    struct ShopifyOnly;

    impl Listings for ShopifyOnly {
        fn listed<'a>(&'a self, jobs: &'a [PushJob]) -> BoxFuture<'a, Result<Vec<bool>, PushError>> {
            Box::pin(async move { Ok(jobs.iter().map(|j| j.channel == Channel::Shopify).collect()) })
        }
    }

    #[tokio::test]
    async fn a_gate_with_listings_keeps_only_the_jobs_of_accounts_that_list_the_sku() {
        let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        let position = Position {
            sku: Sku::new("TEE-BLK-M").unwrap(),
            location: crate::DEFAULT_LOCATION.into(),
            on_hand: 5,
            reserved: 0,
            available: 5,
            version: 1,
            as_of: None,
        };
        let jobs = push_jobs(&config, &position, None);
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder().behavior_version(aws_config::BehaviorVersion::latest()).build(),
        );
        let plain = PushGate::new(client.clone(), "t");
        assert_eq!(plain.listed_only(jobs.clone()).await.unwrap(), (jobs.clone(), 0), "no listings: everything");
        let listed = PushGate::new(client, "t").with_listings(std::sync::Arc::new(ShopifyOnly));
        let (kept, dropped) = listed.listed_only(jobs.clone()).await.unwrap();
        assert!(!kept.is_empty() && kept.iter().all(|j| j.channel == Channel::Shopify));
        assert_eq!(kept.len() + dropped, jobs.len());
    }

    #[test]
    fn the_gate_coalesces_what_the_channel_has_and_re_sends_what_it_never_got() {
        let job = |version, quantity| PushJob {
            channel: Channel::Shopify,
            account: AccountId::new("shop-eu").unwrap(),
            sku: Sku::new("TEE").unwrap(),
            location: "default".into(),
            channel_sku: "TEE".into(),
            quantity,
            version,
            trace_id: None,
        };
        let now = chrono::Utc::now();
        let just = now - chrono::TimeDelta::seconds(5);
        let state = |version, quantity, delivered, withdrawn, offered_at| GateState {
            version,
            quantity,
            channel_sku: Some("TEE".to_owned()),
            offered_at,
            delivered,
            withdrawn,
            offered_by: None,
        };
        let accepts = |s: &GateState, j: &PushJob| GateState::accepts(Some(s), j, now);
        assert!(GateState::accepts(None, &job(1, 5), now), "first value");
        // Delivered: only a newer, different quantity goes out.
        let delivered = state(3, 5, Some(3), None, just);
        assert!(!accepts(&delivered, &job(3, 5)), "same version again");
        assert!(!accepts(&delivered, &job(2, 4)), "older version");
        assert!(!accepts(&delivered, &job(4, 5)), "newer version, same quantity");
        assert!(accepts(&delivered, &job(4, 6)), "newer version, new quantity");
        // In flight (offered moments ago, not delivered yet): not duplicated.
        let in_flight = state(3, 5, Some(2), None, just);
        assert!(!accepts(&in_flight, &job(3, 5)));
        assert!(!accepts(&in_flight, &job(4, 5)));
        // In flight, offered by the transaction now offering it again: its retry, after a failure
        // between offer and enqueue that the withdrawal may not have recorded. Others still coalesce.
        let traced = |t: &str| PushJob { trace_id: Some(t.to_owned()), ..job(3, 5) };
        let offered_by_t1 = GateState { offered_by: Some("t1".to_owned()), ..in_flight.clone() };
        assert!(accepts(&offered_by_t1, &traced("t1")), "the same transaction's retry goes out");
        assert!(!accepts(&offered_by_t1, &traced("t2")), "another transaction's offer is coalesced");
        assert!(!accepts(&offered_by_t1, &job(3, 5)), "an untraced offer is coalesced");
        assert!(!accepts(&GateState { offered_by: Some("t1".to_owned()), ..delivered.clone() }, &traced("t1")));
        // Withdrawn (enqueue failed, or dead-lettered): re-offers go out at once.
        let withdrawn = state(3, 5, Some(2), Some(3), just);
        assert!(accepts(&withdrawn, &job(3, 5)), "the stock tier re-offers the same version");
        assert!(accepts(&withdrawn, &job(4, 5)), "a newer version with the same quantity");
        assert!(!accepts(&withdrawn, &job(2, 5)), "never an older version");
        // Undelivered long after the offer (the function died before enqueueing): presumed lost.
        let long_ago = state(3, 5, None, None, now - PRESUMED_LOST_AFTER - chrono::TimeDelta::seconds(1));
        assert!(accepts(&long_ago, &job(3, 5)));
        // A withdrawal of an older version says nothing about the current one.
        assert!(!accepts(&state(3, 5, None, Some(2), just), &job(3, 5)));
        // A mapping change: the same quantity under another channel SKU goes out, never an older one.
        let remapped = |version, quantity| PushJob { channel_sku: "TEE-V2".into(), ..job(version, quantity) };
        assert!(accepts(&delivered, &remapped(3, 5)), "the new channel SKU never got it");
        assert!(accepts(&in_flight, &remapped(4, 5)));
        assert!(!accepts(&delivered, &remapped(2, 5)), "never an older version");
        let unknown = GateState { channel_sku: None, ..delivered.clone() };
        assert!(accepts(&unknown, &job(3, 5)), "a state recorded before the gate kept the SKU: sent once");

        // Reconciliation: a channel showing another quantity is drift unless a value is on its way.
        assert!(!delivered.in_flight(&job(3, 5), now), "delivered: what the channel shows is drift");
        assert!(in_flight.in_flight(&job(3, 5), now), "offered moments ago: that push settles it");
        assert!(delivered.in_flight(&job(2, 5), now), "a newer version was offered than the page read");
        assert!(!withdrawn.in_flight(&job(3, 5), now), "withdrawn: nothing is on its way");
        assert!(!long_ago.in_flight(&job(3, 5), now), "presumed lost: nothing is on its way");
    }
}
