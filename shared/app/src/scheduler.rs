//! Scheduled syncs, tiered by need (the schedules live in template.yaml; moto never fires them, so the
//! local pipeline calls [`App::run_tier`] on a timer):
//!
//! - `stock` (every 5 minutes; Zalando's SLA is 10): re-offers every ledger position to the fan-out,
//!   so a push lost on the way is re-sent; unchanged values are coalesced away by the push gate.
//! - `reconcile` (every 15 minutes): polls each account's recent orders and ingests them like webhooks;
//!   orders we already hold are recognised by their `source_version`, and the ones webhooks missed are
//!   stored and counted as drift (`ReconcileDrift`).
//! - `prices`, `images`: no price or image source is connected in v1; the tier reports that plainly.
//! - Legacy ERP data is on demand: the inventory import endpoint, not a schedule.

use chrono::{DateTime, Duration, Utc};
use manifold_connectors::CallContext;
use manifold_domain::{Channel, Sku};
use manifold_ledger::{Ledger, PositionKey, fanout::fan_out};
use manifold_normalize::DocKind;
use manifold_telemetry::MetricSet;
use serde::Serialize;
use tracing::{info, warn};

use crate::{App, IngestEnvelope, Source, envelope::body_hash, ingest::IngestOutcome, outcome::Failure};

/// What a scheduled run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TierReport {
    pub tier: String,
    pub positions: usize,
    pub push_jobs: usize,
    pub orders_seen: usize,
    /// Orders a reconciliation found that no webhook had delivered.
    pub drift: usize,
    pub note: Option<String>,
}

impl App {
    /// Runs one sync tier (`stock`, `reconcile`, `prices`, `images`).
    pub async fn run_tier(&self, tier: &str, now: DateTime<Utc>) -> Result<TierReport, Failure> {
        let mut report = TierReport { tier: tier.to_owned(), ..TierReport::default() };
        match tier {
            "stock" => self.refresh_stock(&mut report).await?,
            "reconcile" => self.reconcile(&mut report, now).await?,
            "prices" | "images" => report.note = Some(format!("no {tier} source is connected; nothing to sync")),
            other => return Err(Failure::permanent("scheduler", format!("unknown tier {other:?}"))),
        }
        info!(
            tier,
            positions = report.positions,
            push_jobs = report.push_jobs,
            drift = report.drift,
            "scheduled sync done"
        );
        Ok(report)
    }

    async fn refresh_stock(&self, report: &mut TierReport) -> Result<(), Failure> {
        let items = self
            .ddb
            .scan()
            .table_name(&self.env.ledger_table)
            .filter_expression("begins_with(pk, :p) AND begins_with(sk, :l)")
            .expression_attribute_values(":p", aws_sdk_dynamodb::types::AttributeValue::S("SKU#".into()))
            .expression_attribute_values(":l", aws_sdk_dynamodb::types::AttributeValue::S("LOC#".into()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
        let mut positions = Vec::new();
        for item in items {
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let (pk, sk) = (s("pk"), s("sk"));
            let (Some(sku), Some(loc)) = (pk.strip_prefix("SKU#"), sk.strip_prefix("LOC#")) else { continue };
            let Ok(sku) = Sku::new(sku) else { continue };
            let position = self
                .ledger
                .position(&PositionKey::new(sku, loc))
                .await
                .map_err(|e| Failure::Transient(e.to_string().into()))?;
            positions.push(position);
        }
        report.positions = positions.len();
        let fanned = fan_out(&*self.config().await, &positions, &self.push_gate, &*self.push_queue, None)
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
        report.push_jobs = fanned.enqueued.len();
        Ok(())
    }

    async fn reconcile(&self, report: &mut TierReport, now: DateTime<Utc>) -> Result<(), Failure> {
        let accounts: Vec<_> =
            self.config().await.enabled_accounts().filter(|a| a.channel != Channel::Zalando).cloned().collect();
        for account in accounts {
            let trace_id = crate::trace::mint();
            let ctx = CallContext { trace_id: trace_id.clone() };
            // Twice the cadence, so one missed run leaves no gap.
            let window = match account.sync.reconcile {
                manifold_domain::config::Cadence::Every(d) => Duration::from_std(d * 2).unwrap_or(Duration::hours(1)),
                _ => Duration::hours(1),
            };
            let connector = self.connector(&account).await?;
            let orders = match connector.list_orders_since(now - window, &ctx).await {
                Ok(o) => o,
                Err(e) => {
                    warn!(channel = %account.channel, account = %account.account, error = %e, "reconciliation poll failed");
                    MetricSet::new()
                        .dim("Channel", account.channel.as_str())
                        .dim("Operation", "reconcile")
                        .count("SyncFailed", 1)
                        .emit();
                    continue;
                }
            };
            let mut drift = 0;
            for doc in orders {
                report.orders_seen += 1;
                let body = doc.to_string();
                let envelope = IngestEnvelope {
                    v: 1,
                    channel: account.channel,
                    account: account.account.to_string(),
                    source: Source::Reconcile,
                    topic: None,
                    event_id: body_hash(body.as_bytes()),
                    trace_id: trace_id.clone(),
                    received_at: now,
                    body,
                    document: Some(DocKind::Order),
                };
                if let Ok(IngestOutcome::Stored { .. }) = self.ingest(&envelope, now).await {
                    drift += 1;
                }
            }
            report.drift += drift;
            MetricSet::new()
                .dim("Channel", account.channel.as_str())
                .dim("Operation", "reconcile")
                .count("ReconcileDrift", drift as u64)
                .emit();
        }
        Ok(())
    }
}
