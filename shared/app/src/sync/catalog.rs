//! The catalog a stock run walks: the ledger's positions, one page at a time, from a cursor that a
//! run stores between pages, so a run of any size resumes where it stopped and no invocation has to
//! finish a whole catalog.
//!
//! [`LedgerCatalog`] pages a `Scan` of the `LedgerTable` (positions only; the cursor is the scan's
//! last evaluated key), reading each position from the page itself: one request per page, not one
//! per SKU. A delta run adds `updated_at >= since`. A slice is one segment of a parallel scan: the
//! segments partition the table, so the stock tier verifies the catalog a slice per run.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_aws::StoreError;
use manifold_ledger::{Position, dynamo::CHANGE_SHARDS};

/// Ledger items evaluated per page: what one page message covers.
pub const PAGE_ITEMS: i32 = 500;

/// At most this many slices (DynamoDB's limit on a scan's segments is 1,000,000).
pub const MAX_SLICES: u32 = 1_000_000;

/// One page of positions and where the next one starts (`None`: that was the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogPage {
    pub positions: Vec<Position>,
    pub next: Option<String>,
}

/// Pages through the stock positions.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync {
    /// The page starting at `cursor` (`None`: the beginning); with `since`, only positions changed
    /// since then.
    async fn page(&self, cursor: Option<&str>, since: Option<DateTime<Utc>>) -> Result<CatalogPage, StoreError>;

    /// The page starting at `cursor` of slice `slice` of `slices` (0-based): the slices partition
    /// the catalog, so walking each once covers every position once.
    async fn slice_page(&self, cursor: Option<&str>, slice: u32, slices: u32) -> Result<CatalogPage, StoreError>;

    /// The page starting at `cursor` of the positions changed since `since` (up to `until`, the
    /// run's start: later changes may appear too), found through the ledger's `Changed` index.
    async fn changed_page(
        &self,
        cursor: Option<&str>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<CatalogPage, StoreError>;
}

/// The change buckets (hour and shard, see `manifold_ledger::dynamo::change_bucket`) a changed walk
/// from `since` to `until` queries, in order.
pub fn change_buckets(since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
    let hour = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H").to_string();
    let mut out = Vec::new();
    let mut at = since;
    loop {
        for shard in 0..CHANGE_SHARDS {
            out.push(format!("CHG#{}#{shard}", hour(at)));
        }
        if hour(at) >= hour(until) {
            return out;
        }
        at += chrono::TimeDelta::hours(1);
    }
}

/// A changed walk's cursor: which bucket it is in and where in it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ChangedCursor {
    bucket: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<HashMap<String, String>>,
}

/// The `LedgerTable`'s positions (`SKU#{sku}` / `LOC#{location}`).
#[derive(Debug, Clone)]
pub struct LedgerCatalog {
    client: aws_sdk_dynamodb::Client,
    table: String,
    page_items: i32,
}

impl LedgerCatalog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), page_items: PAGE_ITEMS }
    }

    /// Evaluates `items` per page instead of [`PAGE_ITEMS`].
    #[must_use]
    pub fn with_page_items(mut self, items: i32) -> Self {
        self.page_items = items.max(1);
        self
    }
}

fn corrupt(what: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { key: what.to_owned(), what: "ledger page cursor", source: reason.into().into() }
}

fn encode_cursor(key: &HashMap<String, AttributeValue>) -> Option<String> {
    let field = |k: &str| key.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(serde_json::json!({ "pk": field("pk")?, "sk": field("sk")? }).to_string())
}

fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let v: serde_json::Value = serde_json::from_str(cursor).map_err(|e| corrupt(cursor, e.to_string()))?;
    let field = |k: &str| {
        v.get(k).and_then(|s| s.as_str()).map(|s| AttributeValue::S(s.to_owned())).ok_or_else(|| corrupt(cursor, k))
    };
    Ok(HashMap::from([("pk".to_owned(), field("pk")?), ("sk".to_owned(), field("sk")?)]))
}

fn decode_positions(items: &[HashMap<String, AttributeValue>]) -> Result<Vec<Position>, StoreError> {
    items
        .iter()
        .map(|item| {
            serde_dynamo::aws_sdk_dynamodb_1::from_item::<Position>(item.clone()).map_err(|e| {
                let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                StoreError::Corrupt { key, what: "ledger position", source: Box::new(e) }
            })
        })
        .collect()
}

impl LedgerCatalog {
    /// One page of `scan` (positions only), decoded.
    async fn positions(
        scan: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
    ) -> Result<CatalogPage, StoreError> {
        let out = scan.send().await.map_err(|e| StoreError::service("dynamodb", "Scan", e))?;
        let positions = decode_positions(out.items())?;
        Ok(CatalogPage { positions, next: out.last_evaluated_key().and_then(encode_cursor) })
    }
}

#[async_trait::async_trait]
impl Catalog for LedgerCatalog {
    async fn changed_page(
        &self,
        cursor: Option<&str>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<CatalogPage, StoreError> {
        let buckets = change_buckets(since, until);
        let mut at = match cursor {
            Some(c) => serde_json::from_str::<ChangedCursor>(c).map_err(|e| corrupt(c, e.to_string()))?,
            None => ChangedCursor { bucket: 0, key: None },
        };
        let since =
            AttributeValue::S(since.to_rfc3339_opts(SecondsFormat::Secs, true).trim_end_matches('Z').to_owned());
        // Empty buckets are skipped within one page: a quiet hour costs a query, not a page message.
        while let Some(bucket) = buckets.get(at.bucket) {
            let start = at.key.take().map(|k| k.into_iter().map(|(n, v)| (n, AttributeValue::S(v))).collect());
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(manifold_ledger::dynamo::CHANGED_INDEX)
                .limit(self.page_items)
                .key_condition_expression("changed = :b AND updated_at >= :since")
                .expression_attribute_values(":b", AttributeValue::S(bucket.clone()))
                .expression_attribute_values(":since", since.clone())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
            let positions = decode_positions(out.items())?;
            let next_key: Option<HashMap<String, String>> = out
                .last_evaluated_key()
                .map(|k| k.iter().filter_map(|(n, v)| v.as_s().ok().map(|s| (n.clone(), s.clone()))).collect());
            at = match next_key {
                Some(key) => ChangedCursor { bucket: at.bucket, key: Some(key) },
                None => ChangedCursor { bucket: at.bucket + 1, key: None },
            };
            let more = at.key.is_some() || at.bucket < buckets.len();
            if !positions.is_empty() || !more {
                let next = more.then(|| serde_json::to_string(&at).unwrap_or_default());
                return Ok(CatalogPage { positions, next });
            }
        }
        Ok(CatalogPage::default())
    }

    async fn slice_page(&self, cursor: Option<&str>, slice: u32, slices: u32) -> Result<CatalogPage, StoreError> {
        // DynamoDB's parallel scan segments: disjoint, together the whole table, each read on its own.
        let slices = slices.clamp(1, MAX_SLICES);
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(self.page_items)
            .segment(i32::try_from(slice % slices).unwrap_or_default())
            .total_segments(i32::try_from(slices).unwrap_or(1))
            .filter_expression("begins_with(sk, :loc)")
            .expression_attribute_values(":loc", AttributeValue::S("LOC#".into()))
            .set_exclusive_start_key(cursor.map(decode_cursor).transpose()?);
        Self::positions(scan).await
    }

    async fn page(&self, cursor: Option<&str>, since: Option<DateTime<Utc>>) -> Result<CatalogPage, StoreError> {
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(self.page_items)
            .expression_attribute_values(":loc", AttributeValue::S("LOC#".into()))
            .set_exclusive_start_key(cursor.map(decode_cursor).transpose()?);
        scan = match since {
            // `updated_at` is RFC 3339 in UTC: a string comparison is a time comparison to the second.
            Some(t) => {
                scan.filter_expression("begins_with(sk, :loc) AND updated_at >= :since").expression_attribute_values(
                    ":since",
                    AttributeValue::S(t.to_rfc3339_opts(SecondsFormat::Secs, true).trim_end_matches('Z').to_owned()),
                )
            }
            None => scan.filter_expression("begins_with(sk, :loc)"),
        };
        Self::positions(scan).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_changed_walk_queries_every_shard_of_every_hour_from_since_to_until_and_matches_the_ledgers_buckets() {
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap();
        let within = change_buckets(at(6, 10), at(6, 15));
        assert_eq!(within, (0..CHANGE_SHARDS).map(|s| format!("CHG#2026-11-30T06#{s}")).collect::<Vec<_>>());
        let across = change_buckets(at(6, 58), at(8, 1));
        assert_eq!(across.len(), 3 * CHANGE_SHARDS as usize);
        assert_eq!(
            (across.first().unwrap().as_str(), across.last().unwrap().as_str()),
            ("CHG#2026-11-30T06#0", "CHG#2026-11-30T08#3")
        );
        // Every bucket the ledger writes a position under in that window is queried.
        for sku in ["TEE-BLK-M", "IPOD2009BLACK", "x"] {
            let bucket = manifold_ledger::dynamo::change_bucket(sku, at(7, 30));
            assert!(across.contains(&bucket), "{bucket}");
        }
    }
}
