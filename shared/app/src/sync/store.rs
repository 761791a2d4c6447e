//! Where the schedule's slots and the runs live: [`DynamoSyncStore`] (the `StateTable`, keys in the
//! [module docs](super)) and [`MemorySyncStore`] (unit tests). Both implement the same conditions:
//! a claim succeeds only when the slot is due ([`super::is_due`]), and a page is recorded only once
//! (its number must be the run's page count), so a duplicate message or an overlapping tick changes
//! nothing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use aws_sdk_dynamodb::{
    Client,
    error::SdkError,
    types::{AttributeValue, ReturnValue},
};
use chrono::{DateTime, NaiveDate, Utc};
use manifold_aws::StoreError;

use super::{PageDone, RunStatus, Slot, SlotState, SyncRun};

/// A claim on a slot: run `run_id` starts it at `now` and holds it until `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub now: DateTime<Utc>,
    /// The slot must not have started after this (its period must have elapsed).
    pub due_before: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub run_id: String,
}

/// The schedule state and the runs.
#[async_trait::async_trait]
pub trait SyncStore: Send + Sync {
    /// Every slot the schedule has a state for.
    async fn slots(&self) -> Result<Vec<(Slot, SlotState)>, StoreError>;

    /// Starts `slot` if it is due and free (see [`super::is_due`]). `false`: another tick has it.
    async fn claim(&self, slot: &Slot, claim: &Claim) -> Result<bool, StoreError>;

    /// Run `run_id` finished at `at`: the slot is free again (a no-op if a newer run holds it).
    async fn release(&self, slot: &Slot, run_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn create_run(&self, run: &SyncRun) -> Result<(), StoreError>;

    async fn run(&self, id: &str) -> Result<Option<SyncRun>, StoreError>;

    /// Records page `page` of run `id` in ONE conditional write: the counts, the next cursor, the page
    /// count, and the end of the run if it ends. `false`: that page was already recorded (or the run
    /// is over), nothing changed.
    async fn complete_page(&self, id: &str, page: u32, done: &PageDone, now: DateTime<Utc>)
    -> Result<bool, StoreError>;

    /// Counts `pushed` jobs that an attempt of a page queued before it failed: the page is redone and
    /// recorded once, but those jobs went out (its redo finds them in flight at the gate).
    async fn add_pushed(&self, id: &str, pushed: u64) -> Result<(), StoreError>;

    /// The runs started on the days `from` to `to` inclusive, oldest first.
    async fn runs(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<SyncRun>, StoreError>;
}

const SLOT_PK: &str = "SYNCSLOT";

fn run_pk(day: &str) -> String {
    format!("SYNCRUN#{day}")
}

fn millis(t: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(t.timestamp_millis().to_string())
}

type Item = HashMap<String, AttributeValue>;

fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn time(item: &Item, k: &str) -> Option<DateTime<Utc>> {
    n(item, k).and_then(DateTime::from_timestamp_millis)
}

fn count(item: &Item, k: &str) -> u64 {
    n(item, k).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

fn corrupt(key: &str, what: &'static str, reason: String) -> StoreError {
    StoreError::Corrupt { key: key.to_owned(), what, source: reason.into() }
}

/// The `StateTable` implementation.
#[derive(Debug, Clone)]
pub struct DynamoSyncStore {
    client: Client,
    table: String,
}

impl DynamoSyncStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn run_from(item: &Item) -> Result<SyncRun, StoreError> {
        let id = s(item, "sk").unwrap_or_default();
        let bad = |what: &str| corrupt(&id, "sync run", format!("missing or invalid {what}"));
        Ok(SyncRun {
            channel: s(item, "channel").and_then(|c| c.parse().ok()).ok_or_else(|| bad("channel"))?,
            account: s(item, "account")
                .and_then(|a| manifold_domain::AccountId::new(a).ok())
                .ok_or_else(|| bad("account"))?,
            kind: s(item, "kind").and_then(|k| k.parse().ok()).ok_or_else(|| bad("kind"))?,
            trigger: s(item, "trigger").and_then(|t| t.parse().ok()).ok_or_else(|| bad("trigger"))?,
            full: item.get("full").and_then(|v| v.as_bool().ok()).copied().unwrap_or(true),
            since: time(item, "since"),
            status: s(item, "status").and_then(|t| t.parse().ok()).ok_or_else(|| bad("status"))?,
            started_at: time(item, "started_at").ok_or_else(|| bad("started_at"))?,
            finished_at: time(item, "finished_at"),
            pages: n(item, "pages").and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            cursor: s(item, "cursor"),
            examined: count(item, "examined"),
            pushed: count(item, "pushed"),
            drift: count(item, "drift"),
            errors: count(item, "errors"),
            note: s(item, "note"),
            id,
        })
    }
}

fn service<E>(operation: &'static str, e: E) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::service("dynamodb", operation, e)
}

#[async_trait::async_trait]
impl SyncStore for DynamoSyncStore {
    async fn slots(&self) -> Result<Vec<(Slot, SlotState)>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", AttributeValue::S(SLOT_PK.into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| service("Query", e))?;
        Ok(items
            .iter()
            .filter_map(|i| {
                // A slot of a channel or kind this build does not know is not ours to schedule.
                let slot = s(i, "sk")?.parse().ok()?;
                let state = SlotState {
                    last_started: time(i, "last_started"),
                    last_finished: time(i, "last_finished"),
                    lease_until: time(i, "lease_until"),
                    last_run: s(i, "last_run"),
                };
                Some((slot, state))
            })
            .collect())
    }

    async fn claim(&self, slot: &Slot, claim: &Claim) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(SLOT_PK.into()))
            .key("sk", AttributeValue::S(slot.to_string()))
            .update_expression("SET last_started = :now, lease_until = :lease, last_run = :run")
            .condition_expression(
                "(attribute_not_exists(last_started) OR last_started <= :due) \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_values(":now", millis(claim.now))
            .expression_attribute_values(":due", millis(claim.due_before))
            .expression_attribute_values(":lease", millis(claim.lease_until))
            .expression_attribute_values(":run", AttributeValue::S(claim.run_id.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(service("UpdateItem", e)),
        }
    }

    async fn release(&self, slot: &Slot, run_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(SLOT_PK.into()))
            .key("sk", AttributeValue::S(slot.to_string()))
            .update_expression("SET last_finished = :at REMOVE lease_until")
            .condition_expression("last_run = :run")
            .expression_attribute_values(":at", millis(at))
            .expression_attribute_values(":run", AttributeValue::S(run_id.to_owned()))
            .send()
            .await;
        match result {
            // A newer run holds the slot (or a triggered run never claimed it): leave it.
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(service("UpdateItem", e)),
        }
    }

    async fn create_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let day = SyncRun::day_of(&run.id).ok_or_else(|| StoreError::Invalid {
            what: "sync run",
            reason: format!("run id {:?} does not start with its day", run.id),
        })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(run_pk(&day)))
            .item("sk", AttributeValue::S(run.id.clone()))
            .item("channel", AttributeValue::S(run.channel.to_string()))
            .item("account", AttributeValue::S(run.account.to_string()))
            .item("kind", AttributeValue::S(run.kind.to_string()))
            .item("trigger", AttributeValue::S(run.trigger.as_str().into()))
            .item("full", AttributeValue::Bool(run.full))
            .item("status", AttributeValue::S(run.status.as_str().into()))
            .item("started_at", millis(run.started_at))
            .item("pages", AttributeValue::N(run.pages.to_string()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(since) = run.since {
            put = put.item("since", millis(since));
        }
        put.send().await.map_err(|e| service("PutItem", e))?;
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        let Some(day) = SyncRun::day_of(id) else { return Ok(None) };
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(run_pk(&day)))
            .key("sk", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| service("GetItem", e))?;
        out.item.as_ref().map(Self::run_from).transpose()
    }

    async fn complete_page(
        &self,
        id: &str,
        page: u32,
        done: &PageDone,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(day) = SyncRun::day_of(id) else { return Ok(false) };
        // Every attribute by placeholder: `cursor` and `status` are DynamoDB reserved words.
        let mut set = vec!["#pages = :next"];
        let mut remove = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(run_pk(&day)))
            .key("sk", AttributeValue::S(id.to_owned()))
            .condition_expression("#pages = :page AND #status = :running")
            .expression_attribute_values(":page", AttributeValue::N(page.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((page + 1).to_string()))
            .expression_attribute_values(":running", AttributeValue::S(RunStatus::Running.as_str().into()))
            .expression_attribute_values(":e", AttributeValue::N(done.examined.to_string()))
            .expression_attribute_values(":p", AttributeValue::N(done.pushed.to_string()))
            .expression_attribute_values(":d", AttributeValue::N(done.drift.to_string()))
            .expression_attribute_values(":x", AttributeValue::N(done.errors.to_string()))
            .return_values(ReturnValue::None);
        // (Only names the expressions use: DynamoDB refuses unused ones.)
        for name in ["pages", "status", "cursor", "examined", "pushed", "drift", "errors"] {
            update = update.expression_attribute_names(format!("#{name}"), name);
        }
        match &done.cursor {
            Some(c) => {
                set.push("#cursor = :c");
                update = update.expression_attribute_values(":c", AttributeValue::S(c.clone()));
            }
            None => remove.push("#cursor"),
        }
        if let Some(note) = &done.note {
            set.push("#note = :note");
            update = update
                .expression_attribute_names("#note", "note")
                .expression_attribute_values(":note", AttributeValue::S(note.clone()));
        }
        if let Some(end) = done.end {
            set.push("#status = :end");
            set.push("#finished_at = :now");
            update = update
                .expression_attribute_names("#finished_at", "finished_at")
                .expression_attribute_values(":end", AttributeValue::S(end.as_str().into()))
                .expression_attribute_values(":now", millis(now));
        }
        let mut expression = format!("SET {} ADD #examined :e, #pushed :p, #drift :d, #errors :x", set.join(", "));
        if !remove.is_empty() {
            expression = format!("{expression} REMOVE {}", remove.join(", "));
        }
        match update.update_expression(expression).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(service("UpdateItem", e)),
        }
    }

    async fn add_pushed(&self, id: &str, pushed: u64) -> Result<(), StoreError> {
        let Some(day) = SyncRun::day_of(id) else { return Ok(()) };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(run_pk(&day)))
            .key("sk", AttributeValue::S(id.to_owned()))
            .update_expression("ADD #pushed :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#pushed", "pushed")
            .expression_attribute_values(":p", AttributeValue::N(pushed.to_string()))
            .send()
            .await
            .map_err(|e| service("UpdateItem", e))?;
        Ok(())
    }

    async fn runs(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<SyncRun>, StoreError> {
        let mut out = Vec::new();
        let mut day = from;
        while day <= to {
            let items = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", AttributeValue::S(run_pk(&day.to_string())))
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| service("Query", e))?;
            for item in &items {
                out.push(Self::run_from(item)?);
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        Ok(out)
    }
}

/// In memory, with the same conditions (unit tests).
#[derive(Debug, Default)]
pub struct MemorySyncStore {
    slots: Mutex<BTreeMap<Slot, SlotState>>,
    runs: Mutex<BTreeMap<String, SyncRun>>,
}

impl MemorySyncStore {
    fn slots_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Slot, SlotState>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn runs_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SyncRun>> {
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl SyncStore for MemorySyncStore {
    async fn slots(&self) -> Result<Vec<(Slot, SlotState)>, StoreError> {
        Ok(self.slots_lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn claim(&self, slot: &Slot, claim: &Claim) -> Result<bool, StoreError> {
        let mut slots = self.slots_lock();
        let state = slots.entry(slot.clone()).or_default();
        let free = state.lease_until.is_none_or(|l| l <= claim.now);
        let elapsed = state.last_started.is_none_or(|t| t <= claim.due_before);
        if !(free && elapsed) {
            return Ok(false);
        }
        state.last_started = Some(claim.now);
        state.lease_until = Some(claim.lease_until);
        state.last_run = Some(claim.run_id.clone());
        Ok(true)
    }

    async fn release(&self, slot: &Slot, run_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(state) = self.slots_lock().get_mut(slot)
            && state.last_run.as_deref() == Some(run_id)
        {
            state.last_finished = Some(at);
            state.lease_until = None;
        }
        Ok(())
    }

    async fn create_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        self.runs_lock().entry(run.id.clone()).or_insert_with(|| run.clone());
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        Ok(self.runs_lock().get(id).cloned())
    }

    async fn complete_page(
        &self,
        id: &str,
        page: u32,
        done: &PageDone,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut runs = self.runs_lock();
        let Some(run) = runs.get_mut(id).filter(|r| r.pages == page && r.status == RunStatus::Running) else {
            return Ok(false);
        };
        run.pages = page + 1;
        run.cursor.clone_from(&done.cursor);
        run.examined += done.examined;
        run.pushed += done.pushed;
        run.drift += done.drift;
        run.errors += done.errors;
        if done.note.is_some() {
            run.note.clone_from(&done.note);
        }
        if let Some(end) = done.end {
            run.status = end;
            run.finished_at = Some(now);
        }
        Ok(true)
    }

    async fn add_pushed(&self, id: &str, pushed: u64) -> Result<(), StoreError> {
        if let Some(run) = self.runs_lock().get_mut(id) {
            run.pushed += pushed;
        }
        Ok(())
    }

    async fn runs(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<SyncRun>, StoreError> {
        Ok(self.runs_lock().values().filter(|r| (from..=to).contains(&r.started_at.date_naive())).cloned().collect())
    }
}
