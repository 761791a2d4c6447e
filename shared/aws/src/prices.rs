//! Base prices and delivered prices (DynamoDB `RecordsTable`).
//!
//! The ERP sets each SKU's base price; the prices tier turns it into each account's price through the
//! rules and pushes only what differs from what the account was last given. So two things are kept:
//!
//! - **The price book**: the current base price of every SKU in one partition (`pk = PRICES`,
//!   `sk = SKU#{sku}`), so the tier pages through all of them with a query; and every change in the
//!   SKU's history partition (`pk = PRICE#{sku}`, `sk = {effective_at}#{source_ref}`). A price is only
//!   replaced by one effective later (a late or replayed import never regresses it), and the current
//!   item and its history entry are written in one transaction.
//! - **Deliveries**: the last price each account's channel took, per channel SKU
//!   (`pk = PRICE_SENT#{channel}#{account}`, `sk = {channel_sku}`), with the rules that made it and the
//!   trace id of the run, so `manifold trace` finds it and the next run compares against it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::SdkError,
    types::{AttributeValue, Put, TransactWriteItem},
};
use chrono::{DateTime, Utc};
use manifold_domain::{AccountId, Amount, Channel, Currency, Price, Sku};
use serde::{Deserialize, Serialize};

use crate::{
    StoreError,
    book::{Partition, decode, encode},
};

/// How a base price write ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PriceWrite {
    Applied,
    /// The same price, effective at the same time, was already applied (a replay).
    Unchanged,
    /// A price effective later is already applied: nothing written.
    Stale {
        current_effective_at: DateTime<Utc>,
    },
}

/// One entry of a SKU's price history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    pub price: Price,
    /// The import or request that set it.
    pub source_ref: String,
    pub trace_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// The price a channel account was last given for one of its SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredPrice {
    pub channel: Channel,
    pub account: AccountId,
    pub channel_sku: String,
    pub sku: Sku,
    pub amount: Amount,
    pub currency: Currency,
    /// The rules that made the price, in the order they applied.
    #[serde(default)]
    pub rules: Vec<String>,
    pub trace_id: String,
    pub delivered_at: DateTime<Utc>,
}

/// The price-book port.
#[async_trait]
pub trait PriceBook: Send + Sync {
    /// Sets a SKU's base price unless one effective later is already set.
    async fn set(
        &self,
        price: &Price,
        source_ref: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PriceWrite, StoreError>;
    async fn get(&self, sku: &Sku) -> Result<Option<Price>, StoreError>;
    /// A SKU's price changes, newest first.
    async fn history(&self, sku: &Sku, limit: usize) -> Result<Vec<PriceChange>, StoreError>;
    /// Current base prices in SKU order, a page at a time (`next` is the cursor of the following page).
    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Price>, Option<String>), StoreError>;
    /// The prices an account's channel was last given for these channel SKUs, by channel SKU (SKUs
    /// never given a price are absent).
    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredPrice>, StoreError>;
    /// Records what a channel took.
    async fn record_delivery(&self, delivered: &DeliveredPrice) -> Result<(), StoreError>;
}

/// The price book in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoPriceBook {
    client: Client,
    table: String,
}

const BOOK_PK: &str = "PRICES";

fn sku_sk(sku: &Sku) -> String {
    format!("SKU#{sku}")
}

fn history_pk(sku: &Sku) -> String {
    format!("PRICE#{sku}")
}

fn delivered_pk(channel: Channel, account: &AccountId) -> String {
    format!("PRICE_SENT#{channel}#{account}")
}

impl DynamoPriceBook {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn partition<'a>(&'a self, pk: &'a str, what: &'static str) -> Partition<'a> {
        Partition { client: &self.client, table: &self.table, pk, what }
    }
}

#[async_trait]
impl PriceBook for DynamoPriceBook {
    async fn set(
        &self,
        price: &Price,
        source_ref: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PriceWrite, StoreError> {
        let at = price.effective_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let change = PriceChange {
            price: price.clone(),
            source_ref: source_ref.to_owned(),
            trace_id: trace_id.to_owned(),
            recorded_at: now,
        };
        let current = Put::builder()
            .table_name(&self.table)
            .item("pk", Self::s(BOOK_PK))
            .item("sk", Self::s(sku_sk(&price.sku)))
            .item("effective_at", Self::s(&at))
            .item("record", encode("price", price)?)
            .condition_expression("attribute_not_exists(pk) OR effective_at < :at")
            .expression_attribute_values(":at", Self::s(&at))
            .build()
            .map_err(|e| StoreError::Invalid { what: "price", reason: e.to_string() })?;
        let history = Put::builder()
            .table_name(&self.table)
            .item("pk", Self::s(history_pk(&price.sku)))
            .item("sk", Self::s(format!("{at}#{source_ref}")))
            .item("kind", Self::s("price"))
            .item("trace_id", Self::s(trace_id))
            .item("updated_at", Self::s(now.to_rfc3339()))
            .item("record", encode("price change", &change)?)
            .build()
            .map_err(|e| StoreError::Invalid { what: "price", reason: e.to_string() })?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(current).build())
            .transact_items(TransactWriteItem::builder().put(history).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(PriceWrite::Applied),
            Err(SdkError::ServiceError(e)) if e.err().is_transaction_canceled_exception() => {
                match self.get(&price.sku).await? {
                    Some(stored) if stored.effective_at > price.effective_at => {
                        Ok(PriceWrite::Stale { current_effective_at: stored.effective_at })
                    }
                    Some(_) => Ok(PriceWrite::Unchanged),
                    None => Err(StoreError::service("dynamodb", "TransactWriteItems", SdkError::ServiceError(e))),
                }
            }
            Err(e) => Err(StoreError::service("dynamodb", "TransactWriteItems", e)),
        }
    }

    async fn get(&self, sku: &Sku) -> Result<Option<Price>, StoreError> {
        self.partition(BOOK_PK, "price").get(&sku_sk(sku)).await
    }

    async fn history(&self, sku: &Sku, limit: usize) -> Result<Vec<PriceChange>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", Self::s(history_pk(sku)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
        out.items().iter().map(|i| decode("price change", i)).collect()
    }

    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Price>, Option<String>), StoreError> {
        self.partition(BOOK_PK, "price").page(cursor, limit).await
    }

    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredPrice>, StoreError> {
        let pk = delivered_pk(channel, account);
        let found: Vec<DeliveredPrice> = self.partition(&pk, "delivered price").many(channel_skus).await?;
        Ok(found.into_iter().map(|d| (d.channel_sku.clone(), d)).collect())
    }

    async fn record_delivery(&self, d: &DeliveredPrice) -> Result<(), StoreError> {
        let pk = delivered_pk(d.channel, &d.account);
        self.partition(&pk, "delivered price")
            .put(&d.channel_sku, "price_delivery", &d.trace_id, d.delivered_at, d)
            .await
    }
}

/// The price book in memory, for unit tests of the services.
#[derive(Debug, Default)]
pub struct MemoryPriceBook {
    inner: std::sync::Mutex<MemoryBook>,
}

#[derive(Debug, Default)]
struct MemoryBook {
    current: BTreeMap<Sku, Price>,
    history: BTreeMap<Sku, Vec<PriceChange>>,
    delivered: BTreeMap<(Channel, AccountId), BTreeMap<String, DeliveredPrice>>,
}

#[async_trait]
impl PriceBook for MemoryPriceBook {
    async fn set(
        &self,
        price: &Price,
        source_ref: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PriceWrite, StoreError> {
        let mut inner = self.inner.lock().expect("price book lock");
        match inner.current.get(&price.sku) {
            Some(stored) if stored.effective_at > price.effective_at => {
                return Ok(PriceWrite::Stale { current_effective_at: stored.effective_at });
            }
            Some(stored) if stored.effective_at == price.effective_at => return Ok(PriceWrite::Unchanged),
            _ => {}
        }
        inner.current.insert(price.sku.clone(), price.clone());
        inner.history.entry(price.sku.clone()).or_default().insert(
            0,
            PriceChange {
                price: price.clone(),
                source_ref: source_ref.to_owned(),
                trace_id: trace_id.to_owned(),
                recorded_at: now,
            },
        );
        Ok(PriceWrite::Applied)
    }

    async fn get(&self, sku: &Sku) -> Result<Option<Price>, StoreError> {
        Ok(self.inner.lock().expect("price book lock").current.get(sku).cloned())
    }

    async fn history(&self, sku: &Sku, limit: usize) -> Result<Vec<PriceChange>, StoreError> {
        let inner = self.inner.lock().expect("price book lock");
        Ok(inner.history.get(sku).map(|h| h.iter().take(limit).cloned().collect()).unwrap_or_default())
    }

    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Price>, Option<String>), StoreError> {
        let inner = self.inner.lock().expect("price book lock");
        let after = cursor.map(str::to_owned);
        let mut prices: Vec<Price> = inner
            .current
            .values()
            .filter(|p| after.as_ref().is_none_or(|a| sku_sk(&p.sku) > *a))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = (prices.len() > limit).then(|| {
            prices.truncate(limit);
            prices.last().map(|p| sku_sk(&p.sku)).unwrap_or_default()
        });
        Ok((prices, next))
    }

    async fn delivered_of(
        &self,
        channel: Channel,
        account: &AccountId,
        channel_skus: &[String],
    ) -> Result<BTreeMap<String, DeliveredPrice>, StoreError> {
        let inner = self.inner.lock().expect("price book lock");
        let Some(all) = inner.delivered.get(&(channel, account.clone())) else { return Ok(BTreeMap::new()) };
        Ok(channel_skus.iter().filter_map(|s| all.get(s).map(|d| (s.clone(), d.clone()))).collect())
    }

    async fn record_delivery(&self, d: &DeliveredPrice) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("price book lock");
        inner.delivered.entry((d.channel, d.account.clone())).or_default().insert(d.channel_sku.clone(), d.clone());
        Ok(())
    }
}
