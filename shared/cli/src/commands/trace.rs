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
use manifold_aws::{
    quarantine::{DynamoQuarantine, Quarantine, QuarantinedPayload},
    records::{DynamoRecords, RecordStore, StoredRecord},
};
use manifold_domain::InventoryAdjustment;
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
    Ok(TraceReport { trace_id: trace_id.to_owned(), records, quarantine, ledger })
}

/// Ledger entries whose adjustment carries `trace_id` (a filtered scan, see the module docs).
async fn ledger_entries(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    trace_id: &str,
) -> Result<Vec<InventoryAdjustment>, CliError> {
    let items: Vec<HashMap<String, AttributeValue>> = ddb
        .scan()
        .table_name(table)
        .filter_expression("#a.#t = :t")
        .expression_attribute_names("#a", "adjustment")
        .expression_attribute_names("#t", "trace_id")
        .expression_attribute_values(":t", AttributeValue::S(trace_id.to_owned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(|e| CliError::dynamodb("Scan", e))?;
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
