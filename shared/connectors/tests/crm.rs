//! The CRM connectors against HubSpot's simulator and a loopback webhook receiver: batches of at
//! most 100 contacts mapped back to HubSpot's ids, updates instead of duplicates, HubSpot's refusals
//! classified, GDPR erasure; Standard Webhooks deliveries checked with the reference crate; inbound
//! HubSpot v3 signatures and events, including a delivery the simulator signs itself.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{TimeDelta, Utc};
use hmac::{Hmac, Mac};
use manifold_connectors::{
    CallContext, CrmContact, CrmCredentials, FailureClass, Forgotten,
    crm::{self, CrmConnector, HubspotEvent, PropertyChange, parse_hubspot_events, verify_hubspot_v3},
    http_client,
    verify::VerifyError,
};
use manifold_domain::{
    config::{Cadence, RateLimit},
    customers::{CrmAccount, CrmKind, CustomerField},
};
use manifold_simulator::{HubspotConfig, HubspotRequest, SimConfig, SimHandle, SimLimit, Simulator, hubspot};
use serde_json::{Value, json};

fn account(kind: CrmKind, endpoint: String, rate_limit: Option<RateLimit>) -> CrmAccount {
    CrmAccount {
        id: "crm-test".into(),
        kind,
        endpoint,
        secret: "manifold/crm/test".into(),
        enabled: true,
        cadence: Cadence::Every(Duration::from_mins(15)),
        rate_limit,
        fields: BTreeMap::from([
            ("email".into(), CustomerField::Email),
            ("firstname".into(), CustomerField::FirstName),
        ]),
        owns: BTreeMap::new(),
    }
}

fn hubspot_with(sim: &SimHandle, token: &str, rate_limit: Option<RateLimit>) -> Arc<dyn CrmConnector> {
    let creds = CrmCredentials { token: token.into(), client_secret: None };
    crm::build(
        &account(CrmKind::Hubspot, sim.hubspot_url(), rate_limit),
        creds,
        http_client(Duration::from_secs(5)).unwrap(),
    )
}

fn hubspot(sim: &SimHandle) -> Arc<dyn CrmConnector> {
    hubspot_with(sim, hubspot::DEFAULT_TOKEN, None)
}

fn contact(customer_id: &str, email: Option<&str>, first_name: &str) -> CrmContact {
    let mut properties = BTreeMap::from([("firstname".to_owned(), first_name.to_owned())]);
    if let Some(e) = email {
        properties.insert("email".into(), e.into());
    }
    CrmContact { customer_id: customer_id.into(), crm_record_id: None, properties }
}

fn ctx() -> CallContext {
    CallContext::new("crm-test")
}

#[tokio::test]
async fn hubspot_takes_250_contacts_in_three_batches_and_each_is_mapped_to_its_id() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let connector = hubspot(&sim);
    let account = account(CrmKind::Hubspot, sim.hubspot_url(), None);
    let contacts: Vec<CrmContact> =
        (0..250).map(|i| contact(&format!("cus_{i:03}"), Some(&format!("Person{i}@Example.com")), "Ann")).collect();

    let mut upserted = Vec::new();
    for batch in contacts.chunks(account.batch_limit()) {
        upserted.extend(connector.upsert(batch, &ctx()).await.unwrap());
    }

    assert_eq!(
        sim.hubspot_requests(),
        vec![
            HubspotRequest::Upsert { inputs: 100, status: 200 },
            HubspotRequest::Upsert { inputs: 100, status: 200 },
            HubspotRequest::Upsert { inputs: 50, status: 200 },
        ]
    );
    assert_eq!(upserted.len(), 250);
    let held: BTreeMap<String, String> =
        sim.hubspot_contacts().into_iter().map(|c| (c.properties["email"].clone(), c.id)).collect();
    assert_eq!(held.len(), 250);
    for (i, u) in upserted.iter().enumerate() {
        assert_eq!(u.customer_id, format!("cus_{i:03}"));
        let id = &held[&format!("person{i}@example.com")];
        assert_eq!(u.crm_record_id.as_ref(), Some(id), "{}", u.customer_id);
    }
}

#[tokio::test]
async fn a_second_upsert_of_an_email_updates_the_contact_and_contacts_without_email_are_not_sent() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let connector = hubspot(&sim);

    let first = connector.upsert(&[contact("cus_ann", Some("ann@example.com"), "Ann")], &ctx()).await.unwrap();
    let batch = [
        contact("cus_bob", None, "Bob"),
        contact("cus_ann", Some("ANN@example.com"), "Anna"),
        contact("cus_twin", Some("ann@example.com"), "Twin"),
    ];
    let second = connector.upsert(&batch, &ctx()).await.unwrap();

    assert_eq!(first.len(), 1);
    assert_eq!(second, first, "same customer, same contact id; Bob (no email) and Ann's twin are not sent");
    let held = sim.hubspot_contacts();
    assert_eq!(held.len(), 1);
    assert_eq!(Some(&held[0].id), first[0].crm_record_id.as_ref());
    assert_eq!(held[0].properties["firstname"], "Anna");
    assert_eq!(held[0].properties["email"], "ann@example.com");
    assert_eq!(sim.hubspot_requests()[1], HubspotRequest::Upsert { inputs: 1, status: 200 });
    // Nothing to key by email: no request at all.
    assert!(connector.upsert(&[contact("cus_bob", None, "Bob")], &ctx()).await.unwrap().is_empty());
    assert_eq!(sim.hubspot_requests().len(), 2);
}

#[tokio::test]
async fn hubspots_rate_limit_is_throttled_with_its_ten_second_wait() {
    let hubspot_config =
        HubspotConfig { limit: Some(SimLimit::Window { requests: 1, window_ms: 60_000 }), ..HubspotConfig::default() };
    let sim = Simulator::start(SimConfig { hubspot: hubspot_config, ..SimConfig::default() }).await.unwrap();
    // The client allows more than the simulated account, so the second request reaches HubSpot.
    let connector = hubspot_with(&sim, hubspot::DEFAULT_TOKEN, Some(RateLimit::Unlimited));

    connector.upsert(&[contact("cus_1", Some("a@example.com"), "A")], &ctx()).await.unwrap();
    let err = connector.upsert(&[contact("cus_2", Some("b@example.com"), "B")], &ctx()).await.unwrap_err();

    assert_eq!(err.class, FailureClass::RateLimited);
    assert_eq!(err.status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(10)), "HubSpot sends no Retry-After: its window");
    assert!(err.is_retryable());
    assert!(err.message.contains("RATE_LIMIT") && err.message.contains("ten_secondly_rolling"), "{}", err.message);
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_failure_and_an_oversized_batch_is_refused_unsent() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();

    let err = hubspot_with(&sim, "pat-na1-wrong", None)
        .upsert(&[contact("cus_1", Some("a@example.com"), "A")], &ctx())
        .await
        .unwrap_err();
    assert_eq!((err.class, err.status), (FailureClass::Auth, Some(401)));
    assert!(!err.is_retryable());
    assert!(err.message.starts_with("INVALID_AUTHENTICATION: Authentication credentials not found"), "{}", err.message);

    let many: Vec<CrmContact> =
        (0..101).map(|i| contact(&format!("cus_{i}"), Some(&format!("p{i}@example.com")), "P")).collect();
    let err = hubspot(&sim).upsert(&many, &ctx()).await.unwrap_err();
    assert_eq!((err.class, err.status), (FailureClass::Permanent, None));
    assert!(err.message.contains("at most 100"), "{}", err.message);
    assert!(sim.hubspot_requests().is_empty(), "neither reached an endpoint: {:?}", sim.hubspot_requests());
}

#[tokio::test]
async fn gdpr_delete_erases_the_contact_and_a_person_never_sent_needs_nothing() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let connector = hubspot(&sim);
    let sent = connector.upsert(&[contact("cus_ann", Some("ann@example.com"), "Ann")], &ctx()).await.unwrap();
    let id = sent[0].crm_record_id.clone().unwrap();

    assert_eq!(connector.forget("cus_ann", Some(&id), &ctx()).await.unwrap(), Forgotten::Deleted);
    assert!(sim.hubspot_contacts().is_empty());
    assert_eq!(connector.forget("cus_ann", Some(&id), &ctx()).await.unwrap(), Forgotten::Deleted, "404: already gone");
    assert_eq!(connector.forget("cus_bob", None, &ctx()).await.unwrap(), Forgotten::NothingToDelete);

    assert_eq!(
        sim.hubspot_requests()[1..],
        [
            HubspotRequest::GdprDelete { object_id: id.clone(), status: 204 },
            HubspotRequest::GdprDelete { object_id: id, status: 404 },
        ]
    );
}

/// What a loopback receiver was sent.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Serves `routes` on loopback; answers the base URL.
async fn serve(routes: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
    url
}

/// A CRM's webhook receiver: keeps every delivery; `/ok` takes it, `/busy` is down, `/reject`
/// refuses it, `/slow` asks for a second's patience.
async fn receiver() -> (String, Inbox) {
    async fn keep(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
        inbox.lock().unwrap().push(Received { headers, body });
        StatusCode::NO_CONTENT
    }
    let inbox = Inbox::default();
    let routes = Router::new()
        .route("/ok", post(keep))
        .route("/busy", post(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/reject", post(|| async { (StatusCode::UNPROCESSABLE_ENTITY, "unknown field customer_id") }))
        .route("/slow", post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down") }))
        .with_state(inbox.clone());
    (serve(routes).await, inbox)
}

#[tokio::test]
async fn a_207_answers_only_the_contacts_hubspot_took() {
    let partial = json!({
        "status": "COMPLETE",
        "results": [{ "id": "4501", "properties": { "email": "ann@example.com", "hs_object_id": "4501" } }],
        "numErrors": 1,
        "errors": [{ "status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid" }],
    });
    let routes = Router::new().route(
        "/crm/v3/objects/contacts/batch/upsert",
        post(move || async move { (StatusCode::MULTI_STATUS, axum::Json(partial)) }),
    );
    let base = serve(routes).await;
    let creds = CrmCredentials { token: "pat".into(), client_secret: None };
    let connector =
        crm::build(&account(CrmKind::Hubspot, base, None), creds, http_client(Duration::from_secs(5)).unwrap());

    let batch = [contact("cus_ann", Some("Ann@Example.com"), "Ann"), contact("cus_bob", Some("bob@example"), "Bob")];
    let upserted = connector.upsert(&batch, &ctx()).await.unwrap();

    assert_eq!(
        upserted,
        vec![manifold_connectors::Upserted { customer_id: "cus_ann".into(), crm_record_id: Some("4501".into()) }]
    );
}

const WHSEC: &str = "whsec_bWFuaWZvbGQtY3JtLXdlYmhvb2stdGVzdC1rZXk=";

fn webhook(url: String) -> Arc<dyn CrmConnector> {
    let creds = CrmCredentials::from_secret_string(WHSEC).unwrap();
    crm::build(&account(CrmKind::Webhook, url, None), creds, http_client(Duration::from_secs(5)).unwrap())
}

#[tokio::test]
async fn webhook_deliveries_are_standard_webhooks_with_a_stable_id_and_no_personal_data_on_forget() {
    let (base, inbox) = receiver().await;
    let connector = webhook(format!("{base}/ok"));
    let ann = contact("cus_ann", Some("ann@example.com"), "Ann");

    let upserted = connector.upsert(std::slice::from_ref(&ann), &ctx()).await.unwrap();
    connector.upsert(std::slice::from_ref(&ann), &ctx()).await.unwrap();
    let forgotten = connector.forget("cus_ann", Some("ignored"), &ctx()).await.unwrap();

    assert_eq!(upserted, vec![manifold_connectors::Upserted { customer_id: "cus_ann".into(), crm_record_id: None }]);
    assert_eq!(forgotten, Forgotten::Deleted);
    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let reference = standardwebhooks::Webhook::new(WHSEC).unwrap();
    for r in &received {
        reference.verify(&r.body, &r.headers).unwrap();
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let id = |r: &Received| r.headers["webhook-id"].to_str().unwrap().to_owned();
    assert_eq!(id(&received[0]), id(&received[1]), "the same content is the same message");
    assert_ne!(id(&received[0]), id(&received[2]));

    let upsert: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(upsert["type"], "customer.upserted");
    assert_eq!(upsert["data"], json!({ "customer_id": "cus_ann", "email": "ann@example.com", "firstname": "Ann" }));
    let sent_at = chrono::DateTime::parse_from_rfc3339(upsert["timestamp"].as_str().unwrap()).unwrap();
    assert!((Utc::now() - sent_at.to_utc()).num_seconds().abs() < 60);
    let forget: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(forget["type"], "customer.forgotten");
    assert_eq!(forget["data"], json!({ "customer_id": "cus_ann" }));
}

#[tokio::test]
async fn webhook_refusals_are_classified_and_a_429_pauses_the_account() {
    let (base, inbox) = receiver().await;
    let ann = [contact("cus_ann", Some("ann@example.com"), "Ann")];

    let busy = webhook(format!("{base}/busy")).upsert(&ann, &ctx()).await.unwrap_err();
    assert_eq!((busy.class, busy.status, busy.is_retryable()), (FailureClass::Transient, Some(503), true));
    let rejected = webhook(format!("{base}/reject")).forget("cus_ann", None, &ctx()).await.unwrap_err();
    assert_eq!((rejected.class, rejected.status, rejected.is_retryable()), (FailureClass::Permanent, Some(422), false));
    assert_eq!(rejected.message, "unknown field customer_id");

    let slow = webhook(format!("{base}/slow"));
    let throttled = slow.upsert(&ann, &ctx()).await.unwrap_err();
    assert_eq!((throttled.class, throttled.retry_after), (FailureClass::RateLimited, Some(Duration::from_secs(1))));
    let started = Instant::now();
    let _ = slow.upsert(&ann, &ctx()).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "waited {:?} for Retry-After", started.elapsed());
    assert!(inbox.lock().unwrap().is_empty());
}

/// HubSpot's v3 signature, computed as its documentation describes.
fn hubspot_v3(secret: &str, method: &str, uri: &str, body: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}{uri}{body}{timestamp}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

const CLIENT_SECRET: &str = "3b5e7d2a-1c4f-4e8a-9b6d-0f2e4c6a8b1d";

#[test]
fn hubspot_v3_signatures_are_checked_over_method_uri_body_and_a_fresh_timestamp() {
    let now = Utc::now();
    let ts = (now - TimeDelta::seconds(30)).timestamp_millis().to_string();
    let uri = "https://hooks.example.com/crm/hubspot?account=hubspot";
    let body = r#"[{"eventId":1,"subscriptionType":"contact.propertyChange"}]"#;
    let signature = hubspot_v3(CLIENT_SECRET, "POST", uri, body, &ts);
    let verify = |uri: &str, body: &str, ts: &str, sig: Option<&str>| {
        verify_hubspot_v3(CLIENT_SECRET, "POST", uri, body.as_bytes(), Some(ts), sig, now)
    };

    verify(uri, body, &ts, Some(&signature)).unwrap();
    // HubSpot signs the URI with `:`, `/`, `?` and the like decoded.
    verify("https://hooks.example.com/crm/hubspot%3Faccount=hubspot", body, &ts, Some(&signature)).unwrap();

    let tampered = body.replace("\"eventId\":1", "\"eventId\":2");
    assert!(matches!(verify(uri, &tampered, &ts, Some(&signature)), Err(VerifyError::Mismatch)));
    let old = (now - TimeDelta::minutes(6)).timestamp_millis().to_string();
    let old_signature = hubspot_v3(CLIENT_SECRET, "POST", uri, body, &old);
    assert!(matches!(verify(uri, body, &old, Some(&old_signature)), Err(VerifyError::Expired { skew_seconds: 360 })));
    assert!(matches!(verify(uri, body, &ts, None), Err(VerifyError::Missing("X-HubSpot-Signature-v3"))));
    assert!(matches!(verify(uri, body, &ts, Some("not base64!")), Err(VerifyError::Malformed(_))));
}

#[test]
fn hubspot_events_give_property_changes_and_ignore_other_subscriptions() {
    let body = br#"[
      {"eventId":3829103922,"subscriptionId":2154001,"portalId":62515,"appId":54321,"occurredAt":1718000000123,
       "subscriptionType":"contact.propertyChange","attemptNumber":1,"objectId":1201,
       "propertyName":"hs_marketing_consent","propertyValue":"true","changeSource":"CRM_UI","sourceId":"userId:1234567"},
      {"eventId":3829103923,"subscriptionId":2154002,"portalId":62515,"appId":54321,"occurredAt":1718000000456,
       "subscriptionType":"contact.creation","attemptNumber":0,"objectId":1202,"changeFlag":"NEW","changeSource":"CRM"}
    ]"#;

    let events = parse_hubspot_events(body).unwrap();

    assert_eq!(
        events,
        vec![
            HubspotEvent::PropertyChange(PropertyChange {
                event_id: 3_829_103_922,
                subscription_id: 2_154_001,
                portal_id: 62_515,
                app_id: 54_321,
                occurred_at: chrono::DateTime::from_timestamp_millis(1_718_000_000_123).unwrap(),
                attempt_number: 1,
                object_id: "1201".into(),
                property_name: "hs_marketing_consent".into(),
                property_value: "true".into(),
                change_source: Some("CRM_UI".into()),
            }),
            HubspotEvent::Ignored { event_id: 3_829_103_923, subscription_type: "contact.creation".into() },
        ]
    );
    assert!(
        parse_hubspot_events(br#"[{"eventId":1,"subscriptionType":"contact.propertyChange","occurredAt":1}]"#).is_err()
    );
    assert!(parse_hubspot_events(b"{}").is_err());
}

#[tokio::test]
async fn a_property_changed_in_the_simulated_hubspot_arrives_signed_and_parses() {
    // Given a contact in HubSpot and a receiver that checks deliveries as the webhook handler would.
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let sent = hubspot(&sim).upsert(&[contact("cus_ann", Some("ann@example.com"), "Ann")], &ctx()).await.unwrap();
    let id = sent[0].crm_record_id.clone().unwrap();
    let changes: Arc<Mutex<Vec<HubspotEvent>>> = Arc::default();
    let target: Arc<Mutex<String>> = Arc::default();
    let check = {
        let (changes, target) = (changes.clone(), target.clone());
        move |headers: HeaderMap, body: Bytes| async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let uri = target.lock().unwrap().clone();
            let verified = verify_hubspot_v3(
                CLIENT_SECRET,
                "POST",
                &uri,
                &body,
                header(crm::hubspot::TIMESTAMP_HEADER),
                header(crm::hubspot::SIGNATURE_V3_HEADER),
                Utc::now(),
            );
            if verified.is_err() {
                return StatusCode::UNAUTHORIZED;
            }
            changes.lock().unwrap().extend(parse_hubspot_events(&body).unwrap());
            StatusCode::NO_CONTENT
        }
    };
    let url = format!(
        "{}/webhooks/hubspot?account=crm-test",
        serve(Router::new().route("/webhooks/hubspot", post(check))).await
    );
    *target.lock().unwrap() = url.clone();
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/_sim/hubspot/webhook_target", sim.url()))
        .json(&json!({ "url": url, "client_secret": CLIENT_SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 204);

    // When a HubSpot user changes the contact's consent.
    let answer: Value = http
        .post(format!("{}/_sim/hubspot/contacts/{id}/properties", sim.url()))
        .json(&json!({ "property": "hs_marketing_consent", "value": "false" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Then the delivery verified, and it names the contact, the property and its new value.
    assert_eq!(answer, json!({ "webhook_status": 204 }));
    let changes = changes.lock().unwrap().clone();
    let [HubspotEvent::PropertyChange(change)] = changes.as_slice() else { panic!("one property change: {changes:?}") };
    assert_eq!(
        (change.object_id.as_str(), change.property_name.as_str(), change.property_value.as_str()),
        (id.as_str(), "hs_marketing_consent", "false")
    );
    assert_eq!(sim.hubspot_contacts()[0].properties["hs_marketing_consent"], "false");
}
