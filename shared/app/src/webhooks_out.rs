//! Signed outbound webhooks (subscriptions: `manifold_domain::webhooks`). Every event a subscription
//! wants reaches its endpoint at least once, in order per order, signed as Standard Webhooks asks.
//!
//! - Fan-out: the changes consumer (`crate::changes`) takes every bus event one batch at a time and
//!   hands each to the subscriptions that want it. It keeps the delivery (StateTable
//!   `WEBHOOK#{subscription}`, `{occurred_at}#{event_id}`, [`DELIVERY_RETENTION_DAYS`]: what `replay`
//!   sends again) and queues it on the FIFO `DeliveriesQueue`. The message group is the subscription
//!   and the order the event is about (else its record or SKU), so one order's events go out in
//!   order and a failing endpoint holds back only its own groups; the deduplication id (subscription
//!   and event) keeps a re-published event from being queued twice within SQS's five minutes.
//! - Delivery ([`App::deliveries_batch`]): a POST of `{"type", "timestamp", "data"}` with
//!   `webhook-id` (the same for every attempt and replay of one event to one subscription, so a
//!   receiver that answered late or twice can tell), `webhook-timestamp` and `webhook-signature`
//!   (the `standardwebhooks` crate). 2xx delivers. Anything else is retried after the push
//!   consumers' backoff (the message's visibility), behind a breaker per subscription
//!   (`BREAKER#webhook#{id}`), until the queue's `maxReceiveCount` moves it to the DLQ. Later messages
//!   of the same group in the batch wait with it. Each attempt is kept ([`ATTEMPT_RETENTION_DAYS`],
//!   `WEBHOOK_ATTEMPT#{subscription}`): `manifold webhooks deliveries`.
//! - Replay ([`App::replay_webhooks`]): the kept deliveries of a time window, queued again under
//!   fresh deduplication ids (the ERP was down for a day).

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{DateTime, SecondsFormat, Utc};
use manifold_aws::breaker::DynamoBreakerStore;
use manifold_connectors::breaker::CircuitBreaker;
use manifold_domain::{events::EventKind, webhooks::Subscription};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

pub const DELIVERY_RETENTION_DAYS: i64 = 30;
pub const ATTEMPT_RETENTION_DAYS: i64 = 7;

/// One event for one subscription: the queue message, and what is kept for replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub subscription: String,
    pub webhook_id: String,
    pub event_type: String,
    pub event_id: String,
    /// The FIFO message group: the subscription and the order (or record) the event is about.
    pub group: String,
    pub occurred_at: DateTime<Utc>,
    /// What is POSTed: `{"type", "timestamp", "data"}`.
    pub payload: Value,
}

/// One delivery attempt, as `manifold webhooks deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub subscription: String,
    pub webhook_id: String,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub attempt: u32,
    /// The endpoint's HTTP status; `None` when no answer came (timeout, refused, breaker open).
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn hash(parts: &[&str]) -> String {
    hex::encode(sha2::Sha256::digest(parts.join("\n").as_bytes()))
}

/// The `webhook-id` of an event for a subscription: stable across attempts and replays.
pub fn webhook_id(subscription: &str, event_id: &str) -> String {
    format!("msg_{}", &hash(&[subscription, event_id])[..32])
}

/// What the event is about, for ordering: the order, else the record, else the SKU.
fn subject(detail: &Value) -> String {
    ["/data/order_id", "/data/id", "/data/sku"]
        .iter()
        .find_map(|p| detail.pointer(p).and_then(Value::as_str))
        .unwrap_or("none")
        .to_owned()
}

/// The deliveries `events` (`(detail-type, detail)`) make for `subscriptions`.
pub fn deliveries_of(subscriptions: &[Subscription], events: &[(String, Value)]) -> Vec<Delivery> {
    let mut out = Vec::new();
    for (detail_type, detail) in events {
        let Ok(kind) = serde_json::from_value::<EventKind>(Value::String(detail_type.clone())) else { continue };
        let occurred_at = detail
            .get("occurred_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.to_utc());
        let event_id = detail
            .get("event_id")
            .and_then(Value::as_str)
            .map_or_else(|| hash(&[detail_type, &detail.to_string()]), str::to_owned);
        for s in subscriptions.iter().filter(|s| s.wants(kind)) {
            let group = format!("{}#{}", s.id, subject(detail));
            // A message group id is at most 128 characters.
            let group = if group.len() > 128 { format!("{}#{}", s.id, hash(&[&group])) } else { group };
            out.push(Delivery {
                subscription: s.id.clone(),
                webhook_id: webhook_id(&s.id, &event_id),
                event_type: detail_type.clone(),
                event_id: event_id.clone(),
                group,
                occurred_at,
                payload: json!({
                    "type": detail_type,
                    "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "data": detail,
                }),
            });
        }
    }
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn transient(e: impl std::error::Error + Send + Sync + 'static) -> Failure {
    Failure::Transient(Box::new(e))
}

impl App {
    fn deliveries_queue(&self) -> Result<&str, Failure> {
        self.settings.deliveries_queue_url.as_deref().ok_or_else(|| {
            Failure::permanent("webhooks", "webhooks are configured but DELIVERIES_QUEUE_URL is not set")
        })
    }

    /// Keeps and queues the deliveries the bus events make (see the module docs). Answers how many.
    pub async fn fan_out(&self, events: &[(String, Value)], now: DateTime<Utc>) -> Result<usize, Failure> {
        let config = self.config().await;
        if config.webhooks.is_empty() {
            return Ok(0);
        }
        let deliveries = deliveries_of(&config.webhooks, events);
        if deliveries.is_empty() {
            return Ok(0);
        }
        let queue = self.deliveries_queue()?;
        self.keep(&deliveries, now).await?;
        self.queue_deliveries(queue, &deliveries, None).await?;
        Ok(deliveries.len())
    }

    async fn keep(&self, deliveries: &[Delivery], now: DateTime<Utc>) -> Result<(), Failure> {
        let expires = (now + chrono::Duration::days(DELIVERY_RETENTION_DAYS)).timestamp().to_string();
        let ddb = self.ddb.get();
        for chunk in deliveries.chunks(25) {
            let mut requests = Vec::new();
            for d in chunk {
                let body = serde_json::to_string(d).map_err(|e| Failure::permanent("webhooks", e.to_string()))?;
                let put = PutRequest::builder()
                    .item("pk", AttributeValue::S(format!("WEBHOOK#{}", d.subscription)))
                    .item("sk", AttributeValue::S(format!("{}#{}", stamp(d.occurred_at), d.event_id)))
                    .item("delivery", AttributeValue::S(body))
                    .item("expires_at", AttributeValue::N(expires.clone()))
                    .build()
                    .map_err(|e| Failure::permanent("webhooks", e.to_string()))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(HashMap::from([(self.env.state_table.clone(), requests)]));
            while let Some(items) = pending.take() {
                let out = ddb.batch_write_item().set_request_items(Some(items)).send().await.map_err(transient)?;
                pending = out.unprocessed_items.filter(|u| u.values().any(|v| !v.is_empty()));
            }
        }
        Ok(())
    }

    /// Sends deliveries to the FIFO queue, ten per call; `replayed_at` gives them fresh deduplication ids.
    async fn queue_deliveries(
        &self,
        queue: &str,
        deliveries: &[Delivery],
        replayed_at: Option<DateTime<Utc>>,
    ) -> Result<(), Failure> {
        let sqs = self.sqs.get();
        for chunk in deliveries.chunks(10) {
            let mut entries = Vec::new();
            for (i, d) in chunk.iter().enumerate() {
                let body = serde_json::to_string(d).map_err(|e| Failure::permanent("webhooks", e.to_string()))?;
                let dedup = match replayed_at {
                    None => hash(&[&d.subscription, &d.event_id]),
                    Some(at) => hash(&[&d.subscription, &d.event_id, &stamp(at)]),
                };
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_group_id(&d.group)
                    .message_deduplication_id(dedup)
                    .build()
                    .map_err(|e| Failure::permanent("webhooks", e.to_string()))?;
                entries.push(entry);
            }
            let out =
                sqs.send_message_batch().queue_url(queue).set_entries(Some(entries)).send().await.map_err(transient)?;
            if let Some(failed) = out.failed.first() {
                return Err(Failure::Transient(
                    format!("the deliveries queue refused a message: {}", failed.message().unwrap_or_default()).into(),
                ));
            }
        }
        Ok(())
    }

    /// The `DeliveriesQueue` consumer (see the module docs).
    pub async fn deliveries_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        // Groups whose delivery failed in this batch, and its delay: their later messages wait as long.
        let mut held: HashMap<String, i32> = HashMap::new();
        let mut delays: Vec<(String, i32)> = Vec::new();
        for m in &event.records {
            let id = m.message_id.clone().unwrap_or_default();
            let fail = |response: &mut SqsBatchResponse| {
                let mut f = BatchItemFailure::default();
                f.item_identifier.clone_from(&id);
                response.batch_item_failures.push(f);
            };
            let delivery: Delivery = match serde_json::from_str(m.body.as_deref().unwrap_or_default()) {
                Ok(d) => d,
                Err(e) => {
                    // Not a delivery: left to the DLQ, where it can be looked at.
                    warn!(error = %e, "not a webhook delivery");
                    fail(&mut response);
                    continue;
                }
            };
            if let Some(delay) = held.get(&delivery.group) {
                if let Some(receipt) = &m.receipt_handle {
                    delays.push((receipt.clone(), *delay));
                }
                fail(&mut response);
                continue;
            }
            let attempt: u32 = m.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
            if let Err(reason) = self.deliver(&delivery, attempt, Utc::now()).await {
                warn!(subscription = %delivery.subscription, webhook_id = %delivery.webhook_id, attempt, %reason, "webhook not delivered");
                let delay = self.settings.push.backoff(attempt, rand_jitter(&delivery.webhook_id, attempt));
                let delay = i32::try_from(delay.as_secs()).unwrap_or(900).min(900);
                held.insert(delivery.group.clone(), delay);
                if let Some(receipt) = &m.receipt_handle {
                    delays.push((receipt.clone(), delay));
                }
                fail(&mut response);
            }
        }
        if !delays.is_empty()
            && let Ok(queue) = self.deliveries_queue()
            && let Err(e) = self.queue.get().change_visibility(queue, &delays).await
        {
            warn!(error = %e, "retry delays not set: the queue's visibility timeout applies");
        }
        response
    }

    /// One attempt to deliver; `Err` says why it must be retried.
    async fn deliver(&self, d: &Delivery, attempt: u32, now: DateTime<Utc>) -> Result<(), String> {
        let config = self.config().await;
        let Some(sub) = config.subscription(&d.subscription).filter(|s| s.enabled) else {
            info!(subscription = %d.subscription, "subscription removed or disabled: delivery dropped");
            return Ok(());
        };
        let breaker = CircuitBreaker::new(
            DynamoBreakerStore::new(self.ddb.get().clone(), &self.env.state_table),
            format!("webhook#{}", sub.id),
            self.settings.push.breaker,
        );
        let admission = breaker.admit(now).await.map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let sent = self.post(sub, d, now).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, error) = match &sent {
            Ok(status) if (200..300).contains(status) => (Some(*status), None),
            Ok(status) => (Some(*status), Some(format!("answered {status}"))),
            Err(e) => (None, Some(e.clone())),
        };
        let record = Attempt {
            subscription: sub.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_type: d.event_type.clone(),
            at: now,
            attempt,
            status,
            latency_ms,
            error: error.clone(),
        };
        if let Err(e) = self.record_attempt(&record).await {
            warn!(error = %e, "delivery attempt not recorded");
        }
        if let Err(e) = breaker.record(admission, error.is_some(), Utc::now()).await {
            warn!(error = %e, "breaker not updated");
        }
        error.map_or(Ok(()), Err)
    }

    async fn post(&self, sub: &Subscription, d: &Delivery, now: DateTime<Utc>) -> Result<u16, String> {
        let stored = self.secrets.secret(&sub.secret).await.map_err(|e| format!("signing secret: {e}"))?;
        let key = serde_json::from_str::<Value>(&stored)
            .ok()
            .and_then(|v| v.get("secret").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| stored.to_string());
        let signer = standardwebhooks::Webhook::new(&key).map_err(|e| format!("signing secret {}: {e}", sub.secret))?;
        let body = serde_json::to_vec(&d.payload).map_err(|e| e.to_string())?;
        let signature = signer.sign(&d.webhook_id, now.timestamp(), &body).map_err(|e| e.to_string())?;
        let response = self
            .http
            .get()
            .post(&sub.url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &d.webhook_id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, now.timestamp().to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        Ok(response.status().as_u16())
    }

    async fn record_attempt(&self, a: &Attempt) -> Result<(), Failure> {
        let expires = (a.at + chrono::Duration::days(ATTEMPT_RETENTION_DAYS)).timestamp().to_string();
        let body = serde_json::to_string(a).map_err(|e| Failure::permanent("webhooks", e.to_string()))?;
        self.ddb
            .get()
            .put_item()
            .table_name(&self.env.state_table)
            .item("pk", AttributeValue::S(format!("WEBHOOK_ATTEMPT#{}", a.subscription)))
            .item("sk", AttributeValue::S(format!("{}#{}#{}", stamp(a.at), a.webhook_id, a.attempt)))
            .item("attempt", AttributeValue::S(body))
            .item("expires_at", AttributeValue::N(expires))
            .send()
            .await
            .map_err(transient)?;
        Ok(())
    }

    /// The latest delivery attempts of a subscription, newest first.
    pub async fn webhook_attempts(&self, subscription: &str, limit: usize) -> Result<Vec<Attempt>, Failure> {
        let out = self
            .ddb
            .get()
            .query()
            .table_name(&self.env.state_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("WEBHOOK_ATTEMPT#{subscription}")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(transient)?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| match i.get("attempt") {
                Some(AttributeValue::S(s)) => serde_json::from_str(s).ok(),
                _ => None,
            })
            .collect())
    }

    /// Queues again every kept delivery of `subscription` that occurred in `[since, until)`, in the
    /// order they occurred. Answers how many.
    pub async fn replay_webhooks(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<usize, Failure> {
        let queue = self.deliveries_queue()?.to_owned();
        let until = until.unwrap_or(now);
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .ddb
                .get()
                .query()
                .table_name(&self.env.state_table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", AttributeValue::S(format!("WEBHOOK#{subscription}")))
                .expression_attribute_values(":from", AttributeValue::S(stamp(since)))
                .expression_attribute_values(":to", AttributeValue::S(stamp(until)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(transient)?;
            for item in out.items.unwrap_or_default() {
                if let Some(AttributeValue::S(s)) = item.get("delivery")
                    && let Ok(d) = serde_json::from_str::<Delivery>(s)
                {
                    deliveries.push(d);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        self.queue_deliveries(&queue, &deliveries, Some(now)).await?;
        info!(subscription, replayed = deliveries.len(), "webhook deliveries queued again");
        Ok(deliveries.len())
    }
}

/// A jitter in `[0, 1)` that differs per delivery and attempt without a random source.
pub(crate) fn rand_jitter(webhook_id: &str, attempt: u32) -> f64 {
    let h = sha2::Sha256::digest(format!("{webhook_id}#{attempt}").as_bytes());
    f64::from(h[0]) / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, events: Vec<EventKind>) -> Subscription {
        Subscription { id: id.into(), url: "https://x.example/h".into(), events, secret: "s".into(), enabled: true }
    }

    #[test]
    fn each_wanting_subscription_gets_one_delivery_grouped_by_the_order() {
        let subs = [
            sub("wms", vec![EventKind::OrderAccepted, EventKind::ShipmentCreated]),
            sub("erp", vec![EventKind::OrderAccepted]),
        ];
        let events = [
            (
                "OrderAccepted".to_owned(),
                json!({ "event_id": "e1", "occurred_at": "2026-11-30T10:00:00Z", "data": { "id": "shopify:s:1" } }),
            ),
            (
                "ShipmentCreated".to_owned(),
                json!({ "event_id": "e2", "data": { "id": "wms-1", "order_id": "shopify:s:1" } }),
            ),
            ("InventoryChanged".to_owned(), json!({ "event_id": "e3", "data": { "sku": "A" } })),
        ];
        let d = deliveries_of(&subs, &events);
        let got: Vec<(&str, &str, &str)> =
            d.iter().map(|d| (d.subscription.as_str(), d.event_type.as_str(), d.group.as_str())).collect();
        assert_eq!(
            got,
            [
                ("wms", "OrderAccepted", "wms#shopify:s:1"),
                ("erp", "OrderAccepted", "erp#shopify:s:1"),
                ("wms", "ShipmentCreated", "wms#shopify:s:1")
            ]
        );
        assert_eq!(d[0].webhook_id, webhook_id("wms", "e1"));
        assert_ne!(d[0].webhook_id, d[1].webhook_id, "per subscription");
        assert_eq!(d[0].payload["type"], "OrderAccepted");
        assert_eq!(d[0].payload["data"]["data"]["id"], "shopify:s:1");
    }
}
