//! Every order fixture normalizes, with id, currency, lines, totals, email and country checked by hand.

use manifold_domain::{Channel, OrderStatus, OrderWarning};
use manifold_normalize::{DocKind, normalize_order};
use serde_json::json;

use crate::support::{account, assert_line, assert_totals, at, country, ctx, json, money};

macro_rules! fixture {
    ($path:literal) => {
        json(include_str!(concat!("../../fixtures/", $path)))
    };
}

#[test]
fn shopify_full_rest_order_maps_skus_and_reads_shop_money() {
    let acct = account(Channel::Shopify);
    let order =
        normalize_order(Channel::Shopify, &fixture!("shopify/order-450789469-rest-2026-07-get.json"), &ctx(&acct))
            .unwrap();

    assert_eq!(order.id.as_str(), "shopify:shop-eu:450789469");
    assert_eq!(order.order_number, "#1001");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.status, OrderStatus::PartiallyRefunded);
    assert_eq!(order.lines.len(), 3);
    assert_line(&order.lines[0], Some("IPOD2008GREEN"), false, 1, "199.00", "USD");
    assert_line(&order.lines[1], Some("IPOD2008RED"), false, 1, "199.00", "USD");
    assert_line(&order.lines[2], Some("IPOD-NANO-BLACK"), true, 1, "199.00", "USD");
    assert_eq!(order.lines[2].channel_sku.as_ref().unwrap().as_str(), "IPOD2008BLACK");
    assert_eq!(order.lines[0].tax, money("3.98", "USD"));
    assert_eq!(order.lines[0].discount, money("3.34", "USD"));
    assert_totals(&order, ["597.00", "0.00", "11.94", "10.00", "598.94"]);
    assert_eq!(order.customer.email.as_deref(), Some("bob.norman@mail.example.com"));
    assert_eq!(order.customer.name.as_deref(), Some("Bob Norman"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("207119551"), "customer.id, as text");
    assert_eq!(country(&order), Some("US"));
    assert_eq!(order.source_version, at("2008-01-10T16:00:00Z").timestamp_millis());
    assert_eq!(
        order.warnings,
        vec![
            OrderWarning::UnmappedSku { line_id: "466157049".into(), channel_sku: "IPOD2008GREEN".into() },
            OrderWarning::UnmappedSku { line_id: "518995019".into(), channel_sku: "IPOD2008RED".into() },
        ]
    );
}

#[test]
fn shopify_webhook_body_is_the_unwrapped_object_and_gives_the_same_order() {
    let acct = account(Channel::Shopify);
    let wrapped = fixture!("shopify/order-1073459981-rest-2026-07-create-paid.json");
    let webhook_body = wrapped["order"].clone();
    let a = normalize_order(Channel::Shopify, &wrapped, &ctx(&acct)).unwrap();
    let b = normalize_order(Channel::Shopify, &webhook_body, &ctx(&acct)).unwrap();
    assert_eq!(a, b);

    assert_eq!(a.id.as_str(), "shopify:shop-eu:1073459981");
    assert_eq!(a.status, OrderStatus::Paid);
    assert_line(&a.lines[0], Some("IPOD2009BLACK"), false, 1, "199.00", "USD");
    assert_eq!(a.lines[0].discount, money("17.91", "USD"));
    assert_totals(&a, ["199.00", "0.00", "0.00", "17.91", "181.09"]);
    assert_eq!(a.customer.email.as_deref(), Some("jane@example.com"));
    assert_eq!(a.customer.phone.as_deref(), Some("+18885551234"));
    assert_eq!(a.customer.channel_customer_id.as_deref(), Some("1073339475"));
    assert_eq!(country(&a), Some("CA"));
}

#[test]
fn shopify_null_sku_line_is_kept_without_sku_and_flagged() {
    let acct = account(Channel::Shopify);
    let order = normalize_order(
        Channel::Shopify,
        &fixture!("shopify/order-1073459976-rest-2026-07-create-eur-custom-item.json"),
        &ctx(&acct),
    )
    .unwrap();
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.lines.len(), 1, "the custom line is not dropped");
    assert_line(&order.lines[0], None, false, 3, "74.99", "EUR");
    assert_eq!(order.lines[0].channel_sku, None);
    assert_eq!(order.lines[0].total, money("224.97", "EUR"));
    assert_eq!(order.warnings, vec![OrderWarning::LineWithoutSku { line_id: "1071823188".into() }]);
    assert!(order.quantities_by_sku().is_empty(), "a line without SKU reserves nothing");
    assert_totals(&order, ["224.97", "0.00", "13.50", "0.00", "238.47"]);
    assert_eq!(order.customer.email, None, "empty email is absent, not \"\"");
    assert_eq!(order.customer.channel_customer_id, None, "customer: null is a guest checkout");
    assert_eq!(order.shipping_address, None);
}

#[test]
fn shopify_presentment_money_is_never_mixed_into_shop_money() {
    let acct = account(Channel::Shopify);
    let mut doc = fixture!("shopify/order-1073459981-rest-2026-07-create-paid.json");
    // The buyer paid in CAD: every *_set.presentment_money differs from the shop's USD amounts.
    let o = &mut doc["order"];
    o["presentment_currency"] = json!("CAD");
    for key in ["total_price_set", "subtotal_price_set", "total_discounts_set", "total_line_items_price_set"] {
        o[key]["presentment_money"] = json!({"amount": "999.99", "currency_code": "CAD"});
    }
    o["line_items"][0]["price_set"]["presentment_money"] = json!({"amount": "270.00", "currency_code": "CAD"});
    let order = normalize_order(Channel::Shopify, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.lines[0].unit_price, money("199.00", "USD"));
    assert_totals(&order, ["199.00", "0.00", "0.00", "17.91", "181.09"]);
}

#[test]
fn shopify_legacy_order_without_set_fields_normalizes() {
    let acct = account(Channel::Shopify);
    let order = normalize_order(
        Channel::Shopify,
        &fixture!("shopify/order-450789469-legacy-python-api-fixture.json"),
        &ctx(&acct),
    )
    .unwrap();
    assert_eq!(order.id.as_str(), "shopify:shop-eu:450789469");
    assert_eq!(order.status, OrderStatus::Paid, "authorized");
    assert_eq!(order.lines.len(), 3);
    assert_line(&order.lines[2], Some("IPOD-NANO-BLACK"), true, 1, "199.00", "USD");
    assert_eq!(order.lines[0].discount, money("0", "USD"), "null total_discount is zero");
    assert_totals(&order, ["398.00", "0.00", "11.94", "0.00", "409.94"]);
    assert_eq!(order.customer.email.as_deref(), Some("bob.norman@hostmail.com"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("207119551"));
    assert_eq!(country(&order), Some("US"));
}

#[test]
fn woocommerce_order_727_uses_gmt_dates_and_number_prices() {
    let acct = account(Channel::Woocommerce);
    let order =
        normalize_order(Channel::Woocommerce, &fixture!("woocommerce/order-727-rest-v3-retrieve.json"), &ctx(&acct))
            .unwrap();
    assert_eq!(order.id.as_str(), "woocommerce:woo-main:727");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.status, OrderStatus::Paid);
    assert_line(&order.lines[0], None, false, 2, "3.00", "USD");
    assert_line(&order.lines[1], Some("Bar3"), false, 1, "12.00", "USD");
    assert_eq!(order.lines[1].tax, money("0.90", "USD"));
    assert_eq!(order.warnings[0], OrderWarning::LineWithoutSku { line_id: "315".into() });
    assert_totals(&order, ["18.00", "10.00", "1.35", "0.00", "29.35"]);
    assert_eq!(order.customer.email.as_deref(), Some("john.doe@example.com"));
    assert_eq!(order.customer.name.as_deref(), Some("John Doe"));
    assert_eq!(order.customer.channel_customer_id, None, "customer_id 0 is a guest");
    assert_eq!(country(&order), Some("US"));
    // date_created is 16:28:02 local; date_created_gmt 19:28:02 is the instant.
    assert_eq!(order.created_at, at("2017-03-22T19:28:02Z"));
    assert_eq!(order.source_version, at("2017-03-22T19:28:08Z").timestamp_millis());
}

#[test]
fn woocommerce_orders_list_normalizes_each_order() {
    let acct = account(Channel::Woocommerce);
    let list = fixture!("woocommerce/orders-rest-v3-list.json");
    let orders: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| normalize_order(Channel::Woocommerce, o, &ctx(&acct)).unwrap())
        .collect();
    assert_eq!(orders[0].id.as_str(), "woocommerce:woo-main:727");
    assert_eq!(orders[0].customer.channel_customer_id, None, "customer_id 0 is a guest");
    let second = &orders[1];
    assert_eq!(second.id.as_str(), "woocommerce:woo-main:723");
    assert_eq!(second.status, OrderStatus::Fulfilled);
    assert_line(&second.lines[0], None, false, 1, "9.00", "USD");
    assert_line(&second.lines[1], None, false, 1, "20.00", "USD");
    assert_eq!(second.totals.total, money("39.00", "USD"));
    assert_eq!(second.customer.email.as_deref(), Some("joao.silva@example.com"));
    assert_eq!(second.customer.channel_customer_id.as_deref(), Some("26"));
    assert_eq!(country(second), Some("BR"));
}

#[test]
fn woocommerce_float_line_price_keeps_its_cents_and_zoneless_dates_are_utc() {
    let acct = account(Channel::Woocommerce);
    let mut doc = fixture!("woocommerce/order-727-rest-v3-retrieve.json");
    doc["line_items"][1]["price"] = json!(19.99);
    doc["line_items"][1]["quantity"] = json!(3);
    doc["line_items"][1]["sku"] = json!("woo-tee-black-m");
    doc.as_object_mut().unwrap().remove("date_created_gmt");
    let order = normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap();
    assert_line(&order.lines[1], Some("TEE-BLK-M"), true, 3, "19.99", "USD");
    assert_eq!(order.lines[1].total.to_string(), "59.97");
    assert_eq!(order.created_at, at("2017-03-22T16:28:02Z"), "a zone-less date is read as UTC");
}

fn bigcommerce_218() -> serde_json::Value {
    json!({
        "order": fixture!("bigcommerce/v2-order-218-get.json"),
        "products": fixture!("bigcommerce/v2-order-products-list.json"),
        "shipping_addresses": fixture!("bigcommerce/v2-order-shipping-addresses-list.json"),
    })
}

#[test]
fn bigcommerce_combined_order_rounds_four_decimals_and_reads_rfc2822() {
    let acct = account(Channel::Bigcommerce);
    let order = normalize_order(Channel::Bigcommerce, &bigcommerce_218(), &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "bigcommerce:store-abc123:218");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.status, OrderStatus::Pending, "7 Awaiting Payment");
    assert_line(&order.lines[0], Some("S-ORAN"), false, 1, "55.99", "USD");
    assert_eq!(order.lines[0].tax, money("9.24", "USD"));
    assert_eq!(order.lines[0].discount, money("1.59", "USD"));
    assert_line(&order.lines[1], Some("ABS"), false, 1, "0.00", "USD");
    // "62.6793" -> 62.68
    assert_totals(&order, ["62.68", "11.09", "5.31", "5.00", "69.84"]);
    assert_eq!(order.customer.email.as_deref(), Some("janedoe@example.com"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("11"));
    assert_eq!(country(&order), Some("US"));
    assert_eq!(order.shipping_address.as_ref().unwrap().city.as_deref(), Some("San Antonio"));
    assert_eq!(order.created_at, at("2019-03-05T21:40:11Z"));
    assert_eq!(order.source_version, at("2019-03-11T15:17:25Z").timestamp_millis());

    let mut guest = bigcommerce_218();
    guest["order"]["customer_id"] = json!(0);
    let order = normalize_order(Channel::Bigcommerce, &guest, &ctx(&acct)).unwrap();
    assert_eq!(order.customer.channel_customer_id, None, "customer_id 0 is a guest");
}

fn amazon_v0(order: &serde_json::Value, items: &serde_json::Value) -> serde_json::Value {
    json!({"order": order["payload"], "order_items": items["payload"]["OrderItems"]})
}

#[test]
fn amazon_v0_sandbox_pair_is_consistent() {
    let acct = account(Channel::Amazon);
    let doc = amazon_v0(
        &fixture!("amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json"),
        &fixture!("amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json"),
    );
    let order = normalize_order(Channel::Amazon, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "amazon:A2EUQ1WTGCTBG2:902-1845936-5435065");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.status, OrderStatus::Paid, "Unshipped");
    assert_line(&order.lines[0], Some("NABetaASINB00551Q3CS"), false, 1, "10.00", "USD");
    assert_eq!(order.lines[0].tax, money("1.01", "USD"));
    assert_totals(&order, ["10.00", "0.00", "1.01", "0.00", "11.01"]);
    assert_eq!(order.customer.email, None);
    assert_eq!(order.customer.channel_customer_id, None, "Amazon gives no buyer id");
    assert_eq!(country(&order), None);
}

#[test]
fn amazon_v0_docs_examples_combine_and_item_price_is_a_line_total() {
    let acct = account(Channel::Amazon);
    let doc = amazon_v0(
        &fixture!("amazon/orders-v0-getOrder-response-example.json"),
        &fixture!("amazon/orders-v0-getOrderItems-response-example.json"),
    );
    let order = normalize_order(Channel::Amazon, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "amazon:A2EUQ1WTGCTBG2:902-3159896-1390916");
    assert_eq!(order.currency.as_str(), "JPY", "no OrderTotal: the items' currency");
    assert_eq!(order.status, OrderStatus::Pending);
    // JPY has no minor unit: "25.99" -> 26; "17.95" for 2 units -> 18 / 2 = 9 each.
    assert_line(&order.lines[0], Some("CBA_OTF_1"), false, 1, "26", "JPY");
    assert_line(&order.lines[1], Some("CBA_OTF_5"), false, 2, "9", "JPY");
    assert_totals(&order, ["44", "1", "0", "0", "45"]);
    assert_eq!(order.customer.email.as_deref(), Some("user@example.com"));
    assert_eq!(order.customer.name.as_deref(), Some("John Doe"));
    assert_eq!(order.customer.channel_customer_id, None, "Amazon gives no buyer id");
    assert_eq!(country(&order), Some("US"));
    assert_eq!(order.ship_by, Some(at("2017-01-25T19:49:35Z")), "LatestShipDate is the channel's deadline");
}

#[test]
fn amazon_v0_unit_price_is_item_price_divided_by_quantity() {
    let acct = account(Channel::Amazon);
    let mut doc = amazon_v0(
        &fixture!("amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json"),
        &fixture!("amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json"),
    );
    doc["order_items"][0]["QuantityOrdered"] = json!(3);
    doc["order_items"][0]["ItemPrice"]["Amount"] = json!("30.00");
    let order = normalize_order(Channel::Amazon, &doc, &ctx(&acct)).unwrap();
    assert_line(&order.lines[0], Some("NABetaASINB00551Q3CS"), false, 3, "10.00", "USD");
    assert_eq!(order.lines[0].total, money("30.00", "USD"));
}

#[test]
fn amazon_2026_order_is_detected_by_shape_wrapped_or_bare() {
    let acct = account(Channel::Amazon);
    let wrapped = fixture!("amazon/orders-2026-01-01-getOrder-response-example.json");
    let order = normalize_order(Channel::Amazon, &wrapped, &ctx(&acct)).unwrap();
    assert_eq!(order, normalize_order(Channel::Amazon, &wrapped["order"], &ctx(&acct)).unwrap());
    assert_eq!(order.id.as_str(), "amazon:A2EUQ1WTGCTBG2:202-1234567-8901234");
    assert_eq!(order.currency.as_str(), "GBP");
    assert_eq!(order.status, OrderStatus::Fulfilled);
    assert_line(&order.lines[0], Some("ECHO-DOT-4-UK-CHARCOAL-3PACK"), false, 3, "29.99", "GBP");
    assert_eq!(order.lines[0].total, money("89.97", "GBP"));
    assert_eq!(order.lines[0].tax, money("4.00", "GBP"));
    assert_totals(&order, ["89.97", "10.00", "4.00", "0.00", "103.97"]);
    assert_eq!(order.customer.email.as_deref(), Some("buyer-email@marketplace.amazon.co.uk"));
    assert_eq!(order.customer.channel_customer_id, None, "Amazon gives no buyer id");
    assert_eq!(country(&order), Some("GB"));
    assert_eq!(order.source_version, at("2024-12-25T16:30:00Z").timestamp_millis());
    assert_eq!(order.ship_by, Some(at("2024-12-26T23:59:59Z")), "the end of the ship-by window");
}

#[test]
fn etsy_receipt_reads_minor_units() {
    let acct = account(Channel::Etsy);
    let order =
        normalize_order(Channel::Etsy, &fixture!("etsy/receipt-written-from-v3-schema.json"), &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "etsy:shop-12345678:1234567890");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.status, OrderStatus::Paid, "\"Paid\" matches case-insensitively");
    assert_line(&order.lines[0], Some("MUG-WHITE"), false, 2, "19.99", "USD");
    assert_line(&order.lines[1], None, false, 1, "10.00", "USD");
    assert_totals(&order, ["49.98", "4.99", "3.50", "5.00", "53.47"]);
    assert_eq!(order.customer.email.as_deref(), Some("buyer@example.com"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("22222222"), "buyer_user_id");
    assert_eq!(country(&order), Some("US"));
    assert_eq!(order.source_version, 1_717_434_000_000);
}

#[test]
fn tiktok_units_of_one_sku_aggregate_into_quantity() {
    let acct = account(Channel::Tiktok);
    let order =
        normalize_order(Channel::Tiktok, &fixture!("tiktok/order-detail-202309-written-from-docs.json"), &ctx(&acct))
            .unwrap();
    assert_eq!(order.id.as_str(), "tiktok:7000714532876273420:576461413038785752");
    assert_eq!(order.currency.as_str(), "GBP");
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.lines.len(), 2, "three one-unit items, two SKUs");
    assert_line(&order.lines[0], Some("SHOP-TEE-BLK-M"), false, 2, "12.99", "GBP");
    assert_eq!(order.lines[0].line_id, "577086512123755123");
    assert_line(&order.lines[1], Some("STICKERS-01"), false, 1, "9.99", "GBP");
    assert_eq!(order.lines[1].discount, money("1.00", "GBP"));
    assert_totals(&order, ["35.97", "2.99", "0.00", "1.00", "38.96"]);
    assert_eq!(order.customer.email.as_deref(), Some("v2buyer@scs.tiktokw.example"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("7021436810468230477"), "user_id");
    assert_eq!(country(&order), Some("GB"));
    assert_eq!(order.shipping_address.as_ref().unwrap().city.as_deref(), Some("London"));
}

#[test]
fn tiktok_units_of_one_sku_at_different_prices_stay_apart() {
    let acct = account(Channel::Tiktok);
    let mut doc = fixture!("tiktok/order-detail-202309-written-from-docs.json");
    doc["line_items"][1]["sale_price"] = json!("10.00");
    let order = normalize_order(Channel::Tiktok, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.lines.len(), 3);
    assert_eq!(order.quantities_by_sku().values().sum::<u32>(), 3);
}

#[test]
fn zalando_float_prices_and_one_unit_order_lines() {
    let acct = account(Channel::Zalando);
    let order =
        normalize_order(Channel::Zalando, &fixture!("zalando/order-jsonapi-written-from-docs.json"), &ctx(&acct))
            .unwrap();
    assert_eq!(order.id.as_str(), "zalando:merchant-zde-1:37a585db-2c66-4f3a-b7b2-3429b84c5822");
    assert_eq!(order.order_number, "10105444554713");
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.status, OrderStatus::Paid);
    assert_line(&order.lines[0], Some("woo-tee-black-m"), false, 2, "29.95", "EUR");
    assert_eq!(order.lines[0].total.to_string(), "59.90");
    assert_line(&order.lines[1], Some("4006381333948"), false, 1, "29.95", "EUR");
    assert_totals(&order, ["89.85", "0.00", "0.00", "0.00", "89.85"]);
    assert_eq!(order.customer.email, None);
    assert_eq!(order.customer.channel_customer_id, None, "a zDirect order names no buyer");
    assert_eq!(country(&order), Some("DE"));
}

/// Zalando's order status is initial, approved or fulfilled; "fulfilled" with every line canceled is a
/// cancelled order (a failed payment ends that way), with any line shipped a fulfilled one.
#[test]
fn zalando_orders_whose_every_line_is_canceled_are_cancelled() {
    let acct = account(Channel::Zalando);
    let mut doc = fixture!("zalando/order-jsonapi-written-from-docs.json");
    doc["data"]["attributes"]["status"] = serde_json::json!("fulfilled");
    let lines = doc_lines(&doc);
    for &ix in &lines {
        doc["included"][ix]["attributes"]["status"] = serde_json::json!("canceled");
    }
    assert_eq!(normalize_order(Channel::Zalando, &doc, &ctx(&acct)).unwrap().status, OrderStatus::Cancelled);
    doc["included"][lines[0]]["attributes"]["status"] = serde_json::json!("shipped");
    assert_eq!(normalize_order(Channel::Zalando, &doc, &ctx(&acct)).unwrap().status, OrderStatus::Fulfilled);
}

/// A returned order line is one unit back, a Return of the canonical line its item makes.
#[test]
fn zalando_returned_order_lines_are_returns_of_one_unit() {
    let acct = account(Channel::Zalando);
    let mut doc = fixture!("zalando/order-jsonapi-written-from-docs.json");
    doc["data"]["attributes"]["status"] = serde_json::json!("fulfilled");
    let lines = doc_lines(&doc);
    for &ix in &lines {
        doc["included"][ix]["attributes"]["status"] = serde_json::json!("shipped");
    }
    doc["included"][lines[1]]["attributes"]["status"] = serde_json::json!("returned");
    let records = manifold_normalize::normalize_all(Channel::Zalando, DocKind::Order, &doc, &ctx(&acct)).unwrap();
    let [manifold_domain::Record::Order(order), manifold_domain::Record::Return(ret)] = records.as_slice() else {
        panic!("the order, then one return: {records:?}")
    };
    assert_eq!(order.status, OrderStatus::Fulfilled);
    assert_eq!(ret.id, "zalando:merchant-zde-1:unit-0f0b3b3a-0000-4000-8000-000000000002");
    assert_eq!(ret.state, manifold_domain::ReturnState::Received);
    assert_eq!((ret.lines[0].line_id.as_str(), ret.lines[0].quantity), (order.lines[0].line_id.as_str(), 1));
}

/// Positions of the OrderLine resources in a Zalando document's `included`.
fn doc_lines(doc: &serde_json::Value) -> Vec<usize> {
    doc["included"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, r)| r["type"] == "OrderLine")
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn ebay_line_item_cost_is_a_line_total() {
    let acct = account(Channel::Ebay);
    let order = normalize_order(Channel::Ebay, &fixture!("ebay/getorder-written-from-docs.json"), &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "ebay:ebay-de:12-03456-78901");
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.status, OrderStatus::Paid);
    assert_line(&order.lines[0], Some("IPOD2008PINK"), false, 3, "19.99", "EUR");
    assert_eq!(order.lines[0].discount, money("5.00", "EUR"));
    assert_totals(&order, ["59.97", "4.99", "0.00", "5.00", "59.96"]);
    assert_eq!(order.customer.email.as_deref(), Some("max.beispiel@example.com"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("example_buyer"), "buyer.username");
    assert_eq!(country(&order), Some("DE"));
    assert_eq!(order.shipping_address.as_ref().unwrap().name.as_deref(), Some("Max Beispiel"));
    assert_eq!(order.ship_by, None, "no line gives a shipByDate: the account's hours apply");
}

#[test]
fn ebay_orders_ship_by_their_earliest_lines_ship_by_date() {
    let acct = account(Channel::Ebay);
    let mut doc = fixture!("ebay/getorder-written-from-docs.json");
    let mut second = doc["lineItems"][0].clone();
    second["lineItemId"] = serde_json::json!("10000000000002");
    doc["lineItems"].as_array_mut().unwrap().push(second);
    doc["lineItems"][0]["lineItemFulfillmentInstructions"] = serde_json::json!({
        "shipByDate": "2026-03-04T22:59:59.000Z",
        "maxEstimatedDeliveryDate": "2026-03-09T08:00:00.000Z"
    });
    doc["lineItems"][1]["lineItemFulfillmentInstructions"] =
        serde_json::json!({ "shipByDate": "2026-03-03T22:59:59.000Z" });
    let order = normalize_order(Channel::Ebay, &doc, &ctx(&acct)).unwrap();
    assert_eq!(order.ship_by.map(|t| t.to_rfc3339()), Some("2026-03-03T22:59:59+00:00".to_owned()));
}

#[test]
fn kaufland_units_of_one_offer_become_one_line_with_their_count() {
    let acct = account(Channel::Kaufland);
    let order =
        normalize_order(Channel::Kaufland, &fixture!("kaufland/order-two-units-one-offer.json"), &ctx(&acct)).unwrap();
    assert_eq!(order.id.as_str(), "kaufland:kaufland-de:MB7UWLD");
    assert_eq!(order.status, OrderStatus::Paid, "every unit need_to_be_sent");
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.lines.len(), 2, "three units, two offers");
    assert_line(&order.lines[0], Some("TEE-BLK-M"), false, 2, "24.99", "EUR");
    assert_eq!(order.lines[0].line_id, "TEE-BLK-M");
    assert_line(&order.lines[1], Some("MUG-WHITE"), false, 1, "12.99", "EUR");
    // Subtotal 2 x 24.99 + 12.99, shipping 4.95 (cents, per unit), no tax or discount on top.
    assert_totals(&order, ["62.97", "4.95", "0.00", "0.00", "67.92"]);
    assert_eq!(country(&order), Some("DE"));
    let address = order.shipping_address.as_ref().unwrap();
    assert_eq!(address.line1.as_deref(), Some("Heidestraße 17"), "street and house number joined");
    assert_eq!(order.customer.name.as_deref(), Some("Erika Musterfrau"));
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("5823291"), "buyer.id_buyer");
    assert_eq!(order.source_version, at("2026-11-20T09:17:05Z").timestamp_millis(), "the latest unit update");
}

#[test]
fn kaufland_cancelled_czk_order_reads_alpha_3_countries_and_the_docs_odd_timestamps() {
    let acct = account(Channel::Kaufland);
    let order =
        normalize_order(Channel::Kaufland, &fixture!("kaufland/order-czk-cancelled.json"), &ctx(&acct)).unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.currency.as_str(), "CZK");
    assert_line(&order.lines[0], Some("8594001234567"), false, 1, "499.00", "CZK");
    assert_eq!(order.billing_address.as_ref().unwrap().country_code.as_deref(), Some("CZ"), "CZE");
    assert_eq!(order.created_at, at("2016-05-06T23:07:41Z"));
    assert_eq!(order.updated_at, at("2019-07-19T17:24:05Z"));
    assert_eq!(order.customer.email, None);
    assert_eq!(order.customer.channel_customer_id.as_deref(), Some("1200931"));
}

#[test]
fn kaufland_unit_statuses_decide_the_order_status() {
    let acct = account(Channel::Kaufland);
    let base = fixture!("kaufland/order-two-units-one-offer.json");
    let with = |statuses: [&str; 3]| {
        let mut doc = base.clone();
        for (i, s) in statuses.iter().enumerate() {
            doc["data"]["order_units"][i]["status"] = json!(s);
        }
        normalize_order(Channel::Kaufland, &doc, &ctx(&acct)).map(|o| o.status)
    };
    assert_eq!(with(["sent", "received", "cancelled"]).unwrap(), OrderStatus::Fulfilled);
    assert_eq!(with(["sent", "need_to_be_sent", "need_to_be_sent"]).unwrap(), OrderStatus::PartiallyFulfilled);
    assert_eq!(with(["returned", "returned_paid", "cancelled"]).unwrap(), OrderStatus::Refunded);
    assert_eq!(with(["returned", "sent", "sent"]).unwrap(), OrderStatus::PartiallyRefunded);
    assert_eq!(with(["open", "need_to_be_sent", "need_to_be_sent"]).unwrap(), OrderStatus::Pending);
    let err = with(["lost", "sent", "sent"]).unwrap_err();
    assert_eq!(err.path, "data.order_units[0].status");
}

#[test]
fn every_channels_benchmark_sample_is_an_order_it_normalizes() {
    let samples = manifold_normalize::samples::orders();
    assert_eq!(samples.len(), Channel::ALL.len(), "one sample per channel");
    for (channel, bytes) in samples {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let order = normalize_order(channel, &doc, &ctx(&account(channel)))
            .unwrap_or_else(|e| panic!("{channel}'s sample does not normalize: {e}"));
        assert!(!order.lines.is_empty(), "{channel}");
    }
}

#[test]
fn kaufland_returned_units_are_returns_of_their_lines_one_unit_each() {
    let acct = account(Channel::Kaufland);
    let mut doc = fixture!("kaufland/order-two-units-one-offer.json");
    doc["data"]["order_units"][0]["status"] = json!("returned");
    doc["data"]["order_units"][1]["status"] = json!("returned_paid");
    let records = manifold_normalize::normalize_all(Channel::Kaufland, DocKind::Order, &doc, &ctx(&acct)).unwrap();
    let Some(manifold_domain::Record::Order(order)) = records.first() else { panic!("the order comes first") };
    let returns: Vec<&manifold_domain::Return> = records
        .iter()
        .filter_map(|r| if let manifold_domain::Record::Return(r) = r { Some(r) } else { None })
        .collect();
    assert_eq!(returns.len(), 2, "one return per returned unit");
    let units: Vec<String> =
        doc["data"]["order_units"].as_array().unwrap().iter().map(|u| u["id_order_unit"].to_string()).collect();
    for (ret, (unit, state)) in returns
        .iter()
        .zip([(&units[0], manifold_domain::ReturnState::Received), (&units[1], manifold_domain::ReturnState::Refunded)])
    {
        assert_eq!(ret.id, format!("kaufland:{}:unit-{unit}", acct.account));
        assert_eq!(ret.order_id, order.id);
        assert_eq!(ret.state, state);
        assert_eq!(ret.lines.len(), 1);
        assert_eq!(ret.lines[0].quantity, 1);
        assert!(order.lines.iter().any(|l| l.line_id == ret.lines[0].line_id), "names a line of its order");
    }
    assert_eq!(
        normalize_order(Channel::Kaufland, &doc, &ctx(&acct)).unwrap().id,
        order.id,
        "the order alone is still what normalize_order gives"
    );
}
