//! Delivery idempotency keys: claim -> complete, with expiry.
//!
//! A webhook delivery is claimed with a conditional write *before* it is enqueued. A claim starts
//! `in_progress` with a short lease; once the raw event is safely on the ingest queue it is marked
//! `completed` with a long retention. So:
//! - a duplicate of a completed delivery is acknowledged and dropped;
//! - a concurrent duplicate (same key, lease still running) is told apart and refused with "retry later";
//! - a claim whose holder died (lease expired) can be taken over, so an idempotency record can never
//!   stay stuck "in progress", a failure users of other tools report.
//!
//! Expiry is checked from the item's own timestamps: DynamoDB TTL deletion lags by hours (and never
//! happens in moto), so it only cleans up.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::SdkError,
    operation::put_item::PutItemError,
    types::{AttributeValue, ReturnValuesOnConditionCheckFailure},
};
use chrono::{DateTime, Duration, Utc};

use crate::{StoreError, epoch_seconds};

/// What a claim attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: process the delivery, then `complete` (or `release` on failure).
    Claimed,
    /// Already fully processed: acknowledge, do nothing.
    Completed,
    /// Someone else holds a live lease on it: ask the sender to retry later.
    InProgress,
}

/// The idempotency port.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, key: &str, now: DateTime<Utc>, lease: Duration) -> Result<Claim, StoreError>;
    async fn complete(&self, key: &str, now: DateTime<Utc>, retain: Duration) -> Result<(), StoreError>;
    /// Gives the key back after a failure, so the channel's retry is processed.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

/// DynamoDB implementation: one item per key (`pk` = key, `sk` = `claim`).
#[derive(Debug, Clone)]
pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(&self, key: &str, now: DateTime<Utc>, lease: Duration) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_owned()))
            .item("sk", AttributeValue::S("claim".into()))
            .item("status", AttributeValue::S("in_progress".into()))
            .item("lease_until", AttributeValue::N(epoch_seconds(now + lease).to_string()))
            .item("expires_at", AttributeValue::N(epoch_seconds(now + lease).to_string()))
            // Free, or an in-progress lease that ran out (its holder died).
            .condition_expression("attribute_not_exists(pk) OR (#s = :in_progress AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S("in_progress".into()))
            .expression_attribute_values(":now", AttributeValue::N(epoch_seconds(now).to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                let status = match e.err() {
                    PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().and_then(|i| i.get("status")).and_then(|v| v.as_s().ok()).cloned()
                    }
                    _ => None,
                };
                Ok(if status.as_deref() == Some("completed") { Claim::Completed } else { Claim::InProgress })
            }
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn complete(&self, key: &str, now: DateTime<Utc>, retain: Duration) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_owned()))
            .item("sk", AttributeValue::S("claim".into()))
            .item("status", AttributeValue::S("completed".into()))
            .item("completed_at", AttributeValue::N(epoch_seconds(now).to_string()))
            .item("expires_at", AttributeValue::N(epoch_seconds(now + retain).to_string()))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .key("sk", AttributeValue::S("claim".into()))
            .condition_expression("#s = :in_progress")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S("in_progress".into()))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match &e {
                SdkError::ServiceError(se) if se.err().is_conditional_check_failed_exception() => Ok(()),
                _ => Err(StoreError::service("dynamodb", "DeleteItem", e)),
            })
    }
}

/// In-memory implementation for unit tests of the services.
#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    items: std::sync::Mutex<std::collections::HashMap<String, (bool, DateTime<Utc>)>>,
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(&self, key: &str, now: DateTime<Utc>, lease: Duration) -> Result<Claim, StoreError> {
        let mut items = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match items.get(key) {
            Some((true, _)) => Ok(Claim::Completed),
            Some((false, until)) if *until >= now => Ok(Claim::InProgress),
            _ => {
                items.insert(key.to_owned(), (false, now + lease));
                Ok(Claim::Claimed)
            }
        }
    }
    async fn complete(&self, key: &str, now: DateTime<Utc>, retain: Duration) -> Result<(), StoreError> {
        let mut items = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        items.insert(key.to_owned(), (true, now + retain));
        Ok(())
    }
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let mut items = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(items.get(key), Some((false, _))) {
            items.remove(key);
        }
        Ok(())
    }
}
