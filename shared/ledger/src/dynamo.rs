//! The DynamoDB [`Store`]: one table with the `pk`/`sk` string key every Manifold table has.
//!
//! Items:
//! - position `SKU#{sku}` / `LOC#{location}`: `on_hand`, `reserved`, `available`, `version`;
//! - entry `SKU#{sku}` / `ENTRY#{location}#{version:012}`: the immutable `InventoryAdjustment` that
//!   produced that version (keyed by version rather than time, so entries of a position sort in the
//!   order they happened, with no gap and no duplicate);
//! - reservation `ORDER#{order_id}` / `RESERVATION`: what the order holds and its state;
//! - source marker `SKU#{sku}` / `SRC#{location}#{source_ref}`: an applied on-hand update.
//!
//! A commit of several items is one `TransactWriteItems`, every item conditional (positions on the
//! version read, the record on `attribute_not_exists` or its `rev`, entries and markers on
//! `attribute_not_exists`). A commit of one item is a conditional `PutItem` (half the write units).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use aws_sdk_dynamodb::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, KeysAndAttributes, Put, ReturnConsumedCapacity, TransactWriteItem},
};
use chrono::{DateTime, Utc};
use manifold_domain::{InventoryAdjustment, OrderId, Sku};
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use crate::{
    engine::StockLedger,
    model::{LedgerError, Position, PositionKey, ReservationRecord},
    shard::{ShardedStore, Shards},
    store::{Commit, CommitError, RecordWrite, SourceMarker, Store},
};

/// The production ledger: positions in DynamoDB, hot SKUs' in shards.
pub type DynamoLedger = StockLedger<ShardedStore<DynamoStore>>;

impl From<DynamoStore> for ShardedStore<DynamoStore> {
    fn from(store: DynamoStore) -> Self {
        ShardedStore::new(store, Shards::default())
    }
}

type Item = HashMap<String, AttributeValue>;

/// Ledger items in one DynamoDB table.
#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    stats: Stats,
    /// `Some` only against an emulator, see [`DynamoStore::emulator_safe`].
    emulator_lock: Option<tokio::sync::RwLock<()>>,
}

/// Write accounting, for the benchmark and for capacity planning.
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    items: AtomicU64,
    /// Hundredths of a capacity unit, as reported by DynamoDB (`ReturnConsumedCapacity=TOTAL`).
    reported_centi_units: AtomicU64,
    conflicts: AtomicU64,
}

/// A snapshot of [`DynamoStore`] write accounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteStats {
    pub commits: u64,
    /// Items written by successful commits.
    pub items: u64,
    /// Write capacity units DynamoDB reported for successful commits (0 when it reports none).
    pub reported_units: f64,
    /// Commits refused because a condition no longer held.
    pub conflicts: u64,
}

#[derive(Serialize, Deserialize)]
struct PositionItem {
    pk: String,
    sk: String,
    sku: Sku,
    location: String,
    on_hand: i64,
    reserved: i64,
    available: i64,
    version: u64,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    /// The position's change bucket ([`change_bucket`]): the `Changed` index's key, so the stock tier
    /// finds what changed since its last run without scanning the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changed: Option<String>,
}

/// The `LedgerTable` index of positions by when they changed: partition [`change_bucket`], sort key
/// `updated_at`.
pub const CHANGED_INDEX: &str = "Changed";

/// Change buckets per hour: a hot hour's position writes spread over this many index partitions.
pub const CHANGE_SHARDS: u32 = 4;

/// `CHG#{yyyy-mm-ddThh}#{shard}`: the hour a position changed in and a shard of its SKU.
pub fn change_bucket(sku: &str, at: DateTime<Utc>) -> String {
    format!("CHG#{}#{}", at.format("%Y-%m-%dT%H"), change_shard(sku))
}

/// A stable shard of `sku` in `0..CHANGE_SHARDS` (FNV-1a: the same on every build and platform).
fn change_shard(sku: &str) -> u32 {
    let hash = sku.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash % CHANGE_SHARDS
}

#[derive(Serialize, Deserialize)]
struct EntryItem {
    pk: String,
    sk: String,
    version: u64,
    adjustment: InventoryAdjustment,
}

#[derive(Serialize, Deserialize)]
struct RecordItem {
    pk: String,
    sk: String,
    rev: u64,
    record: ReservationRecord,
}

#[derive(Serialize, Deserialize)]
struct MarkerItem {
    pk: String,
    sk: String,
    source_ref: String,
    at: DateTime<Utc>,
}

/// A position's partition: `SKU#{sku}`, and `SKU#{sku}#S{k}` for shard `k` of a hot SKU's position,
/// so each shard has a partition (and its throughput) of its own.
fn position_pk(sku: &Sku, location: &str) -> String {
    match crate::shard::shard_of(location) {
        Some((_, k)) => format!("SKU#{sku}#S{k}"),
        None => format!("SKU#{sku}"),
    }
}

fn position_sk(location: &str) -> String {
    format!("LOC#{location}")
}

fn entry_sk(location: &str, version: u64) -> String {
    format!("ENTRY#{location}#{version:012}")
}

fn record_pk(order: &OrderId) -> String {
    format!("ORDER#{order}")
}

const RECORD_SK: &str = "RESERVATION";

fn marker_sk(m: &SourceMarker) -> String {
    format!("SRC#{}#{}", m.key.location, m.source_ref)
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk)), ("sk".to_owned(), AttributeValue::S(sk.into()))])
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Item, LedgerError> {
    to_item(value).map_err(|source| LedgerError::Corrupt { key: what.to_owned(), source })
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, item: Item) -> Result<T, LedgerError> {
    from_item(item).map_err(|source| LedgerError::Corrupt { key: what.to_owned(), source })
}

/// Keeps the SDK error as the source and decides whether retrying may help.
fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> LedgerError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // One classifier for every AWS error: a transaction cancelled by throttling is retried, a
    // malformed request is not.
    let retryable = manifold_aws::error::classify(&err) != manifold_aws::error::AwsErrorClass::Permanent;
    LedgerError::Dynamo { operation, retryable, source: Box::new(err) }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), stats: Stats::default(), emulator_lock: None }
    }

    /// For local emulators only (moto): moto applies a transaction's puts one by one and undoes a
    /// cancelled one by restoring a copy of the whole table taken before it started, without any lock,
    /// so under concurrent requests a cancelled transaction can erase another one's committed writes and
    /// readers can see writes that are then undone. This makes every commit exclusive and every read
    /// wait for commits, in this process. Real DynamoDB transactions are serializable; never use this
    /// against AWS.
    #[must_use]
    pub fn emulator_safe(mut self) -> Self {
        self.emulator_lock = Some(tokio::sync::RwLock::new(()));
        self
    }

    async fn read_guard(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        match &self.emulator_lock {
            Some(lock) => Some(lock.read().await),
            None => None,
        }
    }

    async fn write_guard(&self) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        match &self.emulator_lock {
            Some(lock) => Some(lock.write().await),
            None => None,
        }
    }

    pub fn stats(&self) -> WriteStats {
        #[allow(clippy::cast_precision_loss)] // hundredths of units: exact far beyond any real count
        let reported_units = self.stats.reported_centi_units.load(Ordering::Relaxed) as f64 / 100.0;
        WriteStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            items: self.stats.items.load(Ordering::Relaxed),
            reported_units,
            conflicts: self.stats.conflicts.load(Ordering::Relaxed),
        }
    }

    /// The (consistent) query of one physical position's entries, oldest first.
    fn entries_query(
        &self,
        position: &PositionKey,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(position_pk(&position.sku, &position.location)))
            .expression_attribute_values(":prefix", AttributeValue::S(format!("ENTRY#{}#", position.location)))
            .consistent_read(true)
    }

    /// The latest `limit` entries of one physical position (a shard's key reads that shard's), newest first.
    pub async fn latest_entries(
        &self,
        position: &PositionKey,
        limit: i32,
    ) -> Result<Vec<InventoryAdjustment>, LedgerError> {
        let _guard = self.read_guard().await;
        let page = self
            .entries_query(position)
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        page.items
            .unwrap_or_default()
            .into_iter()
            .map(|item| Ok(decode::<EntryItem>("entry", item)?.adjustment))
            .collect()
    }

    /// Every entry of one position, oldest first (audits and tests).
    pub async fn entries(&self, position: &PositionKey) -> Result<Vec<InventoryAdjustment>, LedgerError> {
        let _guard = self.read_guard().await;
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .entries_query(position)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(decode::<EntryItem>("entry", item)?.adjustment);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn record(&self, c: u64, items: usize, centi: f64) {
        self.stats.commits.fetch_add(c, Ordering::Relaxed);
        self.stats.items.fetch_add(items as u64, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // non-negative, small
        self.stats.reported_centi_units.fetch_add((centi * 100.0).round() as u64, Ordering::Relaxed);
    }

    /// The conditional puts a commit consists of.
    fn puts(&self, commit: Commit) -> Result<Vec<Put>, LedgerError> {
        let now = Utc::now();
        let mut puts = Vec::with_capacity(commit.item_count());
        let put = |item: Item, condition: &str, values: Option<(&str, AttributeValue)>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_values(values.map(|(k, v)| HashMap::from([(k.to_owned(), v)])))
                .build()
                .map_err(|e| LedgerError::Invalid(format!("building a transaction item: {e}")))
        };
        if let Some(write) = commit.record {
            let (record, condition) = match write {
                RecordWrite::Create(r) => (r, None),
                RecordWrite::Replace(r) => {
                    let prev = r.rev.saturating_sub(1);
                    (r, Some(prev))
                }
            };
            let item = encode(
                "reservation",
                &RecordItem { pk: record_pk(&record.order_id), sk: RECORD_SK.to_owned(), rev: record.rev, record },
            )?;
            puts.push(match condition {
                None => put(item, "attribute_not_exists(pk)", None)?,
                Some(prev) => put(item, "rev = :prev", Some((":prev", AttributeValue::N(prev.to_string()))))?,
            });
        }
        for w in commit.positions {
            let p = w.position;
            let item = encode(
                "position",
                &PositionItem {
                    changed: Some(change_bucket(p.sku.as_str(), now)),
                    pk: position_pk(&p.sku, &p.location),
                    sk: position_sk(&p.location),
                    sku: p.sku,
                    location: p.location,
                    on_hand: p.on_hand,
                    reserved: p.reserved,
                    available: p.available,
                    version: p.version,
                    updated_at: now,
                    as_of: p.as_of,
                },
            )?;
            puts.push(if w.expected_version == 0 {
                put(item, "attribute_not_exists(pk)", None)?
            } else {
                put(item, "version = :v", Some((":v", AttributeValue::N(w.expected_version.to_string()))))?
            });
        }
        for e in commit.entries {
            let a = e.adjustment;
            let item = encode(
                "entry",
                &EntryItem {
                    pk: position_pk(&a.sku, &a.location),
                    sk: entry_sk(&a.location, e.version),
                    version: e.version,
                    adjustment: a,
                },
            )?;
            puts.push(put(item, "attribute_not_exists(pk)", None)?);
        }
        if let Some(m) = commit.marker {
            let item = encode(
                "marker",
                &MarkerItem {
                    pk: position_pk(&m.key.sku, &m.key.location),
                    sk: marker_sk(&m),
                    source_ref: m.source_ref,
                    at: now,
                },
            )?;
            puts.push(put(item, "attribute_not_exists(pk)", None)?);
        }
        Ok(puts)
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, LedgerError> {
        let _guard = self.read_guard().await;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    async fn put_one(&self, put: Put) -> Result<(), CommitError> {
        let _guard = self.write_guard().await;
        let result = self
            .client
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .condition_expression(put.condition_expression.unwrap_or_default())
            .set_expression_attribute_values(put.expression_attribute_values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.record(1, 1, out.consumed_capacity.and_then(|c| c.capacity_units).unwrap_or(0.0));
                Ok(())
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                Err(CommitError::Conflict)
            }
            Err(e) => Err(sdk_error("PutItem", e).into()),
        }
    }
}

impl Store for DynamoStore {
    async fn positions(&self, keys: &[PositionKey]) -> Result<Vec<Position>, LedgerError> {
        let mut found: HashMap<PositionKey, Position> = HashMap::new();
        if let [only] = keys {
            if let Some(item) =
                self.get(key(position_pk(&only.sku, &only.location), position_sk(&only.location))).await?
            {
                let p: PositionItem = decode("position", item)?;
                found.insert(only.clone(), to_position(p));
            }
        } else {
            for chunk in keys.chunks(100) {
                let mut pending = Some(
                    KeysAndAttributes::builder()
                        .set_keys(Some(
                            chunk
                                .iter()
                                .map(|k| key(position_pk(&k.sku, &k.location), position_sk(&k.location)))
                                .collect(),
                        ))
                        .consistent_read(true)
                        .build()
                        .map_err(|e| LedgerError::Invalid(format!("building a batch read: {e}")))?,
                );
                while let Some(request) = pending.take() {
                    let guard = self.read_guard().await;
                    let out = self
                        .client
                        .batch_get_item()
                        .request_items(&self.table, request)
                        .send()
                        .await
                        .map_err(|e| sdk_error("BatchGetItem", e))?;
                    drop(guard);
                    for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                        let p: PositionItem = decode("position", item)?;
                        let p = to_position(p);
                        found.insert(p.key(), p);
                    }
                    pending =
                        out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
                }
            }
        }
        Ok(keys.iter().map(|k| found.remove(k).unwrap_or_else(|| Position::empty(k))).collect())
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<ReservationRecord>, LedgerError> {
        match self.get(key(record_pk(order), RECORD_SK)).await? {
            Some(item) => Ok(Some(decode::<RecordItem>("reservation", item)?.record)),
            None => Ok(None),
        }
    }

    async fn has_marker(&self, marker: &SourceMarker) -> Result<bool, LedgerError> {
        Ok(self.get(key(position_pk(&marker.key.sku, &marker.key.location), marker_sk(marker))).await?.is_some())
    }

    async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        let mut puts = self.puts(commit)?;
        if puts.len() == 1
            && let Some(put) = puts.pop()
        {
            return self.put_one(put).await;
        }
        let items = puts.len();
        let _guard = self.write_guard().await;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(puts.into_iter().map(|p| TransactWriteItem::builder().put(p).build()).collect()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                let units = out.consumed_capacity.unwrap_or_default().iter().filter_map(|c| c.capacity_units).sum();
                self.record(1, items, units);
                Ok(())
            }
            Err(SdkError::ServiceError(e)) if is_conflict(e.err()) => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                Err(CommitError::Conflict)
            }
            Err(e) => Err(sdk_error("TransactWriteItems", e).into()),
        }
    }
}

/// A cancelled transaction whose every failing item lost a race (condition or concurrent
/// transaction), as opposed to throttling or a malformed request.
fn is_conflict(err: &TransactWriteItemsError) -> bool {
    match err {
        TransactWriteItemsError::TransactionCanceledException(c) => {
            let codes: Vec<&str> =
                c.cancellation_reasons().iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
            !codes.is_empty() && codes.iter().all(|c| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict"))
        }
        _ => false,
    }
}

fn to_position(p: PositionItem) -> Position {
    Position {
        sku: p.sku,
        location: p.location,
        on_hand: p.on_hand,
        reserved: p.reserved,
        available: p.available,
        version: p.version,
        as_of: p.as_of,
    }
}

impl DynamoLedger {
    /// The ledger on `table` (a table with the standard `pk`/`sk` string key).
    pub fn dynamo(client: Client, table: impl Into<String>) -> Self {
        StockLedger::new(DynamoStore::new(client, table))
    }

    /// The ledger on `store` with `shards` for the hot SKUs.
    pub fn sharded(store: DynamoStore, shards: Shards) -> Self {
        StockLedger::new(ShardedStore::new(store, shards))
    }

    /// The ledger on a local emulator (see [`DynamoStore::emulator_safe`]).
    pub fn dynamo_emulator(client: Client, table: impl Into<String>) -> Self {
        StockLedger::new(DynamoStore::new(client, table).emulator_safe())
    }
}
