//! Quarantine: payloads that passed verification but could not be processed (malformed, unmappable),
//! kept whole with their reason so an operator can inspect them and replay them after a fix
//! (`manifold quarantine list|show|replay`). Nothing that a channel sent us is ever silently dropped.
//!
//! Nor is it kept for ever: payloads hold customer data, so every item expires a retention period after
//! it was quarantined (`QUARANTINE_RETENTION_DAYS`, default [`DEFAULT_RETENTION_DAYS`]). The store
//! writes the expiry into the table's TTL attribute (`expires_at`, epoch seconds) and reads it back, so
//! `manifold quarantine list|show` says when each item goes, as the table will enforce it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Days a quarantined payload is kept when `QUARANTINE_RETENTION_DAYS` does not say otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// The DynamoDB TTL attribute (`TimeToLiveSpecification` of the QuarantineTable): epoch seconds.
const EXPIRES_AT: &str = "expires_at";

/// How long quarantined payloads are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Duration);

impl Retention {
    /// At least one day: a quarantine must outlive the time it takes someone to look at it.
    pub fn days(days: u32) -> Result<Self, InvalidRetention> {
        if days == 0 {
            return Err(InvalidRetention(days.to_string()));
        }
        Ok(Self(Duration::days(i64::from(days))))
    }

    /// Reads `QUARANTINE_RETENTION_DAYS` through `get` (absent: [`DEFAULT_RETENTION_DAYS`]).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, InvalidRetention> {
        match get("QUARANTINE_RETENTION_DAYS") {
            None => Ok(Self::default()),
            Some(v) => match v.trim().parse() {
                Ok(days) => Self::days(days).map_err(|_| InvalidRetention(v)),
                Err(_) => Err(InvalidRetention(v)),
            },
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    /// When an item quarantined at `at` expires.
    pub fn expiry(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + self.0
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self(Duration::days(i64::from(DEFAULT_RETENTION_DAYS)))
    }
}

/// `QUARANTINE_RETENTION_DAYS` is not a whole number of days, at least 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("QUARANTINE_RETENTION_DAYS must be a whole number of days, at least 1; found {0:?}")]
pub struct InvalidRetention(pub String);

/// A quarantined payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedPayload {
    /// Time-ordered id (UUID v7).
    pub id: String,
    pub channel: String,
    pub account: String,
    /// Where it failed: `webhook`, `normalize`, `fetch`...
    pub stage: String,
    pub reason: String,
    pub trace_id: String,
    pub received_at: DateTime<Utc>,
    /// The exact message that failed (the ingest envelope as JSON), replayable as is.
    pub payload: String,
    #[serde(default)]
    pub replayed_at: Option<DateTime<Utc>>,
}

impl QuarantinedPayload {
    /// A fresh time-ordered id, for a payload that has no identity of its own (an operator's import).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// The id of the payload `key` (what failed and where: the stage and the delivery's ingest key,
    /// or the push message's id) first seen at `first_seen`. The same failure met again (an SQS
    /// redelivery after the ack was lost, a sender retrying after a 5xx) gets the same id, so it is
    /// kept once; the id is still a UUID v7 ordered by `first_seen`.
    pub fn id_for(key: &str, first_seen: DateTime<Utc>) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(key.as_bytes());
        let mut random = [0_u8; 10];
        random.copy_from_slice(&digest[..10]);
        let millis = u64::try_from(first_seen.timestamp_millis()).unwrap_or_default();
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
    }
}

/// A quarantined payload as stored: the payload and when the store lets it expire (`None` for items
/// quarantined before expiry existed, which stay until removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPayload {
    #[serde(flatten)]
    pub payload: QuarantinedPayload,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The quarantine port. Each item expires its store's retention after it was quarantined (its
/// `received_at`, the time it was put).
#[async_trait]
pub trait Quarantine: Send + Sync {
    /// Keeps `item` until its retention runs out. Putting an id that is already kept and not yet
    /// replayed changes nothing (the same failure met twice); an id that was replayed and failed
    /// again is kept anew, with its new reason.
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError>;
    /// One item with its expiry.
    async fn get_stored(&self, id: &str) -> Result<Option<StoredPayload>, StoreError>;
    /// Items (oldest first) with their expiry; replayed ones only when asked.
    async fn list_stored(&self, include_replayed: bool) -> Result<Vec<StoredPayload>, StoreError>;
    async fn mark_replayed(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Removes an item before its retention runs out (a person asked to be forgotten).
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<QuarantinedPayload>, StoreError> {
        Ok(self.get_stored(id).await?.map(|s| s.payload))
    }

    async fn list(&self, include_replayed: bool) -> Result<Vec<QuarantinedPayload>, StoreError> {
        Ok(self.list_stored(include_replayed).await?.into_iter().map(|s| s.payload).collect())
    }
}

/// DynamoDB implementation (`QuarantineTable`, `pk` = `Q#{id}`, `sk` = `payload`, TTL on `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoQuarantine {
    client: Client,
    table: String,
    retention: Retention,
}

impl DynamoQuarantine {
    /// Keeps items for the default retention; see [`DynamoQuarantine::with_retention`].
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), retention: Retention::default() }
    }

    #[must_use]
    pub fn with_retention(self, retention: Retention) -> Self {
        Self { retention, ..self }
    }

    fn key(id: &str) -> (AttributeValue, AttributeValue) {
        (AttributeValue::S(format!("Q#{id}")), AttributeValue::S("payload".into()))
    }
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<StoredPayload, StoreError> {
    let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let expires_at = match item.get(EXPIRES_AT) {
        None => None,
        Some(v) => Some(
            v.as_n()
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
                .ok_or_else(|| StoreError::Invalid {
                    what: "quarantined payload",
                    reason: format!("{key}: {EXPIRES_AT} is not epoch seconds: {v:?}"),
                })?,
        ),
    };
    let payload = serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
        key,
        what: "quarantined payload",
        source: Box::new(e),
    })?;
    Ok(StoredPayload { payload, expires_at })
}

#[async_trait]
impl Quarantine for DynamoQuarantine {
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError> {
        let mut attrs: HashMap<String, AttributeValue> = serde_dynamo::to_item(item)
            .map_err(|e| StoreError::Invalid { what: "quarantined payload", reason: e.to_string() })?;
        let (pk, sk) = Self::key(&item.id);
        attrs.insert("pk".into(), pk);
        attrs.insert("sk".into(), sk);
        let expires_at = self.retention.expiry(item.received_at).timestamp();
        attrs.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.to_string()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            // `replayed_at` is stored as NULL until a replay sets the time (a string).
            .condition_expression("attribute_not_exists(pk) OR attribute_type(replayed_at, :time)")
            .expression_attribute_values(":time", AttributeValue::S("S".into()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception,
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn get_stored(&self, id: &str) -> Result<Option<StoredPayload>, StoreError> {
        let (pk, sk) = Self::key(id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        out.item.map(decode).transpose()
    }

    async fn list_stored(&self, include_replayed: bool) -> Result<Vec<StoredPayload>, StoreError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Scan", e))?;
        let mut out: Vec<_> = items
            .into_iter()
            .filter(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("Q#")))
            .map(decode)
            .collect::<Result<_, _>>()?;
        out.retain(|q| include_replayed || q.payload.replayed_at.is_none());
        out.sort_by(|a, b| a.payload.id.cmp(&b.payload.id));
        Ok(out)
    }

    async fn mark_replayed(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(id);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET replayed_at = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::S(at.to_rfc3339()))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "UpdateItem", e))?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(id);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "DeleteItem", e))?;
        Ok(())
    }
}

/// In-memory implementation for unit tests, with the same retention rule as the table.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    items: std::sync::Mutex<Vec<StoredPayload>>,
    retention: Retention,
}

impl MemoryQuarantine {
    pub fn with_retention(retention: Retention) -> Self {
        Self { retention, ..Self::default() }
    }

    fn items(&self) -> std::sync::MutexGuard<'_, Vec<StoredPayload>> {
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Quarantine for MemoryQuarantine {
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError> {
        let stored = StoredPayload { payload: item.clone(), expires_at: Some(self.retention.expiry(item.received_at)) };
        let mut items = self.items();
        if items.iter().any(|q| q.payload.id == item.id && q.payload.replayed_at.is_none()) {
            return Ok(());
        }
        items.retain(|q| q.payload.id != item.id);
        items.push(stored);
        Ok(())
    }

    async fn get_stored(&self, id: &str) -> Result<Option<StoredPayload>, StoreError> {
        Ok(self.items().iter().find(|q| q.payload.id == id).cloned())
    }

    async fn list_stored(&self, include_replayed: bool) -> Result<Vec<StoredPayload>, StoreError> {
        let mut out: Vec<_> =
            self.items().iter().filter(|q| include_replayed || q.payload.replayed_at.is_none()).cloned().collect();
        out.sort_by(|a, b| a.payload.id.cmp(&b.payload.id));
        Ok(out)
    }

    async fn mark_replayed(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(q) = self.items().iter_mut().find(|q| q.payload.id == id) {
            q.payload.replayed_at = Some(at);
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.items().retain(|q| q.payload.id != id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn item(id: &str, received_at: DateTime<Utc>) -> QuarantinedPayload {
        QuarantinedPayload {
            id: id.to_owned(),
            channel: "shopify".into(),
            account: "shop-eu".into(),
            stage: "normalize".into(),
            reason: "line_items[0].quantity: expected an integer".into(),
            trace_id: "t-1".into(),
            received_at,
            payload: "{}".into(),
            replayed_at: None,
        }
    }

    #[test]
    fn retention_comes_from_the_environment_in_whole_days_and_defaults_to_thirty() {
        let env = |v: Option<&str>| {
            Retention::from_lookup(|k| if k == "QUARANTINE_RETENTION_DAYS" { v.map(str::to_owned) } else { None })
        };
        assert_eq!(env(None).unwrap().duration(), Duration::days(30));
        assert_eq!(env(Some(" 7 ")).unwrap().duration(), Duration::days(7));
        for bad in ["0", "-1", "1.5", "thirty", ""] {
            assert_eq!(env(Some(bad)).unwrap_err(), InvalidRetention(bad.to_owned()), "{bad}");
        }
    }

    #[test]
    fn the_same_failure_met_again_gets_the_same_time_ordered_id() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let id = QuarantinedPayload::id_for("normalize:shopify:shop-eu:evt-1", at);
        assert_eq!(id, QuarantinedPayload::id_for("normalize:shopify:shop-eu:evt-1", at));
        assert_ne!(id, QuarantinedPayload::id_for("normalize:shopify:shop-eu:evt-2", at));
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        let later = QuarantinedPayload::id_for("normalize:shopify:shop-eu:evt-0", at + Duration::milliseconds(1));
        assert!(id < later, "ordered by when the failure was first seen");
    }

    #[tokio::test]
    async fn every_item_expires_its_retention_after_it_was_quarantined_and_replays_keep_the_expiry() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let default = MemoryQuarantine::default();
        default.put(&item("q-1", at)).await.unwrap();
        let stored = default.get_stored("q-1").await.unwrap().unwrap();
        assert_eq!(stored.expires_at, Some(Utc.with_ymd_and_hms(2026, 3, 31, 12, 0, 0).unwrap()));

        let week = MemoryQuarantine::with_retention(Retention::days(7).unwrap());
        week.put(&item("q-2", at)).await.unwrap();
        week.put(&item("q-1", at - Duration::days(1))).await.unwrap();
        let listed = week.list_stored(false).await.unwrap();
        let expiries: Vec<_> = listed.iter().map(|s| (s.payload.id.as_str(), s.expires_at)).collect();
        assert_eq!(expiries, vec![("q-1", Some(at + Duration::days(6))), ("q-2", Some(at + Duration::days(7)))]);

        week.mark_replayed("q-2", at + Duration::days(2)).await.unwrap();
        assert_eq!(week.list(false).await.unwrap().len(), 1, "replayed items leave the default list");
        let replayed = week.get_stored("q-2").await.unwrap().unwrap();
        assert_eq!(replayed.expires_at, Some(at + Duration::days(7)), "a replay does not extend the retention");
        assert_eq!(week.get("q-2").await.unwrap().unwrap(), replayed.payload);

        // The CLI's JSON: the payload's fields and its expiry side by side.
        let json = serde_json::to_value(&replayed).unwrap();
        assert_eq!(json["id"], "q-2");
        assert_eq!(json["expires_at"], "2026-03-08T12:00:00Z");

        // The same failure met again is kept once: the first reason stays until it is replayed.
        week.put(&item("q-3", at)).await.unwrap();
        let q3 = week.get("q-3").await.unwrap().unwrap();
        week.put(&QuarantinedPayload { reason: "again".into(), ..q3.clone() }).await.unwrap();
        assert_eq!(week.get("q-3").await.unwrap().unwrap(), q3, "an unreplayed item is not overwritten");
        // A replayed item that fails again is kept anew, unreplayed, with its new reason.
        week.put(&QuarantinedPayload { reason: "a redelivery".into(), ..item("q-2", at + Duration::days(3)) })
            .await
            .unwrap();
        let requarantined = week.get("q-2").await.unwrap().unwrap();
        assert_eq!((requarantined.reason.as_str(), requarantined.replayed_at), ("a redelivery", None));
    }
}
