//! Small shared state in the `StateTable`: usage counters per channel and day (`manifold usage`) and
//! the Zalando poll cursor. Counters use atomic `ADD`, so concurrent functions never lose an increment.

use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::NaiveDate;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct StateStore {
    client: Client,
    table: String,
}

/// One day's usage for one channel.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub channel: String,
    pub day: String,
    pub api_calls: u64,
    pub aws_requests: u64,
    pub orders: u64,
    pub micro_usd: f64,
}

impl StateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Adds to a channel's usage for `day`.
    pub async fn add_usage(
        &self,
        channel: &str,
        day: NaiveDate,
        api_calls: u64,
        aws_requests: u64,
        orders: u64,
        micro_usd: f64,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USAGE#{channel}")))
            .key("sk", AttributeValue::S(day.to_string()))
            .update_expression("ADD api_calls :a, aws_requests :w, orders :o, micro_usd :c")
            .expression_attribute_values(":a", AttributeValue::N(api_calls.to_string()))
            .expression_attribute_values(":w", AttributeValue::N(aws_requests.to_string()))
            .expression_attribute_values(":o", AttributeValue::N(orders.to_string()))
            .expression_attribute_values(":c", AttributeValue::N(format!("{micro_usd:.3}")))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "UpdateItem", e))?;
        Ok(())
    }

    /// Usage of `channel` from `from` to `to` inclusive.
    pub async fn usage(&self, channel: &str, from: NaiveDate, to: NaiveDate) -> Result<Vec<Usage>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":p", AttributeValue::S(format!("USAGE#{channel}")))
            .expression_attribute_values(":a", AttributeValue::S(from.to_string()))
            .expression_attribute_values(":b", AttributeValue::S(to.to_string()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        Ok(items
            .into_iter()
            .map(|i| {
                let n =
                    |k: &str| i.get(k).and_then(|v| v.as_n().ok()).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Usage {
                    channel: channel.to_owned(),
                    day: i.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
                    api_calls: n("api_calls") as u64,
                    aws_requests: n("aws_requests") as u64,
                    orders: n("orders") as u64,
                    micro_usd: n("micro_usd"),
                }
            })
            .collect())
    }

    /// A string value under `key` (cursors, markers).
    pub async fn get_marker(&self, key: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("MARKER#{key}")))
            .key("sk", AttributeValue::S("value".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
        Ok(out.item.and_then(|i| i.get("value").and_then(|v| v.as_s().ok()).cloned()))
    }

    pub async fn set_marker(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("MARKER#{key}")))
            .item("sk", AttributeValue::S("value".into()))
            .item("value", AttributeValue::S(value.to_owned()))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }
}
