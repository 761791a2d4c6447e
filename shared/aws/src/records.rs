//! The canonical record store (DynamoDB `RecordsTable`).
//!
//! An order is one item, `pk = ORDER#{order id}`, `sk = CURRENT`, holding the canonical record as a map
//! plus the attributes conditions and indexes need (`source_version`, `status`, `trace_id`). Writing a
//! record and its ingest idempotency key is one transaction, so a redelivered message can neither
//! double-apply nor be lost between the two writes; and the record is only replaced by one with a
//! greater `source_version`, so a late `orders/updated` never regresses it.
//!
//! The same transaction is the outbox: the events a write implies ride on the ingest key item
//! (`outbox`, a map from event id to event) and are committed with the record. The caller publishes
//! them after the commit and marks each one sent; a redelivery that finds the ingest key publishes
//! whatever is still pending, so a publish that failed (or a function that died) after the commit
//! is finished by the SQS retry instead of being lost.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::SdkError,
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, Put, TransactWriteItem},
};
use chrono::{DateTime, Utc};
use manifold_domain::{Order, OrderCustomer, OrderId, Oversell, Record, events::EventKind, rules::Release};

use crate::StoreError;

/// The result of writing an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderWrite {
    /// First time we see this order.
    Created,
    /// Replaced an older version.
    Updated { previous: Box<Order> },
    /// We already hold this or a newer version: nothing written.
    Stale { stored_version: i64 },
    /// This ingest key was already applied: nothing written.
    Duplicate,
}

/// An event committed together with the record that implies it, published after the commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEvent {
    /// The event's stable id (also inside `detail`): the outbox key and the consumers' dedupe key.
    pub id: String,
    pub kind: EventKind,
    /// The serialized `EventDetail`, published as is.
    pub detail: String,
}

/// The events an order write implies, decided once the store knows whether it creates or replaces.
pub type EventsFor<'a> = &'a (dyn Fn(&OrderWrite) -> Result<Vec<OutboxEvent>, StoreError> + Send + Sync);

/// One stored record, as `manifold trace` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredRecord {
    pub pk: String,
    pub kind: String,
    pub trace_id: Option<String>,
    pub updated_at: Option<String>,
    pub record: serde_json::Value,
}

/// The record-store port.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Writes `order` if newer than what is stored, together with `ingest_key` (exactly once) and the
    /// events `events` derives from the write (the outbox, pending until [`RecordStore::mark_sent`]).
    /// A replaced order keeps its stored `fulfillment` (the routing decided when it was first stored)
    /// and, unless the new one has its own, its `oversold` verdict.
    async fn put_order(
        &self,
        order: &Order,
        ingest_key: &str,
        trace_id: &str,
        now: DateTime<Utc>,
        events: EventsFor<'_>,
    ) -> Result<OrderWrite, StoreError>;
    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;
    /// Marks (or clears) the ledger's oversell verdict on the stored order.
    /// Marks the order oversold (or clears the mark with `None`). The first mark stands: marking an
    /// order that is already marked changes nothing and returns `false`, so whoever gets `true` wrote
    /// the mark first (the one place that counts an oversell once per order).
    async fn set_oversold(&self, id: &OrderId, oversold: Option<&Oversell>) -> Result<bool, StoreError>;
    /// Releases the order's hold for review. `true` when this call released it; `false` when the
    /// stored order is held by nothing or was released before.
    async fn release_hold(&self, id: &OrderId, release: &Release) -> Result<bool, StoreError>;
    /// Points the stored order to its customer. False when no such order is stored.
    async fn link_customer(&self, id: &OrderId, customer_id: &str) -> Result<bool, StoreError>;
    /// Erases the buyer's contact data and addresses from the stored order (a tombstone keeps the
    /// business facts); later writes of the order keep them erased. False when no such order is stored.
    async fn erase_contact(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Stores a non-order record (product, shipment, refund, inventory level...) with its ingest key
    /// and its outbox `events`. Returns false when the ingest key was already applied.
    async fn put_record(
        &self,
        record: &Record,
        ingest_key: &str,
        trace_id: &str,
        now: DateTime<Utc>,
        events: &[OutboxEvent],
    ) -> Result<bool, StoreError>;
    /// The outbox events committed with `ingest_key` and not yet marked sent.
    async fn pending_events(&self, ingest_key: &str) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Marks one outbox event published.
    async fn mark_sent(&self, ingest_key: &str, event_id: &str) -> Result<(), StoreError>;
    /// Every record written under one trace id.
    async fn by_trace(&self, trace_id: &str) -> Result<Vec<StoredRecord>, StoreError>;
    /// The current records of `kind` (`order`, `shipment`, ...) with these ids, as stored (their
    /// canonical JSON), keyed by id; ids with no record are absent.
    async fn get_records(&self, kind: &str, ids: &[String]) -> Result<HashMap<String, serde_json::Value>, StoreError>;
}

/// DynamoDB implementation.
#[derive(Debug, Clone)]
pub struct DynamoRecords {
    client: Client,
    table: String,
    idempotency_table: String,
    /// See [`DynamoRecords::emulator_safe`].
    emulator_safe: bool,
}

/// Serialises record writes of this process against an emulator.
pub(crate) static EMULATOR_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl DynamoRecords {
    pub fn new(client: Client, table: impl Into<String>, idempotency_table: impl Into<String>) -> Self {
        Self { client, table: table.into(), idempotency_table: idempotency_table.into(), emulator_safe: false }
    }

    /// For moto only: a failed `TransactWriteItems` there restores a copy of every table it touched,
    /// taken before the transaction, so a write another request committed meanwhile vanishes (two
    /// concurrent duplicates of one message: the loser's rollback erased the winner's order). With
    /// `on`, this process's record writes run one at a time. DynamoDB itself needs no such thing.
    #[must_use]
    pub fn emulator_safe(mut self, on: bool) -> Self {
        self.emulator_safe = on;
        self
    }

    async fn emulator_guard(&self) -> Option<tokio::sync::MutexGuard<'static, ()>> {
        if self.emulator_safe { Some(EMULATOR_LOCK.lock().await) } else { None }
    }

    fn order_pk(id: &OrderId) -> String {
        format!("ORDER#{id}")
    }

    fn ingest_pk(ingest_key: &str) -> String {
        format!("INGEST#{ingest_key}")
    }

    fn ingest_put(
        &self,
        ingest_key: &str,
        now: DateTime<Utc>,
        events: &[OutboxEvent],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut outbox = HashMap::new();
        for e in events {
            let value = serde_dynamo::to_attribute_value(e)
                .map_err(|err| StoreError::Invalid { what: "outbox event", reason: err.to_string() })?;
            outbox.insert(e.id.clone(), value);
        }
        let put = Put::builder()
            .table_name(&self.idempotency_table)
            .item("pk", AttributeValue::S(Self::ingest_pk(ingest_key)))
            .item("sk", AttributeValue::S("applied".into()))
            .item("applied_at", AttributeValue::S(now.to_rfc3339()))
            // Kept for 30 days: far beyond SQS retention, so any redelivery is recognised.
            .item("expires_at", AttributeValue::N((now.timestamp() + 30 * 86_400).to_string()))
            .item("outbox", AttributeValue::M(outbox))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Invalid { what: "idempotency key", reason: e.to_string() })?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn record_item(
        pk: String,
        kind: &str,
        record: &impl serde::Serialize,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let value: AttributeValue = serde_dynamo::to_attribute_value(record)
            .map_err(|e| StoreError::Invalid { what: "canonical record", reason: e.to_string() })?;
        let mut item = HashMap::new();
        item.insert("pk".into(), AttributeValue::S(pk));
        item.insert("sk".into(), AttributeValue::S("CURRENT".into()));
        item.insert("kind".into(), AttributeValue::S(kind.to_owned()));
        item.insert("record".into(), value);
        item.insert("trace_id".into(), AttributeValue::S(trace_id.to_owned()));
        item.insert("updated_at".into(), AttributeValue::S(now.to_rfc3339()));
        Ok(item)
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Vec<bool>, StoreError> {
        let n = items.len();
        let _guard = self.emulator_guard().await;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(vec![false; n]),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let failed: Vec<bool> =
                        c.cancellation_reasons().iter().map(|r| r.code() == Some("ConditionalCheckFailed")).collect();
                    if failed.iter().any(|f| *f) {
                        Ok(failed)
                    } else {
                        Err(StoreError::service("dynamodb", "TransactWriteItems", e.into_err()))
                    }
                }
                _ => Err(StoreError::service("dynamodb", "TransactWriteItems", e.into_err())),
            },
            Err(e) => Err(StoreError::service("dynamodb", "TransactWriteItems", e)),
        }
    }

    /// One conditional update of the stored order's record (`#r` names it): true when applied, false
    /// when its condition did not hold.
    async fn update_order(
        &self,
        id: &OrderId,
        build: impl FnOnce(
            aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        let _guard = self.emulator_guard().await;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(Self::order_pk(id)))
            .key("sk", AttributeValue::S("CURRENT".into()))
            .expression_attribute_names("#r", "record");
        match build(update).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(StoreError::service("dynamodb", "UpdateItem", e)),
        }
    }

    async fn get_current(&self, pk: String) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S("CURRENT".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        Ok(out.item)
    }
}

fn decode_order(key: &str, item: &HashMap<String, AttributeValue>) -> Result<Order, StoreError> {
    let record = item.get("record").cloned().ok_or_else(|| StoreError::Corrupt {
        key: key.to_owned(),
        what: "order",
        source: "no record attribute".into(),
    })?;
    serde_dynamo::from_attribute_value(record).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        what: "order",
        source: Box::new(e),
    })
}

#[async_trait]
impl RecordStore for DynamoRecords {
    async fn put_order(
        &self,
        order: &Order,
        ingest_key: &str,
        trace_id: &str,
        now: DateTime<Utc>,
        events: EventsFor<'_>,
    ) -> Result<OrderWrite, StoreError> {
        let pk = Self::order_pk(&order.id);
        let previous = match self.get_current(pk.clone()).await? {
            Some(item) => Some(decode_order(&pk, &item)?),
            None => None,
        };
        if let Some(prev) = &previous
            && prev.source_version >= order.source_version
        {
            return Ok(OrderWrite::Stale { stored_version: prev.source_version });
        }
        // The ledger's verdict and the routing decision belong to the order, not to the channel's
        // document: keep them.
        let mut to_store = order.clone();
        if to_store.oversold.is_none() {
            to_store.oversold = previous.as_ref().and_then(|p| p.oversold.clone());
        }
        if let Some(p) = &previous {
            keep_from_previous(&mut to_store, p);
        }
        let mut item = Self::record_item(pk.clone(), "order", &to_store, trace_id, now)?;
        item.insert("source_version".into(), AttributeValue::N(order.source_version.to_string()));
        item.insert("status".into(), AttributeValue::S(order.status.as_str().to_owned()));
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR source_version < :v")
            .expression_attribute_values(":v", AttributeValue::N(order.source_version.to_string()));
        if let Some(p) = &previous {
            let mut condition = String::from("source_version < :v");
            if p.fulfillment.as_ref().and_then(|f| f.hold.as_ref()).is_some_and(|h| h.released.is_none()) {
                // A release written between our read and this write must not be overwritten by the hold we read.
                condition.push_str(" AND attribute_not_exists(#r.#f.#h.#x)");
                put = put
                    .expression_attribute_names("#f", "fulfillment")
                    .expression_attribute_names("#h", "hold")
                    .expression_attribute_names("#x", "released");
            }
            if p.contact_erased_at.is_none() {
                // Nor an erasure by the contact data we read.
                condition.push_str(" AND attribute_not_exists(#r.#e)");
                put = put.expression_attribute_names("#e", "contact_erased_at");
            }
            put = put.condition_expression(&condition);
            if condition.contains("#r") {
                put = put.expression_attribute_names("#r", "record");
            }
        }
        let put = put.build().map_err(|e| StoreError::Invalid { what: "order", reason: e.to_string() })?;
        let write = match previous {
            Some(p) => OrderWrite::Updated { previous: Box::new(p) },
            None => OrderWrite::Created,
        };
        let outbox = events(&write)?;
        let failed = self
            .transact(vec![TransactWriteItem::builder().put(put).build(), self.ingest_put(ingest_key, now, &outbox)?])
            .await?;
        Ok(match failed.as_slice() {
            [_, true] => OrderWrite::Duplicate,
            [true, _] => {
                // A newer version landed between our read and our write, or (same version) the order was
                // released meanwhile: then the write is retried, and its next read keeps the release.
                let stored = self.get_order(&order.id).await?.map_or(0, |o| o.source_version);
                if stored < order.source_version {
                    return Err(StoreError::Service {
                        service: "dynamodb",
                        operation: "TransactWriteItems",
                        source: format!("order {} changed between its read and its write; retry", order.id).into(),
                    });
                }
                OrderWrite::Stale { stored_version: stored }
            }
            _ => write,
        })
    }

    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let pk = Self::order_pk(id);
        match self.get_current(pk.clone()).await? {
            Some(item) => decode_order(&pk, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn set_oversold(&self, id: &OrderId, oversold: Option<&Oversell>) -> Result<bool, StoreError> {
        let _guard = self.emulator_guard().await;
        let update = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(Self::order_pk(id)))
                .key("sk", AttributeValue::S("CURRENT".into()))
                .expression_attribute_names("#r", "record")
                .expression_attribute_names("#o", "oversold")
        };
        let Some(o) = oversold else {
            update()
                .condition_expression("attribute_exists(pk)")
                .update_expression("REMOVE #r.#o")
                .send()
                .await
                .map_err(|e| StoreError::service("dynamodb", "UpdateItem", e))?;
            return Ok(true);
        };
        let v: AttributeValue = serde_dynamo::to_attribute_value(o)
            .map_err(|e| StoreError::Invalid { what: "oversell", reason: e.to_string() })?;
        let first = update()
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#r.#o)")
            .update_expression("SET #r.#o = :o")
            .expression_attribute_values(":o", v.clone())
            .send()
            .await;
        match first {
            Ok(_) => Ok(true),
            // Marked before (a replay, or a concurrent delivery won): the first mark stands. Whether
            // the order exists at all is told by an update that keeps any mark (UpdateItem is all the
            // ledger's role may do on the records table): a missing order stays an error.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                update()
                    .condition_expression("attribute_exists(pk)")
                    .update_expression("SET #r.#o = if_not_exists(#r.#o, :o)")
                    .expression_attribute_values(":o", v)
                    .send()
                    .await
                    .map_err(|e| StoreError::service("dynamodb", "UpdateItem", e))?;
                Ok(false)
            }
            Err(e) => Err(StoreError::service("dynamodb", "UpdateItem", e)),
        }
    }

    async fn release_hold(&self, id: &OrderId, release: &Release) -> Result<bool, StoreError> {
        let v: AttributeValue = serde_dynamo::to_attribute_value(release)
            .map_err(|e| StoreError::Invalid { what: "release", reason: e.to_string() })?;
        self.update_order(id, |u| {
            u.expression_attribute_names("#f", "fulfillment")
                .expression_attribute_names("#h", "hold")
                .expression_attribute_names("#x", "released")
                .condition_expression("attribute_exists(#r.#f.#h) AND attribute_not_exists(#r.#f.#h.#x)")
                .update_expression("SET #r.#f.#h.#x = :x")
                .expression_attribute_values(":x", v)
        })
        .await
    }

    async fn link_customer(&self, id: &OrderId, customer_id: &str) -> Result<bool, StoreError> {
        self.update_order(id, |u| {
            u.expression_attribute_names("#c", "customer_id")
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET #r.#c = :c")
                .expression_attribute_values(":c", AttributeValue::S(customer_id.to_owned()))
        })
        .await
    }

    async fn erase_contact(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let tombstone = serde_dynamo::to_attribute_value(OrderCustomer::default())
            .map_err(|e| StoreError::Invalid { what: "order customer", reason: e.to_string() })?;
        self.update_order(id, |u| {
            u.expression_attribute_names("#c", "customer")
                .expression_attribute_names("#s", "shipping_address")
                .expression_attribute_names("#b", "billing_address")
                .expression_attribute_names("#e", "contact_erased_at")
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET #r.#c = :c, #r.#s = :null, #r.#b = :null, #r.#e = :at")
                .expression_attribute_values(":c", tombstone)
                .expression_attribute_values(":null", AttributeValue::Null(true))
                .expression_attribute_values(":at", AttributeValue::S(at.to_rfc3339()))
        })
        .await
    }

    async fn put_record(
        &self,
        record: &Record,
        ingest_key: &str,
        trace_id: &str,
        now: DateTime<Utc>,
        events: &[OutboxEvent],
    ) -> Result<bool, StoreError> {
        let (kind, id) = record_key(record);
        let item = Self::record_item(format!("{}#{id}", kind.to_uppercase()), kind, record, trace_id, now)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Invalid { what: "record", reason: e.to_string() })?;
        let failed = self
            .transact(vec![TransactWriteItem::builder().put(put).build(), self.ingest_put(ingest_key, now, events)?])
            .await?;
        Ok(!failed.iter().any(|f| *f))
    }

    async fn pending_events(&self, ingest_key: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        let pk = Self::ingest_pk(ingest_key);
        let out = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S("applied".into()))
            .consistent_read(true)
            .projection_expression("outbox")
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        let Some(AttributeValue::M(outbox)) = out.item.and_then(|mut i| i.remove("outbox")) else {
            return Ok(Vec::new());
        };
        let mut events = outbox
            .into_values()
            .map(|v| {
                serde_dynamo::from_attribute_value(v).map_err(|e| StoreError::Corrupt {
                    key: pk.clone(),
                    what: "outbox event",
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<OutboxEvent>, _>>()?;
        events.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(events)
    }

    async fn mark_sent(&self, ingest_key: &str, event_id: &str) -> Result<(), StoreError> {
        let _guard = self.emulator_guard().await;
        let result = self
            .client
            .update_item()
            .table_name(&self.idempotency_table)
            .key("pk", AttributeValue::S(Self::ingest_pk(ingest_key)))
            .key("sk", AttributeValue::S("applied".into()))
            .update_expression("REMOVE #o.#id")
            .condition_expression("attribute_exists(#o.#id)")
            .expression_attribute_names("#o", "outbox")
            .expression_attribute_names("#id", event_id)
            .send()
            .await;
        match result {
            // Already marked (a concurrent redelivery published it too): nothing left to do.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(StoreError::service("dynamodb", "UpdateItem", e)),
            Ok(_) => Ok(()),
        }
    }

    async fn get_records(&self, kind: &str, ids: &[String]) -> Result<HashMap<String, serde_json::Value>, StoreError> {
        let prefix = format!("{}#", kind.to_uppercase());
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        let keys = unique.into_iter().map(|id| crate::batch::key(format!("{prefix}{id}"), "CURRENT")).collect();
        let mut found = HashMap::new();
        for mut item in crate::batch::batch_get(&self.client, &self.table, keys, None).await? {
            let Some(AttributeValue::S(pk)) = item.remove("pk") else { continue };
            let record = item.remove("record").ok_or_else(|| StoreError::Corrupt {
                key: pk.clone(),
                what: "record",
                source: "no record attribute".into(),
            })?;
            let mut value: serde_json::Value = serde_dynamo::from_attribute_value(record)
                .map_err(|e| StoreError::Corrupt { key: pk.clone(), what: "record", source: Box::new(e) })?;
            // Orders are stored as themselves, other records tagged with their kind.
            if kind != "order" {
                value = value.get_mut("record").map(serde_json::Value::take).unwrap_or(value);
            }
            found.insert(pk.trim_start_matches(&prefix).to_owned(), value);
        }
        Ok(found)
    }

    async fn by_trace(&self, trace_id: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_trace")
            .key_condition_expression("trace_id = :t")
            .expression_attribute_values(":t", AttributeValue::S(trace_id.to_owned()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        pages
            .into_iter()
            .map(|item| {
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let record =
                    item.get("record").cloned().map_or(Ok(serde_json::Value::Null), serde_dynamo::from_attribute_value);
                Ok(StoredRecord {
                    pk: s("pk").unwrap_or_default(),
                    kind: s("kind").unwrap_or_default(),
                    trace_id: s("trace_id"),
                    updated_at: s("updated_at"),
                    record: record.map_err(|e| StoreError::Corrupt {
                        key: s("pk").unwrap_or_default(),
                        what: "record",
                        source: Box::new(e),
                    })?,
                })
            })
            .collect()
    }
}

/// The kind name and id under which a non-order record is stored.
/// What a replaced order keeps of the stored one: the routing decided when it was first stored, its
/// customer, and an erasure of its buyer's contact data (a channel re-sending the order brings the
/// contact data back; it is dropped again).
fn keep_from_previous(order: &mut Order, previous: &Order) {
    order.fulfillment.clone_from(&previous.fulfillment);
    if order.customer_id.is_none() {
        order.customer_id.clone_from(&previous.customer_id);
    }
    if let Some(at) = previous.contact_erased_at {
        erase(order, at);
    }
}

/// The order without its buyer's contact data and addresses.
pub fn erase(order: &mut Order, at: DateTime<Utc>) {
    order.customer = OrderCustomer::default();
    order.shipping_address = None;
    order.billing_address = None;
    order.contact_erased_at = Some(at);
}

pub fn record_key(record: &Record) -> (&'static str, String) {
    match record {
        Record::Order(o) => ("order", o.id.to_string()),
        Record::InventoryLevel(l) => (
            "inventory_level",
            format!(
                "{}:{}:{}:{}",
                l.channel,
                l.account,
                l.channel_item_id
                    .clone()
                    .or_else(|| l.channel_sku.as_ref().map(ToString::to_string))
                    .unwrap_or_default(),
                l.location_id.clone().unwrap_or_default()
            ),
        ),
        Record::Product(p) => ("product", p.id.clone()),
        Record::Price(p) => ("price", format!("{}:{}", p.channel.map_or("all", |c| c.as_str()), p.sku)),
        Record::Shipment(s) => ("shipment", s.id.clone()),
        Record::Refund(r) => ("refund", r.id.clone()),
        Record::Return(r) => ("return", r.id.clone()),
        Record::Customer(c) => ("customer", c.id.clone()),
    }
}

/// In-memory record store for unit tests of the services: orders, ingest keys and their outboxes.
#[derive(Debug, Default)]
pub struct MemoryRecords {
    inner: std::sync::Mutex<MemoryRecordsInner>,
}

#[derive(Debug, Default)]
struct MemoryRecordsInner {
    orders: HashMap<OrderId, Order>,
    records: HashMap<String, Record>,
    /// Ingest key -> outbox events not yet marked sent.
    applied: HashMap<String, Vec<OutboxEvent>>,
}

impl MemoryRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryRecordsInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RecordStore for MemoryRecords {
    async fn put_order(
        &self,
        order: &Order,
        ingest_key: &str,
        _trace_id: &str,
        _now: DateTime<Utc>,
        events: EventsFor<'_>,
    ) -> Result<OrderWrite, StoreError> {
        let mut inner = self.lock();
        let previous = inner.orders.get(&order.id).cloned();
        if let Some(p) = &previous
            && p.source_version >= order.source_version
        {
            return Ok(OrderWrite::Stale { stored_version: p.source_version });
        }
        if inner.applied.contains_key(ingest_key) {
            return Ok(OrderWrite::Duplicate);
        }
        let write = match previous {
            Some(p) => OrderWrite::Updated { previous: Box::new(p) },
            None => OrderWrite::Created,
        };
        let outbox = events(&write)?;
        let mut to_store = order.clone();
        if let OrderWrite::Updated { previous } = &write {
            keep_from_previous(&mut to_store, previous);
        }
        inner.orders.insert(order.id.clone(), to_store);
        inner.applied.insert(ingest_key.to_owned(), outbox);
        Ok(write)
    }

    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.lock().orders.get(id).cloned())
    }

    async fn set_oversold(&self, id: &OrderId, oversold: Option<&Oversell>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(o) = inner.orders.get_mut(id) else { return Ok(false) };
        if oversold.is_some() && o.oversold.is_some() {
            return Ok(false);
        }
        o.oversold = oversold.cloned();
        Ok(true)
    }

    async fn release_hold(&self, id: &OrderId, release: &Release) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let hold = inner.orders.get_mut(id).and_then(|o| o.fulfillment.as_mut()).and_then(|f| f.hold.as_mut());
        match hold {
            Some(h) if h.released.is_none() => {
                h.released = Some(release.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn link_customer(&self, id: &OrderId, customer_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(o) = inner.orders.get_mut(id) else { return Ok(false) };
        o.customer_id = Some(customer_id.to_owned());
        Ok(true)
    }

    async fn erase_contact(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(o) = inner.orders.get_mut(id) else { return Ok(false) };
        erase(o, at);
        Ok(true)
    }

    async fn put_record(
        &self,
        record: &Record,
        ingest_key: &str,
        _trace_id: &str,
        _now: DateTime<Utc>,
        events: &[OutboxEvent],
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.applied.contains_key(ingest_key) {
            return Ok(false);
        }
        let (kind, id) = record_key(record);
        inner.records.insert(format!("{kind}#{id}"), record.clone());
        inner.applied.insert(ingest_key.to_owned(), events.to_vec());
        Ok(true)
    }

    async fn pending_events(&self, ingest_key: &str) -> Result<Vec<OutboxEvent>, StoreError> {
        Ok(self.lock().applied.get(ingest_key).cloned().unwrap_or_default())
    }

    async fn mark_sent(&self, ingest_key: &str, event_id: &str) -> Result<(), StoreError> {
        if let Some(events) = self.lock().applied.get_mut(ingest_key) {
            events.retain(|e| e.id != event_id);
        }
        Ok(())
    }

    async fn get_records(&self, kind: &str, ids: &[String]) -> Result<HashMap<String, serde_json::Value>, StoreError> {
        let inner = self.lock();
        let mut found = HashMap::new();
        for id in ids {
            let value = if kind == "order" {
                OrderId::new(id.clone()).ok().and_then(|o| inner.orders.get(&o)).map(serde_json::to_value)
            } else {
                inner.records.get(&format!("{kind}#{id}")).map(|r| match r {
                    Record::Order(o) => serde_json::to_value(o),
                    Record::InventoryLevel(x) => serde_json::to_value(x),
                    Record::Product(x) => serde_json::to_value(x),
                    Record::Price(x) => serde_json::to_value(x),
                    Record::Shipment(x) => serde_json::to_value(x),
                    Record::Refund(x) => serde_json::to_value(x),
                    Record::Return(x) => serde_json::to_value(x),
                    Record::Customer(x) => serde_json::to_value(x),
                })
            };
            if let Some(v) = value {
                found.insert(id.clone(), v.map_err(|e| StoreError::Invalid { what: "record", reason: e.to_string() })?);
            }
        }
        Ok(found)
    }

    async fn by_trace(&self, _trace_id: &str) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_oversold_mark_stands_and_only_its_writer_is_told_so() {
        let order: Order = serde_json::from_value(serde_json::json!({
            "id": "shopify:shop-eu:1", "channel": "shopify", "account": "shop-eu", "channel_order_id": "1",
            "order_number": "1", "status": "paid", "created_at": "2026-11-30T10:00:00Z",
            "updated_at": "2026-11-30T10:00:00Z", "currency": "EUR", "lines": [],
            "totals": {"subtotal": "0.00", "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": "0.00"},
            "customer": {}, "shipping_address": null, "billing_address": null, "source_version": 1
        }))
        .unwrap();
        let records = MemoryRecords::default();
        let none = |_: &OrderWrite| Ok(Vec::new());
        records.put_order(&order, "k", "t", Utc::now(), &none).await.unwrap();
        let mark = |minute: u32| Oversell {
            short_lines: vec![],
            action: manifold_domain::OversellAction::Hold,
            detected_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 30, 10, minute, 0).unwrap(),
        };
        assert!(records.set_oversold(&order.id, Some(&mark(1))).await.unwrap(), "the first mark");
        assert!(!records.set_oversold(&order.id, Some(&mark(2))).await.unwrap(), "a replay's mark");
        let stored = records.get_order(&order.id).await.unwrap().unwrap();
        assert_eq!(stored.oversold, Some(mark(1)), "the first mark stands");
    }
}
