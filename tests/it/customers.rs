//! Customers against moto and the simulators: the same person ordering on Shopify, WooCommerce and
//! Amazon becomes one customer by the configured identity rules (signed webhooks and an SQS
//! notification through the real handlers, the ingest consumer, the bus and the customers consumer);
//! HubSpot is kept in step in batches with nothing sent twice, and owns only what the configuration
//! gives it; `forget` leaves no trace of the person in any table or queue.

use std::collections::BTreeMap;

use chrono::Utc;
use http::HeaderValue;
use manifold_connectors::verify::sign;
use manifold_domain::{
    Channel, OrderId,
    config::ChannelConfig,
    customers::{ChangeAction, CustomerRules, IdentityKind},
};

use crate::{fixtures::SECRET, inbound::Harness, support::lambda_event};

pub(crate) const EMAIL: &str = "jane.smith@example.com";
const WORK_EMAIL: &str = "j.smith@work.example";
/// Jane's number as WooCommerce and Amazon buyers type it (US numbers, written differently).
const PHONE_TYPED: &str = "(480) 386-0930";
const PHONE_AMAZON: &str = "+1 480-386-0930 ext. 73824";
pub(crate) const PHONE_E164: &str = "+14803860930";
const RELAY: &str = "7x2kq9vd4r1m@marketplace.amazon.com";

/// Runs the customers consumer over the bus events published so far (as the CustomersQueue's event
/// source mapping would, ten at a time), and answers them.
pub(crate) async fn join_events(h: &Harness) -> Vec<serde_json::Value> {
    let messages = h.stack.drain(&h.stack.events_queue.clone()).await;
    for chunk in messages.chunks(10) {
        let response = h.app.customers_batch(lambda_event(chunk)).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "customers consumer failed: {:?}",
            response.batch_item_failures
        );
    }
    messages.iter().map(|m| serde_json::from_str(m.body().unwrap_or("null")).unwrap()).collect()
}

async fn webhook(h: &Harness, channel: Channel, account: &str, headers: http::HeaderMap, body: &[u8]) {
    let response = h.app.handle_webhook(channel.as_str(), account, &headers, body, Utc::now()).await;
    assert_eq!(response.status, 200, "{channel}: {response:?}");
    assert_eq!(h.run_ingest().await, 1, "{channel}: one delivery enqueued");
}

/// WooCommerce order 727, placed by Jane as a guest: her email in other case and with spaces, no phone
/// unless given.
pub(crate) async fn woo_order(h: &Harness, phone: Option<&str>) -> OrderId {
    let mut doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json"
    ))
    .unwrap();
    doc["billing"]["email"] = serde_json::json!(format!("  {}  ", EMAIL.to_uppercase()));
    doc["billing"]["phone"] = serde_json::json!(phone.unwrap_or_default());
    doc["billing"]["first_name"] = serde_json::json!("Jane");
    doc["billing"]["last_name"] = serde_json::json!("Smith");
    let body = serde_json::to_vec(&doc).unwrap();
    let settings =
        h.app.config().await.enabled_accounts().find(|a| a.channel == Channel::Woocommerce).unwrap().settings.clone();
    let mut headers = sign(Channel::Woocommerce, SECRET, &settings, "", &body, Utc::now()).unwrap();
    headers.insert("x-wc-webhook-topic", HeaderValue::from_static("order.created"));
    headers.insert("x-wc-webhook-delivery-id", HeaderValue::from_static("woo-jane-1"));
    webhook(h, Channel::Woocommerce, "woo-main", headers, &body).await;
    OrderId::new("woocommerce:woo-main:727").unwrap()
}

/// The SP-API sandbox order, bought by Jane: Amazon gives her relay address and her phone.
async fn amazon_order(h: &Harness) -> OrderId {
    let order_id = crate::inbound::amazon_order_notified_with(h, "amazon-jane", 1, |order| {
        order["BuyerInfo"] = serde_json::json!({ "BuyerEmail": RELAY, "BuyerName": "Jane S." });
        order["ShippingAddress"]["Phone"] = serde_json::json!(PHONE_AMAZON);
    })
    .await;
    OrderId::new(format!("amazon:A2EUQ1WTGCTBG2:{order_id}")).unwrap()
}

/// Shopify order 1073459981, Jane's, with her email and her phone as she typed it there.
pub(crate) async fn shopify_order(h: &Harness) -> OrderId {
    let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let order = &mut doc["order"];
    order["email"] = serde_json::json!(EMAIL);
    order["phone"] = serde_json::json!(PHONE_TYPED);
    order["customer"]["first_name"] = serde_json::json!("Jane");
    let body = serde_json::to_vec(order).unwrap();
    let headers = crate::fixtures::shopify_headers(&body, "evt-jane-1", "orders/create");
    webhook(h, Channel::Shopify, "shop-eu", headers, &body).await;
    OrderId::new("shopify:shop-eu:1073459981").unwrap()
}

fn with_rules(rules: CustomerRules) -> impl FnOnce(&mut ChannelConfig) {
    move |config| config.customers = rules
}

#[tokio::test]
async fn one_person_on_shopify_woocommerce_and_amazon_is_one_customer_and_the_merge_names_the_phone_rule() {
    let rules = CustomerRules {
        match_on: vec![IdentityKind::Email, IdentityKind::Phone, IdentityKind::ChannelId],
        ..CustomerRules::default()
    };
    let h = Harness::with_config(with_rules(rules)).await;

    // WooCommerce first (email, no phone): a customer of its own.
    let woo = woo_order(&h, None).await;
    join_events(&h).await;
    let first = h.app.customer_of_order(&woo).await.unwrap().expect("the Woo order is joined");
    // Amazon (relay address, phone): nothing in common yet, so a second customer.
    let amazon = amazon_order(&h).await;
    join_events(&h).await;
    let second = h.app.customer_of_order(&amazon).await.unwrap().expect("the Amazon order is joined");
    assert_ne!(first, second, "a relay address joins no one, and the phone is new");
    // Shopify (the email and the phone): the two are one person. The younger customer is merged
    // into the older, by the phone rule.
    let shopify = shopify_order(&h).await;
    join_events(&h).await;

    let view = h.app.show_customer(&second).await.unwrap().expect("the merged id still answers");
    assert_eq!(view.redirected_from.as_deref(), Some(second.as_str()), "the Amazon customer redirects");
    let c = &view.customer;
    assert_eq!(c.id, first);
    let merge = c.history.iter().find(|h| h.action == ChangeAction::Merged).expect("a merge in the history");
    assert_eq!((merge.other.as_deref(), merge.rule.as_deref()), (Some(second.as_str()), Some("phone")));
    assert!(merge.by.is_none(), "an automatic merge");
    let orders: Vec<&str> = view.orders.iter().map(|o| o.channel.as_str()).collect();
    assert_eq!(orders.len(), 3, "{orders:?}");
    for channel in ["woocommerce", "amazon", "shopify"] {
        assert!(orders.contains(&channel), "{channel} missing: {orders:?}");
    }
    assert_eq!(c.order_count, 3);
    // 29.35 (Woo) + 11.01 (Amazon) + 181.09 (Shopify), all USD.
    assert_eq!(c.totals.get("USD").map(ToString::to_string).as_deref(), Some("221.45"), "{:?}", c.totals);
    assert_eq!(c.email.as_deref(), Some(EMAIL), "the address, normalized");
    assert_eq!(c.phone.as_deref(), Some(PHONE_E164), "E.164");
    let keys: Vec<String> = c.identities.iter().map(|k| k.identity.key()).collect();
    assert!(keys.contains(&format!("email:{EMAIL}")), "{keys:?}");
    assert!(keys.contains(&format!("phone:{PHONE_E164}")), "{keys:?}");
    assert!(
        keys.contains(&format!("channel_id:amazon:A2EUQ1WTGCTBG2:{RELAY}")),
        "the relay is Amazon's identity: {keys:?}"
    );
    assert!(keys.contains(&"channel_id:shopify:shop-eu:1073339475".to_owned()), "{keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("email:") && k.contains("marketplace.amazon")), "{keys:?}");
    for order in [&woo, &amazon, &shopify] {
        let linked = h.app.customer_of_order(order).await.unwrap().unwrap();
        assert_eq!(h.app.resolve_customer(&linked).await.unwrap().unwrap().id, first, "{order}");
    }
    let merged_away = h.app.customers.get().get(&second).await.unwrap().unwrap();
    assert_eq!(merged_away.merged_into.as_deref(), Some(first.as_str()));
    assert!(merged_away.email.is_none() && merged_away.phone.is_none() && merged_away.identities.is_empty());
    let audit = h.app.customer_audit(10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "merge" && a.by == "automatic (phone)" && a.other.as_deref() == Some(&second))
    );

    // An order update and a redelivered event count nothing twice.
    let again = h.app.join_order(&shopify, Utc::now()).await.unwrap();
    assert_eq!(again.customer_id, first);
    assert_eq!(h.app.show_customer(&first).await.unwrap().unwrap().customer.order_count, 3);
}

#[tokio::test]
async fn without_the_phone_rule_the_amazon_buyer_stays_apart_and_email_joins_the_rest() {
    let h = Harness::with_config(with_rules(CustomerRules::default())).await;
    let woo = woo_order(&h, Some(PHONE_TYPED)).await;
    let amazon = amazon_order(&h).await;
    let shopify = shopify_order(&h).await;
    join_events(&h).await;

    let jane = h.app.customer_of_order(&woo).await.unwrap().unwrap();
    assert_eq!(h.app.customer_of_order(&shopify).await.unwrap().as_deref(), Some(jane.as_str()), "joined by email");
    let buyer = h.app.customer_of_order(&amazon).await.unwrap().unwrap();
    assert_ne!(buyer, jane, "the phone is not a rule here, and the relay address joins no one");
    let view = h.app.show_customer(&jane).await.unwrap().unwrap();
    assert_eq!(view.customer.order_count, 2);
    assert!(view.customer.history.is_empty(), "no merge: the second order found the first's email");
    let amazon_customer = h.app.show_customer(&buyer).await.unwrap().unwrap().customer;
    assert!(amazon_customer.email.is_none(), "a relay address is no one's email");
    // The phone is known on both, as an identity that joins no one.
    assert!(amazon_customer.identities.iter().any(|k| k.identity.key() == format!("phone:{PHONE_E164}")));

    // An operator merges them, with a reason; then splits the Amazon identity off again.
    let merged = h
        .app
        .merge_customers(&jane, &buyer, "same person: confirmed by support ticket 4411", "ops-anna", Utc::now())
        .await
        .unwrap();
    assert_eq!(merged.order_count, 3);
    let manual = merged.history.iter().find(|c| c.action == ChangeAction::Merged).unwrap();
    assert_eq!((manual.rule.as_deref(), manual.by.as_deref()), (Some("manual"), Some("ops-anna")));
    let relay = format!("channel_id:amazon:A2EUQ1WTGCTBG2:{RELAY}");
    let (kept, split) =
        h.app.split_customer(&jane, &relay, "gift order for a friend", "ops-anna", Utc::now()).await.unwrap();
    assert_eq!((kept.order_count, split.order_count), (2, 1));
    assert_eq!(h.app.customer_of_order(&amazon).await.unwrap().as_deref(), Some(split.id.as_str()));
    // Kept apart: the Amazon order's next update does not join them again.
    assert_eq!(h.app.join_order(&amazon, Utc::now()).await.unwrap().customer_id, split.id);
    assert_eq!(h.app.show_customer(&jane).await.unwrap().unwrap().customer.order_count, 2);
}

/// Eight orders of one person, joined at once by concurrent consumers: half as a guest (her email alone),
/// half signed in with a customer id of their own (so each attempt starts from another identity). The
/// first claim of her email wins, every order ends in that one customer, and the counts hold all eight.
#[tokio::test]
async fn concurrent_orders_of_one_person_claim_one_customer() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for n in 0..8_u64 {
        let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
        let order = &mut doc["order"];
        order["id"] = serde_json::json!(7_000_000 + n);
        order["email"] = serde_json::json!(EMAIL);
        if n % 2 == 0 {
            order["customer"] = serde_json::Value::Null;
        } else {
            order["customer"]["id"] = serde_json::json!(9_000 + n);
        }
        let body = serde_json::to_vec(order).unwrap();
        let headers = crate::fixtures::shopify_headers(&body, &format!("evt-concurrent-{n}"), "orders/create");
        webhook(&h, Channel::Shopify, "shop-eu", headers, &body).await;
        ids.push(OrderId::new(format!("shopify:shop-eu:{}", 7_000_000 + n)).unwrap());
    }
    h.stack.drain(&h.stack.events_queue.clone()).await;
    let joins = ids.iter().cloned().map(|id| {
        let app = h.app.clone();
        tokio::spawn(async move { app.join_order(&id, Utc::now()).await })
    });
    let joined: Vec<_> = futures::future::join_all(joins).await.into_iter().map(|j| j.unwrap().unwrap()).collect();
    let customers: std::collections::BTreeSet<String> = joined.iter().map(|j| j.customer_id.clone()).collect();
    // Whoever lost a race was merged into the winner: every id resolves to one customer.
    let mut resolved = std::collections::BTreeSet::new();
    for id in &customers {
        resolved.insert(h.app.resolve_customer(id).await.unwrap().unwrap().id);
    }
    assert_eq!(resolved.len(), 1, "{joined:?}");
    let one = resolved.into_iter().next().unwrap();
    let view = h.app.show_customer(&one).await.unwrap().unwrap();
    assert_eq!(view.customer.order_count, 8, "{:?}", view.orders);
    assert_eq!(view.orders.len(), 8);
    for id in &ids {
        let linked = h.app.customer_of_order(id).await.unwrap().unwrap();
        assert_eq!(h.app.resolve_customer(&linked).await.unwrap().unwrap().id, one);
    }
    let owners = manifold_app::customers::claim_owners(&h.app, &[format!("email:{EMAIL}")]).await.unwrap();
    assert_eq!(owners.get(&format!("email:{EMAIL}")), Some(&one));
}

/// The HubSpot account the CRM tests keep in step: email, names, phone, order count and last order
/// date go there; HubSpot owns the marketing consent.
pub(crate) fn hubspot(config: &mut ChannelConfig) {
    use manifold_domain::customers::{CrmAccount, CrmKind, CustomerField};
    config.crms = vec![CrmAccount {
        id: "hubspot".into(),
        kind: CrmKind::Hubspot,
        endpoint: "https://api.hubapi.com".into(),
        secret: "manifold/crm/hubspot".into(),
        enabled: true,
        cadence: manifold_domain::config::Cadence::Every(std::time::Duration::from_mins(15)),
        rate_limit: None,
        fields: [
            ("email", CustomerField::Email),
            ("firstname", CustomerField::FirstName),
            ("lastname", CustomerField::LastName),
            ("phone", CustomerField::Phone),
            ("manifold_orders", CustomerField::OrderCount),
            ("manifold_last_order", CustomerField::LastOrderDate),
        ]
        .into_iter()
        .map(|(p, f)| (p.to_owned(), f))
        .collect(),
        owns: [("marketing_consent".to_owned(), "hs_marketing_consent".to_owned())].into_iter().collect(),
    }];
}

/// Runs the CRM consumer over what the CRM queue holds, as its event source mapping would.
pub(crate) async fn run_crm(h: &Harness) -> usize {
    let queue = h.app.settings.crm_queue_url.clone().unwrap();
    let messages = h.stack.drain(&queue).await;
    for chunk in messages.chunks(10) {
        let response = h.app.crm_batch(lambda_event(chunk)).await;
        assert!(response.batch_item_failures.is_empty(), "CRM consumer failed: {:?}", response.batch_item_failures);
    }
    messages.len()
}

fn customer(n: usize, orders: u32) -> manifold_domain::customers::Customer {
    let at = Utc::now();
    serde_json::from_value(serde_json::json!({
        "id": format!("cus_{n:020}"),
        "email": format!("buyer{n}@example.com"),
        "name": format!("Buyer Number{n}"),
        "phone": null,
        "address": null,
        "identities": [{ "kind": "email", "value": format!("buyer{n}@example.com"), "channel": "shopify",
                         "account": "shop-eu", "first_seen": at }],
        "first_order_at": at,
        "last_order_at": at,
        "order_count": orders,
        "totals": {},
        "created_at": at,
        "updated_at": at,
        "version": 1
    }))
    .unwrap()
}

/// The simulator's control API (`/_sim/...`) on the same server as its HubSpot.
fn sim_control(h: &Harness, path: &str) -> String {
    format!("{}/_sim/{path}", h.sim.hubspot_url().trim_end_matches("/hubspot"))
}

/// The webhook function's CRM route on a real loopback server, as HubSpot calls it.
async fn crm_route(h: &Harness) -> String {
    let app = h.app.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let public = base.clone();
    let router = axum::Router::new().route(
        "/v1/crm/{crm}",
        axum::routing::post(
            move |axum::extract::Path(crm): axum::extract::Path<String>,
                  headers: http::HeaderMap,
                  body: axum::body::Bytes| {
                let (app, public) = (app.clone(), public.clone());
                async move {
                    let uri = format!("{public}/v1/crm/{crm}");
                    let out = app.crm_webhook(&crm, &uri, &headers, &body, Utc::now()).await;
                    (http::StatusCode::from_u16(out.status).unwrap(), out.message)
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("{base}/v1/crm/hubspot")
}

#[tokio::test]
async fn hubspot_takes_250_changed_customers_in_batches_nothing_twice_and_owns_only_the_consent() {
    let h = Harness::with_config(hubspot).await;
    let store = h.app.customers.get().clone();
    for n in 0..250 {
        assert!(store.put(&customer(n, 1), None).await.unwrap());
    }

    // The run queues the changed customers a page (100) at a time; HubSpot takes each page in one
    // batch upsert: 100, 100 and 50.
    let run = h.app.run_tier("crm", Utc::now()).await.unwrap();
    assert_eq!((run.positions, run.push_jobs), (250, 3), "{run:?}");
    assert_eq!(run_crm(&h).await, 3);
    let requests = h.sim.hubspot_requests();
    let inputs: Vec<usize> = requests
        .iter()
        .map(|r| match r {
            manifold_simulator::hubspot::HubspotRequest::Upsert { inputs, status } => {
                assert_eq!(*status, 200);
                *inputs
            }
            other @ manifold_simulator::hubspot::HubspotRequest::GdprDelete { .. } => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(inputs, vec![100, 100, 50]);
    let contacts = h.sim.hubspot_contacts();
    assert_eq!(contacts.len(), 250);
    let c7 =
        contacts.iter().find(|c| c.properties.get("email").map(String::as_str) == Some("buyer7@example.com")).unwrap();
    assert_eq!(c7.properties.get("firstname").map(String::as_str), Some("Buyer"));
    assert_eq!(c7.properties.get("lastname").map(String::as_str), Some("Number7"));
    assert_eq!(c7.properties.get("manifold_orders").map(String::as_str), Some("1"));
    let stored = store.get(&customer(7, 1).id).await.unwrap().unwrap();
    assert_eq!(stored.crm_ids.get("hubspot"), Some(&c7.id), "HubSpot's record id is kept on the customer");

    // Nothing changed: nothing queued, nothing sent.
    let again = h.app.run_tier("crm", Utc::now()).await.unwrap();
    assert_eq!(again.push_jobs, 0, "{again:?}");
    assert_eq!(run_crm(&h).await, 0);
    assert_eq!(h.sim.hubspot_requests().len(), 3);

    // One customer's order count changes: one job, one request, one contact.
    let mut changed = store.get(&customer(42, 1).id).await.unwrap().unwrap();
    changed.order_count = 2;
    let read = changed.version;
    changed.version += 1;
    assert!(store.put(&changed, Some(read)).await.unwrap());
    let third = h.app.run_tier("crm", Utc::now()).await.unwrap();
    assert_eq!(third.push_jobs, 1);
    run_crm(&h).await;
    let last = h.sim.hubspot_requests().last().cloned().unwrap();
    assert_eq!(last, manifold_simulator::hubspot::HubspotRequest::Upsert { inputs: 1, status: 200 });
    let c42 = h.sim.hubspot_contacts().into_iter().find(|c| c.properties["email"] == "buyer42@example.com").unwrap();
    assert_eq!(c42.properties.get("manifold_orders").map(String::as_str), Some("2"));

    // HubSpot's own updates, signed (v3) to the webhook route: the consent it owns changes the
    // customer; a name edited there does not (the name is ours to send).
    let target = crm_route(&h).await;
    let http = reqwest::Client::new();
    let set = http
        .put(sim_control(&h, "hubspot/webhook_target"))
        .json(&serde_json::json!({ "url": target, "client_secret": crate::fixtures::HUBSPOT_CLIENT_SECRET }))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let change = |property: &str, value: &str| {
        let url = sim_control(&h, &format!("hubspot/contacts/{}/properties", c7.id));
        http.post(url).json(&serde_json::json!({ "property": property, "value": value })).send()
    };
    let answer: serde_json::Value = change("hs_marketing_consent", "granted").await.unwrap().json().await.unwrap();
    assert_eq!(answer["webhook_status"], 200, "{answer}");
    let answer: serde_json::Value = change("firstname", "Someone Else").await.unwrap().json().await.unwrap();
    assert_eq!(answer["webhook_status"], 200, "{answer}");
    let customers_queue = h.app.settings.customers_queue_url.clone().unwrap();
    let updates = h.stack.drain(&customers_queue).await;
    assert_eq!(updates.len(), 1, "only the owned property is handed on");
    assert!(h.app.customers_batch(lambda_event(&updates)).await.batch_item_failures.is_empty());
    let consented = store.get(&customer(7, 1).id).await.unwrap().unwrap();
    assert_eq!(consented.attributes.get("marketing_consent").map(String::as_str), Some("granted"));
    assert_eq!(consented.name.as_deref(), Some("Buyer Number7"), "HubSpot does not own the name");
    assert_eq!(consented.order_count, 1, "nor the order history");

    // A body whose signature does not match is refused.
    let forged = http
        .post(&target)
        .header("X-HubSpot-Signature-v3", "bm90IGEgc2lnbmF0dXJl")
        .header("X-HubSpot-Request-Timestamp", Utc::now().timestamp_millis().to_string())
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn a_rotated_hubspot_token_is_read_again_when_hubspot_refuses_the_one_the_warm_consumer_holds() {
    use manifold_aws::secrets::{CachedSecrets, SecretsManager};
    use manifold_simulator::hubspot::DEFAULT_TOKEN;
    let secret = format!("manifold/{}/crm/hubspot", crate::support::unique("rotation"));
    let h = Harness::with_config(|c| {
        hubspot(c);
        c.crms[0].secret = secret.clone();
    })
    .await;
    let sm = aws_sdk_secretsmanager::Client::new(&h.stack.sdk);
    let creds = |token: &str| {
        serde_json::json!({ "token": token, "client_secret": crate::fixtures::HUBSPOT_CLIENT_SECRET }).to_string()
    };
    sm.create_secret().name(&secret).secret_string(creds("revoked-token")).send().await.unwrap();
    // As deployed: Secrets Manager behind the five-minute cache.
    let app = h.with_secrets(std::sync::Arc::new(CachedSecrets::new(
        SecretsManager::new(sm.clone()),
        std::time::Duration::from_mins(5),
    )));
    let store = app.customers.get().clone();
    assert!(store.put(&customer(1, 1), None).await.unwrap());
    let queue = app.settings.crm_queue_url.clone().unwrap();
    let crm_run = async || {
        assert_eq!(app.run_tier("crm", Utc::now()).await.unwrap().push_jobs, 1);
        let jobs = h.stack.drain(&queue).await;
        assert_eq!(jobs.len(), 1);
        assert!(app.crm_batch(lambda_event(&jobs)).await.batch_item_failures.is_empty());
    };

    // The secret holds a token HubSpot refuses: re-read once, still refused, the job is kept with its reason.
    crm_run().await;
    assert!(h.sim.hubspot_contacts().is_empty());
    let kept = app.quarantine.get().list(false).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].channel == "crm" && kept[0].reason.contains("auth"), "{:?}", kept[0]);

    // The token is rotated in the secret. The warm consumer still holds a connector with the old one
    // (and the cache the old secret): HubSpot's 401 makes it read the secret again, and the job goes through.
    sm.put_secret_value().secret_id(&secret).secret_string(creds(DEFAULT_TOKEN)).send().await.unwrap();
    crm_run().await;
    let contacts = h.sim.hubspot_contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].properties.get("email").map(String::as_str), Some("buyer1@example.com"));
    assert_eq!(app.quarantine.get().list(false).await.unwrap().len(), 1, "nothing more was quarantined");
}

/// Every item of every table of the stack, as JSON text (lowercase), with its table.
async fn every_item(h: &Harness) -> Vec<(String, String)> {
    let env = &h.stack.env;
    let mut out = Vec::new();
    for table in
        [&env.records_table, &env.idempotency_table, &env.ledger_table, &env.state_table, &env.quarantine_table]
    {
        let items: Vec<_> = h
            .stack
            .ddb
            .scan()
            .table_name(table)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap();
        for item in items {
            out.push((table.clone(), format!("{item:?}").to_lowercase()));
        }
    }
    out
}

/// Every message left on the stack's queues (received, not deleted), as text (lowercase).
async fn every_message(h: &Harness) -> Vec<(String, String)> {
    let env = &h.stack.env;
    let mut queues = vec![env.ingest_queue_url.clone(), h.stack.events_queue.clone()];
    queues.extend(env.push_queues.values().cloned());
    queues.extend(h.app.settings.crm_queue_url.clone());
    queues.extend(h.app.settings.customers_queue_url.clone());
    queues.extend(h.app.settings.ingest_dlq_url.clone());
    let mut out = Vec::new();
    for queue in queues {
        let got = h.stack.sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send().await.unwrap();
        for m in got.messages.unwrap_or_default() {
            out.push((queue.clone(), m.body().unwrap_or_default().to_lowercase()));
        }
    }
    out
}

/// A CRM that takes signed webhooks, on loopback: the verified bodies it received (a forged one is
/// answered 401 and not kept).
async fn webhook_crm() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = received.clone();
    let router = axum::Router::new().route(
        "/crm",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let signer = standardwebhooks::Webhook::new(crate::fixtures::WEBHOOK_SIGNING_SECRET).unwrap();
                if signer.verify(&body, &headers).is_err() {
                    return http::StatusCode::UNAUTHORIZED;
                }
                kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/crm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

#[tokio::test]
async fn forget_leaves_no_trace_of_the_person_in_any_table_or_queue_and_hubspot_erases_its_copy() {
    use manifold_domain::customers::{CrmAccount, CrmKind, CustomerField};
    // HubSpot, and a support desk that takes signed webhooks.
    let (desk_url, desk) = webhook_crm().await;
    let h = Harness::with_config(move |config| {
        hubspot(config);
        config.crms.push(CrmAccount {
            id: "support-desk".into(),
            kind: CrmKind::Webhook,
            endpoint: desk_url,
            secret: "manifold/crm/support-desk".into(),
            enabled: true,
            cadence: manifold_domain::config::Cadence::Every(std::time::Duration::from_mins(15)),
            rate_limit: None,
            fields: [
                ("email", CustomerField::Email),
                ("name", CustomerField::Name),
                ("orders", CustomerField::OrderCount),
            ]
            .into_iter()
            .map(|(p, f)| (p.to_owned(), f))
            .collect(),
            owns: BTreeMap::new(),
        });
    })
    .await;
    let woo = woo_order(&h, Some(PHONE_TYPED)).await;
    let shopify = shopify_order(&h).await;
    // An order of hers that cannot be normalized: quarantined whole, her address in it.
    let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let broken = &mut doc["order"];
    broken["id"] = serde_json::json!(1_073_459_999_u64);
    broken["email"] = serde_json::json!(EMAIL);
    broken["line_items"][0]["quantity"] = serde_json::json!("many");
    let body = serde_json::to_vec(broken).unwrap();
    webhook(
        &h,
        Channel::Shopify,
        "shop-eu",
        crate::fixtures::shopify_headers(&body, "evt-jane-broken", "orders/create"),
        &body,
    )
    .await;
    assert_eq!(h.app.quarantine.list(false).await.unwrap().len(), 1, "the broken order is quarantined");
    join_events(&h).await;
    let jane = h.app.customer_of_order(&woo).await.unwrap().unwrap();
    assert_eq!(h.app.customer_of_order(&shopify).await.unwrap().as_deref(), Some(jane.as_str()));
    h.app.run_tier("crm", Utc::now()).await.unwrap();
    run_crm(&h).await;
    let in_hubspot =
        h.sim.hubspot_contacts().into_iter().find(|c| c.properties["email"] == EMAIL).expect("sent to HubSpot");

    // Her work address, a customer of its own, sent to HubSpot too; then an operator merges it into hers.
    let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let work = &mut doc["order"];
    work["id"] = serde_json::json!(1_073_459_982_u64);
    work["email"] = serde_json::json!(WORK_EMAIL);
    work["customer"] = serde_json::Value::Null;
    let body = serde_json::to_vec(work).unwrap();
    webhook(
        &h,
        Channel::Shopify,
        "shop-eu",
        crate::fixtures::shopify_headers(&body, "evt-jane-work", "orders/create"),
        &body,
    )
    .await;
    join_events(&h).await;
    let work_id = h.app.customer_of_order(&OrderId::new("shopify:shop-eu:1073459982").unwrap()).await.unwrap().unwrap();
    assert_ne!(work_id, jane);
    h.app.run_tier("crm", Utc::now()).await.unwrap();
    run_crm(&h).await;
    let work_in_hubspot =
        h.sim.hubspot_contacts().into_iter().find(|c| c.properties["email"] == WORK_EMAIL).expect("sent");
    h.app.merge_customers(&jane, &work_id, "her work address", "ops-anna", Utc::now()).await.unwrap();

    // Two deliveries parked in the ingest DLQ: one of hers, one of someone else's.
    let dlq = h.app.settings.ingest_dlq_url.clone().unwrap();
    for (who, body) in
        [("hers", format!("{{\"email\": \"{EMAIL}\"}}")), ("other", "{\"email\": \"max@example.org\"}".to_owned())]
    {
        let envelope = serde_json::json!({ "who": who, "body": body }).to_string();
        h.stack.sqs.send_message().queue_url(&dlq).message_body(envelope).send().await.unwrap();
    }

    // What identifies her, as the channels sent it.
    let traces =
        [EMAIL, WORK_EMAIL, "4803860930", "386-0930", "jane smith", "john smith", "123 fake street", "969 market"];
    let found = |items: &[(String, String)]| -> Vec<String> {
        items
            .iter()
            .filter_map(|(place, text)| traces.iter().find(|t| text.contains(*t)).map(|t| format!("{t:?} in {place}")))
            .collect()
    };
    assert!(!found(&every_item(&h).await).is_empty(), "the test looks where her data is: {traces:?}");

    // The IAM-authorized erasure, as API Gateway hands it to the customers function.
    let request: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest = serde_json::from_value(serde_json::json!({
        "version": "2.0",
        "routeKey": "DELETE /v1/customers/{id}",
        "rawPath": format!("/v1/customers/{jane}"),
        "headers": {},
        "pathParameters": { "id": jane },
        "requestContext": {
            "http": { "method": "DELETE", "path": format!("/v1/customers/{jane}") },
            "authorizer": { "iam": { "userArn": "arn:aws:iam::123456789012:user/dpo" } },
            "timeEpoch": 0
        },
        "isBase64Encoded": false
    }))
    .unwrap();
    let response = h.app.customers_http(&request, Utc::now()).await;
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(response.status_code, 200, "{body}");
    let done: serde_json::Value = serde_json::from_str(&body).unwrap();
    let counts =
        ["orders_erased", "quarantined_deleted", "dead_letters_deleted", "crm_requests"].map(|k| done[k].as_u64());
    // Three orders; her HubSpot record and her work address's, the desk's copy of each.
    assert_eq!(counts, [Some(3), Some(1), Some(1), Some(4)], "{done}");
    // Without an IAM caller, nothing is erased.
    let mut anonymous = request.clone();
    anonymous.request_context.authorizer = None;
    assert_eq!(h.app.customers_http(&anonymous, Utc::now()).await.status_code, 403);

    // HubSpot is asked to erase both records, the desk is told of both (by id only).
    assert_eq!(run_crm(&h).await, 4);
    let work_deletion =
        manifold_simulator::hubspot::HubspotRequest::GdprDelete { object_id: work_in_hubspot.id.clone(), status: 204 };
    assert!(h.sim.hubspot_requests().contains(&work_deletion), "{:?}", h.sim.hubspot_requests());
    {
        let desk = desk.lock().unwrap();
        let forgotten: Vec<&serde_json::Value> =
            desk.iter().filter(|b| b["type"] == "customer.forgotten").map(|b| &b["data"]).collect();
        let expected = [serde_json::json!({ "customer_id": jane }), serde_json::json!({ "customer_id": work_id })];
        assert_eq!(forgotten.len(), 2, "{forgotten:?}");
        assert!(expected.iter().all(|e| forgotten.contains(&e)), "ids only, no personal data: {forgotten:?}");
    }
    let deletion =
        manifold_simulator::hubspot::HubspotRequest::GdprDelete { object_id: in_hubspot.id.clone(), status: 204 };
    assert!(h.sim.hubspot_requests().contains(&deletion), "{:?}", h.sim.hubspot_requests());
    assert!(h.sim.hubspot_contacts().iter().all(|c| c.id != in_hubspot.id));

    // The business facts stay; the person does not.
    let view = h.app.show_customer(&jane).await.unwrap().unwrap();
    assert!(view.customer.forgotten_at.is_some());
    assert_eq!(view.customer.order_count, 3);
    assert!(view.customer.email.is_none() && view.customer.name.is_none() && view.customer.identities.is_empty());
    let order = h.app.records.get_order(&shopify).await.unwrap().unwrap();
    assert!(order.customer == manifold_domain::OrderCustomer::default() && order.shipping_address.is_none());
    assert_eq!(order.totals.total.to_string(), "181.09");
    let audit = h.app.customer_audit(5).await.unwrap();
    let forget = audit.iter().find(|a| a.action == "forget").unwrap();
    assert_eq!(forget.by, "arn:aws:iam::123456789012:user/dpo");

    // Shopify sends the order again, newer, with her data: it is stored without it.
    let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let order = &mut doc["order"];
    order["email"] = serde_json::json!(EMAIL);
    order["phone"] = serde_json::json!(PHONE_TYPED);
    order["updated_at"] = serde_json::json!("2025-04-03T09:00:00-05:00");
    let body = serde_json::to_vec(order).unwrap();
    webhook(
        &h,
        Channel::Shopify,
        "shop-eu",
        crate::fixtures::shopify_headers(&body, "evt-jane-2", "orders/updated"),
        &body,
    )
    .await;
    join_events(&h).await;
    let reasons: Vec<String> = h.app.quarantine.list(true).await.unwrap().into_iter().map(|q| q.reason).collect();
    assert!(reasons.is_empty(), "the update is stored, not quarantined: {reasons:?}");
    let updated = h.app.records.get_order(&shopify).await.unwrap().unwrap();
    assert!(updated.contact_erased_at.is_some() && updated.customer.email.is_none(), "kept erased");

    let items = found(&every_item(&h).await);
    assert!(items.is_empty(), "after forget: {items:?}");
    let left = every_message(&h).await;
    let messages = found(&left);
    assert!(messages.is_empty(), "after forget: {messages:?}");
    assert!(left.iter().any(|(_, text)| text.contains("max@example.org")), "someone else's dead letter stays");
}
