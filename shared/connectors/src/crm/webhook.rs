//! Any other CRM: each customer POSTed to the account's endpoint as signed JSON, the way Manifold's
//! own outbound webhooks are (Standard Webhooks, signed by the `standardwebhooks` crate with the
//! account's `whsec_` key).
//!
//! - Upsert: one POST per contact of `{"type":"customer.upserted","timestamp","data":{"customer_id",
//!   <properties>...}}`. Contacts go one after another; the first failure ends the call (those before
//!   it were delivered, and sending them again repeats their `webhook-id`).
//! - Forget: `{"type":"customer.forgotten","timestamp","data":{"customer_id"}}`: no personal data.
//! - `webhook-id` is a hash of the event type and its `data`, so every retry of the same content
//!   carries the same id and a receiver can drop duplicates. (Content that changes and later changes
//!   back repeats an earlier id: a receiver should remember ids for a retry window, not forever.)
//! - 2xx delivers. 429 and 5xx are retryable, other 4xx are not (401/403 as `Auth`).

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use manifold_domain::customers::{CrmAccount, CrmKind};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

use super::{CrmConnector, CrmContact, CrmCredentials, Forgotten, Http, Upserted};
use crate::{
    client::CallContext,
    error::{ConnectorError, FailureClass},
};

pub const UPSERTED: &str = "customer.upserted";
pub const FORGOTTEN: &str = "customer.forgotten";

/// A webhook CRM account: its URL and signing key.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    creds: CrmCredentials,
    http: Http,
}

impl Webhook {
    pub(crate) fn new(account: &CrmAccount, creds: CrmCredentials, http: Http) -> Self {
        Self { url: account.endpoint.clone(), creds, http }
    }

    async fn deliver(
        &self,
        event_type: &str,
        data: Map<String, Value>,
        ctx: &CallContext,
    ) -> Result<(), ConnectorError> {
        let signer = standardwebhooks::Webhook::new(&self.creds.token).map_err(|e| {
            ConnectorError::new(FailureClass::Auth, "the webhook signing secret is not a whsec_ key").with_source(e)
        })?;
        let data = Value::Object(data);
        let id = webhook_id(event_type, &data);
        let now = Utc::now();
        let body = json!({
            "type": event_type,
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        let signature = signer
            .sign(&id, now.timestamp(), body.as_bytes())
            .map_err(|e| ConnectorError::permanent("cannot sign the webhook").with_source(e))?;
        let headers = [
            (HEADER_WEBHOOK_ID, id),
            (HEADER_WEBHOOK_TIMESTAMP, now.timestamp().to_string()),
            (HEADER_WEBHOOK_SIGNATURE, signature),
        ];
        let reply = self.http.post(&self.url, &headers, body.into_bytes(), ctx).await?;
        if reply.is_success() { Ok(()) } else { Err(reply.failure(&String::from_utf8_lossy(&reply.body))) }
    }
}

/// `msg_` and 32 hex digits of SHA-256 over the event type and its data (a `serde_json` map: sorted
/// keys, so equal content hashes equally).
fn webhook_id(event_type: &str, data: &Value) -> String {
    let digest = Sha256::new().chain_update(event_type).chain_update(b"\n").chain_update(data.to_string()).finalize();
    format!("msg_{}", &hex::encode(digest)[..32])
}

#[async_trait]
impl CrmConnector for Webhook {
    fn kind(&self) -> CrmKind {
        CrmKind::Webhook
    }

    async fn upsert(&self, contacts: &[CrmContact], ctx: &CallContext) -> Result<Vec<Upserted>, ConnectorError> {
        let mut upserted = Vec::with_capacity(contacts.len());
        for c in contacts {
            let mut data: Map<String, Value> =
                c.properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            data.insert("customer_id".into(), Value::String(c.customer_id.clone()));
            self.deliver(UPSERTED, data, ctx).await?;
            upserted.push(Upserted { customer_id: c.customer_id.clone(), crm_record_id: None });
        }
        Ok(upserted)
    }

    async fn forget(
        &self,
        customer_id: &str,
        _crm_record_id: Option<&str>,
        ctx: &CallContext,
    ) -> Result<Forgotten, ConnectorError> {
        let data = Map::from_iter([("customer_id".to_owned(), Value::String(customer_id.to_owned()))]);
        self.deliver(FORGOTTEN, data, ctx).await?;
        Ok(Forgotten::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_follow_the_content_not_the_attempt() {
        let a = json!({ "customer_id": "cus_1", "email": "ann@example.com" });
        let b = json!({ "email": "ann@example.com", "customer_id": "cus_1" });
        assert_eq!(webhook_id(UPSERTED, &a), webhook_id(UPSERTED, &b));
        assert!(webhook_id(UPSERTED, &a).starts_with("msg_") && webhook_id(UPSERTED, &a).len() == 36);
        assert_ne!(webhook_id(UPSERTED, &a), webhook_id(FORGOTTEN, &a));
        assert_ne!(webhook_id(UPSERTED, &a), webhook_id(UPSERTED, &json!({ "customer_id": "cus_2" })));
    }
}
