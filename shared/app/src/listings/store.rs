//! Where the listings live: [`DynamoListings`] (items in the `StateTable`) and [`MemoryListings`] (unit
//! tests), behind the narrow [`ListingStore`] port.
//!
//! Keys (`StateTable`, one partition per account, so an account's listings are one `Query`):
//! - `LISTING#{channel}#{account}` / `SKU#{channel sku}`: one [`StoredListing`] (the channel SKU, the
//!   master SKU it maps to, the channel's ids, the quantity and price it last showed, first and last
//!   seen, and `gone_at` once a sync no longer found it);
//! - `LISTING#{channel}#{account}` / `SYNC`: `synced_at` of the account's last complete listing sync.
//!   Without it the account has never been synced, and its pushes are not filtered (it keeps getting
//!   every SKU, as before listings existed).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest},
};
use chrono::{DateTime, Utc};
use manifold_aws::StoreError;
use manifold_connectors::Listing;
use manifold_domain::{AccountId, Channel, Sku};
use serde::{Deserialize, Serialize};

/// One listing as stored: what the channel showed, for one account, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredListing {
    pub channel: Channel,
    pub account: AccountId,
    /// The master SKU the channel SKU maps to (`sku_map`, else the channel SKU itself); `None` when the
    /// channel SKU is no valid SKU.
    pub master: Option<Sku>,
    #[serde(flatten)]
    pub listing: Listing,
    pub first_seen: DateTime<Utc>,
    /// Set when a complete sync no longer found the listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<DateTime<Utc>>,
}

impl StoredListing {
    pub fn is_listed(&self) -> bool {
        self.gone_at.is_none()
    }
}

/// One account's channel SKU, as the fan-out and the push consumer ask about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListingKey {
    pub channel: Channel,
    pub account: AccountId,
    pub channel_sku: String,
}

/// What the store knows about one [`ListingKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The account has had no complete listing sync yet: treat the SKU as listed.
    Unsynced,
    Listed(Box<StoredListing>),
    /// The account was synced and does not list it (never did, or no more).
    NotListed,
}

impl Lookup {
    /// Whether the account sells the SKU as far as we know (an unsynced account sells everything).
    pub fn sells(&self) -> bool {
        !matches!(self, Lookup::NotListed)
    }
}

/// The listings port.
#[async_trait]
pub trait ListingStore: Send + Sync {
    /// Every listing stored for the account, gone ones included.
    async fn account_listings(&self, channel: Channel, account: &AccountId) -> Result<Vec<StoredListing>, StoreError>;
    /// Writes listings (new, seen again, or now gone); the last of two with the same key wins.
    async fn put_listings(&self, listings: &[StoredListing]) -> Result<(), StoreError>;
    /// Records a complete listing sync of the account: from now on its pushes follow its listings.
    async fn mark_synced(&self, channel: Channel, account: &AccountId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// What is known about each key, in order.
    async fn lookup(&self, keys: &[ListingKey]) -> Result<Vec<Lookup>, StoreError>;
    /// Every listing of every account (the operator's reports).
    async fn all_listings(&self) -> Result<Vec<StoredListing>, StoreError>;
}

fn partition(channel: Channel, account: &AccountId) -> String {
    format!("LISTING#{channel}#{account}")
}

fn sort_key(channel_sku: &str) -> String {
    format!("SKU#{channel_sku}")
}

const SYNC_SK: &str = "SYNC";

/// Decides a lookup from what was found: the account's sync marker and its listing item.
fn decide(synced: bool, listing: Option<&StoredListing>) -> Lookup {
    match listing {
        _ if !synced => Lookup::Unsynced,
        Some(l) if l.is_listed() => Lookup::Listed(Box::new(l.clone())),
        _ => Lookup::NotListed,
    }
}

/// The memory store's listings by `(pk, sk)`, and its synced partitions.
type Memory = (BTreeMap<(String, String), StoredListing>, BTreeSet<String>);

/// In memory, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryListings {
    inner: Mutex<Memory>,
}

impl MemoryListings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ListingStore for MemoryListings {
    async fn account_listings(&self, channel: Channel, account: &AccountId) -> Result<Vec<StoredListing>, StoreError> {
        let pk = partition(channel, account);
        Ok(self.lock().0.iter().filter(|((p, _), _)| *p == pk).map(|(_, l)| l.clone()).collect())
    }

    async fn put_listings(&self, listings: &[StoredListing]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for l in listings {
            inner.0.insert((partition(l.channel, &l.account), sort_key(&l.listing.sku)), l.clone());
        }
        Ok(())
    }

    async fn mark_synced(&self, channel: Channel, account: &AccountId, _at: DateTime<Utc>) -> Result<(), StoreError> {
        self.lock().1.insert(partition(channel, account));
        Ok(())
    }

    async fn lookup(&self, keys: &[ListingKey]) -> Result<Vec<Lookup>, StoreError> {
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|k| {
                let pk = partition(k.channel, &k.account);
                decide(inner.1.contains(&pk), inner.0.get(&(pk, sort_key(&k.channel_sku))))
            })
            .collect())
    }

    async fn all_listings(&self) -> Result<Vec<StoredListing>, StoreError> {
        Ok(self.lock().0.values().cloned().collect())
    }
}

/// In the `StateTable` (keys in the module docs).
#[derive(Debug, Clone)]
pub struct DynamoListings {
    client: Client,
    table: String,
}

/// `BatchGetItem` takes at most 100 keys, `BatchWriteItem` 25 requests.
const BATCH_GET: usize = 100;
const BATCH_WRITE: usize = 25;
/// Rounds of retrying what DynamoDB left unprocessed (throttling) before the call fails retryably.
const UNPROCESSED_ROUNDS: usize = 5;

type Item = HashMap<String, AttributeValue>;

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk)), ("sk".to_owned(), AttributeValue::S(sk))])
}

fn unprocessed(operation: &'static str) -> StoreError {
    StoreError::Service {
        service: "dynamodb",
        operation,
        source: "items left unprocessed after retries (throttled)".into(),
    }
}

impl DynamoListings {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn decode(item: &Item) -> Result<StoredListing, StoreError> {
        serde_dynamo::from_item(item.clone()).map_err(|e| StoreError::Corrupt {
            key: item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
            what: "listing",
            source: Box::new(e),
        })
    }

    async fn query(&self, pk: String) -> Result<Vec<Item>, StoreError> {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", AttributeValue::S(pk))
            .expression_attribute_values(":s", AttributeValue::S("SKU#".into()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Query", e))
    }

    /// The items of `keys` (distinct), by `(pk, sk)`.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<HashMap<(String, String), Item>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(BATCH_GET) {
            let mut pending = chunk.to_vec();
            for _ in 0..UNPROCESSED_ROUNDS {
                if pending.is_empty() {
                    break;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Invalid { what: "listing keys", reason: e.to_string() })?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| StoreError::service("dynamodb", "BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    found.insert((s("pk"), s("sk")), item);
                }
                pending =
                    out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(unprocessed("BatchGetItem"));
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl ListingStore for DynamoListings {
    async fn account_listings(&self, channel: Channel, account: &AccountId) -> Result<Vec<StoredListing>, StoreError> {
        self.query(partition(channel, account)).await?.iter().map(Self::decode).collect()
    }

    async fn put_listings(&self, listings: &[StoredListing]) -> Result<(), StoreError> {
        // One request per key: BatchWriteItem refuses a batch naming a key twice.
        let mut by_key: BTreeMap<(String, String), &StoredListing> = BTreeMap::new();
        for l in listings {
            by_key.insert((partition(l.channel, &l.account), sort_key(&l.listing.sku)), l);
        }
        let mut requests = Vec::with_capacity(by_key.len());
        for ((pk, sk), l) in by_key {
            let mut item: Item =
                serde_dynamo::to_item(l).map_err(|e| StoreError::Invalid { what: "listing", reason: e.to_string() })?;
            item.extend(key(pk, sk));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::Invalid { what: "listing", reason: e.to_string() })?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        for chunk in requests.chunks(BATCH_WRITE) {
            let mut pending = chunk.to_vec();
            for _ in 0..UNPROCESSED_ROUNDS {
                if pending.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| StoreError::service("dynamodb", "BatchWriteItem", e))?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(unprocessed("BatchWriteItem"));
            }
        }
        Ok(())
    }

    async fn mark_synced(&self, channel: Channel, account: &AccountId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key(partition(channel, account), SYNC_SK.into())))
            .item("synced_at", AttributeValue::S(at.to_rfc3339()))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn lookup(&self, keys: &[ListingKey]) -> Result<Vec<Lookup>, StoreError> {
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        for k in keys {
            let pk = partition(k.channel, &k.account);
            wanted.insert((pk.clone(), SYNC_SK.to_owned()));
            wanted.insert((pk, sort_key(&k.channel_sku)));
        }
        let found = self.batch_get(wanted.into_iter().map(|(pk, sk)| key(pk, sk)).collect()).await?;
        keys.iter()
            .map(|k| {
                let pk = partition(k.channel, &k.account);
                let synced = found.contains_key(&(pk.clone(), SYNC_SK.to_owned()));
                let listing = found.get(&(pk, sort_key(&k.channel_sku))).map(Self::decode).transpose()?;
                Ok(decide(synced, listing.as_ref()))
            })
            .collect()
    }

    async fn all_listings(&self) -> Result<Vec<StoredListing>, StoreError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :p) AND begins_with(sk, :s)")
            .expression_attribute_values(":p", AttributeValue::S("LISTING#".into()))
            .expression_attribute_values(":s", AttributeValue::S("SKU#".into()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::service("dynamodb", "Scan", e))?;
        items.iter().map(Self::decode).collect()
    }
}
