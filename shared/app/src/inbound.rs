//! The non-webhook inbound paths, joining the same ingest path: the ingest queue consumer, Amazon
//! SP-API notifications (SQS), and the Zalando order poll.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use manifold_connectors::CallContext;
use manifold_domain::Channel;
use manifold_normalize::DocKind;
use serde::Serialize;
use tracing::{info, warn};

use crate::{
    App, IngestEnvelope, Source,
    envelope::body_hash,
    ingest::IngestOutcome,
    outcome::Failure,
    sqs::{process_batch, trace_of},
};

/// What one Zalando poll did, per account.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PollReport {
    pub fetched: usize,
    pub stored: usize,
    pub acknowledged: usize,
    pub failed: usize,
}

impl App {
    /// The ingest queue consumer: one envelope per message.
    pub async fn ingest_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        process_batch(event, 4, |m| async move {
            let body = m.body.as_deref().unwrap_or_default();
            let envelope: IngestEnvelope = match serde_json::from_str(body) {
                Ok(e) => e,
                Err(e) => {
                    // Not an envelope at all: nothing to replay it into, so let it reach the DLQ
                    // where `manifold dlq show` displays it with this error.
                    return Err(Failure::Transient(format!("message is not an ingest envelope: {e}").into()));
                }
            };
            self.ingest(&envelope, Utc::now()).await.map(|_| ())
        })
        .await
    }

    /// The Amazon notifications consumer: each SQS message body is one SP-API notification.
    pub async fn amazon_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        process_batch(event, 4, |m| async move {
            let trace_id = trace_of(&m);
            let body = m.body.clone().unwrap_or_default();
            let envelope = self.amazon_envelope(&body, &trace_id, Utc::now())?;
            self.ingest(&envelope, Utc::now()).await.map(|_| ())
        })
        .await
    }

    /// Wraps an SP-API notification. The seller id inside names the account; the notification id is the
    /// dedupe key (SQS delivers at least once).
    pub fn amazon_envelope(&self, body: &str, trace_id: &str, now: DateTime<Utc>) -> Result<IngestEnvelope, Failure> {
        let value: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        let seller =
            ["/Payload/OrderChangeNotification/SellerId", "/Payload/SellerId", "/Payload/sellerId", "/SellerId"]
                .iter()
                .find_map(|p| value.pointer(p).and_then(|v| v.as_str()))
                .map(str::to_owned);
        let config = self.live_config.snapshot();
        let account = match seller {
            Some(s) if config.account(Channel::Amazon, &s).is_some() => s,
            // A single configured Amazon account takes notifications that do not name the seller.
            _ => config
                .enabled_accounts()
                .find(|a| a.channel == Channel::Amazon)
                .map(|a| a.account.to_string())
                .ok_or_else(|| Failure::permanent("config", "no Amazon account configured"))?,
        };
        let event_id =
            manifold_normalize::body_event_id(Channel::Amazon, &value).unwrap_or_else(|| body_hash(body.as_bytes()));
        Ok(IngestEnvelope {
            v: 1,
            channel: Channel::Amazon,
            account,
            source: Source::AmazonNotification,
            topic: value.pointer("/NotificationType").and_then(|v| v.as_str()).map(str::to_owned),
            event_id,
            trace_id: trace_id.to_owned(),
            received_at: now,
            body: body.to_owned(),
            document: None,
        })
    }

    /// Polls every Zalando account for orders not yet exported, ingests them, and marks each exported
    /// only once it is stored (or was already stored), so a crash in between re-polls rather than loses.
    pub async fn poll_zalando(&self, now: DateTime<Utc>) -> Result<PollReport, Failure> {
        let mut report = PollReport::default();
        let accounts: Vec<_> =
            self.config().await.enabled_accounts().filter(|a| a.channel == Channel::Zalando).cloned().collect();
        for account in accounts {
            let trace_id = crate::trace::mint();
            let ctx = CallContext { trace_id: trace_id.clone() };
            let connector = self.connector(&account).await?;
            // Zalando's `exported=false`: new orders, however old. Changes to orders already
            // exported come with the reconciliation tier's poll of orders changed since.
            let orders = connector.list_unexported_orders(&ctx).await.map_err(|e| Failure::Transient(Box::new(e)))?;
            report.fetched += orders.len();
            for doc in orders {
                let body = doc.to_string();
                let order_id = doc.pointer("/data/id").and_then(|v| v.as_str()).map(str::to_owned);
                let envelope = IngestEnvelope {
                    v: 1,
                    channel: Channel::Zalando,
                    account: account.account.to_string(),
                    source: Source::ZalandoPoll,
                    topic: Some("order".into()),
                    event_id: body_hash(body.as_bytes()),
                    trace_id: trace_id.clone(),
                    received_at: now,
                    body,
                    document: Some(DocKind::Order),
                };
                match self.ingest(&envelope, now).await {
                    Ok(IngestOutcome::Stored { .. } | IngestOutcome::Unchanged { .. }) => {
                        report.stored += 1;
                        if let Some(id) = order_id {
                            match connector.acknowledge_order(&id, &ctx).await {
                                Ok(_) => report.acknowledged += 1,
                                Err(e) => warn!(error = %e, order = %id, "could not mark exported; next poll retries"),
                            }
                        }
                    }
                    Ok(other) => {
                        report.failed += 1;
                        warn!(outcome = ?other, "zalando order not stored; left unexported");
                    }
                    Err(e) => {
                        report.failed += 1;
                        warn!(error = %e, "zalando order not stored; left unexported");
                    }
                }
            }
        }
        info!(
            fetched = report.fetched,
            stored = report.stored,
            acknowledged = report.acknowledged,
            "zalando poll done"
        );
        Ok(report)
    }
}
