//! HubSpot, pinned to CRM v3: contacts upserted in batches keyed by email, erased with the GDPR
//! delete, and the v3-signed webhooks HubSpot sends when a user changes a contact.
//!
//! - Upsert: `POST /crm/v3/objects/contacts/batch/upsert` with `idProperty = "email"`, at most
//!   [`MAX_BATCH`] inputs (more is refused before any call). A contact without an `email` property
//!   cannot be keyed by email: it is not sent and gets no [`Upserted`], as does a second contact
//!   with an address already in the batch; the caller sees the gap and keeps them pending. HubSpot
//!   answers each contact it took with its id; results are matched back to customers by lowercase
//!   email. A 207 (some inputs refused) answers the accepted ones only and logs `numErrors`.
//! - Failures: 429 is `RateLimited`, waiting `Retry-After` or HubSpot's ten-second window; 401 and
//!   403 are `Auth`; 5xx transient; other 4xx permanent, with HubSpot's `category` and `message`.
//! - Forget: `POST /crm/v3/objects/contacts/gdpr-delete` `{"objectId"}`; 204 is deleted, and so is
//!   404 (already gone). A person without a contact id was never sent: [`Forgotten::NothingToDelete`].
//! - Inbound: [`verify_hubspot_v3`] checks `X-HubSpot-Signature-v3`, [`parse_hubspot_events`] reads
//!   the delivery (a JSON array of events; only `contact.propertyChange` is acted on).

use std::collections::{HashMap, hash_map::Entry};

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use manifold_domain::customers::{CrmAccount, CrmKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{CrmConnector, CrmContact, CrmCredentials, Forgotten, Http, Reply, Upserted};
use crate::{
    client::CallContext,
    error::{self, ConnectorError},
    verify::VerifyError,
};

/// Inputs per batch upsert request, as HubSpot documents.
pub const MAX_BATCH: usize = 100;
/// The v3 signature: base64(HMAC-SHA256(client secret, method + URI + body + timestamp)).
pub const SIGNATURE_V3_HEADER: &str = "X-HubSpot-Signature-v3";
/// Milliseconds since the epoch, signed with the request.
pub const TIMESTAMP_HEADER: &str = "X-HubSpot-Request-Timestamp";
/// HubSpot's advice: reject a request whose timestamp is more than five minutes off.
const TOLERANCE_MS: i64 = 5 * 60 * 1000;

const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";
const GDPR_DELETE_PATH: &str = "/crm/v3/objects/contacts/gdpr-delete";

/// A HubSpot account's contacts API.
#[derive(Debug)]
pub struct Hubspot {
    base: String,
    crm: String,
    creds: CrmCredentials,
    http: Http,
}

/// A batch upsert's answer (200, 201 or 207).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchResponse {
    #[serde(default)]
    results: Vec<BatchResult>,
    #[serde(default)]
    num_errors: usize,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

impl Hubspot {
    pub(crate) fn new(account: &CrmAccount, creds: CrmCredentials, http: Http) -> Self {
        Self { base: account.endpoint.trim_end_matches('/').to_owned(), crm: account.id.clone(), creds, http }
    }

    async fn post(&self, path: &str, body: &Value, ctx: &CallContext) -> Result<Reply, ConnectorError> {
        let auth = [("authorization", format!("Bearer {}", self.creds.token))];
        self.http.post(&format!("{}{path}", self.base), &auth, body.to_string().into_bytes(), ctx).await
    }
}

/// HubSpot's error body, `{"status":"error","message","category"|"errorType","correlationId"}`, as a
/// classified failure.
fn failure(reply: &Reply) -> ConnectorError {
    let said = serde_json::from_slice::<Value>(&reply.body).ok().and_then(|v| {
        let message = v.get("message")?.as_str()?;
        let category = v.get("category").or_else(|| v.get("errorType")).and_then(Value::as_str);
        Some(category.map_or_else(|| message.to_owned(), |c| format!("{c}: {message}")))
    });
    reply.failure(&said.unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned()))
}

#[async_trait]
impl CrmConnector for Hubspot {
    fn kind(&self) -> CrmKind {
        CrmKind::Hubspot
    }

    async fn upsert(&self, contacts: &[CrmContact], ctx: &CallContext) -> Result<Vec<Upserted>, ConnectorError> {
        if contacts.len() > MAX_BATCH {
            return Err(ConnectorError::permanent(format!(
                "HubSpot takes at most {MAX_BATCH} contacts a batch upsert, given {}",
                contacts.len()
            )));
        }
        // Lowercase email -> customer id: HubSpot keeps (and answers) addresses in lowercase.
        let mut customers: HashMap<String, &str> = HashMap::new();
        let mut inputs = Vec::with_capacity(contacts.len());
        for c in contacts {
            let Some(email) = c.properties.get("email").map(|e| e.trim()).filter(|e| !e.is_empty()) else { continue };
            if let Entry::Vacant(slot) = customers.entry(email.to_lowercase()) {
                slot.insert(&c.customer_id);
                inputs.push(json!({ "idProperty": "email", "id": email, "properties": c.properties }));
            }
        }
        let unsent = contacts.len() - inputs.len();
        if unsent > 0 {
            tracing::warn!(crm = %self.crm, unsent, "contacts without an email of their own not sent to HubSpot");
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self.post(UPSERT_PATH, &json!({ "inputs": inputs }), ctx).await?;
        if !reply.is_success() {
            return Err(failure(&reply));
        }
        let answer: BatchResponse =
            serde_json::from_slice(&reply.body).map_err(|e| error::malformed(reply.status, e))?;
        if answer.num_errors > 0 {
            tracing::warn!(crm = %self.crm, num_errors = answer.num_errors, status = reply.status, "HubSpot refused part of a batch");
        }
        let upserted: Vec<Upserted> = answer
            .results
            .into_iter()
            .filter_map(|r| {
                let email = r.properties.get("email")?.as_str()?.to_lowercase();
                let customer_id = customers.get(&email)?;
                Some(Upserted { customer_id: (*customer_id).to_owned(), crm_record_id: Some(r.id) })
            })
            .collect();
        tracing::info!(crm = %self.crm, sent = inputs.len(), upserted = upserted.len(), "contacts upserted");
        Ok(upserted)
    }

    async fn forget(
        &self,
        _customer_id: &str,
        crm_record_id: Option<&str>,
        ctx: &CallContext,
    ) -> Result<Forgotten, ConnectorError> {
        let Some(id) = crm_record_id else { return Ok(Forgotten::NothingToDelete) };
        let reply = self.post(GDPR_DELETE_PATH, &json!({ "objectId": id }), ctx).await?;
        if reply.is_success() || reply.status == 404 { Ok(Forgotten::Deleted) } else { Err(failure(&reply)) }
    }
}

/// Checks a HubSpot v3 signature: `signature` (the [`SIGNATURE_V3_HEADER`] value) must be
/// base64(HMAC-SHA256(`client_secret`, `method` + `uri` + `body` + `timestamp`)), `uri` being the full
/// URL the request was sent to (scheme, host, path and query) with the characters HubSpot lists
/// decoded (`%3A` `%2F` `%3F` `%40` `%21` `%24` `%27` `%28` `%29` `%2A` `%2C` `%3B`), and `timestamp`
/// (the [`TIMESTAMP_HEADER`] value, milliseconds) within five minutes of `now`.
pub fn verify_hubspot_v3(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    if client_secret.is_empty() {
        return Err(VerifyError::Unconfigured("client_secret"));
    }
    let timestamp = timestamp.ok_or(VerifyError::Missing(TIMESTAMP_HEADER))?.trim();
    let signature = signature.ok_or(VerifyError::Missing(SIGNATURE_V3_HEADER))?.trim();
    let sent_at: i64 = timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed(format!("`{TIMESTAMP_HEADER}` is not milliseconds since the epoch")))?;
    let skew_ms = now.timestamp_millis().saturating_sub(sent_at);
    if skew_ms.unsigned_abs() > TOLERANCE_MS.unsigned_abs() {
        return Err(VerifyError::Expired { skew_seconds: skew_ms / 1000 });
    }
    let sent = BASE64
        .decode(signature)
        .map_err(|_| VerifyError::Malformed(format!("`{SIGNATURE_V3_HEADER}` is not base64")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes())
        .map_err(|_| VerifyError::Unconfigured("client_secret"))?;
    for part in [method.as_bytes(), &decode_uri(uri), body, timestamp.as_bytes()] {
        mac.update(part);
    }
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sent).map_err(|_| VerifyError::Mismatch)
}

/// The URI as HubSpot signs it: only the characters its documentation lists are decoded.
fn decode_uri(uri: &str) -> Vec<u8> {
    const DECODED: &[u8] = b":/?@!$'()*,;";
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .filter(|b| DECODED.contains(b));
        let (byte, len) = escaped.map_or((bytes[i], 1), |b| (b, 3));
        out.push(byte);
        i += len;
    }
    out
}

/// One event of a HubSpot webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubspotEvent {
    /// `contact.propertyChange`: a contact property changed in HubSpot.
    PropertyChange(PropertyChange),
    /// Any other subscription type: acknowledge the delivery, act on nothing.
    Ignored { event_id: u64, subscription_type: String },
}

/// A contact property changed in HubSpot (`contact.propertyChange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyChange {
    /// Unique per event; HubSpot sends it again with a higher `attempt_number` when retrying.
    pub event_id: u64,
    pub subscription_id: u64,
    pub portal_id: u64,
    pub app_id: u64,
    pub occurred_at: DateTime<Utc>,
    pub attempt_number: u32,
    /// The contact id (HubSpot sends a number; record ids are kept as strings).
    pub object_id: String,
    pub property_name: String,
    /// The new value; empty when the property was cleared.
    pub property_value: String,
    /// Where the change came from (`CRM_UI`, `API`, `IMPORT`, ...).
    pub change_source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_id: u64,
    subscription_type: String,
    #[serde(default)]
    subscription_id: u64,
    #[serde(default)]
    portal_id: u64,
    #[serde(default)]
    app_id: u64,
    occurred_at: i64,
    #[serde(default)]
    attempt_number: u32,
    #[serde(default)]
    object_id: Option<u64>,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default)]
    property_value: Option<String>,
    #[serde(default)]
    change_source: Option<String>,
}

/// Reads a HubSpot webhook body (a JSON array of events, as received and verified). Events of other
/// subscription types come back as [`HubspotEvent::Ignored`]; a property change without its object,
/// property or time is malformed.
pub fn parse_hubspot_events(body: &[u8]) -> Result<Vec<HubspotEvent>, serde_json::Error> {
    let malformed = |what: &str| <serde_json::Error as serde::de::Error>::custom(what);
    serde_json::from_slice::<Vec<RawEvent>>(body)?
        .into_iter()
        .map(|e| {
            if e.subscription_type != "contact.propertyChange" {
                return Ok(HubspotEvent::Ignored { event_id: e.event_id, subscription_type: e.subscription_type });
            }
            Ok(HubspotEvent::PropertyChange(PropertyChange {
                event_id: e.event_id,
                subscription_id: e.subscription_id,
                portal_id: e.portal_id,
                app_id: e.app_id,
                occurred_at: DateTime::from_timestamp_millis(e.occurred_at)
                    .ok_or_else(|| malformed("`occurredAt` is out of range"))?,
                attempt_number: e.attempt_number,
                object_id: e
                    .object_id
                    .ok_or_else(|| malformed("contact.propertyChange without `objectId`"))?
                    .to_string(),
                property_name: e
                    .property_name
                    .ok_or_else(|| malformed("contact.propertyChange without `propertyName`"))?,
                property_value: e.property_value.unwrap_or_default(),
                change_source: e.change_source,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_escapes_are_decoded() {
        assert_eq!(
            decode_uri("https://hooks.example.com/hubspot%3Fa%3Db%2Fc%20d%2a%zz%3"),
            b"https://hooks.example.com/hubspot?a%3Db/c%20d*%zz%3".to_vec()
        );
    }
}
