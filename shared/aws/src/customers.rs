//! Customers (DynamoDB `RecordsTable`, encrypted at rest like every table): one person across
//! channels and CRMs, the claims that make an identity belong to exactly one of them, and what each
//! CRM account was last given.
//!
//! - **Customers**: one [`Customer`] per id in one partition (`pk = CUSTOMERS`, `sk = {id}`), so a CRM
//!   run pages through all of them with a query. Every write is conditional on the version read.
//! - **Claims**: `pk = CUSTID#{sha256(identity key)}`, `sk = CLAIM`, naming the customer. The key is
//!   hashed, so no table key holds an address or a number; the first conditional put wins, so two
//!   orders of one person stored at once join one customer.
//! - **Order summaries**: `pk = CUSTOMER#{id}`, `sk = ORDER#{order id}`: the business facts of each
//!   order (channel, dates, currency, total, status), written idempotently, from which the counts and
//!   totals are computed, so a redelivered order never counts twice.
//! - **CRM deliveries**: `pk = CRM_SENT#{crm}`, `sk = {customer id}`: the hash of what the CRM last
//!   took, its record id there, and the trace id of the run.
//! - **Audit**: `pk = AUDIT#customers`, `sk = {at}#{customer id}`: merges, splits and erasures with
//!   their operator and counts; never personal data.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, error::SdkError, types::AttributeValue};
use chrono::{DateTime, Utc};
use manifold_domain::{Amount, Customer};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{
    StoreError,
    book::{Partition, decode, encode, s},
};

const CUSTOMERS: &str = "CUSTOMERS";
const AUDIT: &str = "AUDIT#customers";

/// One order as its customer counts it: business facts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: String,
    pub channel: String,
    pub account: String,
    pub channel_order_id: String,
    pub created_at: DateTime<Utc>,
    pub currency: String,
    pub total: Amount,
    pub status: String,
    /// The claim keys of the identities this order named (what a split moves with the identity).
    /// Hashed like the claims: never an address or a number.
    pub identities: Vec<String>,
}

/// What a CRM account last took of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmSent {
    pub customer_id: String,
    pub hash: String,
    pub crm_record_id: Option<String>,
    pub trace_id: String,
    pub at: DateTime<Utc>,
}

/// A merge, split or erasure, as the audit keeps it: ids and counts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub action: String,
    pub customer_id: String,
    pub other: Option<String>,
    /// The operator's IAM identity, or `automatic` with the rule.
    pub by: String,
    pub detail: BTreeMap<String, u64>,
}

/// The result of claiming an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// Someone claimed it first: their customer id.
    Taken(String),
}

/// The hashed form of an identity's claim key.
pub fn claim_hash(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// The owners of these claim keys (unclaimed ones left out).
    async fn owners(&self, keys: &[String]) -> Result<HashMap<String, String>, StoreError>;
    /// Claims `key` for `customer_id` unless someone holds it.
    async fn claim(&self, key: &str, customer_id: &str) -> Result<Claim, StoreError>;
    /// Moves a claim from one customer to another; false when `from` no longer holds it.
    async fn move_claim(&self, key: &str, from: &str, to: &str) -> Result<bool, StoreError>;
    async fn release(&self, key: &str) -> Result<(), StoreError>;
    /// Releases `key` if `owner` still holds it (an abandoned attempt taking back its own claim).
    async fn release_own(&self, key: &str, owner: &str) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Customer>, StoreError>;
    async fn many(&self, ids: &[String]) -> Result<Vec<Customer>, StoreError>;
    /// Writes `customer` if its stored version is still `read_version` (`None`: not stored yet);
    /// false when someone wrote it meanwhile.
    async fn put(&self, customer: &Customer, read_version: Option<u64>) -> Result<bool, StoreError>;
    /// Customers in id order after `cursor`, a page at a time.
    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Customer>, Option<String>), StoreError>;
    async fn put_summary(&self, customer_id: &str, summary: &OrderSummary) -> Result<(), StoreError>;
    async fn summaries(&self, customer_id: &str) -> Result<Vec<OrderSummary>, StoreError>;
    async fn delete_summary(&self, customer_id: &str, order_id: &str) -> Result<(), StoreError>;
    async fn sent(&self, crm: &str, ids: &[String]) -> Result<HashMap<String, CrmSent>, StoreError>;
    async fn record_sent(&self, crm: &str, sent: &CrmSent) -> Result<(), StoreError>;
    async fn forget_sent(&self, crm: &str, customer_id: &str) -> Result<(), StoreError>;
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    async fn audits(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The store on the RecordsTable.
#[derive(Debug, Clone)]
pub struct DynamoCustomers {
    client: Client,
    table: String,
    emulator_safe: bool,
}

impl DynamoCustomers {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), emulator_safe: false }
    }

    /// For moto only: its conditional writes are not atomic under concurrent requests, so with `on`
    /// this process's claims and customer writes run one at a time (as `DynamoRecords::emulator_safe`).
    /// DynamoDB itself needs no such thing.
    #[must_use]
    pub fn emulator_safe(mut self, on: bool) -> Self {
        self.emulator_safe = on;
        self
    }

    async fn emulator_guard(&self) -> Option<tokio::sync::MutexGuard<'static, ()>> {
        if self.emulator_safe { Some(crate::records::EMULATOR_LOCK.lock().await) } else { None }
    }

    fn partition<'a>(&'a self, pk: &'a str, what: &'static str) -> Partition<'a> {
        Partition { client: &self.client, table: &self.table, pk, what }
    }

    async fn delete(&self, pk: String, sk: String) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "DeleteItem", e))?;
        Ok(())
    }

    async fn query_all(&self, pk: &str) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }
}

fn claim_pk(key: &str) -> String {
    format!("CUSTID#{}", claim_hash(key))
}

fn conditional_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

#[async_trait]
impl CustomerStore for DynamoCustomers {
    async fn owners(&self, keys: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let by_pk: HashMap<String, &String> = keys.iter().map(|k| (claim_pk(k), k)).collect();
        let request = by_pk.keys().map(|pk| crate::batch::key(pk.clone(), "CLAIM")).collect();
        let items = crate::batch::batch_get(&self.client, &self.table, request, None).await?;
        let mut out = HashMap::new();
        for item in items {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            let owner = item.get("customer_id").and_then(|v| v.as_s().ok());
            if let (Some(pk), Some(owner)) = (pk, owner)
                && let Some(key) = by_pk.get(pk)
            {
                out.insert((*key).clone(), owner.clone());
            }
        }
        Ok(out)
    }

    async fn claim(&self, key: &str, customer_id: &str) -> Result<Claim, StoreError> {
        let guard = self.emulator_guard().await;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(claim_pk(key)))
            .item("sk", s("CLAIM"))
            .item("kind", s("customer_claim"))
            .item("customer_id", s(customer_id))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        drop(guard);
        match put {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) if conditional_failed(&e) => {
                let owner = self.owners(&[key.to_owned()]).await?.remove(key);
                // Released between the two calls: claim again.
                match owner {
                    Some(owner) => Ok(Claim::Taken(owner)),
                    None => Box::pin(self.claim(key, customer_id)).await,
                }
            }
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn move_claim(&self, key: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        let _guard = self.emulator_guard().await;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(key)))
            .key("sk", s("CLAIM"))
            .update_expression("SET customer_id = :to")
            .condition_expression("customer_id = :from")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":from", s(from))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(StoreError::service("dynamodb", "UpdateItem", e)),
        }
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.delete(claim_pk(key), "CLAIM".into()).await
    }

    async fn release_own(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let _guard = self.emulator_guard().await;
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(key)))
            .key("sk", s("CLAIM"))
            .condition_expression("customer_id = :o")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(StoreError::service("dynamodb", "DeleteItem", e)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        self.partition(CUSTOMERS, "customer").get(id).await
    }

    async fn many(&self, ids: &[String]) -> Result<Vec<Customer>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.partition(CUSTOMERS, "customer").many(ids).await
    }

    async fn put(&self, customer: &Customer, read_version: Option<u64>) -> Result<bool, StoreError> {
        let _guard = self.emulator_guard().await;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CUSTOMERS))
            .item("sk", s(&customer.id))
            .item("kind", s("customer"))
            .item("updated_at", s(customer.updated_at.to_rfc3339()))
            .item("version", AttributeValue::N(customer.version.to_string()))
            .item("record", encode("customer", customer)?);
        put = match read_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(StoreError::service("dynamodb", "PutItem", e)),
        }
    }

    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Customer>, Option<String>), StoreError> {
        self.partition(CUSTOMERS, "customer").page(cursor, limit).await
    }

    async fn put_summary(&self, customer_id: &str, summary: &OrderSummary) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CUSTOMER#{customer_id}")))
            .item("sk", s(format!("ORDER#{}", summary.order_id)))
            .item("kind", s("customer_order"))
            .item("record", encode("order summary", summary)?)
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn summaries(&self, customer_id: &str) -> Result<Vec<OrderSummary>, StoreError> {
        let items = self.query_all(&format!("CUSTOMER#{customer_id}")).await?;
        items.iter().map(|i| decode("order summary", i)).collect()
    }

    async fn delete_summary(&self, customer_id: &str, order_id: &str) -> Result<(), StoreError> {
        self.delete(format!("CUSTOMER#{customer_id}"), format!("ORDER#{order_id}")).await
    }

    async fn sent(&self, crm: &str, ids: &[String]) -> Result<HashMap<String, CrmSent>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let pk = format!("CRM_SENT#{crm}");
        let sent: Vec<CrmSent> = self.partition(&pk, "CRM delivery").many(ids).await?;
        Ok(sent.into_iter().map(|s| (s.customer_id.clone(), s)).collect())
    }

    async fn record_sent(&self, crm: &str, sent: &CrmSent) -> Result<(), StoreError> {
        let pk = format!("CRM_SENT#{crm}");
        self.partition(&pk, "CRM delivery").put(&sent.customer_id, "crm_delivery", &sent.trace_id, sent.at, sent).await
    }

    async fn forget_sent(&self, crm: &str, customer_id: &str) -> Result<(), StoreError> {
        self.delete(format!("CRM_SENT#{crm}"), customer_id.to_owned()).await
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let sk = format!("{}#{}", entry.at.to_rfc3339(), entry.customer_id);
        self.partition(AUDIT, "customer audit").put(&sk, "customer_audit", "-", entry.at, entry).await
    }

    async fn audits(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let items = self.query_all(AUDIT).await?;
        let mut all: Vec<AuditEntry> = items.iter().map(|i| decode("customer audit", i)).collect::<Result<_, _>>()?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }
}

/// An in-memory store for unit tests.
#[derive(Debug, Default)]
pub struct MemoryCustomers {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    claims: BTreeMap<String, String>,
    customers: BTreeMap<String, Customer>,
    summaries: BTreeMap<String, BTreeMap<String, OrderSummary>>,
    sent: BTreeMap<(String, String), CrmSent>,
    audit: Vec<AuditEntry>,
}

impl MemoryCustomers {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CustomerStore for MemoryCustomers {
    async fn owners(&self, keys: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let inner = self.lock();
        Ok(keys.iter().filter_map(|k| inner.claims.get(k).map(|o| (k.clone(), o.clone()))).collect())
    }
    async fn claim(&self, key: &str, customer_id: &str) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        if let Some(owner) = inner.claims.get(key) {
            return Ok(Claim::Taken(owner.clone()));
        }
        inner.claims.insert(key.to_owned(), customer_id.to_owned());
        Ok(Claim::Claimed)
    }
    async fn move_claim(&self, key: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.claims.get_mut(key) {
            Some(owner) if owner == from => {
                to.clone_into(owner);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.lock().claims.remove(key);
        Ok(())
    }
    async fn release_own(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.claims.get(key).is_some_and(|o| o == owner) {
            inner.claims.remove(key);
        }
        Ok(())
    }
    async fn get(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        Ok(self.lock().customers.get(id).cloned())
    }
    async fn many(&self, ids: &[String]) -> Result<Vec<Customer>, StoreError> {
        let inner = self.lock();
        Ok(ids.iter().filter_map(|id| inner.customers.get(id).cloned()).collect())
    }
    async fn put(&self, customer: &Customer, read_version: Option<u64>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.customers.get(&customer.id).map(|c| c.version) != read_version {
            return Ok(false);
        }
        inner.customers.insert(customer.id.clone(), customer.clone());
        Ok(true)
    }
    async fn page(&self, cursor: Option<&str>, limit: usize) -> Result<(Vec<Customer>, Option<String>), StoreError> {
        let inner = self.lock();
        let after = |id: &String| cursor.is_none_or(|c| id.as_str() > c);
        let page: Vec<Customer> =
            inner.customers.iter().filter(|(id, _)| after(id)).take(limit).map(|(_, c)| c.clone()).collect();
        let next = (page.len() == limit).then(|| page.last().map(|c| c.id.clone())).flatten();
        Ok((page, next))
    }
    async fn put_summary(&self, customer_id: &str, summary: &OrderSummary) -> Result<(), StoreError> {
        self.lock()
            .summaries
            .entry(customer_id.to_owned())
            .or_default()
            .insert(summary.order_id.clone(), summary.clone());
        Ok(())
    }
    async fn summaries(&self, customer_id: &str) -> Result<Vec<OrderSummary>, StoreError> {
        Ok(self.lock().summaries.get(customer_id).map(|m| m.values().cloned().collect()).unwrap_or_default())
    }
    async fn delete_summary(&self, customer_id: &str, order_id: &str) -> Result<(), StoreError> {
        if let Some(m) = self.lock().summaries.get_mut(customer_id) {
            m.remove(order_id);
        }
        Ok(())
    }
    async fn sent(&self, crm: &str, ids: &[String]) -> Result<HashMap<String, CrmSent>, StoreError> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.sent.get(&(crm.to_owned(), id.clone())).map(|s| (id.clone(), s.clone())))
            .collect())
    }
    async fn record_sent(&self, crm: &str, sent: &CrmSent) -> Result<(), StoreError> {
        self.lock().sent.insert((crm.to_owned(), sent.customer_id.clone()), sent.clone());
        Ok(())
    }
    async fn forget_sent(&self, crm: &str, customer_id: &str) -> Result<(), StoreError> {
        self.lock().sent.remove(&(crm.to_owned(), customer_id.to_owned()));
        Ok(())
    }
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.lock().audit.push(entry.clone());
        Ok(())
    }
    async fn audits(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.lock().audit.iter().rev().take(limit).cloned().collect())
    }
}
