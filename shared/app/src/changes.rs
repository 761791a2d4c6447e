//! Orders, shipments, refunds and returns out to the ERP and the WMS, by pull: the change index fed
//! from the bus, and the versioned pull API that pages through it.
//!
//! - `ChangesQueue` (FIFO, one message group, fed by `ChangesRule` with every bus event) is consumed
//!   one batch at a time by [`App::changes_batch`], which numbers the batch's order, shipment, refund
//!   and return changes in [`manifold_aws::changes`] and hands every event to the webhook
//!   subscriptions (`crate::webhooks_out`). A FIFO batch is all or nothing: a failure returns
//!   every message of it, in order, and the queue's redrive keeps them in its DLQ after as many tries.
//! - `GET /v1/{orders|shipments|refunds|returns}?since=CURSOR&limit=N` answers the records changed
//!   after the cursor, in change order (a record changed twice in a page is listed once, at its last
//!   change), with the next cursor; `GET /v1/{collection}/{id}` answers one record. Records are the
//!   published JSON Schemas' shape (`shared/domain/schemas`), their version in `version`; within v1,
//!   fields are added, never changed.
//!
//! The cursor is opaque to clients (base64url of `v1:{kind}:{seq}`), lives in DynamoDB's numbering
//! rather than in a process, so it survives redeploys, and is bound to its collection.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Response};
use manifold_aws::changes::{Change, ChangeKind};
use manifold_domain::events::EventKind;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// Records a page holds unless asked for fewer (`limit`, 1 to [`MAX_PAGE`]).
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 500;

/// The bus event as an SQS message body carries it.
#[derive(Debug, Deserialize)]
struct BusEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Value,
}

/// A pull API page position: after change `seq` of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub kind: ChangeKind,
    pub seq: u64,
}

impl Cursor {
    pub fn encode(self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.kind.as_str(), self.seq))
    }

    /// Reads a cursor a page of `kind` handed out; anything else is refused with the reason.
    pub fn decode(text: &str, kind: ChangeKind) -> Result<Self, String> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("cursor {text:?} is not one this API handed out"))?;
        let mut parts = raw.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next().and_then(|s| s.parse::<u64>().ok())) {
            (Some("v1"), Some(k), Some(seq)) if k == kind.as_str() => Ok(Self { kind, seq }),
            (Some("v1"), Some(k), Some(_)) => Err(format!("cursor is for {k}s, not {}s", kind.as_str())),
            _ => Err(format!("cursor {text:?} is not one this API handed out")),
        }
    }
}

/// The change an event makes, if it is about a record the index keeps.
pub fn change_of(detail_type: &str, detail: &Value) -> Result<Option<Change>, Failure> {
    let Ok(event) = serde_json::from_value::<EventKind>(Value::String(detail_type.to_owned())) else {
        return Ok(None);
    };
    let Some(kind) = ChangeKind::of_event(event) else { return Ok(None) };
    let text = |path: &str| detail.pointer(path).and_then(Value::as_str).map(str::to_owned);
    let record_id = text("/data/id")
        .ok_or_else(|| Failure::permanent("changes", format!("{detail_type} event without data.id")))?;
    let at = text("/occurred_at").and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc());
    // Events published before stable ids existed fall back to what identifies the fact.
    let event_id = text("/event_id").unwrap_or_else(|| format!("{detail_type}:{record_id}:{}", detail["occurred_at"]));
    Ok(Some(Change { kind, record_id, event_id, event: detail_type.to_owned(), at: at.unwrap_or_else(Utc::now) }))
}

impl App {
    /// The `ChangesQueue` consumer (see the module docs).
    pub async fn changes_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let ids: Vec<String> = event.records.iter().filter_map(|m| m.message_id.clone()).collect();
        let bodies: Vec<&str> = event.records.iter().map(|m| m.body.as_deref().unwrap_or_default()).collect();
        match self.index_changes(&bodies, Utc::now()).await {
            Ok(n) => {
                info!(indexed = n, messages = bodies.len(), "changes indexed");
                SqsBatchResponse::default()
            }
            Err(e) => {
                warn!(error = %e, "changes batch failed: every message returns to the queue in order");
                let mut response = SqsBatchResponse::default();
                response.batch_item_failures = ids
                    .into_iter()
                    .map(|id| {
                        let mut f = aws_lambda_events::event::sqs::BatchItemFailure::default();
                        f.item_identifier = id;
                        f
                    })
                    .collect();
                response
            }
        }
    }

    /// Numbers the changes the bus events (SQS bodies) make. A body that is no bus event, or an event
    /// without its record id, fails the batch: the index must not step over a change.
    /// Then hands every event to the webhook subscriptions that want it (`crate::webhooks_out`).
    pub async fn index_changes(&self, bodies: &[&str], now: DateTime<Utc>) -> Result<usize, Failure> {
        let mut changes = Vec::new();
        let mut events = Vec::new();
        for body in bodies {
            let event: BusEvent = serde_json::from_str(body)
                .map_err(|e| Failure::permanent("changes", format!("not a bus event: {e}")))?;
            if let Some(change) = change_of(&event.detail_type, &event.detail)? {
                changes.push(change);
            }
            events.push((event.detail_type, event.detail));
        }
        let indexed = if changes.is_empty() {
            0
        } else {
            self.changes.get().append(&changes, now).await.map_err(|e| Failure::Transient(Box::new(e)))?
        };
        self.fan_out(&events, now).await?;
        Ok(indexed)
    }

    /// One page of a collection's changes after `since` (its start when `None`).
    pub async fn changed_since(&self, kind: ChangeKind, since: Option<&str>, limit: usize) -> Result<Value, Failure> {
        let after = match since {
            Some(c) => Cursor::decode(c, kind).map_err(|reason| Failure::permanent("cursor", reason))?.seq,
            None => 0,
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let entries = self.changes.get().read(kind, after, limit).await.map_err(|e| Failure::Transient(Box::new(e)))?;
        let next = entries.last().map_or(after, |e| e.seq);
        // A record changed twice in the page is listed once, at its last change.
        let mut order: Vec<&str> = Vec::new();
        for e in &entries {
            order.retain(|id| *id != e.record_id);
            order.push(&e.record_id);
        }
        let ids: Vec<String> = order.iter().map(|s| (*s).to_owned()).collect();
        let mut found =
            self.records.get().get_records(kind.as_str(), &ids).await.map_err(|e| Failure::Transient(Box::new(e)))?;
        let records: Vec<Value> = ids.iter().filter_map(|id| found.remove(id)).collect();
        Ok(json!({
            "version": manifold_domain::records::SCHEMA_VERSION,
            "kind": kind.as_str(),
            "records": records,
            "next_cursor": Cursor { kind, seq: next }.encode(),
            "has_more": entries.len() == limit,
        }))
    }

    /// The pull API (`GET /v1/{collection}` and `GET /v1/{collection}/{id}`), as an HTTP response.
    pub async fn pull_http(
        &self,
        collection: &str,
        id: Option<&str>,
        query: &std::collections::HashMap<String, String>,
        trace_id: &str,
    ) -> Result<Response<Body>, http::Error> {
        let Some(kind) = ChangeKind::from_collection(collection) else {
            return crate::http::json_response(404, &format!("no collection {collection}"), trace_id);
        };
        let result = match id {
            Some(id) => match self.records.get().get_records(kind.as_str(), &[id.to_owned()]).await {
                Ok(mut found) => match found.remove(id) {
                    Some(record) => Ok(
                        json!({ "version": manifold_domain::records::SCHEMA_VERSION, "kind": kind.as_str(), "record": record }),
                    ),
                    None => return crate::http::json_response(404, &format!("no {} {id}", kind.as_str()), trace_id),
                },
                Err(e) => Err(Failure::Transient(Box::new(e))),
            },
            None => match query.get("limit").map(|l| l.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n))) {
                Some(None) => Err(Failure::permanent("limit", format!("limit must be 1 to {MAX_PAGE}"))),
                limit => {
                    let limit = limit.flatten().unwrap_or(DEFAULT_PAGE);
                    self.changed_since(kind, query.get("since").map(String::as_str), limit).await
                }
            },
        };
        match result {
            Ok(body) => {
                let mut r = crate::http::json_response(200, "ok", trace_id)?;
                *r.body_mut() = Body::from(body.to_string());
                Ok(r)
            }
            Err(Failure::Permanent { reason, .. }) => crate::http::json_response(400, &reason, trace_id),
            Err(e) => crate::http::json_response(503, &format!("retry later: {e}"), trace_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_this_api_did_not_hand_out() {
        let c = Cursor { kind: ChangeKind::Order, seq: 1234 };
        assert_eq!(Cursor::decode(&c.encode(), ChangeKind::Order), Ok(c));
        assert!(Cursor::decode(&c.encode(), ChangeKind::Shipment).unwrap_err().contains("orders, not shipments"));
        assert!(Cursor::decode("not a cursor!", ChangeKind::Order).is_err());
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:order:-1");
        assert!(Cursor::decode(&forged, ChangeKind::Order).is_err());
    }

    #[test]
    fn order_shipment_refund_and_return_events_are_changes_and_others_are_not() {
        let detail = json!({ "event_id": "OrderUpdated:k", "occurred_at": "2026-11-30T10:00:00Z", "data": { "id": "shopify:s:1" } });
        let c = change_of("OrderUpdated", &detail).unwrap().unwrap();
        assert_eq!(
            (c.kind, c.record_id.as_str(), c.event_id.as_str()),
            (ChangeKind::Order, "shopify:s:1", "OrderUpdated:k")
        );
        assert_eq!(change_of("ReturnUpdated", &detail).unwrap().unwrap().kind, ChangeKind::Return);
        assert!(change_of("InventoryChanged", &detail).unwrap().is_none());
        assert!(change_of("SomethingNew", &detail).unwrap().is_none());
        assert!(change_of("ShipmentCreated", &json!({ "data": {} })).is_err(), "a change without its record id");
    }
}
