//! Deadlines to watch, in the `StateTable`: an order that must ship by a time, and a pushed tracking
//! number the channel must show by a time. Late tracking costs a merchant reviews and marketplace
//! standing, and nothing else notices it: a webhook that never comes raises no error.
//!
//! Layout (one item per watch, sorted by deadline so a check reads only what is due):
//! - `pk = WATCH#{kind}#{shard}`, `sk = {deadline, RFC 3339 UTC millis}#{key}`. `shard` (0..[`SHARDS`])
//!   comes from the key, so no single partition takes every order's write; a check queries each shard
//!   with `sk < {now}$` (`$` sorts after `#`).
//! - `pk = LATE#{kind}`, `sk = {key}`: what was reported, written with `attribute_not_exists`, so a
//!   deadline is reported exactly once however many checks see it. Kept [`REPORT_RETENTION_DAYS`]
//!   (the table's TTL, `expires_at`), listed by `manifold orders late`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_domain::{Channel, OrderId, Shipment};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// Partitions per watch kind.
pub const SHARDS: u8 = 4;
/// How long a report stays listed.
pub const REPORT_RETENTION_DAYS: i64 = 30;

/// What a deadline is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// The order must ship by the deadline (`OrderLate` when it has not).
    ShipBy,
    /// The channel must show the pushed tracking by the deadline (pushed again once, then
    /// `TrackingUnconfirmed`).
    Tracking,
}

impl WatchKind {
    pub const ALL: [WatchKind; 2] = [WatchKind::ShipBy, WatchKind::Tracking];

    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::ShipBy => "ship_by",
            WatchKind::Tracking => "tracking",
        }
    }
}

/// One deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub kind: WatchKind,
    /// The order id (ship-by), or `{order id}#{shipment id}` (tracking).
    pub key: String,
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: String,
    pub deadline: DateTime<Utc>,
    /// 1 for the first deadline; a tracking pushed again is watched as attempt 2.
    pub attempt: u32,
    /// The shipment whose tracking is watched (no customer data: carrier, number, lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    pub trace_id: String,
}

/// A deadline that passed, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub kind: WatchKind,
    pub key: String,
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: String,
    pub deadline: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    pub reason: String,
    pub trace_id: String,
}

/// Where deadlines are kept.
#[async_trait]
pub trait WatchStore: Send + Sync {
    /// Starts (or repeats: the same kind, key and deadline is the same item) watching a deadline.
    async fn watch(&self, watch: &Watch) -> Result<(), StoreError>;
    /// Deadlines of `kind` at or before `now`, earliest first, at most `limit`.
    async fn due(&self, kind: WatchKind, now: DateTime<Utc>, limit: usize) -> Result<Vec<Watch>, StoreError>;
    /// Stops watching (the order shipped, the tracking showed, or it was reported).
    async fn forget(&self, watch: &Watch) -> Result<(), StoreError>;
    /// Records a passed deadline; `false` when it was already reported.
    async fn report(&self, report: &Reported) -> Result<bool, StoreError>;
    /// What was reported, earliest deadline first.
    async fn reported(&self, kind: WatchKind) -> Result<Vec<Reported>, StoreError>;
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn shard(key: &str) -> u8 {
    Sha256::digest(key.as_bytes())[0] % SHARDS
}

fn watch_pk(kind: WatchKind, shard: u8) -> String {
    format!("WATCH#{}#{shard}", kind.as_str())
}

fn watch_sk(watch: &Watch) -> String {
    format!("{}#{}", stamp(watch.deadline), watch.key)
}

fn report_pk(kind: WatchKind) -> String {
    format!("LATE#{}", kind.as_str())
}

/// The DynamoDB store (the `StateTable`).
#[derive(Debug, Clone)]
pub struct DynamoWatch {
    client: Client,
    table: String,
}

impl DynamoWatch {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn encode<T: Serialize>(value: &T, pk: String, sk: String) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(value).map_err(|e| StoreError::Invalid { what: "watch", reason: e.to_string() })?;
        item.insert("pk".into(), AttributeValue::S(pk));
        item.insert("sk".into(), AttributeValue::S(sk));
        Ok(item)
    }

    fn decode<T: for<'de> Deserialize<'de>>(item: HashMap<String, AttributeValue>) -> Result<T, StoreError> {
        let key = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt { key, what: "watch", source: Box::new(e) })
    }
}

#[async_trait]
impl WatchStore for DynamoWatch {
    async fn watch(&self, watch: &Watch) -> Result<(), StoreError> {
        let item = Self::encode(watch, watch_pk(watch.kind, shard(&watch.key)), watch_sk(watch))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn due(&self, kind: WatchKind, now: DateTime<Utc>, limit: usize) -> Result<Vec<Watch>, StoreError> {
        let bound = format!("{}$", stamp(now));
        let mut out = Vec::new();
        for s in 0..SHARDS {
            let items = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk < :bound")
                .expression_attribute_values(":pk", AttributeValue::S(watch_pk(kind, s)))
                .expression_attribute_values(":bound", AttributeValue::S(bound.clone()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| StoreError::service("dynamodb", "Query", e))?
                .items
                .unwrap_or_default();
            for item in items {
                out.push(Self::decode::<Watch>(item)?);
            }
        }
        out.sort_by(|a, b| (a.deadline, &a.key).cmp(&(b.deadline, &b.key)));
        out.truncate(limit);
        Ok(out)
    }

    async fn forget(&self, watch: &Watch) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(watch_pk(watch.kind, shard(&watch.key))))
            .key("sk", AttributeValue::S(watch_sk(watch)))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "DeleteItem", e))?;
        Ok(())
    }

    async fn report(&self, report: &Reported) -> Result<bool, StoreError> {
        let mut item = Self::encode(report, report_pk(report.kind), report.key.clone())?;
        let expires = report.reported_at + chrono::Duration::days(REPORT_RETENTION_DAYS);
        item.insert("expires_at".into(), AttributeValue::N(expires.timestamp().to_string()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception,
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn reported(&self, kind: WatchKind) -> Result<Vec<Reported>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(report_pk(kind)))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        let mut out = items.into_iter().map(Self::decode::<Reported>).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.deadline, &a.key).cmp(&(b.deadline, &b.key)));
        Ok(out)
    }
}

/// In-memory store for unit tests, with the table's ordering and exactly-once reports.
#[derive(Debug, Default)]
pub struct MemoryWatch {
    watches: std::sync::Mutex<BTreeMap<(WatchKind, String), Watch>>,
    reports: std::sync::Mutex<BTreeMap<(WatchKind, String), Reported>>,
}

impl MemoryWatch {
    fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl WatchStore for MemoryWatch {
    async fn watch(&self, watch: &Watch) -> Result<(), StoreError> {
        Self::lock(&self.watches).insert((watch.kind, watch_sk(watch)), watch.clone());
        Ok(())
    }

    async fn due(&self, kind: WatchKind, now: DateTime<Utc>, limit: usize) -> Result<Vec<Watch>, StoreError> {
        let bound = format!("{}$", stamp(now));
        Ok(Self::lock(&self.watches)
            .iter()
            .filter(|((k, sk), _)| *k == kind && *sk < bound)
            .map(|(_, w)| w.clone())
            .take(limit)
            .collect())
    }

    async fn forget(&self, watch: &Watch) -> Result<(), StoreError> {
        Self::lock(&self.watches).remove(&(watch.kind, watch_sk(watch)));
        Ok(())
    }

    async fn report(&self, report: &Reported) -> Result<bool, StoreError> {
        let mut reports = Self::lock(&self.reports);
        let key = (report.kind, report.key.clone());
        if reports.contains_key(&key) {
            return Ok(false);
        }
        reports.insert(key, report.clone());
        Ok(true)
    }

    async fn reported(&self, kind: WatchKind) -> Result<Vec<Reported>, StoreError> {
        let mut out: Vec<_> = Self::lock(&self.reports).values().filter(|r| r.kind == kind).cloned().collect();
        out.sort_by(|a, b| (a.deadline, &a.key).cmp(&(b.deadline, &b.key)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(key: &str, deadline: &str) -> Watch {
        Watch {
            kind: WatchKind::ShipBy,
            key: key.to_owned(),
            order_id: OrderId::new(format!("shopify:shop-eu:{key}")).unwrap(),
            channel: Channel::Shopify,
            account: "shop-eu".into(),
            deadline: deadline.parse().unwrap(),
            attempt: 1,
            shipment: None,
            trace_id: "t".into(),
        }
    }

    #[test]
    fn deadline_keys_sort_as_time_and_the_bound_includes_now() {
        let at: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let w = watch("1", "2026-11-30T10:00:00Z");
        assert!(watch_sk(&w) < format!("{}$", stamp(at)), "a deadline of exactly now is due");
        assert!(watch_sk(&watch("1", "2026-11-30T10:00:00.001Z")) > format!("{}$", stamp(at)));
        assert!(watch_sk(&watch("9", "2026-11-30T09:59:59Z")) < watch_sk(&watch("1", "2026-11-30T10:00:00Z")));
        assert!(shard("any order") < SHARDS);
    }

    #[tokio::test]
    async fn the_memory_store_returns_what_is_due_and_reports_once() {
        let store = MemoryWatch::default();
        store.watch(&watch("1", "2026-11-30T08:00:00Z")).await.unwrap();
        store.watch(&watch("2", "2026-11-30T12:00:00Z")).await.unwrap();
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let due = store.due(WatchKind::ShipBy, now, 10).await.unwrap();
        assert_eq!(due.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(), ["1"]);
        assert!(store.due(WatchKind::Tracking, now, 10).await.unwrap().is_empty());
        let report = Reported {
            kind: WatchKind::ShipBy,
            key: "1".into(),
            order_id: due[0].order_id.clone(),
            channel: Channel::Shopify,
            account: "shop-eu".into(),
            deadline: due[0].deadline,
            reported_at: now,
            reason: "not shipped".into(),
            trace_id: "t".into(),
        };
        assert!(store.report(&report).await.unwrap());
        assert!(!store.report(&report).await.unwrap(), "a deadline is reported once");
        store.forget(&due[0]).await.unwrap();
        assert!(store.due(WatchKind::ShipBy, now, 10).await.unwrap().is_empty());
        assert_eq!(store.reported(WatchKind::ShipBy).await.unwrap().len(), 1);
    }
}
