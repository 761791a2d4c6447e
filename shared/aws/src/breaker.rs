//! Circuit breaker state in DynamoDB, so every concurrent Lambda instance of a channel's push consumer
//! sees (and moves) the same breaker.
//!
//! One item per breaker in the `StateTable`: `pk` = `BREAKER#{key}` (the push consumer uses
//! `{channel}#{account}` as the key), `sk` = `state`, holding the serialized [`BreakerState`] plus an
//! `updated_at` for operators. Writes are compare-and-set on `version` through a condition
//! expression: a writer that lost the race gets `false` and re-reads, as the state machine in
//! `manifold_connectors::breaker` expects. The state machine itself lives there; this is storage only.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, error::SdkError, types::AttributeValue};
use manifold_connectors::breaker::{BreakerState, BreakerStore, StoreError};

/// [`BreakerStore`] over a DynamoDB table with the `pk`/`sk` key schema.
#[derive(Debug, Clone)]
pub struct DynamoBreakerStore {
    client: Client,
    table: String,
}

impl DynamoBreakerStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The partition key of a breaker's item.
    pub fn pk(key: &str) -> String {
        format!("BREAKER#{key}")
    }
}

const SORT_KEY: &str = "state";

fn store_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError(Box::new(e))
}

#[async_trait]
impl BreakerStore for DynamoBreakerStore {
    async fn load(&self, key: &str) -> Result<Option<BreakerState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(Self::pk(key)))
            .key("sk", AttributeValue::S(SORT_KEY.into()))
            // The breaker is only as good as its freshness: a stale closed state lets calls through.
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(mut item) = out.item else { return Ok(None) };
        for k in ["pk", "sk", "updated_at"] {
            item.remove(k);
        }
        serde_dynamo::from_item(item).map(Some).map_err(store_error)
    }

    async fn compare_and_set(&self, key: &str, expected_version: u64, next: &BreakerState) -> Result<bool, StoreError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(next).map_err(store_error)?;
        item.insert("pk".into(), AttributeValue::S(Self::pk(key)));
        item.insert("sk".into(), AttributeValue::S(SORT_KEY.into()));
        item.insert("updated_at".into(), AttributeValue::S(chrono::Utc::now().to_rfc3339()));
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let put = if expected_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }
}
