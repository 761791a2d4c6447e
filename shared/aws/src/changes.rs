//! The change index: every change to an order, shipment, refund or return, numbered in the order the
//! index took it, so the ERP or the WMS pulls "what changed since my cursor" and never misses one.
//!
//! Why not a query by timestamp: records written concurrently commit out of their timestamps' order, so
//! a reader that has passed a time can still see an older write appear behind it, and skip it for good.
//! Here a single writer (the changes consumer: a FIFO queue with one message group, so one batch at a
//! time) numbers each kind's changes densely and commits a batch together with its counter in one
//! transaction. A reader returns entries only while their numbers run on without a hole: a DynamoDB
//! query is not isolated from a transaction being applied, so an entry it cannot see yet ends the page
//! there (the next read gets it) instead of being stepped over.
//!
//! Layout (the `StateTable`):
//! - `pk = CHANGES#{kind}`, `sk = {seq, 20 digits}`: one change (`record_id`, `event_id`, `event`, `at`).
//! - `pk = CHANGES#{kind}`, `sk = HEAD`: `seq`, the number of the kind's last change.
//! - `pk = CHANGE_EVENT#{event_id}`, `sk = SEEN`: an event already indexed, kept
//!   [`SEEN_RETENTION_DAYS`] (the table's TTL), so a redelivered event adds no second entry.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::SdkError,
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, Put, TransactWriteItem, Update},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How long an indexed event id is remembered against redeliveries.
pub const SEEN_RETENTION_DAYS: i64 = 30;

/// What a change is about: the records the pull API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Order,
    Shipment,
    Refund,
    Return,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 4] = [ChangeKind::Order, ChangeKind::Shipment, ChangeKind::Refund, ChangeKind::Return];

    /// The record kind, as the record store keys it (`order`, `shipment`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Order => "order",
            ChangeKind::Shipment => "shipment",
            ChangeKind::Refund => "refund",
            ChangeKind::Return => "return",
        }
    }

    /// The kind a pull API collection serves (`orders`, `shipments`, `refunds`, `returns`).
    pub fn from_collection(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| name.strip_suffix('s') == Some(k.as_str()))
    }

    /// The kind an event of `kind` changes, if it changes one the index keeps.
    pub fn of_event(kind: manifold_domain::events::EventKind) -> Option<Self> {
        use manifold_domain::events::EventKind as E;
        match kind {
            E::OrderAccepted | E::OrderUpdated | E::OrderCancelled | E::OrderOversold => Some(ChangeKind::Order),
            E::ShipmentCreated => Some(ChangeKind::Shipment),
            E::RefundCreated => Some(ChangeKind::Refund),
            E::ReturnUpdated => Some(ChangeKind::Return),
            E::InventoryChanged | E::ProductChanged | E::OrderLate | E::TrackingUnconfirmed => None,
        }
    }
}

/// A change to index: an event about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub record_id: String,
    /// The event's stable id (redeliveries carry the same one).
    pub event_id: String,
    /// The event's kind (`OrderUpdated`...).
    pub event: String,
    pub at: DateTime<Utc>,
}

/// An indexed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: u64,
    pub record_id: String,
    pub event_id: String,
    pub event: String,
    pub at: DateTime<Utc>,
}

/// Where changes are numbered and read.
#[async_trait]
pub trait ChangeIndex: Send + Sync {
    /// Numbers `changes` after each kind's last, in the order given, skipping events already indexed.
    /// Answers how many were new. Only one writer may run at a time (the FIFO consumer); a second one
    /// racing it fails with a retryable error and changes nothing.
    async fn append(&self, changes: &[Change], now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// The changes of `kind` numbered after `after`, at most `limit`, contiguous from `after + 1`.
    async fn read(&self, kind: ChangeKind, after: u64, limit: usize) -> Result<Vec<ChangeEntry>, StoreError>;
}

/// The entries that follow `after` without a hole (see the module docs).
pub fn contiguous(after: u64, entries: impl IntoIterator<Item = ChangeEntry>) -> Vec<ChangeEntry> {
    (after + 1..).zip(entries).take_while(|(expected, e)| e.seq == *expected).map(|(_, e)| e).collect()
}

/// New changes of a batch: each event id once, and none of those already `seen`.
fn fresh<'a>(changes: &'a [Change], seen: &std::collections::HashSet<String>) -> Vec<&'a Change> {
    let mut taken = std::collections::HashSet::new();
    changes.iter().filter(|c| !seen.contains(&c.event_id) && taken.insert(c.event_id.clone())).collect()
}

fn pk(kind: ChangeKind) -> String {
    format!("CHANGES#{}", kind.as_str())
}

fn sk(seq: u64) -> String {
    format!("{seq:020}")
}

fn seen_pk(event_id: &str) -> String {
    format!("CHANGE_EVENT#{event_id}")
}

/// The DynamoDB index (the `StateTable`).
#[derive(Debug, Clone)]
pub struct DynamoChangeIndex {
    client: Client,
    table: String,
}

impl DynamoChangeIndex {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn seen(&self, changes: &[Change]) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.event_id.as_str()).collect();
        let keys = ids.into_iter().map(|id| crate::batch::key(seen_pk(id), "SEEN")).collect();
        let items = crate::batch::batch_get(&self.client, &self.table, keys, Some("pk")).await?;
        Ok(items
            .iter()
            .filter_map(|item| match item.get("pk") {
                Some(AttributeValue::S(pk)) => Some(pk.trim_start_matches("CHANGE_EVENT#").to_owned()),
                _ => None,
            })
            .collect())
    }

    async fn head(&self, kind: ChangeKind) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk(kind)))
            .key("sk", AttributeValue::S("HEAD".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        Ok(out.item.and_then(|i| match i.get("seq") {
            Some(AttributeValue::N(n)) => n.parse().ok(),
            _ => None,
        }))
    }
}

fn put(
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: Option<&str>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| StoreError::Invalid { what: "change", reason: e.to_string() })?;
    Ok(TransactWriteItem::builder().put(put).build())
}

#[async_trait]
impl ChangeIndex for DynamoChangeIndex {
    async fn append(&self, changes: &[Change], now: DateTime<Utc>) -> Result<usize, StoreError> {
        let seen = self.seen(changes).await?;
        let new = fresh(changes, &seen);
        if new.is_empty() {
            return Ok(0);
        }
        let mut by_kind: BTreeMap<ChangeKind, Vec<&Change>> = BTreeMap::new();
        for c in &new {
            by_kind.entry(c.kind).or_default().push(c);
        }
        let expires = (now + chrono::Duration::days(SEEN_RETENTION_DAYS)).timestamp().to_string();
        let mut items = Vec::new();
        for (kind, list) in by_kind {
            let head = self.head(kind).await?;
            let mut seq = head.unwrap_or(0);
            for c in list {
                seq += 1;
                let item = HashMap::from([
                    ("pk".to_owned(), AttributeValue::S(pk(kind))),
                    ("sk".to_owned(), AttributeValue::S(sk(seq))),
                    ("seq".to_owned(), AttributeValue::N(seq.to_string())),
                    ("record_id".to_owned(), AttributeValue::S(c.record_id.clone())),
                    ("event_id".to_owned(), AttributeValue::S(c.event_id.clone())),
                    ("event".to_owned(), AttributeValue::S(c.event.clone())),
                    ("at".to_owned(), AttributeValue::S(c.at.to_rfc3339())),
                ]);
                items.push(put(&self.table, item, Some("attribute_not_exists(pk)"))?);
                let marker = HashMap::from([
                    ("pk".to_owned(), AttributeValue::S(seen_pk(&c.event_id))),
                    ("sk".to_owned(), AttributeValue::S("SEEN".into())),
                    ("expires_at".to_owned(), AttributeValue::N(expires.clone())),
                ]);
                items.push(put(&self.table, marker, Some("attribute_not_exists(pk)"))?);
            }
            // The counter moves only from the value this writer read: a second writer loses.
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(pk(kind)))
                .key("sk", AttributeValue::S("HEAD".into()))
                .update_expression("SET seq = :new")
                .condition_expression(if head.is_some() { "seq = :old" } else { "attribute_not_exists(seq)" })
                .set_expression_attribute_values(Some(
                    [(":new".to_owned(), AttributeValue::N(seq.to_string()))]
                        .into_iter()
                        .chain(head.map(|h| (":old".to_owned(), AttributeValue::N(h.to_string()))))
                        .collect(),
                ))
                .build()
                .map_err(|e| StoreError::Invalid { what: "change head", reason: e.to_string() })?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(new.len()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                Err(StoreError::Service {
                    service: "dynamodb",
                    operation: "TransactWriteItems",
                    source: "another writer numbered these changes first: retry".into(),
                })
            }
            Err(e) => Err(StoreError::service("dynamodb", "TransactWriteItems", e)),
        }
    }

    async fn read(&self, kind: ChangeKind, after: u64, limit: usize) -> Result<Vec<ChangeEntry>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", AttributeValue::S(pk(kind)))
            .expression_attribute_values(":from", AttributeValue::S(sk(after + 1)))
            .expression_attribute_values(":to", AttributeValue::S(sk(u64::MAX)))
            .consistent_read(true)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        let entries = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
                    key: pk(kind),
                    what: "change entry",
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<ChangeEntry>, _>>()?;
        Ok(contiguous(after, entries))
    }
}

/// In-memory index for unit tests of the services.
#[derive(Debug, Default)]
pub struct MemoryChangeIndex {
    inner: std::sync::Mutex<MemoryInner>,
}

/// Each kind's entries, and the event ids indexed.
#[derive(Debug, Default)]
struct MemoryInner {
    entries: BTreeMap<ChangeKind, Vec<ChangeEntry>>,
    seen: std::collections::HashSet<String>,
}

#[async_trait]
impl ChangeIndex for MemoryChangeIndex {
    async fn append(&self, changes: &[Change], _now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let new: Vec<Change> = fresh(changes, &inner.seen).into_iter().cloned().collect();
        for c in &new {
            inner.seen.insert(c.event_id.clone());
            let list = inner.entries.entry(c.kind).or_default();
            let seq = list.len() as u64 + 1;
            list.push(ChangeEntry {
                seq,
                record_id: c.record_id.clone(),
                event_id: c.event_id.clone(),
                event: c.event.clone(),
                at: c.at,
            });
        }
        Ok(new.len())
    }

    async fn read(&self, kind: ChangeKind, after: u64, limit: usize) -> Result<Vec<ChangeEntry>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = inner.entries.get(&kind).cloned().unwrap_or_default();
        Ok(contiguous(after, list.into_iter().filter(|e| e.seq > after).take(limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> ChangeEntry {
        ChangeEntry {
            seq,
            record_id: format!("r{seq}"),
            event_id: format!("e{seq}"),
            event: "OrderUpdated".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_page_ends_at_the_first_hole_so_a_change_not_yet_visible_is_never_stepped_over() {
        let read = contiguous(3, [4, 5, 7, 8].map(entry));
        assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        assert!(contiguous(3, [5, 6].map(entry)).is_empty(), "4 not visible yet: nothing past it");
    }

    #[tokio::test]
    async fn redelivered_events_are_indexed_once_and_kinds_number_apart() {
        let index = MemoryChangeIndex::default();
        let change = |kind, id: &str, event: &str| Change {
            kind,
            record_id: id.into(),
            event_id: event.into(),
            event: "OrderUpdated".into(),
            at: Utc::now(),
        };
        let batch = [
            change(ChangeKind::Order, "o1", "a"),
            change(ChangeKind::Shipment, "s1", "b"),
            change(ChangeKind::Order, "o1", "a"),
        ];
        assert_eq!(index.append(&batch, Utc::now()).await.unwrap(), 2);
        assert_eq!(index.append(&batch[..1], Utc::now()).await.unwrap(), 0, "a redelivery");
        assert_eq!(index.append(&[change(ChangeKind::Order, "o2", "c")], Utc::now()).await.unwrap(), 1);
        let orders = index.read(ChangeKind::Order, 0, 10).await.unwrap();
        assert_eq!(orders.iter().map(|e| (e.seq, e.record_id.as_str())).collect::<Vec<_>>(), [(1, "o1"), (2, "o2")]);
        assert_eq!(index.read(ChangeKind::Order, 1, 10).await.unwrap().len(), 1);
        assert_eq!(index.read(ChangeKind::Shipment, 0, 10).await.unwrap()[0].seq, 1);
    }

    #[test]
    fn collections_name_their_kind() {
        assert_eq!(ChangeKind::from_collection("orders"), Some(ChangeKind::Order));
        assert_eq!(ChangeKind::from_collection("returns"), Some(ChangeKind::Return));
        assert_eq!(ChangeKind::from_collection("order"), None);
        assert_eq!(ChangeKind::from_collection("customers"), None);
    }
}
