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
use manifold_ledger::Position;

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

impl LedgerCatalog {
    /// One page of `scan` (positions only), decoded.
    async fn positions(
        scan: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
    ) -> Result<CatalogPage, StoreError> {
        let out = scan.send().await.map_err(|e| StoreError::service("dynamodb", "Scan", e))?;
        let positions = out
            .items()
            .iter()
            .map(|item| {
                serde_dynamo::aws_sdk_dynamodb_1::from_item::<Position>(item.clone()).map_err(|e| {
                    let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    StoreError::Corrupt { key, what: "ledger position", source: Box::new(e) }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CatalogPage { positions, next: out.last_evaluated_key().and_then(encode_cursor) })
    }
}

#[async_trait::async_trait]
impl Catalog for LedgerCatalog {
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
