//! Customers: every stored order joined to one person across channels (the `customers` function,
//! fed by the order events), merges and splits an operator asks for, and erasure on request.
//!
//! **Unification.** An order's identities come from the configuration's rules
//! ([`CustomerRules::identities_of`]): its normalized email (never a marketplace relay address), its
//! E.164 phone, its channel customer id (or the relay address, as the channel's identity of the
//! buyer). Those the rules let join people are *claimed* (`manifold_aws::customers`): the first
//! conditional put wins, so two orders of one person stored at once end in one customer. An order
//! whose identities belong to two customers merges them into the older one, and the history of both
//! names the rule that joined them. The order's summary (business facts only) is kept under its
//! customer, idempotently, and the counts and totals are computed from those summaries, so a
//! redelivered event never counts an order twice. The order points to its customer
//! (`Order::customer_id`, kept across its updates).
//!
//! **Merge and split** are operations with a reason and an operator, audited. A split moves one
//! identity, and the orders that named it, to a new customer; the two are kept apart from then on.
//!
//! **Forget** erases a person: the contact data leaves the customer and every stored order (a
//! tombstone keeps the business facts, and later updates of those orders stay erased), the claims are
//! released, quarantined payloads naming the person are deleted, each CRM account is asked to erase
//! its copy (by its record id, so no queue message carries personal data), and an audit entry with
//! counts only is kept. Customer records never appear in events; logs carry ids, never contact data.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use manifold_aws::customers::{AuditEntry, Claim, CrmSent, CustomerStore, OrderSummary, claim_hash};
use manifold_domain::{
    Amount, Order, OrderId, OrderStatus,
    customers::{ChangeAction, Customer, CustomerChange, CustomerRules, Identity, IdentityKind, KnownIdentity},
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// How often a unification starts over after losing a race (a claim or a version taken meanwhile).
const ATTEMPTS: usize = 8;
/// Redirects followed from a merged-away id.
const MAX_REDIRECTS: usize = 16;
/// Dead-lettered deliveries read by one erasure (a DLQ that holds more is an incident of its own).
pub const MAX_DEAD_LETTERS: usize = 1000;

/// What joining one order did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Joined {
    pub order_id: String,
    pub customer_id: String,
    /// Customers merged into it by this order, with the rule that joined each.
    pub merged: Vec<(String, String)>,
    pub created: bool,
}

/// A customer with its orders, as `manifold customers show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerView {
    pub customer: Customer,
    pub orders: Vec<OrderSummary>,
    /// The id asked for, when it was merged into this one.
    pub redirected_from: Option<String>,
}

/// What `forget` erased, in counts: the audit keeps exactly this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    pub customer_id: String,
    pub orders_erased: u64,
    pub claims_released: u64,
    pub quarantined_deleted: u64,
    /// Raw deliveries parked in the ingest dead-letter queue that named the person, deleted.
    #[serde(default)]
    pub dead_letters_deleted: u64,
    pub crm_requests: u64,
}

/// The id a new customer takes from the identity that first named it (or its first order): the same
/// person seen twice at once derives the same id, and the claim decides the rest.
fn new_id(seed: &str) -> String {
    let digest = sha2::Sha256::digest(seed.as_bytes());
    format!("cus_{}", &hex::encode(digest)[..20])
}

fn summary_of(order: &Order, identities: &[Identity]) -> OrderSummary {
    OrderSummary {
        order_id: order.id.to_string(),
        channel: order.channel.to_string(),
        account: order.account.to_string(),
        channel_order_id: order.channel_order_id.clone(),
        created_at: order.created_at,
        currency: order.currency.to_string(),
        total: order.totals.total,
        status: order.status.as_str().to_owned(),
        identities: identities.iter().map(|i| claim_hash(&i.key())).collect(),
    }
}

/// Counts and totals from the summaries: cancelled orders count for neither.
fn tally(customer: &mut Customer, summaries: &[OrderSummary]) {
    let live: Vec<&OrderSummary> = summaries.iter().filter(|s| s.status != OrderStatus::Cancelled.as_str()).collect();
    customer.order_count = u32::try_from(live.len()).unwrap_or(u32::MAX);
    customer.first_order_at = summaries.iter().map(|s| s.created_at).min();
    customer.last_order_at = summaries.iter().map(|s| s.created_at).max();
    let mut totals: BTreeMap<String, Amount> = BTreeMap::new();
    for s in live {
        let Ok(currency) = s.currency.parse() else { continue };
        let sum = totals.get(&s.currency).map_or(s.total.value(), |t| t.value() + s.total.value());
        totals.insert(s.currency.clone(), Amount::new(sum, currency));
    }
    customer.totals = totals;
}

fn empty_customer(id: &str, now: DateTime<Utc>) -> Customer {
    Customer {
        id: id.to_owned(),
        email: None,
        name: None,
        phone: None,
        address: None,
        identities: Vec::new(),
        first_order_at: None,
        last_order_at: None,
        order_count: 0,
        totals: BTreeMap::new(),
        attributes: BTreeMap::new(),
        crm_ids: BTreeMap::new(),
        history: Vec::new(),
        kept_apart: Vec::new(),
        merged_into: None,
        forgotten_at: None,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

/// Takes the order's contact data onto the customer when the order is its latest.
fn take_contact(customer: &mut Customer, order: &Order, rules: &CustomerRules, latest: bool) {
    let c = &order.customer;
    let email = c.email.as_deref().and_then(|e| rules.normalize_email(e)).filter(|e| !rules.is_relay(e));
    let phone = c.phone.as_deref().and_then(|p| rules.normalize_phone(p));
    let name = c.name.clone().or_else(|| order.shipping_address.as_ref().and_then(|a| a.name.clone()));
    let take = |field: &mut Option<String>, value: Option<String>| {
        if value.is_some() && (latest || field.is_none()) {
            *field = value;
        }
    };
    take(&mut customer.email, email);
    take(&mut customer.phone, phone);
    take(&mut customer.name, name);
    if order.shipping_address.is_some() && (latest || customer.address.is_none()) {
        customer.address.clone_from(&order.shipping_address);
    }
}

impl App {
    fn customer_store(&self) -> std::sync::Arc<dyn CustomerStore> {
        self.customers.get().clone()
    }

    /// The customer `id` names now: itself, or the one it was merged into.
    pub async fn resolve_customer(&self, id: &str) -> Result<Option<Customer>, Failure> {
        let store = self.customer_store();
        let mut id = id.to_owned();
        for _ in 0..MAX_REDIRECTS {
            match store.get(&id).await? {
                Some(c) => match &c.merged_into {
                    Some(next) => id.clone_from(next),
                    None => return Ok(Some(c)),
                },
                None => return Ok(None),
            }
        }
        Err(Failure::permanent("customers", format!("customer {id}: redirects loop")))
    }

    /// Joins one stored order to its customer (the `customers` function, for each order event).
    pub async fn join_order(&self, order_id: &OrderId, now: DateTime<Utc>) -> Result<Joined, Failure> {
        for attempt in 0..ATTEMPTS {
            if let Some(joined) = self.try_join(order_id, attempt, now).await? {
                return Ok(joined);
            }
            // Another consumer is joining the same person: let it finish its few writes.
            tokio::time::sleep(std::time::Duration::from_millis(10 * (1 << attempt.min(5)))).await;
        }
        Err(Failure::Transient(format!("order {order_id}: its customer kept changing; retry").into()))
    }

    /// One attempt; `None` when a race was lost and the caller should start over. The claims an
    /// abandoned attempt made for a customer it was creating are released, so a retry never waits
    /// for itself.
    async fn try_join(
        &self,
        order_id: &OrderId,
        attempt: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<Joined>, Failure> {
        let mut claimed = Vec::new();
        let joined = self.try_join_claiming(order_id, attempt, now, &mut claimed).await;
        if !matches!(joined, Ok(Some(_)))
            && let Some((_, owner)) = claimed.first()
        {
            // Unless another consumer wrote that same customer meanwhile: then the claims are its.
            let store = self.customer_store();
            if store.get(owner).await?.is_none() {
                for (key, owner) in &claimed {
                    store.release_own(key, owner).await?;
                }
            }
        }
        joined
    }

    async fn try_join_claiming(
        &self,
        order_id: &OrderId,
        attempt: usize,
        now: DateTime<Utc>,
        claimed: &mut Vec<(String, String)>,
    ) -> Result<Option<Joined>, Failure> {
        let store = self.customer_store();
        let Some(order) = self.records.get_order(order_id).await? else {
            return Err(Failure::Transient(format!("order {order_id} is not stored yet").into()));
        };
        let rules = self.config().await.customers.clone();
        let found = if order.contact_erased_at.is_some() { Vec::new() } else { rules.identities_of(&order) };
        let joining: Vec<&Identity> = found.iter().filter(|(_, joins)| *joins).map(|(i, _)| i).collect();
        let keys: Vec<String> = joining.iter().map(|i| i.key()).collect();
        let owners = store.owners(&keys).await?;

        // The customers this order's identities (and its own link) point to, resolved through merges;
        // and the owners no stored customer answers for yet (a consumer between its claim and its
        // write, or one that died there).
        let mut candidates: Vec<(Customer, String)> = Vec::new();
        let mut pending: BTreeSet<String> = BTreeSet::new();
        let mut push = |c: Customer, rule: String| {
            if !candidates.iter().any(|(k, _)| k.id == c.id) {
                candidates.push((c, rule));
            }
        };
        if let Some(linked) = &order.customer_id
            && let Some(c) = self.resolve_customer(linked).await?
        {
            push(c, "order".into());
        }
        for identity in &joining {
            if let Some(owner) = owners.get(&identity.key()) {
                match self.resolve_customer(owner).await? {
                    Some(c) => push(c, identity.kind.as_str().to_owned()),
                    None => {
                        pending.insert(owner.clone());
                    }
                }
            }
        }
        // The customer the order already belongs to stays its customer; otherwise the oldest.
        let linked_first = order.customer_id.is_some() && !candidates.is_empty();
        if !linked_first {
            candidates.sort_by(|(a, _), (b, _)| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        }
        let (mut target, created) = if let Some((c, _)) = candidates.first() {
            if !pending.is_empty() {
                if attempt + 1 < ATTEMPTS {
                    return Ok(None);
                }
                // Still unwritten after every wait: a claim its consumer never finished. Adopted.
                for (key, owner) in &owners {
                    if pending.contains(owner) {
                        store.move_claim(key, owner, &c.id).await?;
                    }
                }
            }
            (c.clone(), false)
        } else if let Some(id) = pending.first() {
            // Someone is creating this person's customer: create the same one. One write wins; the
            // other starts over and finds it.
            (empty_customer(id, now), true)
        } else {
            let seed = keys.first().cloned().unwrap_or_else(|| format!("order:{order_id}"));
            let id = new_id(&seed);
            match store.get(&id).await? {
                Some(existing) if existing.merged_into.is_none() && existing.forgotten_at.is_none() => {
                    (existing, false)
                }
                Some(_) => (empty_customer(&new_id(&format!("{seed}#{order_id}")), now), true),
                None => (empty_customer(&id, now), true),
            }
        };
        // Merge the others in, unless an operator kept them apart.
        let mut merged = Vec::new();
        for (other, rule) in candidates.iter().skip(1) {
            if target.kept_apart.contains(&other.id) || other.kept_apart.contains(&target.id) {
                continue;
            }
            if !self.merge_into(other, &mut target, rule, None, None, now).await? {
                return Ok(None);
            }
            merged.push((other.id.clone(), rule.clone()));
        }
        // Claim what no one holds; a claim someone else took first means starting over.
        for identity in &joining {
            let key = identity.key();
            if owners.contains_key(&key) {
                continue;
            }
            match store.claim(&key, &target.id).await? {
                Claim::Claimed => {
                    if created {
                        claimed.push((key, target.id.clone()));
                    }
                }
                Claim::Taken(owner) if owner == target.id => {}
                Claim::Taken(_) => return Ok(None),
            }
        }
        let read_version = if created { None } else { Some(target.version) };
        for (identity, _) in &found {
            if !target.has(identity) {
                target.identities.push(KnownIdentity {
                    identity: identity.clone(),
                    channel: Some(order.channel),
                    account: Some(order.account.clone()),
                    first_seen: now,
                });
            }
        }
        // The counts include this order's summary, which is written once the customer is: a summary
        // never points to a customer that was not written.
        let identities: Vec<Identity> = found.iter().map(|(i, _)| i.clone()).collect();
        let summary = summary_of(&order, &identities);
        let mut summaries = store.summaries(&target.id).await?;
        summaries.retain(|s| s.order_id != summary.order_id);
        summaries.push(summary.clone());
        let latest = summaries.iter().map(|s| s.created_at).max().is_none_or(|m| order.created_at >= m);
        if target.forgotten_at.is_none() {
            take_contact(&mut target, &order, &rules, latest);
        }
        tally(&mut target, &summaries);
        target.updated_at = now;
        target.version += 1;
        if !store.put(&target, read_version).await? {
            return Ok(None);
        }
        // Written: its claims stand, whatever fails next (the redelivery finishes the rest).
        claimed.clear();
        store.put_summary(&target.id, &summary).await?;
        if order.customer_id.as_deref() != Some(target.id.as_str()) {
            self.records.link_customer(order_id, &target.id).await?;
        }
        info!(customer_id = %target.id, order_id = %order_id, created, merged = merged.len(), "order joined to its customer");
        Ok(Some(Joined { order_id: order_id.to_string(), customer_id: target.id, merged, created }))
    }

    /// Moves `from` into `into` (written here, both conditional on the versions read): its claims,
    /// its order summaries and links, its identities; `from` becomes a redirect. False when either
    /// changed meanwhile (the caller starts over; what moved already is idempotent).
    async fn merge_into(
        &self,
        from: &Customer,
        into: &mut Customer,
        rule: &str,
        reason: Option<&str>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, Failure> {
        let store = self.customer_store();
        for known in &from.identities {
            store.move_claim(&known.identity.key(), &from.id, &into.id).await?;
        }
        for (crm, record) in &from.crm_ids {
            store.move_claim(&crm_claim(crm, record), &from.id, &into.id).await?;
        }
        for summary in store.summaries(&from.id).await? {
            store.put_summary(&into.id, &summary).await?;
            if let Ok(order_id) = OrderId::new(summary.order_id.clone()) {
                self.records.link_customer(&order_id, &into.id).await?;
            }
            store.delete_summary(&from.id, &summary.order_id).await?;
        }
        for known in &from.identities {
            if !into.has(&known.identity) {
                into.identities.push(known.clone());
            }
        }
        for (k, v) in &from.attributes {
            into.attributes.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let change = |action, other: &str| CustomerChange {
            at: now,
            action,
            other: Some(other.to_owned()),
            rule: Some(rule.to_owned()),
            reason: reason.map(str::to_owned),
            by: by.map(str::to_owned),
        };
        into.history.push(change(ChangeAction::Merged, &from.id));
        if into.created_at > from.created_at {
            into.created_at = from.created_at;
        }
        if into.email.is_none() {
            into.email.clone_from(&from.email);
        }
        if into.phone.is_none() {
            into.phone.clone_from(&from.phone);
        }
        if into.name.is_none() {
            into.name.clone_from(&from.name);
        }
        if into.address.is_none() {
            into.address.clone_from(&from.address);
        }
        let mut redirect = empty_customer(&from.id, from.created_at);
        redirect.merged_into = Some(into.id.clone());
        redirect.history.clone_from(&from.history);
        redirect.history.push(change(ChangeAction::MergedInto, &into.id));
        redirect.crm_ids.clone_from(&from.crm_ids);
        redirect.updated_at = now;
        redirect.version = from.version + 1;
        let summaries = store.summaries(&into.id).await?;
        tally(into, &summaries);
        into.updated_at = now;
        let into_read = into.version;
        into.version += 1;
        if !store.put(into, Some(into_read)).await? {
            return Ok(false);
        }
        // `into` is written: from now on it is the version the caller holds.
        if !store.put(&redirect, Some(from.version)).await? {
            return Ok(false);
        }
        store
            .audit(&AuditEntry {
                at: now,
                action: "merge".into(),
                customer_id: into.id.clone(),
                other: Some(from.id.clone()),
                by: by.map_or_else(|| format!("automatic ({rule})"), str::to_owned),
                detail: BTreeMap::from([("orders".into(), u64::from(from.order_count))]),
            })
            .await?;
        info!(customer_id = %into.id, merged = %from.id, rule, "customers merged");
        Ok(true)
    }

    /// `manifold customers merge A B`: B is merged into A, with the reason and the operator.
    pub async fn merge_customers(
        &self,
        keep: &str,
        merge: &str,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Customer, Failure> {
        for _ in 0..ATTEMPTS {
            let (Some(mut into), Some(from)) =
                (self.resolve_customer(keep).await?, self.resolve_customer(merge).await?)
            else {
                return Err(Failure::permanent("customers", "no such customer"));
            };
            if into.id == from.id {
                return Err(Failure::permanent("customers", format!("{merge} is already {}", into.id)));
            }
            if into.forgotten_at.is_some() || from.forgotten_at.is_some() {
                return Err(Failure::permanent("customers", "a forgotten customer cannot be merged"));
            }
            into.kept_apart.retain(|id| id != &from.id);
            if self.merge_into(&from, &mut into, "manual", Some(reason), Some(by), now).await? {
                return Ok(into);
            }
        }
        Err(Failure::Transient("the customers kept changing; retry".into()))
    }

    /// `manifold customers split ID IDENTITY`: the identity, and the orders that named it, move to a
    /// new customer; the two are kept apart from then on.
    pub async fn split_customer(
        &self,
        id: &str,
        identity: &str,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(Customer, Customer), Failure> {
        let store = self.customer_store();
        let wanted = Identity::parse(identity).ok_or_else(|| {
            Failure::permanent("customers", format!("{identity:?}: expected kind:value (email:, phone:, channel_id:)"))
        })?;
        let Some(mut from) = self.resolve_customer(id).await? else {
            return Err(Failure::permanent("customers", format!("no customer {id}")));
        };
        if !from.has(&wanted) {
            return Err(Failure::permanent("customers", format!("{} has no such identity", from.id)));
        }
        if from.identities.len() < 2 {
            return Err(Failure::permanent("customers", "a customer's only identity cannot be split off"));
        }
        let key = wanted.key();
        let mut split = empty_customer(&new_id(&format!("{key}#split#{}#{now}", from.id)), now);
        let hash = claim_hash(&key);
        let moving: Vec<OrderSummary> =
            store.summaries(&from.id).await?.into_iter().filter(|s| s.identities.contains(&hash)).collect();
        store.move_claim(&key, &from.id, &split.id).await?;
        for summary in &moving {
            store.put_summary(&split.id, summary).await?;
            if let Ok(order_id) = OrderId::new(summary.order_id.clone()) {
                self.records.link_customer(&order_id, &split.id).await?;
            }
            store.delete_summary(&from.id, &summary.order_id).await?;
        }
        let (kept, moved): (Vec<KnownIdentity>, Vec<KnownIdentity>) =
            from.identities.drain(..).partition(|k| k.identity != wanted);
        from.identities = kept;
        split.identities = moved;
        if wanted.kind == IdentityKind::Email {
            split.email = Some(wanted.value.clone());
            if from.email.as_deref() == Some(wanted.value.as_str()) {
                from.email = None;
            }
        }
        if wanted.kind == IdentityKind::Phone {
            split.phone = Some(wanted.value.clone());
            if from.phone.as_deref() == Some(wanted.value.as_str()) {
                from.phone = None;
            }
        }
        let change = |action, other: &str| CustomerChange {
            at: now,
            action,
            other: Some(other.to_owned()),
            rule: Some("manual".into()),
            reason: Some(reason.to_owned()),
            by: Some(by.to_owned()),
        };
        from.history.push(change(ChangeAction::SplitOff, &split.id));
        split.history.push(change(ChangeAction::SplitFrom, &from.id));
        from.kept_apart.push(split.id.clone());
        split.kept_apart.push(from.id.clone());
        let (split_orders, from_orders) = (store.summaries(&split.id).await?, store.summaries(&from.id).await?);
        tally(&mut split, &split_orders);
        tally(&mut from, &from_orders);
        split.version = 1;
        if !store.put(&split, None).await? {
            return Err(Failure::Transient("the split customer exists already; retry".into()));
        }
        let read = from.version;
        from.version += 1;
        from.updated_at = now;
        if !store.put(&from, Some(read)).await? {
            return Err(Failure::Transient(format!("{} changed meanwhile; retry", from.id).into()));
        }
        store
            .audit(&AuditEntry {
                at: now,
                action: "split".into(),
                customer_id: from.id.clone(),
                other: Some(split.id.clone()),
                by: by.to_owned(),
                detail: BTreeMap::from([("orders".into(), moving.len() as u64)]),
            })
            .await?;
        Ok((from, split))
    }

    /// `manifold customers show ID`: the customer (after any merge) and its orders across channels.
    pub async fn show_customer(&self, id: &str) -> Result<Option<CustomerView>, Failure> {
        let Some(customer) = self.resolve_customer(id).await? else { return Ok(None) };
        let mut orders = self.customer_store().summaries(&customer.id).await?;
        orders.sort_by_key(|s| s.created_at);
        let redirected_from = (customer.id != id).then(|| id.to_owned());
        Ok(Some(CustomerView { customer, orders, redirected_from }))
    }

    /// Merges, splits and erasures, newest first (`manifold customers audit`).
    pub async fn customer_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, Failure> {
        Ok(self.customer_store().audits(limit).await?)
    }

    /// The customer an order belongs to (for `manifold customers show --order`).
    pub async fn customer_of_order(&self, order_id: &OrderId) -> Result<Option<String>, Failure> {
        Ok(self.records.get_order(order_id).await?.and_then(|o| o.customer_id))
    }

    /// Erases a person (`manifold customers forget`, `DELETE /v1/customers/{id}`).
    pub async fn forget_customer(&self, id: &str, by: &str, now: DateTime<Utc>) -> Result<Forgotten, Failure> {
        let store = self.customer_store();
        let Some(mut customer) = self.resolve_customer(id).await? else {
            return Err(Failure::permanent("customers", format!("no customer {id}")));
        };
        let mut done = Forgotten { customer_id: customer.id.clone(), ..Forgotten::default() };
        // What identifies the person in stored payloads, gathered before anything is erased.
        let mut needles: BTreeSet<String> = BTreeSet::new();
        let mut add = |v: Option<&str>| {
            if let Some(v) = v.map(str::trim).filter(|v| v.len() >= 5) {
                needles.insert(v.to_lowercase());
            }
        };
        add(customer.email.as_deref());
        add(customer.phone.as_deref());
        add(customer.name.as_deref());
        for known in &customer.identities {
            if known.identity.kind != IdentityKind::ChannelId {
                add(Some(&known.identity.value));
            }
        }
        let summaries = store.summaries(&customer.id).await?;
        for summary in &summaries {
            let Ok(order_id) = OrderId::new(summary.order_id.clone()) else { continue };
            if let Some(order) = self.records.get_order(&order_id).await? {
                add(order.customer.email.as_deref());
                add(order.customer.phone.as_deref());
                add(order.customer.name.as_deref());
                for a in order.shipping_address.iter().chain(order.billing_address.iter()) {
                    add(a.name.as_deref());
                    add(a.line1.as_deref());
                }
            }
            if self.records.erase_contact(&order_id, now).await? {
                done.orders_erased += 1;
            }
        }
        for known in &customer.identities {
            store.release(&known.identity.key()).await?;
            done.claims_released += 1;
        }
        done.quarantined_deleted = self.delete_quarantined_naming(&needles).await?;
        done.dead_letters_deleted = self.delete_dead_letters_naming(&needles).await?;
        // Each CRM account that holds a copy is asked to erase it, by its record id.
        done.crm_requests = self.queue_crm_forgets(&customer, now).await?;
        // And for the customers merged into this one, whose CRM records were never merged there.
        let merged: Vec<String> = customer
            .history
            .iter()
            .filter(|h| h.action == ChangeAction::Merged)
            .filter_map(|h| h.other.clone())
            .collect();
        for id in merged {
            if let Some(redirect) = store.get(&id).await? {
                done.crm_requests += self.queue_crm_forgets(&redirect, now).await?;
            }
        }
        for _ in 0..ATTEMPTS {
            let read = customer.version;
            customer.email = None;
            customer.name = None;
            customer.phone = None;
            customer.address = None;
            customer.identities.clear();
            customer.attributes.clear();
            customer.forgotten_at = Some(now);
            customer.history.push(CustomerChange {
                at: now,
                action: ChangeAction::Forgotten,
                other: None,
                rule: None,
                reason: None,
                by: Some(by.to_owned()),
            });
            customer.updated_at = now;
            customer.version += 1;
            if store.put(&customer, Some(read)).await? {
                break;
            }
            customer = store
                .get(&done.customer_id)
                .await?
                .ok_or_else(|| Failure::permanent("customers", "the customer vanished during forget"))?;
        }
        let detail = BTreeMap::from([
            ("orders_erased".into(), done.orders_erased),
            ("claims_released".into(), done.claims_released),
            ("quarantined_deleted".into(), done.quarantined_deleted),
            ("dead_letters_deleted".into(), done.dead_letters_deleted),
            ("crm_requests".into(), done.crm_requests),
        ]);
        store
            .audit(&AuditEntry {
                at: now,
                action: "forget".into(),
                customer_id: done.customer_id.clone(),
                other: None,
                by: by.to_owned(),
                detail,
            })
            .await?;
        info!(customer_id = %done.customer_id, orders = done.orders_erased, "customer forgotten");
        Ok(done)
    }

    /// Deletes the quarantined payloads that contain any of `needles` (lowercase); their count.
    async fn delete_quarantined_naming(&self, needles: &BTreeSet<String>) -> Result<u64, Failure> {
        if needles.is_empty() {
            return Ok(0);
        }
        let quarantine = self.quarantine.get();
        let mut deleted = 0;
        for stored in quarantine.list_stored(true).await? {
            let text = format!("{}\n{}", stored.payload.payload, stored.payload.reason).to_lowercase();
            if needles.iter().any(|n| text.contains(n.as_str())) {
                quarantine.delete(&stored.payload.id).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            warn!(deleted, "quarantined payloads naming a forgotten customer deleted");
        }
        Ok(deleted)
    }

    /// Deletes the raw deliveries parked in the ingest dead-letter queue that contain any of `needles`
    /// (lowercase), and makes the others visible again at once; the count deleted. At most
    /// [`MAX_DEAD_LETTERS`] are read per erasure.
    async fn delete_dead_letters_naming(&self, needles: &BTreeSet<String>) -> Result<u64, Failure> {
        let Some(queue) = self.settings.ingest_dlq_url.as_deref().filter(|_| !needles.is_empty()) else {
            return Ok(0);
        };
        let sqs = self.sqs.get();
        let transient = |e: &dyn std::fmt::Display| Failure::Transient(format!("ingest DLQ: {e}").into());
        let (mut deleted, mut kept, mut read) = (0, Vec::new(), 0);
        while read < MAX_DEAD_LETTERS {
            let got = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .visibility_timeout(120)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(|e| transient(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            read += messages.len();
            for m in messages {
                let Some(receipt) = m.receipt_handle else { continue };
                let body = m.body.unwrap_or_default().to_lowercase();
                if needles.iter().any(|n| body.contains(n.as_str())) {
                    sqs.delete_message()
                        .queue_url(queue)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map_err(|e| transient(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
                    deleted += 1;
                } else {
                    kept.push((receipt, 0));
                }
            }
        }
        if !kept.is_empty() {
            self.queue.get().change_visibility(queue, &kept).await?;
        }
        if deleted > 0 {
            warn!(deleted, "dead-lettered deliveries naming a forgotten customer deleted");
        }
        Ok(deleted)
    }

    /// The customers changed by the CRM's own updates: only the attributes it owns.
    pub async fn apply_crm_update(
        &self,
        crm: &str,
        record_id: &str,
        property: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Failure> {
        let config = self.config().await;
        let Some(account) = config.crms.iter().find(|c| c.id == crm) else {
            return Err(Failure::permanent("crm", format!("no CRM account {crm}")));
        };
        let Some(attribute) = account.owns.iter().find(|(_, p)| p.as_str() == property).map(|(a, _)| a.clone()) else {
            info!(crm, property, "CRM update of a property it does not own: ignored");
            return Ok(None);
        };
        let store = self.customer_store();
        let owners = store.owners(&[crm_claim(crm, record_id)]).await?;
        let Some(owner) = owners.values().next() else {
            warn!(crm, "CRM update for a record no customer was sent as: ignored");
            return Ok(None);
        };
        for _ in 0..ATTEMPTS {
            let Some(mut customer) = self.resolve_customer(owner).await? else { return Ok(None) };
            if customer.forgotten_at.is_some() {
                return Ok(None);
            }
            if customer.attributes.get(&attribute).map(String::as_str) == Some(value) {
                return Ok(Some(customer.id));
            }
            customer.attributes.insert(attribute.clone(), value.to_owned());
            customer.updated_at = now;
            let read = customer.version;
            customer.version += 1;
            if store.put(&customer, Some(read)).await? {
                info!(crm, customer_id = %customer.id, attribute, "CRM-owned attribute updated");
                return Ok(Some(customer.id));
            }
        }
        Err(Failure::Transient("the customer kept changing; retry".into()))
    }

    /// Records what a CRM took and its record id there (the consumer, after an upsert).
    pub(crate) async fn record_crm_delivery(&self, crm: &str, sent: &CrmSent) -> Result<(), Failure> {
        let store = self.customer_store();
        store.record_sent(crm, sent).await?;
        let Some(record) = &sent.crm_record_id else { return Ok(()) };
        // The first customer sent as this record keeps it (a CRM that merged two of ours into one
        // record reports its changes to that one).
        store.claim(&crm_claim(crm, record), &sent.customer_id).await?;
        for _ in 0..ATTEMPTS {
            let Some(mut customer) = store.get(&sent.customer_id).await? else { return Ok(()) };
            if customer.crm_ids.get(crm) == Some(record) {
                return Ok(());
            }
            customer.crm_ids.insert(crm.to_owned(), record.clone());
            let read = customer.version;
            customer.version += 1;
            if store.put(&customer, Some(read)).await? {
                return Ok(());
            }
        }
        Err(Failure::Transient("the customer kept changing; retry".into()))
    }
}

/// The claim key of a CRM record id: how a CRM's update finds its customer.
pub(crate) fn crm_claim(crm: &str, record_id: &str) -> String {
    format!("crm:{crm}:{record_id}")
}

/// Order events the customers function reads: the order id and the trace.
#[derive(Debug, Deserialize)]
struct BusEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: serde_json::Value,
}

/// What the `CustomersQueue` carries: an order event from the bus, or a verified CRM update from the
/// webhook function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmUpdate {
    pub crm: String,
    pub record_id: String,
    pub property: String,
    pub value: String,
}

impl App {
    /// The `CustomersQueue` consumer.
    pub async fn customers_batch(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        crate::sqs::process_batch(event, 4, |m| async move {
            let body = m.body.as_deref().unwrap_or_default();
            let now = Utc::now();
            if let Ok(update) = serde_json::from_str::<CrmUpdate>(body) {
                let applied =
                    self.apply_crm_update(&update.crm, &update.record_id, &update.property, &update.value, now).await;
                return match applied {
                    // A CRM account no longer configured: kept whole with its reason, replayable after a fix.
                    Err(Failure::Permanent { stage, reason }) => {
                        if self.quarantine_crm_payload(&update.crm, body, stage, &reason).await {
                            Ok(())
                        } else {
                            Err(Failure::Transient(format!("quarantine unavailable for {reason}").into()))
                        }
                    }
                    other => other.map(|_| ()),
                };
            }
            let event: BusEvent = serde_json::from_str(body)
                .map_err(|e| Failure::Transient(format!("not a bus event nor a CRM update: {e}").into()))?;
            let Some(order_id) = event.detail.pointer("/data/id").and_then(|v| v.as_str()) else {
                info!(event = %event.detail_type, "event without an order: ignored");
                return Ok(());
            };
            let order_id = OrderId::new(order_id.to_owned())
                .map_err(|e| Failure::Transient(format!("bad order id in {}: {e}", event.detail_type).into()))?;
            match self.join_order(&order_id, now).await {
                // A permanent failure here is a bug or a corrupt item: keep it in the DLQ for a person.
                Err(Failure::Permanent { stage, reason }) => {
                    Err(Failure::Transient(format!("{stage}: {reason}").into()))
                }
                other => other.map(|_| ()),
            }
        })
        .await
    }
}

/// The owners of claim keys, for tests and `customers show`.
pub async fn claim_owners(app: &App, keys: &[String]) -> Result<HashMap<String, String>, Failure> {
    Ok(app.customer_store().owners(keys).await?)
}

impl App {
    /// `DELETE /v1/customers/{id}` (IAM-authorized): erases the person; the caller's IAM identity
    /// is written to the audit. Answers what was erased, in counts.
    pub async fn customers_http(
        &self,
        request: &aws_lambda_events::event::apigw::ApiGatewayV2httpRequest,
        now: DateTime<Utc>,
    ) -> aws_lambda_events::event::apigw::ApiGatewayV2httpResponse {
        let trace_id = crate::trace::from_header(
            request.headers.get(manifold_telemetry::TRACE_HEADER).and_then(|v| v.to_str().ok()),
        );
        let method = request.request_context.http.method.as_str();
        let id = request.path_parameters.get("id").cloned().unwrap_or_default();
        let caller = request
            .request_context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone().or_else(|| iam.caller_id.clone()));
        let (status, body) = match (method, caller) {
            (_, None) => (403, serde_json::json!({ "message": "an IAM-authorized caller is required" })),
            ("DELETE", Some(by)) if id.starts_with("cus_") => match self.forget_customer(&id, &by, now).await {
                Ok(done) => (200, serde_json::to_value(&done).unwrap_or_default()),
                Err(Failure::Permanent { reason, .. }) => (404, serde_json::json!({ "message": reason })),
                Err(e) => (503, serde_json::json!({ "message": e.to_string() })),
            },
            ("DELETE", Some(_)) => {
                (400, serde_json::json!({ "message": format!("{id:?} is not a customer id (cus_...)") }))
            }
            _ => (405, serde_json::json!({ "message": "only DELETE is served here" })),
        };
        let mut body = body;
        if let Some(map) = body.as_object_mut() {
            map.insert("trace_id".into(), serde_json::Value::String(trace_id.clone()));
        }
        let mut response = aws_lambda_events::event::apigw::ApiGatewayV2httpResponse::default();
        response.status_code = status;
        response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        if let Ok(v) = http::HeaderValue::from_str(&trace_id) {
            response.headers.insert(manifold_telemetry::TRACE_HEADER, v);
        }
        response.body = Some(aws_lambda_events::encodings::Body::Text(body.to_string()));
        response
    }
}
