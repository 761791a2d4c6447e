//! Customers against moto and the simulators: the same person ordering on Shopify, WooCommerce and
//! Amazon becomes one customer by the configured identity rules (signed webhooks and an SQS
//! notification through the real handlers, the ingest consumer, the bus and the customers consumer);
//! HubSpot is kept in step in batches with nothing sent twice, and owns only what the configuration
//! gives it; `forget` leaves no trace of the person in any table or queue.

use chrono::Utc;
use http::HeaderValue;
use manifold_connectors::verify::sign;
use manifold_domain::{
    Channel, OrderId,
    config::ChannelConfig,
    customers::{ChangeAction, CustomerRules, IdentityKind},
};

use crate::{
    fixtures::{AMAZON_ITEMS, AMAZON_NOTIFICATION, AMAZON_ORDER, SECRET},
    inbound::Harness,
    support::lambda_event,
};

pub(crate) const EMAIL: &str = "jane.smith@example.com";
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
    let mut order: serde_json::Value = serde_json::from_str(AMAZON_ORDER).unwrap();
    let items: serde_json::Value = serde_json::from_str(AMAZON_ITEMS).unwrap();
    order["payload"]["BuyerInfo"] = serde_json::json!({ "BuyerEmail": RELAY, "BuyerName": "Jane S." });
    order["payload"]["ShippingAddress"]["Phone"] = serde_json::json!(PHONE_AMAZON);
    let order_id = order["payload"]["AmazonOrderId"].as_str().unwrap().to_owned();
    h.sim
        .seed_order(
            Channel::Amazon,
            serde_json::json!({"order": order["payload"], "order_items": items["payload"]["OrderItems"]}),
        )
        .unwrap();
    let mut note: serde_json::Value = serde_json::from_str(AMAZON_NOTIFICATION).unwrap();
    note["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = serde_json::json!(order_id);
    note["Payload"]["OrderChangeNotification"]["SellerId"] = serde_json::json!("A2EUQ1WTGCTBG2");
    let queue = crate::support::create_queue(&h.stack.sqs, "amazon-jane").await;
    h.stack.sqs.send_message().queue_url(&queue).message_body(note.to_string()).send().await.unwrap();
    let messages = h.stack.drain(&queue).await;
    assert!(h.app.amazon_batch(lambda_event(&messages)).await.batch_item_failures.is_empty());
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

/// Six orders of one person, joined at once by concurrent consumers: the first claim of her email wins,
/// every order ends in that one customer, and the counts hold all six.
#[tokio::test]
async fn concurrent_orders_of_one_person_claim_one_customer() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for n in 0..6_u64 {
        let mut doc: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
        let order = &mut doc["order"];
        order["id"] = serde_json::json!(7_000_000 + n);
        order["email"] = serde_json::json!(EMAIL);
        // A guest checkout each time: only the email is in common.
        order["customer"] = serde_json::Value::Null;
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
    assert_eq!(view.customer.order_count, 6, "{:?}", view.orders);
    assert_eq!(view.orders.len(), 6);
    for id in &ids {
        let linked = h.app.customer_of_order(id).await.unwrap().unwrap();
        assert_eq!(h.app.resolve_customer(&linked).await.unwrap().unwrap().id, one);
    }
    let owners = manifold_app::customers::claim_owners(&h.app, &[format!("email:{EMAIL}")]).await.unwrap();
    assert_eq!(owners.get(&format!("email:{EMAIL}")), Some(&one));
}
