//! Quarantine: payloads that passed verification but could not be processed (malformed, unmappable),
//! kept whole with their reason so an operator can inspect them and replay them after a fix
//! (`manifold quarantine list|show|replay`). Nothing that a channel sent us is ever silently dropped.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

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
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// The quarantine port.
#[async_trait]
pub trait Quarantine: Send + Sync {
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<QuarantinedPayload>, StoreError>;
    async fn list(&self, include_replayed: bool) -> Result<Vec<QuarantinedPayload>, StoreError>;
    async fn mark_replayed(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// DynamoDB implementation (`QuarantineTable`, `pk` = `Q#{id}`, `sk` = `payload`).
#[derive(Debug, Clone)]
pub struct DynamoQuarantine {
    client: Client,
    table: String,
}

impl DynamoQuarantine {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn key(id: &str) -> (AttributeValue, AttributeValue) {
        (AttributeValue::S(format!("Q#{id}")), AttributeValue::S("payload".into()))
    }
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<QuarantinedPayload, StoreError> {
    let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
        key,
        what: "quarantined payload",
        source: Box::new(e),
    })
}

#[async_trait]
impl Quarantine for DynamoQuarantine {
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError> {
        let mut attrs: HashMap<String, AttributeValue> = serde_dynamo::to_item(item)
            .map_err(|e| StoreError::Invalid { what: "quarantined payload", reason: e.to_string() })?;
        let (pk, sk) = Self::key(&item.id);
        attrs.insert("pk".into(), pk);
        attrs.insert("sk".into(), sk);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<QuarantinedPayload>, StoreError> {
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

    async fn list(&self, include_replayed: bool) -> Result<Vec<QuarantinedPayload>, StoreError> {
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
        out.retain(|q| include_replayed || q.replayed_at.is_none());
        out.sort_by(|a, b| a.id.cmp(&b.id));
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
}

/// In-memory implementation for unit tests.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    pub items: std::sync::Mutex<Vec<QuarantinedPayload>>,
}

#[async_trait]
impl Quarantine for MemoryQuarantine {
    async fn put(&self, item: &QuarantinedPayload) -> Result<(), StoreError> {
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(item.clone());
        Ok(())
    }
    async fn get(&self, id: &str) -> Result<Option<QuarantinedPayload>, StoreError> {
        Ok(self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().find(|q| q.id == id).cloned())
    }
    async fn list(&self, include_replayed: bool) -> Result<Vec<QuarantinedPayload>, StoreError> {
        let items = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(items.iter().filter(|q| include_replayed || q.replayed_at.is_none()).cloned().collect())
    }
    async fn mark_replayed(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut items = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(q) = items.iter_mut().find(|q| q.id == id) {
            q.replayed_at = Some(at);
        }
        Ok(())
    }
}
