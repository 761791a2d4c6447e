//! `manifold trace <trace-id>`: everything one transaction left behind, to answer "what happened to
//! this order?" from the id in a log line, an HTTP response header or a dead letter.
//!
//! - canonical records: the records table's `by_trace` index (a query);
//! - quarantine entries: a scan of the quarantine table (small, operator-only);
//! - ledger entries: a **scan** of the ledger table filtered on `adjustment.trace_id`. The ledger keys
//!   entries by SKU and version, not by trace, so this reads the whole table: fine for an operator
//!   command on a modest ledger, not something to run in a loop.

use std::collections::HashMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use manifold_aws::{
    quarantine::{DynamoQuarantine, Quarantine, QuarantinedPayload},
    records::{DynamoRecords, RecordStore, StoredRecord},
};
use manifold_domain::InventoryAdjustment;
use manifold_ledger::fanout::GateState;
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    output::{Human, Table, excerpt},
};

#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceReport {
    pub trace_id: String,
    pub records: Vec<StoredRecord>,
    pub quarantine: Vec<QuarantinedPayload>,
    pub ledger: Vec<InventoryAdjustment>,
    /// Stock handed to channel accounts by this transaction (the push gate's offers it made).
    pub pushes: Vec<PushOffer>,
}

/// One quantity a transaction offered a channel account (`PUSH#{channel}#{account}` in the
/// StateTable, `offered_by` = the trace id), and whether the channel confirmed that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOffer {
    pub channel: String,
    pub account: String,
    pub sku: String,
    pub location: String,
    pub channel_sku: Option<String>,
    pub quantity: u64,
    pub version: u64,
    pub offered_at: Option<DateTime<Utc>>,
    pub delivered: bool,
}

/// One step of a transaction, as the console's timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub at: Option<DateTime<Utc>>,
    /// `record`, `quarantine`, `ledger`, `push`.
    pub stage: &'static str,
    pub what: String,
}

impl TraceReport {
    /// Everything the trace left, in time order (steps without a time last).
    pub fn timeline(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        for r in &self.records {
            let at = r.updated_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
            steps.push(Step { at, stage: "record", what: format!("{} stored: {}", r.kind, r.pk) });
        }
        for q in &self.quarantine {
            let replayed = if q.replayed_at.is_some() { " (replayed)" } else { "" };
            steps.push(Step {
                at: Some(q.received_at),
                stage: "quarantine",
                what: format!("{} payload quarantined at {}{replayed}: {}", q.channel, q.stage, q.reason),
            });
        }
        for e in &self.ledger {
            let reason = serde_json::to_value(e.reason).ok().and_then(|v| v.as_str().map(str::to_owned));
            steps.push(Step {
                at: Some(e.at),
                stage: "ledger",
                what: format!(
                    "{} {} @ {}: on hand {:+} -> {}, reserved {:+} -> {}",
                    reason.unwrap_or_default(),
                    e.sku,
                    e.location,
                    e.on_hand_delta,
                    e.on_hand_after,
                    e.reserved_delta,
                    e.reserved_after
                ),
            });
        }
        for p in &self.pushes {
            steps.push(Step {
                at: p.offered_at,
                stage: "push",
                what: format!(
                    "{} {} {} set to {} (version {}){}",
                    p.channel,
                    p.account,
                    p.channel_sku.as_deref().unwrap_or(&p.sku),
                    p.quantity,
                    p.version,
                    if p.delivered { ", confirmed by the channel" } else { ", not confirmed yet" }
                ),
            });
        }
        steps.sort_by_key(|s| (s.at.is_none(), s.at));
        steps
    }
}

impl Human for TraceReport {
    fn human(&self) -> String {
        let mut out = format!("trace {}\n", self.trace_id);
        let _ = writeln!(out, "\nrecords ({})", self.records.len());
        if !self.records.is_empty() {
            let mut t = Table::new(&["KEY", "KIND", "UPDATED"]);
            for r in &self.records {
                t.row(vec![r.pk.clone(), r.kind.clone(), r.updated_at.clone().unwrap_or_default()]);
            }
            out.push_str(&t.render());
        }
        let _ = writeln!(out, "\nquarantine ({})", self.quarantine.len());
        if !self.quarantine.is_empty() {
            let mut t = Table::new(&["ID", "STAGE", "REPLAYED", "REASON"]);
            for q in &self.quarantine {
                t.row(vec![
                    q.id.clone(),
                    q.stage.clone(),
                    if q.replayed_at.is_some() { "yes" } else { "no" }.to_owned(),
                    excerpt(&q.reason, 70),
                ]);
            }
            out.push_str(&t.render());
        }
        let _ = writeln!(out, "\nledger entries ({})", self.ledger.len());
        if !self.ledger.is_empty() {
            let mut t =
                Table::new(&["AT", "SKU", "LOCATION", "REASON", "ON HAND", "RESERVED", "ORDER"]).numeric(&[4, 5]);
            for e in &self.ledger {
                t.row(vec![
                    e.at.to_rfc3339(),
                    e.sku.to_string(),
                    e.location.clone(),
                    serde_json::to_value(e.reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                    format!("{:+} -> {}", e.on_hand_delta, e.on_hand_after),
                    format!("{:+} -> {}", e.reserved_delta, e.reserved_after),
                    e.order_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                ]);
            }
            out.push_str(&t.render());
        }
        let _ = writeln!(out, "\npushes ({})", self.pushes.len());
        if !self.pushes.is_empty() {
            let mut t = Table::new(&["CHANNEL", "ACCOUNT", "SKU", "QUANTITY", "VERSION", "CONFIRMED"]).numeric(&[3, 4]);
            for p in &self.pushes {
                t.row(vec![
                    p.channel.clone(),
                    p.account.clone(),
                    p.channel_sku.clone().unwrap_or_else(|| p.sku.clone()),
                    p.quantity.to_string(),
                    p.version.to_string(),
                    if p.delivered { "yes" } else { "no" }.to_owned(),
                ]);
            }
            out.push_str(&t.render());
        }
        out
    }
}

/// Collects the records, quarantine entries and ledger entries of `trace_id`.
pub async fn trace(aws: &Aws, trace_id: &str) -> Result<TraceReport, CliError> {
    let records = DynamoRecords::new(aws.ddb.clone(), &aws.env.records_table, &aws.env.idempotency_table)
        .by_trace(trace_id)
        .await?;
    let mut quarantine = DynamoQuarantine::new(aws.ddb.clone(), &aws.env.quarantine_table).list(true).await?;
    quarantine.retain(|q| q.trace_id == trace_id);
    let mut ledger = ledger_entries(&aws.ddb, &aws.env.ledger_table, trace_id).await?;
    ledger.sort_by_key(|e| e.at);
    let pushes = push_offers(&aws.ddb, &aws.env.state_table, trace_id).await?;
    Ok(TraceReport { trace_id: trace_id.to_owned(), records, quarantine, ledger, pushes })
}

/// Every item a (filtered) scan finds, all pages.
async fn scan_all(
    scan: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
) -> Result<Vec<HashMap<String, AttributeValue>>, CliError> {
    scan.into_paginator().items().send().collect::<Result<_, _>>().await.map_err(|e| CliError::dynamodb("Scan", e))
}

/// The push gate's offers made by `trace_id`: a filtered scan of the StateTable, like the ledger's.
async fn push_offers(ddb: &aws_sdk_dynamodb::Client, table: &str, trace_id: &str) -> Result<Vec<PushOffer>, CliError> {
    let items = scan_all(
        ddb.scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :p) AND offered_by = :t")
            .expression_attribute_values(":p", AttributeValue::S("PUSH#".to_owned()))
            .expression_attribute_values(":t", AttributeValue::S(trace_id.to_owned())),
    )
    .await?;
    let mut offers: Vec<PushOffer> = items
        .iter()
        .filter_map(|item| {
            let key = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
            let (channel, account) = key("pk")?.strip_prefix("PUSH#")?.split_once('#')?;
            let (sku, location) = key("sk")?.strip_prefix("SKU#")?.split_once("#LOC#")?;
            let gate = GateState::from_item(item);
            Some(PushOffer {
                channel: channel.to_owned(),
                account: account.to_owned(),
                sku: sku.to_owned(),
                location: location.to_owned(),
                quantity: u64::from(gate.quantity),
                version: gate.version,
                offered_at: item.contains_key("offered_at").then_some(gate.offered_at),
                delivered: gate.confirmed(),
                channel_sku: gate.channel_sku,
            })
        })
        .collect();
    offers.sort_by(|a, b| (&a.channel, &a.account, &a.sku).cmp(&(&b.channel, &b.account, &b.sku)));
    Ok(offers)
}

/// Ledger entries whose adjustment carries `trace_id` (a filtered scan, see the module docs).
async fn ledger_entries(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    trace_id: &str,
) -> Result<Vec<InventoryAdjustment>, CliError> {
    entries_where(ddb, table, "trace_id", trace_id).await
}

/// Ledger entries of one order (a filtered scan, like [`ledger_entries`]).
async fn order_entries(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    order_id: &str,
) -> Result<Vec<InventoryAdjustment>, CliError> {
    entries_where(ddb, table, "order_id", order_id).await
}

/// Ledger entries whose adjustment's `field` is `value`.
async fn entries_where(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    field: &str,
    value: &str,
) -> Result<Vec<InventoryAdjustment>, CliError> {
    let items = scan_all(
        ddb.scan()
            .table_name(table)
            .filter_expression("#a.#f = :v")
            .expression_attribute_names("#a", "adjustment")
            .expression_attribute_names("#f", field)
            .expression_attribute_values(":v", AttributeValue::S(value.to_owned())),
    )
    .await?;
    items
        .into_iter()
        .filter_map(|mut item| item.remove("adjustment").map(|a| (item, a)))
        .map(|(item, adjustment)| {
            serde_dynamo::from_attribute_value(adjustment).map_err(|e| {
                let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                CliError::Store(manifold_aws::StoreError::Corrupt { key, what: "ledger entry", source: Box::new(e) })
            })
        })
        .collect()
}

pub async fn run(args: &TraceArgs) -> Result<TraceReport, CliError> {
    trace(&Aws::from_env().await?, &args.trace_id).await
}

/// An order found by its channel order id, with the traces of its story: the ledger's (reservation,
/// release, commit: each entry keeps its transaction's trace), oldest first, then that of the
/// record's last write. The record keeps only its last write's trace, so an earlier update's own
/// trace shows only where the ledger moved stock for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundOrder {
    pub order: manifold_domain::Order,
    pub traces: Vec<String>,
}

/// The orders whose channel order id is `q`, on any configured account (an order id is derived from
/// channel, account and channel order id, so this is one read per account).
pub async fn find_orders(
    aws: &Aws,
    config: &manifold_domain::config::ChannelConfig,
    q: &str,
) -> Result<Vec<FoundOrder>, CliError> {
    let records = DynamoRecords::new(aws.ddb.clone(), &aws.env.records_table, &aws.env.idempotency_table);
    let mut found = Vec::new();
    for account in &config.accounts {
        let Ok(id) = manifold_domain::OrderId::for_channel(account.channel, &account.account, q) else { continue };
        let Some(order) = records.get_order(&id).await? else { continue };
        let item = aws
            .ddb
            .get_item()
            .table_name(&aws.env.records_table)
            .key("pk", AttributeValue::S(format!("ORDER#{id}")))
            .key("sk", AttributeValue::S("CURRENT".to_owned()))
            .projection_expression("trace_id")
            .send()
            .await
            .map_err(|e| CliError::dynamodb("GetItem", e))?;
        let last_write = item.item.and_then(|i| i.get("trace_id").and_then(|v| v.as_s().ok()).cloned());
        let mut entries = order_entries(&aws.ddb, &aws.env.ledger_table, id.as_str()).await?;
        entries.sort_by_key(|e| e.at);
        let mut traces: Vec<String> = Vec::new();
        for t in entries.into_iter().filter_map(|e| e.trace_id).chain(last_write) {
            if !traces.contains(&t) {
                traces.push(t);
            }
        }
        found.push(FoundOrder { order, traces });
    }
    Ok(found)
}
