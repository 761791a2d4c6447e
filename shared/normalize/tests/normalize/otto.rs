//! OTTO Market Orders v4: one position item per unit grouped into lines with every unit's id, float
//! money read exactly, alpha-3 countries, the pseudonymized invoice email, and the status roll-up.

use manifold_domain::{Channel, OrderStatus, OrderWarning};
use manifold_normalize::{DocKind, classify, normalize, normalize_order};
use serde_json::json;

use crate::support::{account, assert_line, assert_totals, at, country, ctx, json, money};

const PROCESSABLE: &str = include_str!("../../fixtures/otto/order-processable-written-from-docs.json");
const ANNOUNCED: &str = include_str!("../../fixtures/otto/order-announced-written-from-docs.json");
const CANCELLED: &str = include_str!("../../fixtures/otto/order-cancelled-written-from-docs.json");

#[test]
fn a_processable_order_groups_its_units_by_sku_and_keeps_every_position_item_id() {
    let acct = account(Channel::Otto);
    let order = normalize_order(Channel::Otto, &json(PROCESSABLE), &ctx(&acct)).unwrap();

    assert_eq!(order.id.as_str(), "otto:otto-partner-1:5f1b8a55-2b7c-4f0e-9d1a-6c3e2a7b9d10");
    assert_eq!(order.order_number, "bkp9wr24gl");
    assert_eq!(order.status, OrderStatus::Paid, "PROCESSABLE: ready to ship");
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.lines.len(), 2, "three units, two SKUs");
    // Two units of the mapped SKU at 19.99 (floats read exactly), each 2.00 off.
    assert_line(&order.lines[0], Some("TEE-BLK-M"), true, 2, "19.99", "EUR");
    assert_eq!(order.lines[0].channel_sku.as_ref().unwrap().as_str(), "OTTO-TEE-BLK-M");
    assert_eq!(order.lines[0].total, money("39.98", "EUR"));
    assert_eq!(order.lines[0].discount, money("4.00", "EUR"));
    assert_eq!(
        order.lines[0].line_id, "a3c1e2f4-0001-4b8e-9c1d-1f2e3d4c5b6a,a3c1e2f4-0002-4b8e-9c1d-1f2e3d4c5b6a",
        "the line keeps both units' position item ids"
    );
    assert_line(&order.lines[1], Some("MUG-WHITE"), false, 1, "9.95", "EUR");
    assert_eq!(order.lines[1].line_id, "b7d2f3a5-0003-4c9f-8d2e-2a3b4c5d6e7f");
    assert_eq!(
        order.warnings,
        vec![OrderWarning::UnmappedSku {
            line_id: "b7d2f3a5-0003-4c9f-8d2e-2a3b4c5d6e7f".into(),
            channel_sku: "MUG-WHITE".into()
        }]
    );
    // Subtotal 49.93, delivery fee 4.95, the tees' 4.00 off (the checkout discount is not added again).
    assert_totals(&order, ["49.93", "4.95", "0.00", "4.00", "50.88"]);

    // The buyer's email is the delivery address's; the invoice address's is a pseudonymized relay.
    assert_eq!(order.customer.email.as_deref(), Some("max.mustermann@example.com"));
    assert_eq!(order.customer.name.as_deref(), Some("Max Mustermann"));
    assert_eq!(order.customer.phone.as_deref(), Some("+49 40 12345678"));
    assert_eq!(order.customer.channel_customer_id, None, "a PartnerOrder names no buyer");
    let shipping = order.shipping_address.as_ref().unwrap();
    assert_eq!(shipping.line1.as_deref(), Some("Werner-Otto-Straße 1-7"));
    assert_eq!(shipping.line2.as_deref(), Some("Haus 3"));
    assert_eq!((shipping.postal_code.as_deref(), shipping.city.as_deref()), (Some("22179"), Some("Hamburg")));
    assert_eq!(country(&order), Some("DE"), "DEU as alpha-2");
    assert_eq!(order.billing_address.as_ref().unwrap().line1.as_deref(), Some("Rathausmarkt 1"));
    assert!(!serde_json::to_string(&order).unwrap().contains("relay.example.org"), "the relay address is dropped");

    assert_eq!(order.created_at, at("2026-03-02T09:14:05.120Z"));
    assert_eq!(order.source_version, at("2026-03-02T09:51:40.004Z").timestamp_millis());
}

#[test]
fn an_announced_order_reserves_but_has_no_address_yet() {
    let acct = account(Channel::Otto);
    let order = normalize_order(Channel::Otto, &json(ANNOUNCED), &ctx(&acct)).unwrap();
    assert_eq!(order.status, OrderStatus::Pending, "ANNOUNCED: reserve, do not ship");
    assert!(!order.status.releases_stock());
    assert_eq!(order.shipping_address, None);
    assert_eq!(order.billing_address, None);
    assert_eq!(order.customer.email, None);
    assert_line(&order.lines[0], Some("TEE-BLK-M"), true, 1, "24.90", "EUR");
    assert_totals(&order, ["24.90", "0.00", "0.00", "0.00", "24.90"]);
}

#[test]
fn a_cancelled_order_keeps_its_units_and_releases_its_stock() {
    let acct = account(Channel::Otto);
    let order = normalize_order(Channel::Otto, &json(CANCELLED), &ctx(&acct)).unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(order.status.releases_stock());
    assert_line(&order.lines[0], Some("MUG-WHITE"), false, 2, "9.95", "EUR");
    assert_totals(&order, ["19.90", "2.95", "0.00", "0.00", "22.85"]);
    assert_eq!(order.customer.name.as_deref(), Some("Erika Musterfrau"));
    assert_eq!(order.source_version, at("2026-03-02T08:05:12.250Z").timestamp_millis());
}

#[test]
fn a_cancelled_unit_of_a_live_order_is_not_counted_but_keeps_its_id() {
    let acct = account(Channel::Otto);
    let mut doc = json(PROCESSABLE);
    doc["positionItems"][1]["fulfillmentStatus"] = json!("CANCELLED_BY_PARTNER");
    let order = normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_line(&order.lines[0], Some("TEE-BLK-M"), true, 1, "19.99", "EUR");
    assert_eq!(order.lines[0].discount, money("2.00", "EUR"));
    assert_eq!(
        order.lines[0].line_id, "a3c1e2f4-0001-4b8e-9c1d-1f2e3d4c5b6a,a3c1e2f4-0002-4b8e-9c1d-1f2e3d4c5b6a",
        "the line id does not change"
    );
    assert_eq!(order.quantities_by_sku().values().sum::<u32>(), 2, "one tee and the mug stay reserved");
    assert_totals(&order, ["29.94", "4.95", "0.00", "2.00", "32.89"]);
}

#[test]
fn units_of_one_sku_at_two_prices_stay_two_lines() {
    let acct = account(Channel::Otto);
    let mut doc = json(PROCESSABLE);
    doc["positionItems"][1]["itemValueGrossPrice"]["amount"] = json!(18.5);
    let order = normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.lines.len(), 3);
    assert_line(&order.lines[1], Some("TEE-BLK-M"), true, 1, "18.50", "EUR");
    assert_eq!(order.totals.subtotal, money("48.44", "EUR"), "no cent lost");
}

#[test]
fn the_order_status_rolls_up_from_the_most_open_unit() {
    let acct = account(Channel::Otto);
    let with = |statuses: [&str; 3]| {
        let mut doc = json(PROCESSABLE);
        for (i, s) in statuses.iter().enumerate() {
            doc["positionItems"][i]["fulfillmentStatus"] = json!(s);
        }
        normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap().status
    };
    assert_eq!(with(["SENT", "ANNOUNCED", "PROCESSABLE"]), OrderStatus::Pending);
    assert_eq!(with(["SENT", "PROCESSABLE", "CANCELLED_BY_PARTNER"]), OrderStatus::Paid);
    assert_eq!(with(["SENT", "SENT", "RETURNED"]), OrderStatus::Fulfilled);
    assert_eq!(with(["RETURNED", "RETURNED", "CANCELLED_BY_MARKETPLACE"]), OrderStatus::Refunded);
    assert_eq!(
        with(["CANCELLED_BY_PARTNER", "CANCELLED_BY_MARKETPLACE", "CANCELLED_BY_PARTNER"]),
        OrderStatus::Cancelled
    );
}

#[test]
fn bad_documents_are_errors_naming_the_field() {
    let acct = account(Channel::Otto);
    let mut doc = json(PROCESSABLE);
    doc["deliveryAddress"]["countryCode"] = json!("XKX");
    let err = normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "deliveryAddress.countryCode");
    assert!(err.message.contains("alpha-3"), "{err}");

    let mut doc = json(PROCESSABLE);
    doc["positionItems"][2]["fulfillmentStatus"] = json!("LOST");
    assert_eq!(
        normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap_err().path,
        "positionItems[2].fulfillmentStatus"
    );

    let mut doc = json(PROCESSABLE);
    doc["positionItems"][2]["itemValueGrossPrice"]["currency"] = json!("CHF");
    let err = normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "positionItems[2].itemValueGrossPrice.currency");

    let mut doc = json(PROCESSABLE);
    doc["positionItems"] = json!([]);
    assert_eq!(normalize_order(Channel::Otto, &doc, &ctx(&acct)).unwrap_err().path, "positionItems");
}

#[test]
fn otto_pushes_nothing_and_sends_orders_only() {
    let acct = account(Channel::Otto);
    assert!(classify(Channel::Otto, None, &json(PROCESSABLE)).is_err(), "no notification is accepted");
    let err = normalize(Channel::Otto, DocKind::Shipment, &json(PROCESSABLE), &ctx(&acct)).unwrap_err();
    assert!(err.message.contains("shipment"), "{err}");
}

#[test]
fn returned_position_items_are_returns_received_one_unit_each() {
    let acct = account(Channel::Otto);
    let mut doc = json(PROCESSABLE);
    doc["positionItems"][2]["fulfillmentStatus"] = json!("RETURNED");
    doc["positionItems"][2]["returnedDate"] = json!("2026-11-28T10:00:00.000Z");
    let records = manifold_normalize::normalize_all(Channel::Otto, DocKind::Order, &doc, &ctx(&acct)).unwrap();
    let order = match &records[0] {
        manifold_domain::Record::Order(o) => o,
        other => panic!("the order comes first, not {other:?}"),
    };
    let [_, manifold_domain::Record::Return(ret)] = records.as_slice() else { panic!("one return: {records:?}") };
    let item = doc["positionItems"][2]["positionItemId"].as_str().unwrap();
    assert_eq!(ret.id, format!("otto:{}:unit-{item}", acct.account));
    assert_eq!(ret.state, manifold_domain::ReturnState::Received);
    assert_eq!(ret.created_at, at("2026-11-28T10:00:00Z"));
    let line = order.lines.iter().find(|l| l.line_id == ret.lines[0].line_id).expect("a line of its order");
    assert!(line.line_id.contains(item));
    assert_eq!(ret.lines[0].sku, line.sku);
}
