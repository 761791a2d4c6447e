//! Records kept one per sort key in a partition of the records table (the price book, the content
//! book and what each channel account was last given of them), read and written alike: every item
//! holds its record as a map under `record`, beside `pk`, `sk` and the attributes the table's
//! readers (`manifold trace`) look for.

use std::collections::HashMap;

use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};

use crate::StoreError;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Invalid { what, reason: e.to_string() })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let key = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let record = item.get("record").cloned().ok_or_else(|| StoreError::Corrupt {
        key: key.clone(),
        what,
        source: "no record attribute".into(),
    })?;
    serde_dynamo::from_attribute_value(record).map_err(|e| StoreError::Corrupt { key, what, source: Box::new(e) })
}

/// One partition of the records table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Partition<'a> {
    pub(crate) client: &'a Client,
    pub(crate) table: &'a str,
    pub(crate) pk: &'a str,
    /// What its records are, for errors.
    pub(crate) what: &'static str,
}

impl Partition<'_> {
    /// The record under `sk`, read consistently.
    pub(crate) async fn get<T: DeserializeOwned>(&self, sk: &str) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table)
            .key("pk", s(self.pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        out.item.as_ref().map(|i| decode(self.what, i)).transpose()
    }

    /// Records in sort-key order after `cursor`, a page at a time; the second value is the cursor
    /// of the following page.
    pub(crate) async fn page<T: DeserializeOwned>(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(self.pk))
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(after) = cursor {
            query = query.exclusive_start_key("pk", s(self.pk)).exclusive_start_key("sk", s(after));
        }
        let out = query.send().await.map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        let records = out.items().iter().map(|i| decode(self.what, i)).collect::<Result<Vec<T>, _>>()?;
        let next = out.last_evaluated_key().and_then(|k| k.get("sk")).and_then(|v| v.as_s().ok()).cloned();
        Ok((records, next))
    }

    /// The records under these sort keys (absent ones left out), in batches.
    pub(crate) async fn many<T: DeserializeOwned>(&self, sks: &[String]) -> Result<Vec<T>, StoreError> {
        let keys = sks.iter().map(|sk| crate::batch::key(self.pk.to_owned(), sk)).collect();
        let items = crate::batch::batch_get(self.client, self.table, keys, None).await?;
        items.iter().map(|i| decode(self.what, i)).collect()
    }

    /// Writes `record` under `sk` with its kind and trace id (what `manifold trace` finds).
    pub(crate) async fn put<T: Serialize>(
        &self,
        sk: &str,
        kind: &str,
        trace_id: &str,
        at: DateTime<Utc>,
        record: &T,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(self.table)
            .item("pk", s(self.pk))
            .item("sk", s(sk))
            .item("kind", s(kind))
            .item("trace_id", s(trace_id))
            .item("updated_at", s(at.to_rfc3339()))
            .item("record", encode(self.what, record)?)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }
}
