//! classify() for every webhook fixture, unknown topics and body event ids.

use manifold_domain::Channel;
use manifold_normalize::{DocKind, Inbound, body_event_id, classify};
use serde_json::json;

use crate::support::{at, json};

macro_rules! fixture {
    ($path:literal) => {
        json(include_str!(concat!("../../fixtures/", $path)))
    };
}

fn thin(kind: DocKind, id: &str) -> impl Fn(&Inbound) -> bool + '_ {
    move |i| matches!(i, Inbound::Thin { kind: k, resource_id, .. } if *k == kind && resource_id == id)
}

#[test]
fn bigcommerce_scopes() {
    for body in [
        fixture!("bigcommerce/webhook-store-order-created.json"),
        fixture!("bigcommerce/webhook-store-order-updated.json"),
        fixture!("bigcommerce/webhook-store-order-statusUpdated.json"),
    ] {
        let got = classify(Channel::Bigcommerce, None, &body).unwrap();
        assert!(thin(DocKind::Order, "250")(&got), "{got:?}");
    }
    let refund = fixture!("bigcommerce/webhook-store-order-refund-created.json");
    let got = classify(Channel::Bigcommerce, None, &refund).unwrap();
    assert!(thin(DocKind::Return, "250")(&got), "the order's refunds are read: {got:?}");
    let got = classify(Channel::Bigcommerce, None, &fixture!("bigcommerce/webhook-store-order-created.json")).unwrap();
    assert!(matches!(got, Inbound::Thin { event_time: Some(t), .. } if t == at("2019-06-25T16:15:35Z")));
    let got =
        classify(Channel::Bigcommerce, None, &fixture!("bigcommerce/webhook-store-shipment-created.json")).unwrap();
    assert!(thin(DocKind::Shipment, "251/12")(&got), "{got:?}");
    for body in [
        fixture!("bigcommerce/webhook-store-product-inventory-updated.json"),
        fixture!("bigcommerce/webhook-store-product-inventory-order-updated.json"),
        fixture!("bigcommerce/webhook-store-sku-inventory-updated.json"),
    ] {
        let got = classify(Channel::Bigcommerce, None, &body).unwrap();
        assert_eq!(got, Inbound::Full { kind: DocKind::InventoryLevel, doc: body });
    }
    let mut relative = fixture!("bigcommerce/webhook-store-sku-inventory-updated.json");
    relative["data"]["inventory"]["method"] = json!("relative");
    assert!(matches!(classify(Channel::Bigcommerce, None, &relative).unwrap(), Inbound::Ignore { .. }));
    let got =
        classify(Channel::Bigcommerce, None, &fixture!("bigcommerce/webhook-store-product-updated.json")).unwrap();
    assert!(matches!(got, Inbound::Ignore { .. }), "{got:?}");
    assert_eq!(
        body_event_id(Channel::Bigcommerce, &fixture!("bigcommerce/webhook-store-order-created.json")).as_deref(),
        Some("dd70c0976e06b67aaf671e73f49dcb79230ebf9d")
    );
}

#[test]
fn etsy_order_paid_points_at_the_receipt() {
    let got = classify(
        Channel::Etsy,
        None,
        &fixture!("etsy/webhook-order-paid-reported-in-etsy-open-api-discussion-1564.json"),
    )
    .unwrap();
    assert!(thin(DocKind::Order, "54321")(&got), "{got:?}");
    // The transcription keeps the docs' placeholders: there is no receipt id to fetch.
    let err = classify(Channel::Etsy, None, &fixture!("etsy/webhook-order-paid-api-evangelist-transcription.json"))
        .unwrap_err();
    assert_eq!(err.path, "resource_url");
    assert!(matches!(
        classify(Channel::Etsy, None, &json!({"event_type": "listing.updated"})).unwrap(),
        Inbound::Ignore { .. }
    ));
}

#[test]
fn amazon_notifications() {
    let body = fixture!("amazon/order-change-notification.json");
    let got = classify(Channel::Amazon, None, &body).unwrap();
    assert!(thin(DocKind::Order, "903-8868176-2219830")(&got), "{got:?}");
    assert_eq!(body_event_id(Channel::Amazon, &body).as_deref(), Some("d0e9e693-c3ad-4373-979f-ed4ec98dd746"));
    let body = fixture!("amazon/listings-item-mfn-quantity-change-notification.json");
    assert_eq!(
        classify(Channel::Amazon, None, &body).unwrap(),
        Inbound::Full { kind: DocKind::InventoryLevel, doc: body }
    );
    let got =
        classify(Channel::Amazon, None, &fixture!("amazon/listings-item-status-change-notification.json")).unwrap();
    assert!(matches!(got, Inbound::Ignore { .. }), "{got:?}");
}

#[test]
fn shopify_topics() {
    let order = fixture!("shopify/order-1073459981-rest-2026-07-create-paid.json")["order"].clone();
    for topic in ["orders/create", "orders/updated", "orders/paid", "orders/cancelled"] {
        assert_eq!(
            classify(Channel::Shopify, Some(topic), &order).unwrap(),
            Inbound::Full { kind: DocKind::Order, doc: order.clone() }
        );
    }
    let unit_back = json!({ "event_name": "return_unit_status_changed", "id_order_unit": 9_133_017 });
    assert_eq!(
        classify(Channel::Kaufland, None, &unit_back).unwrap(),
        Inbound::Thin { kind: DocKind::Order, resource_id: "unit:9133017".into(), event_time: None },
        "a Kaufland return re-reads the order whose unit came back"
    );
    let bare = json!({ "event_name": "return_new", "id_return": 55 });
    assert!(matches!(classify(Channel::Kaufland, None, &bare).unwrap(), Inbound::Ignore { .. }));
    let refunded = json!({ "action": "woocommerce_order_refunded", "arg": 727 });
    assert_eq!(
        classify(Channel::Woocommerce, Some("action.woocommerce_order_refunded"), &refunded).unwrap(),
        Inbound::Thin { kind: DocKind::Return, resource_id: "727".into(), event_time: None },
        "WooCommerce's refund action names the order whose refunds are read"
    );
    let refund = fixture!("shopify/refund-929361472-rest-2026-07-create.json")["refund"].clone();
    assert!(matches!(
        classify(Channel::Shopify, Some("refunds/create"), &refund).unwrap(),
        Inbound::Full { kind: DocKind::Refund, .. }
    ));
    let level = fixture!("shopify/inventory-level-rest-2026-07-set.json")["inventory_level"].clone();
    assert!(matches!(
        classify(Channel::Shopify, Some("inventory_levels/update"), &level).unwrap(),
        Inbound::Full { kind: DocKind::InventoryLevel, .. }
    ));
    assert!(matches!(classify(Channel::Shopify, Some("app/uninstalled"), &json!({})).unwrap(), Inbound::Ignore { .. }));
    assert_eq!(classify(Channel::Shopify, None, &order).unwrap_err().path, "topic");
    assert_eq!(body_event_id(Channel::Shopify, &order), None, "Shopify's event id is a header");
}

#[test]
fn woocommerce_topics_and_ping() {
    let order = fixture!("woocommerce/order-727-rest-v3-retrieve.json");
    assert!(matches!(
        classify(Channel::Woocommerce, Some("order.updated"), &order).unwrap(),
        Inbound::Full { kind: DocKind::Order, .. }
    ));
    assert!(matches!(
        classify(Channel::Woocommerce, None, &json!({"webhook_id": 15})).unwrap(),
        Inbound::Ignore { .. }
    ));
    assert!(matches!(
        classify(Channel::Woocommerce, Some("coupon.created"), &json!({"id": 1})).unwrap(),
        Inbound::Ignore { .. }
    ));
    assert_eq!(classify(Channel::Woocommerce, None, &order).unwrap_err().path, "topic");
}

#[test]
fn tiktok_ebay_and_zalando() {
    let body = fixture!("tiktok/webhook-order-status-written-from-docs.json");
    let got = classify(Channel::Tiktok, None, &body).unwrap();
    assert!(thin(DocKind::Order, "576461413038785752")(&got), "{got:?}");
    assert_eq!(body_event_id(Channel::Tiktok, &body).as_deref(), Some("7327112393057371910"));
    assert!(matches!(
        classify(Channel::Tiktok, None, &json!({"type": 6, "data": {}})).unwrap(),
        Inbound::Ignore { .. }
    ));
    // A cancellation status change re-reads the order; a return status change reads its returns.
    let mut cancellation = body.clone();
    cancellation["type"] = json!(11);
    assert!(thin(DocKind::Order, "576461413038785752")(&classify(Channel::Tiktok, None, &cancellation).unwrap()));
    let mut returned = body.clone();
    returned["type"] = json!(12);
    assert!(thin(DocKind::Return, "576461413038785752")(&classify(Channel::Tiktok, None, &returned).unwrap()));

    let body = fixture!("ebay/notification-order-written-from-docs.json");
    let got = classify(Channel::Ebay, None, &body).unwrap();
    assert!(thin(DocKind::Order, "12-03456-78901")(&got), "{got:?}");
    assert_eq!(body_event_id(Channel::Ebay, &body).as_deref(), Some("4f2a8f5e-0000-4000-8000-00000000ebay"));
    let deletion = json!({"metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION"}, "notification": {}});
    assert!(matches!(classify(Channel::Ebay, None, &deletion).unwrap(), Inbound::Ignore { .. }));

    assert!(classify(Channel::Zalando, None, &json!({})).is_err(), "Zalando pushes nothing");
}

#[test]
fn kaufland_notifications_name_an_order_or_a_unit_and_nothing_else() {
    let got = classify(Channel::Kaufland, None, &fixture!("kaufland/notification-order-new.json")).unwrap();
    assert!(thin(DocKind::Order, "MB7UWLD")(&got), "{got:?}");
    assert!(matches!(got, Inbound::Thin { event_time: Some(t), .. } if t == at("2026-11-20T09:15:03Z")));
    let unit = json!({ "event_name": "order_unit_status_changed", "resource": { "id_order_unit": 740_011_001 } });
    assert!(thin(DocKind::Order, "unit:740011001")(&classify(Channel::Kaufland, None, &unit).unwrap()));
    let item = json!({ "event_name": "item_unit_changed", "id_unit": 12 });
    assert!(matches!(classify(Channel::Kaufland, None, &item).unwrap(), Inbound::Ignore { .. }));
    let err = classify(Channel::Kaufland, None, &json!({ "event_name": "order_new" })).unwrap_err();
    assert!(err.message.contains("names no order"), "{err}");
    assert!(classify(Channel::Kaufland, None, &json!({ "id_order": "X" })).is_err(), "no event name");
    assert_eq!(body_event_id(Channel::Kaufland, &fixture!("kaufland/notification-order-new.json")), None);
}
