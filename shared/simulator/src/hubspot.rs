//! HubSpot's CRM v3 contacts API as HubSpot documents it, for the CRM connector (a test double, not
//! HubSpot): served under `/hubspot`, beside the channels.
//!
//! - `POST /crm/v3/objects/contacts/batch/upsert`: at most 100 inputs, each keyed by `idProperty =
//!   "email"`; contacts are kept by lowercase email under sequential ids, and every input answers
//!   with its contact's id and properties (`new` when created).
//! - `POST /crm/v3/objects/contacts/gdpr-delete` `{"objectId"}` (or `idProperty = "email"`): 204, or
//!   404 for an unknown contact.
//! - Every request needs `Authorization: Bearer {token}` ([`HubspotConfig::token`]), then fits a
//!   fixed window ([`HubspotConfig::limit`], 100 per 10 s as private apps get) or is refused with
//!   HubSpot's `RATE_LIMIT` body and no `Retry-After` (HubSpot sends none); answers carry
//!   `X-HubSpot-RateLimit-Max`/`-Remaining`/`-Interval-Milliseconds`. Errors are HubSpot's
//!   `{"status":"error","message","correlationId","category"}`.
//!
//! Control (outside `/hubspot`, no token):
//! - `GET /_sim/hubspot/contacts`: every contact with its properties, by id;
//! - `GET /_sim/hubspot/requests`: each upsert (its input count) and GDPR delete (its `objectId`)
//!   that got past authentication and the limit, with the status it was answered;
//! - `PUT /_sim/hubspot/webhook_target` `{"url", "client_secret"}`: where property changes are sent;
//! - `POST /_sim/hubspot/contacts/{id}/properties` `{"property", "value"}`: a HubSpot user changes a
//!   contact; a `contact.propertyChange` delivery (a one-element array) is POSTed to the target,
//!   signed as HubSpot's v3 signature (base64 HMAC-SHA256 of the client secret over `POST` + the
//!   target URL + body + the millisecond timestamp). Answers `{"webhook_status"}`: the target's
//!   HTTP status, `null` without a target; 502 when the target cannot be reached.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::{
    channels::whole,
    limits::{SimLimit, SimLimiter, Status, Verdict},
};

/// The private app token the simulator expects unless configured otherwise.
pub const DEFAULT_TOKEN: &str = "hubspot-test-token";
/// Inputs per batch request.
pub const MAX_BATCH: usize = 100;

/// How the simulated HubSpot account behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct HubspotConfig {
    /// The only bearer token accepted.
    pub token: String,
    /// Requests allowed (absent = unlimited); HubSpot's private apps: 100 per rolling 10 s.
    pub limit: Option<SimLimit>,
}

impl Default for HubspotConfig {
    fn default() -> Self {
        Self { token: DEFAULT_TOKEN.into(), limit: Some(SimLimit::Window { requests: 100, window_ms: 10_000 }) }
    }
}

/// A contact as the simulated account holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimContact {
    pub id: String,
    /// Every property set, `email` in lowercase.
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One API request that reached its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HubspotRequest {
    Upsert { inputs: usize, status: u16 },
    GdprDelete { object_id: String, status: u16 },
}

/// The simulated HubSpot account.
#[derive(Debug)]
pub(crate) struct Hubspot {
    inner: Mutex<Account>,
    /// Delivers property-change webhooks.
    http: reqwest::Client,
}

#[derive(Debug)]
struct Account {
    token: String,
    limiter: Option<SimLimiter>,
    /// The window of a fixed-window limit, for `X-HubSpot-RateLimit-Interval-Milliseconds`.
    interval_ms: Option<u64>,
    contacts: BTreeMap<u64, SimContact>,
    next_id: u64,
    next_event_id: u64,
    requests: Vec<HubspotRequest>,
    target: Option<WebhookTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookTarget {
    url: String,
    client_secret: String,
}

impl Hubspot {
    pub(crate) fn new(config: &HubspotConfig) -> Self {
        let interval_ms = match config.limit {
            Some(SimLimit::Window { window_ms, .. }) => Some(window_ms),
            _ => None,
        };
        let account = Account {
            token: config.token.clone(),
            limiter: config.limit.map(SimLimiter::new),
            interval_ms,
            contacts: BTreeMap::new(),
            next_id: 1,
            next_event_id: 1,
            requests: Vec::new(),
            target: None,
        };
        Self { inner: Mutex::new(account), http: reqwest::Client::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Account> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn contacts(&self) -> Vec<SimContact> {
        self.lock().contacts.values().cloned().collect()
    }

    pub(crate) fn requests(&self) -> Vec<HubspotRequest> {
        self.lock().requests.clone()
    }
}

type Hub = State<Arc<Hubspot>>;

/// The API under `/hubspot` and its control endpoints, ready to merge into the simulator's router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(hub: Arc<Hubspot>) -> Router<S> {
    let api = Router::new()
        .route("/crm/v3/objects/contacts/batch/upsert", post(batch_upsert))
        .route("/crm/v3/objects/contacts/gdpr-delete", post(gdpr_delete))
        .layer(middleware::from_fn_with_state(hub.clone(), gate));
    Router::new()
        .nest("/hubspot", api)
        .route("/_sim/hubspot/contacts", get(control_contacts))
        .route("/_sim/hubspot/requests", get(control_requests))
        .route("/_sim/hubspot/webhook_target", put(control_webhook_target))
        .route("/_sim/hubspot/contacts/{id}/properties", post(control_change_property))
        .with_state(hub)
}

/// HubSpot's error body.
fn error(status: StatusCode, category: &str, message: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "correlationId": correlation_id(),
        "category": category,
    });
    (status, Json(body)).into_response()
}

fn correlation_id() -> String {
    let n = rand::random::<u128>();
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// In front of every API endpoint: the bearer token, then the rate limit.
async fn gate(State(hub): Hub, req: Request, next: Next) -> Response {
    let (verdict, interval_ms) = {
        let mut a = hub.lock();
        let expected = format!("Bearer {}", a.token);
        let sent = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find \
                 more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
        }
        (a.limiter.as_mut().map(|l| l.take(1.0)), a.interval_ms)
    };
    match verdict {
        Some(Verdict::Refused { status, .. }) => {
            let body = json!({
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": "TEN_SECONDLY_ROLLING",
            });
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            rate_headers(&status, interval_ms, resp.headers_mut());
            resp
        }
        Some(Verdict::Allowed(status)) => {
            let mut resp = next.run(req).await;
            rate_headers(&status, interval_ms, resp.headers_mut());
            resp
        }
        None => next.run(req).await,
    }
}

fn rate_headers(status: &Status, interval_ms: Option<u64>, headers: &mut HeaderMap) {
    headers.insert("x-hubspot-ratelimit-max", whole(status.limit));
    headers.insert("x-hubspot-ratelimit-remaining", whole(status.remaining));
    if let Some(ms) = interval_ms {
        headers.insert("x-hubspot-ratelimit-interval-milliseconds", HeaderValue::from(ms));
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertInput {
    id_property: Option<String>,
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct BatchInput<T> {
    inputs: Vec<T>,
}

/// HubSpot takes property values as strings (numbers and booleans are written as text).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn batch_upsert(State(hub): Hub, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<BatchInput<UpsertInput>>(&body);
    let inputs = parsed.as_ref().map_or(0, |b| b.inputs.len());
    let resp = upsert(&hub, parsed);
    hub.lock().requests.push(HubspotRequest::Upsert { inputs, status: resp.status().as_u16() });
    resp
}

fn upsert(hub: &Hubspot, parsed: Result<BatchInput<UpsertInput>, serde_json::Error>) -> Response {
    let inputs = match parsed {
        Ok(b) => b.inputs,
        Err(e) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &format!("Invalid input JSON: {e}")),
    };
    if inputs.len() > MAX_BATCH {
        let message =
            format!("The batch of {} inputs exceeds the limit of {MAX_BATCH} inputs per request.", inputs.len());
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message);
    }
    let mut emails = std::collections::BTreeSet::new();
    for input in &inputs {
        if input.id_property.as_deref() != Some("email") {
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "idProperty must be \"email\" for contacts.");
        }
        if input.id.trim().is_empty() || !emails.insert(input.id.trim().to_lowercase()) {
            let message = format!("Duplicate or empty IDs found in batch input: [{}]. IDs must be unique.", input.id);
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message);
        }
    }
    let started = Utc::now();
    let mut a = hub.lock();
    let results: Vec<Value> = inputs
        .into_iter()
        .map(|input| {
            let email = input.id.trim().to_lowercase();
            let found = a.contacts.iter().find(|(_, c)| c.properties.get("email") == Some(&email)).map(|(id, _)| *id);
            let (id, new) = found.map_or_else(
                || {
                    let id = a.next_id;
                    a.next_id += 1;
                    let contact = SimContact {
                        id: id.to_string(),
                        properties: BTreeMap::new(),
                        created_at: Utc::now(),
                        updated_at: Utc::now(),
                    };
                    a.contacts.insert(id, contact);
                    (id, true)
                },
                |id| (id, false),
            );
            let contact = a.contacts.get_mut(&id).expect("the contact was just found or made");
            contact.properties.extend(input.properties.iter().map(|(k, v)| (k.clone(), text(v))));
            contact.properties.insert("email".into(), email);
            contact.updated_at = Utc::now();
            result(contact, new)
        })
        .collect();
    let body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": Utc::now(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// A contact as the batch endpoints answer it.
fn result(c: &SimContact, new: bool) -> Value {
    let mut properties: Map<String, Value> =
        c.properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    properties.insert("hs_object_id".into(), Value::String(c.id.clone()));
    properties.insert("createdate".into(), json!(c.created_at));
    properties.insert("lastmodifieddate".into(), json!(c.updated_at));
    json!({
        "id": c.id,
        "properties": properties,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
        "archived": false,
        "new": new,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GdprDelete {
    object_id: String,
    #[serde(default)]
    id_property: Option<String>,
}

async fn gdpr_delete(State(hub): Hub, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<GdprDelete>(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &format!("Invalid input JSON: {e}")),
    };
    let mut a = hub.lock();
    let found = match req.id_property.as_deref() {
        Some("email") => {
            let email = req.object_id.to_lowercase();
            a.contacts.iter().find(|(_, c)| c.properties.get("email") == Some(&email)).map(|(id, _)| *id)
        }
        _ => req.object_id.parse::<u64>().ok().filter(|id| a.contacts.contains_key(id)),
    };
    let status = if let Some(id) = found {
        a.contacts.remove(&id);
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    a.requests.push(HubspotRequest::GdprDelete { object_id: req.object_id, status: status.as_u16() });
    drop(a);
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        error(status, "OBJECT_NOT_FOUND", "resource not found")
    }
}

async fn control_contacts(State(hub): Hub) -> Json<Vec<SimContact>> {
    Json(hub.contacts())
}

async fn control_requests(State(hub): Hub) -> Json<Vec<HubspotRequest>> {
    Json(hub.requests())
}

async fn control_webhook_target(State(hub): Hub, body: Bytes) -> Response {
    match serde_json::from_slice::<WebhookTarget>(&body) {
        Ok(target) => {
            hub.lock().target = Some(target);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("expected {{\"url\", \"client_secret\"}}: {e}")).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertyEdit {
    property: String,
    value: String,
}

/// A HubSpot user edits a contact: the property changes, and the webhook target hears of it.
async fn control_change_property(State(hub): Hub, Path(id): Path<String>, body: Bytes) -> Response {
    let edit = match serde_json::from_slice::<PropertyEdit>(&body) {
        Ok(e) => e,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("expected {{\"property\", \"value\"}}: {e}")).into_response();
        }
    };
    let (delivery, target) = {
        let mut a = hub.lock();
        let Some(contact) = id.parse::<u64>().ok().and_then(|n| a.contacts.get_mut(&n)) else {
            return (StatusCode::NOT_FOUND, "no such contact").into_response();
        };
        contact.properties.insert(edit.property.clone(), edit.value.clone());
        contact.updated_at = Utc::now();
        let object_id = id.parse::<u64>().unwrap_or_default();
        let event_id = a.next_event_id;
        a.next_event_id += 1;
        let event = json!([{
            "eventId": event_id,
            "subscriptionId": 2_154_001,
            "portalId": 62_515,
            "appId": 54_321,
            "occurredAt": Utc::now().timestamp_millis(),
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": object_id,
            "propertyName": edit.property,
            "propertyValue": edit.value,
            "changeSource": "CRM_UI",
            "sourceId": "userId:1234567",
        }]);
        (event.to_string(), a.target.clone())
    };
    let Some(target) = target else { return Json(json!({ "webhook_status": null })).into_response() };
    let timestamp = Utc::now().timestamp_millis().to_string();
    let signature = sign_v3(&target.client_secret, "POST", &target.url, delivery.as_bytes(), &timestamp);
    let sent = hub
        .http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("X-HubSpot-Signature-v3", signature)
        .header("X-HubSpot-Request-Timestamp", timestamp)
        .body(delivery)
        .send()
        .await;
    match sent {
        Ok(r) => Json(json!({ "webhook_status": r.status().as_u16() })).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("webhook target unreachable: {e}")).into_response(),
    }
}

/// HubSpot's v3 request signature: base64(HMAC-SHA256(client secret, method + URI + body + timestamp)),
/// as the simulator signs its webhooks (and tests sign what HubSpot would send).
pub fn sign_v3(client_secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes keys of any length");
    for part in [method.as_bytes(), uri.as_bytes(), body, timestamp.as_bytes()] {
        mac.update(part);
    }
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{DEFAULT_TOKEN, HubspotConfig, HubspotRequest};
    use crate::{SimConfig, SimLimit, Simulator};

    async fn post(url: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new().post(url).bearer_auth(token).json(body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn inputs(emails: impl IntoIterator<Item = String>) -> Value {
        let inputs: Vec<Value> = emails
            .into_iter()
            .map(|e| json!({ "idProperty": "email", "id": e, "properties": { "email": e, "firstname": "Ann" } }))
            .collect();
        json!({ "inputs": inputs })
    }

    #[tokio::test]
    async fn contacts_are_upserted_by_email_and_erased_by_id() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let upsert = format!("{}/crm/v3/objects/contacts/batch/upsert", sim.hubspot_url());

        let (status, body) = post(&upsert, DEFAULT_TOKEN, &inputs(["Ann@Example.com".to_owned()])).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "COMPLETE");
        assert_eq!(body["results"][0]["id"], "1");
        assert_eq!(body["results"][0]["new"], true);
        assert_eq!(body["results"][0]["properties"]["email"], "ann@example.com");

        let (_, again) = post(&upsert, DEFAULT_TOKEN, &inputs(["ann@example.com".to_owned()])).await;
        assert_eq!((again["results"][0]["id"].clone(), again["results"][0]["new"].clone()), (json!("1"), json!(false)));
        let listed: Value =
            reqwest::get(format!("{}/_sim/hubspot/contacts", sim.url())).await.unwrap().json().await.unwrap();
        assert_eq!(
            listed,
            json!([{ "id": "1", "properties": { "email": "ann@example.com", "firstname": "Ann" },
            "created_at": listed[0]["created_at"], "updated_at": listed[0]["updated_at"] }])
        );

        let gdpr = format!("{}/crm/v3/objects/contacts/gdpr-delete", sim.hubspot_url());
        assert_eq!(post(&gdpr, DEFAULT_TOKEN, &json!({ "objectId": "1" })).await.0, 204);
        let (status, body) = post(&gdpr, DEFAULT_TOKEN, &json!({ "objectId": "1" })).await;
        assert_eq!((status, body["category"].as_str()), (404, Some("OBJECT_NOT_FOUND")));
        assert!(sim.hubspot_contacts().is_empty());
        assert_eq!(
            sim.hubspot_requests(),
            vec![
                HubspotRequest::Upsert { inputs: 1, status: 200 },
                HubspotRequest::Upsert { inputs: 1, status: 200 },
                HubspotRequest::GdprDelete { object_id: "1".into(), status: 204 },
                HubspotRequest::GdprDelete { object_id: "1".into(), status: 404 },
            ]
        );
    }

    #[tokio::test]
    async fn refusals_use_hubspots_bodies() {
        let hubspot =
            HubspotConfig { limit: Some(SimLimit::Window { requests: 2, window_ms: 60_000 }), ..Default::default() };
        let sim = Simulator::start(SimConfig { hubspot, ..SimConfig::default() }).await.unwrap();
        let upsert = format!("{}/crm/v3/objects/contacts/batch/upsert", sim.hubspot_url());

        let (status, body) = post(&upsert, "pat-wrong", &inputs(["a@example.com".to_owned()])).await;
        assert_eq!((status, body["category"].as_str()), (401, Some("INVALID_AUTHENTICATION")));
        assert!(body["message"].as_str().unwrap().starts_with("Authentication credentials not found"));

        let (status, body) = post(&upsert, DEFAULT_TOKEN, &inputs((0..101).map(|i| format!("p{i}@example.com")))).await;
        assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
        assert!(body["message"].as_str().unwrap().contains("limit of 100"), "{body}");

        let by_id = json!({ "inputs": [{ "idProperty": "hs_object_id", "id": "1", "properties": {} }] });
        let (status, body) = post(&upsert, DEFAULT_TOKEN, &by_id).await;
        assert_eq!((status, body["message"].as_str()), (400, Some("idProperty must be \"email\" for contacts.")));

        // The window of 2 is spent (the 401 never reached the limit).
        let r = reqwest::Client::new().post(&upsert).bearer_auth(DEFAULT_TOKEN).json(&by_id).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["x-hubspot-ratelimit-max"], "2");
        assert_eq!(r.headers()["x-hubspot-ratelimit-remaining"], "0");
        assert_eq!(r.headers()["x-hubspot-ratelimit-interval-milliseconds"], "60000");
        assert!(r.headers().get("retry-after").is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["errorType"].as_str(), body["policyName"].as_str()),
            (Some("RATE_LIMIT"), Some("TEN_SECONDLY_ROLLING"))
        );
        // Refused at the door: only the two 400s reached the endpoint.
        assert_eq!(
            sim.hubspot_requests(),
            vec![
                HubspotRequest::Upsert { inputs: 101, status: 400 },
                HubspotRequest::Upsert { inputs: 1, status: 400 }
            ]
        );
    }
}
