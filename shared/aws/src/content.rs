//! Product content (DynamoDB `RecordsTable`): what the ERP or PIM says each SKU's listings show, and
//! what each channel account was last given of it.
//!
//! - **The content book**: one [`ProductContent`] per SKU in one partition (`pk = CONTENT`,
//!   `sk = SKU#{sku}`), so the content tier pages through all of them with a query. Content is only
//!   replaced by content updated later: a late or replayed import never regresses it.
//! - **Deliveries**: per channel SKU of an account (`pk = CONTENT_SENT#{channel}#{account}`,
//!   `sk = {channel_sku}`), the hash of the text the channel took and the hash of each image at its
//!   position, with the trace id of the run. The next run compares against them, so an unchanged
//!   listing costs no call and one changed image is the only image sent.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, error::SdkError};
use chrono::{DateTime, Utc};
use manifold_domain::{
    AccountId, Channel, ProductContent, Sku,
    rules::{ProductFacts, SkuFacts},
};
use serde::{Deserialize, Serialize};

use crate::{
    StoreError,
    book::{Partition, encode, s},
};

/// How a content write ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ContentWrite {
    Applied,
    /// The same content was already stored (a replay).
    Unchanged,
    /// Content updated at or after this one's time is stored: nothing written.
    Stale {
        current_updated_at: DateTime<Utc>,
    },
}

/// What a channel account's listing was last given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredContent {
    pub channel: Channel,
    pub account: AccountId,
    pub channel_sku: String,
    pub sku: Sku,
    /// Hash of the text fields the channel takes (`None`: no text delivered yet).
    #[serde(default)]
    pub text_hash: Option<String>,
    /// Hash of the image at each position.
    #[serde(default)]
    pub image_hashes: Vec<String>,
    pub trace_id: String,
    pub delivered_at: DateTime<Utc>,
}

/// The content-book port.
#[async_trait]
pub trait ContentBook: Send + Sync {
    /// Stores a SKU's content unless content updated at or after it is stored.
    async fn set(
        &self,
        content: &ProductContent,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ContentWrite, StoreError>;
    async fn get(&self, sku: &Sku) -> Result<Option<ProductContent>, StoreError>;
    /// What the rules know of these SKUs' products (tags, weight), in batches (SKUs without content
    /// are absent).
    async fn facts_of(&self, skus: &[Sku]) -> Result<SkuFacts, StoreError>;
    /// Content in SKU order, a page at a time (`next` is the cursor of the following page).
    async fn page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ProductContent>, Option<String>), StoreError>;
    /// What an account's channel was last given for these channel SKUs, by channel SKU.
    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredContent>, StoreError>;
    /// Records what a channel took.
    async fn record_delivery(&self, delivered: &DeliveredContent) -> Result<(), StoreError>;
}

const BOOK_PK: &str = "CONTENT";

fn sku_sk(sku: &Sku) -> String {
    format!("SKU#{sku}")
}

fn delivered_pk(channel: Channel, account: &AccountId) -> String {
    format!("CONTENT_SENT#{channel}#{account}")
}

/// What the rules read of a SKU's content.
pub fn facts(content: ProductContent) -> (Sku, ProductFacts) {
    (content.sku, ProductFacts { tags: content.tags, weight_grams: content.weight_grams })
}

/// A write that lost to the stored content: a replay when they are equal, else stale.
fn lost_to(stored: &ProductContent, content: &ProductContent) -> ContentWrite {
    if stored == content {
        ContentWrite::Unchanged
    } else {
        ContentWrite::Stale { current_updated_at: stored.updated_at }
    }
}

/// The content book in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoContentBook {
    client: Client,
    table: String,
}

impl DynamoContentBook {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn partition<'a>(&'a self, pk: &'a str, what: &'static str) -> Partition<'a> {
        Partition { client: &self.client, table: &self.table, pk, what }
    }
}

#[async_trait]
impl ContentBook for DynamoContentBook {
    async fn set(
        &self,
        content: &ProductContent,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ContentWrite, StoreError> {
        let at = content.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(BOOK_PK))
            .item("sk", s(sku_sk(&content.sku)))
            .item("kind", s("product_content"))
            .item("trace_id", s(trace_id))
            .item("updated_at", s(&at))
            .item("recorded_at", s(now.to_rfc3339()))
            .item("record", encode("product content", content)?)
            .condition_expression("attribute_not_exists(pk) OR updated_at < :at")
            .expression_attribute_values(":at", s(&at))
            .send()
            .await;
        match written {
            Ok(_) => Ok(ContentWrite::Applied),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                match self.get(&content.sku).await? {
                    Some(stored) => Ok(lost_to(&stored, content)),
                    None => Err(StoreError::service("dynamodb", "PutItem", SdkError::ServiceError(e))),
                }
            }
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn get(&self, sku: &Sku) -> Result<Option<ProductContent>, StoreError> {
        self.partition(BOOK_PK, "product content").get(&sku_sk(sku)).await
    }

    async fn facts_of(&self, skus: &[Sku]) -> Result<SkuFacts, StoreError> {
        let keys: Vec<String> = skus.iter().map(sku_sk).collect();
        let found: Vec<ProductContent> = self.partition(BOOK_PK, "product content").many(&keys).await?;
        Ok(found.into_iter().map(facts).collect())
    }

    async fn page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ProductContent>, Option<String>), StoreError> {
        self.partition(BOOK_PK, "product content").page(cursor, limit).await
    }

    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredContent>, StoreError> {
        let pk = delivered_pk(channel, account);
        let found: Vec<DeliveredContent> = self.partition(&pk, "delivered content").many(channel_skus).await?;
        Ok(found.into_iter().map(|d| (d.channel_sku.clone(), d)).collect())
    }

    async fn record_delivery(&self, d: &DeliveredContent) -> Result<(), StoreError> {
        let pk = delivered_pk(d.channel, &d.account);
        self.partition(&pk, "delivered content")
            .put(&d.channel_sku, "content_delivery", &d.trace_id, d.delivered_at, d)
            .await
    }
}

/// The content book in memory, for tests of what uses it.
#[derive(Debug, Default)]
pub struct MemoryContentBook {
    inner: std::sync::Mutex<MemoryBook>,
}

#[derive(Debug, Default)]
struct MemoryBook {
    current: BTreeMap<Sku, ProductContent>,
    delivered: BTreeMap<(Channel, AccountId), BTreeMap<String, DeliveredContent>>,
}

#[async_trait]
impl ContentBook for MemoryContentBook {
    async fn set(&self, content: &ProductContent, _: &str, _: DateTime<Utc>) -> Result<ContentWrite, StoreError> {
        let mut inner = self.inner.lock().expect("content book lock");
        if let Some(stored) = inner.current.get(&content.sku).filter(|s| s.updated_at >= content.updated_at) {
            return Ok(lost_to(stored, content));
        }
        inner.current.insert(content.sku.clone(), content.clone());
        Ok(ContentWrite::Applied)
    }

    async fn get(&self, sku: &Sku) -> Result<Option<ProductContent>, StoreError> {
        Ok(self.inner.lock().expect("content book lock").current.get(sku).cloned())
    }

    async fn facts_of(&self, skus: &[Sku]) -> Result<SkuFacts, StoreError> {
        let inner = self.inner.lock().expect("content book lock");
        Ok(skus.iter().filter_map(|s| inner.current.get(s).cloned().map(facts)).collect())
    }

    async fn page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ProductContent>, Option<String>), StoreError> {
        let inner = self.inner.lock().expect("content book lock");
        let mut page: Vec<ProductContent> = inner
            .current
            .values()
            .filter(|c| cursor.is_none_or(|a| sku_sk(&c.sku).as_str() > a))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|c| sku_sk(&c.sku)).unwrap_or_default()
        });
        Ok((page, next))
    }

    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredContent>, StoreError> {
        let inner = self.inner.lock().expect("content book lock");
        let Some(all) = inner.delivered.get(&(channel, account.clone())) else { return Ok(BTreeMap::new()) };
        Ok(channel_skus.iter().filter_map(|c| all.get(c).map(|d| (c.clone(), d.clone()))).collect())
    }

    async fn record_delivery(&self, d: &DeliveredContent) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("content book lock");
        inner.delivered.entry((d.channel, d.account.clone())).or_default().insert(d.channel_sku.clone(), d.clone());
        Ok(())
    }
}
