//! Refunds, shipments, inventory levels and products.

use manifold_domain::{Channel, Record};
use manifold_normalize::{DocKind, normalize, normalize_all};
use serde_json::json;

use crate::support::{account, at, ctx, json, money};

macro_rules! fixture {
    ($path:literal) => {
        json(include_str!(concat!("../../fixtures/", $path)))
    };
}

#[test]
fn shopify_refund_sums_successful_refund_transactions() {
    let acct = account(Channel::Shopify);
    let doc = fixture!("shopify/refund-929361472-rest-2026-07-create.json");
    let Record::Refund(r) = normalize(Channel::Shopify, DocKind::Refund, &doc, &ctx(&acct)).unwrap() else { panic!() };
    assert_eq!(r.id, "929361472");
    assert_eq!(r.order_id.as_str(), "shopify:shop-eu:450789469");
    assert_eq!(r.amount, money("41.94", "USD"));
    assert_eq!(r.lines.len(), 1);
    assert_eq!(r.lines[0].line_id, "518995019");
    assert_eq!(r.lines[0].sku.as_ref().unwrap().as_str(), "IPOD2008RED");
    assert!(!r.lines[0].restock, "no_restock");
}

#[test]
fn shopify_fulfillment_becomes_a_shipment() {
    let acct = account(Channel::Shopify);
    let doc = fixture!("shopify/fulfillment-1069019877-rest-2026-07-create.json");
    let Record::Shipment(s) = normalize(Channel::Shopify, DocKind::Shipment, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(s.id, "1069019877");
    assert_eq!(s.order_id.as_str(), "shopify:shop-eu:450789469");
    assert_eq!(s.tracking_number.as_deref(), Some("MS1562678"));
    assert_eq!(s.lines[0].sku.as_ref().unwrap().as_str(), "crafty_shoes_red");
    assert_eq!(s.lines[0].quantity, 1);
}

#[test]
fn shopify_inventory_level_is_keyed_by_inventory_item() {
    let acct = account(Channel::Shopify);
    let doc = fixture!("shopify/inventory-level-rest-2026-07-set.json");
    let Record::InventoryLevel(l) = normalize(Channel::Shopify, DocKind::InventoryLevel, &doc, &ctx(&acct)).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.channel_item_id.as_deref(), Some("808950810"));
    assert_eq!(l.location_id.as_deref(), Some("655441491"));
    assert_eq!(l.available, 42);
    assert_eq!(l.updated_at, at("2025-04-02T16:30:13Z"));
    assert_eq!(l.source_version, l.updated_at.timestamp_millis());
}

#[test]
fn shopify_product_variants_map_skus_and_prices_need_the_configured_currency() {
    let mut acct = account(Channel::Shopify);
    let doc = fixture!("shopify/product-632910392-rest-2026-07-get.json");
    let Record::Product(p) = normalize(Channel::Shopify, DocKind::Product, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(p.id, "shopify:shop-eu:632910392");
    assert_eq!(p.variants.len(), 4);
    assert_eq!(p.variants[0].sku.as_ref().unwrap().as_str(), "IPOD-NANO-PINK");
    assert_eq!(p.variants[0].inventory_item_id.as_deref(), Some("808950810"));
    assert_eq!(p.variants[0].price, None, "no shop currency configured");

    acct.settings.insert("currency".into(), "USD".into());
    let Record::Product(p) = normalize(Channel::Shopify, DocKind::Product, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(p.variants[0].price, Some(money("199.00", "USD")));
}

#[test]
fn woocommerce_refund_combines_with_its_order() {
    let acct = account(Channel::Woocommerce);
    let doc = json!({
        "order": fixture!("woocommerce/orders-rest-v3-list.json")[1],
        "refund": fixture!("woocommerce/order-refund-rest-v3-create.json"),
    });
    let Record::Refund(r) = normalize(Channel::Woocommerce, DocKind::Refund, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(r.id, "726");
    assert_eq!(r.order_id.as_str(), "woocommerce:woo-main:723");
    assert_eq!(r.amount, money("10.00", "USD"));
    assert_eq!(r.created_at, at("2017-03-21T20:07:11Z"));
}

#[test]
fn woocommerce_refunds_with_lines_are_returns_of_the_order_lines_they_name() {
    let acc = account(Channel::Woocommerce);
    let order = fixture!("woocommerce/order-727-rest-v3-retrieve.json");
    // As `GET orders/727/refunds` lists them: one refund of money only, one of a line named by its
    // product and variation, one naming the order line by `refunded_item_id`.
    let refund = |id: u64, lines: serde_json::Value| {
        let mut r = fixture!("woocommerce/order-refund-rest-v3-create.json");
        r["id"] = json!(id);
        r["reason"] = json!("too small");
        r["line_items"] = lines;
        r
    };
    let doc = json!({ "order": order, "refunds": [
        refund(801, json!([])),
        refund(802, json!([{ "id": 9001, "product_id": 22, "variation_id": 23, "sku": "Bar3", "quantity": -1 }])),
        refund(803, json!([{ "id": 9002, "product_id": 93, "variation_id": 0, "sku": "", "quantity": -2,
                             "refunded_item_id": 315 }])),
    ]});
    let records = normalize_all(Channel::Woocommerce, DocKind::Return, &doc, &ctx(&acc)).unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| match r {
            Record::Return(_) => "return",
            Record::Refund(_) => "refund",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["refund", "return", "refund", "return", "refund"], "money-only refunds are no return");
    let Record::Return(by_product) = &records[1] else { unreachable!() };
    assert_eq!(by_product.id, "woocommerce:woo-main:refund-802");
    assert_eq!(by_product.order_id.as_str(), "woocommerce:woo-main:727");
    assert_eq!(by_product.state, manifold_domain::ReturnState::Refunded);
    assert_eq!(by_product.reason.as_deref(), Some("too small"));
    assert_eq!((by_product.lines[0].line_id.as_str(), by_product.lines[0].quantity), ("316", 1));
    let Record::Return(by_item) = &records[3] else { unreachable!() };
    assert_eq!((by_item.lines[0].line_id.as_str(), by_item.lines[0].quantity), ("315", 2));
    let Record::Refund(refund_line) = &records[2] else { unreachable!() };
    assert_eq!(refund_line.lines[0].line_id, "316", "a Refund names the order line too, not its own item");

    let stray = json!({ "order": doc["order"], "refunds": [
        refund(804, json!([{ "id": 9003, "product_id": 999, "variation_id": 0, "quantity": -1 }])),
    ]});
    let err = normalize_all(Channel::Woocommerce, DocKind::Return, &stray, &ctx(&acc)).unwrap_err();
    assert!(err.to_string().contains("names no line of its order"), "{err}");
}

#[test]
fn woocommerce_product_is_one_variant() {
    let acct = account(Channel::Woocommerce);
    let doc = fixture!("woocommerce/product-rest-v3-retrieve.json");
    let Record::Product(p) = normalize(Channel::Woocommerce, DocKind::Product, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(p.channel_product_id, "794");
    assert_eq!(p.title, "Premium Quality");
    assert_eq!(p.variants[0].sku, None);
    assert_eq!(p.variants[0].inventory_quantity, None, "stock not managed");
}

#[test]
fn bigcommerce_shipments_list_gives_every_shipment() {
    let acct = account(Channel::Bigcommerce);
    let doc = fixture!("bigcommerce/v2-order-shipments-list.json");
    let all = normalize_all(Channel::Bigcommerce, DocKind::Shipment, &doc, &ctx(&acct)).unwrap();
    assert_eq!(all.len(), 2);
    let Record::Shipment(s) = &all[0] else { panic!() };
    assert_eq!(s.order_id.as_str(), "bigcommerce:store-abc123:225");
    assert_eq!(s.tracking_number.as_deref(), Some("EJ958083578US"));
    assert_eq!(s.carrier.as_deref(), Some("USPS"));
    assert_eq!(s.lines[0].line_id.as_deref(), Some("188"));
    assert_eq!(s.shipped_at, at("2019-03-11T17:22:08Z"));
    let Record::Shipment(last) = normalize(Channel::Bigcommerce, DocKind::Shipment, &doc, &ctx(&acct)).unwrap() else {
        panic!()
    };
    assert_eq!(last.id, "7");

    // `GET /v2/orders/{order_id}/shipments/{shipment_id}` (what a shipment notification fetches) answers
    // one element of that list.
    let Record::Shipment(one) = normalize(Channel::Bigcommerce, DocKind::Shipment, &doc[0], &ctx(&acct)).unwrap()
    else {
        panic!()
    };
    assert_eq!(&one, s);
}

#[test]
fn bigcommerce_absolute_inventory_webhooks_are_levels() {
    let acct = account(Channel::Bigcommerce);
    let doc = fixture!("bigcommerce/webhook-store-sku-inventory-updated.json");
    let Record::InventoryLevel(l) =
        normalize(Channel::Bigcommerce, DocKind::InventoryLevel, &doc, &ctx(&acct)).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.channel_item_id.as_deref(), Some("206:509"));
    assert_eq!(l.available, 5);
    assert_eq!(l.source_version, 1_561_480_673_000);
    let doc = fixture!("bigcommerce/webhook-store-product-inventory-updated.json");
    let Record::InventoryLevel(l) =
        normalize(Channel::Bigcommerce, DocKind::InventoryLevel, &doc, &ctx(&acct)).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.channel_item_id.as_deref(), Some("167"));
}

#[test]
fn amazon_mfn_quantity_change_is_a_level_for_the_seller_sku() {
    let acct = account(Channel::Amazon);
    let doc = fixture!("amazon/listings-item-mfn-quantity-change-notification.json");
    let Record::InventoryLevel(l) = normalize(Channel::Amazon, DocKind::InventoryLevel, &doc, &ctx(&acct)).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.channel_sku.as_ref().unwrap().as_str(), "NLS-SHOES-03");
    assert_eq!(l.sku.as_ref().unwrap().as_str(), "NLS-SHOES-03", "unmapped keeps the channel SKU");
    assert_eq!(l.available, 99);
    assert_eq!(l.updated_at, at("2021-02-03T18:59:30.194Z"));
}

#[test]
fn etsy_receipt_shipments_latest_first_via_normalize() {
    let acct = account(Channel::Etsy);
    let doc = fixture!("etsy/receipt-written-from-v3-schema.json");
    let all = normalize_all(Channel::Etsy, DocKind::Shipment, &doc, &ctx(&acct)).unwrap();
    assert_eq!(all.len(), 2);
    let Record::Shipment(s) = normalize(Channel::Etsy, DocKind::Shipment, &doc, &ctx(&acct)).unwrap() else { panic!() };
    assert_eq!(s.id, "9002");
    assert_eq!(s.carrier.as_deref(), Some("UPS"));
    assert_eq!(s.order_id.as_str(), "etsy:shop-12345678:1234567890");
    assert_eq!(s.lines.iter().map(|l| l.quantity).sum::<u32>(), 3);
}

#[test]
fn kinds_a_channel_never_sends_are_errors() {
    let acct = account(Channel::Zalando);
    let err = normalize(Channel::Zalando, DocKind::Refund, &json!({}), &ctx(&acct)).unwrap_err();
    assert!(err.message.contains("refund"), "{err}");
}

#[test]
fn etsy_receipt_refunds_are_refunds_after_the_order_without_lines() {
    let acc = account(Channel::Etsy);
    let mut doc = fixture!("etsy/receipt-written-from-v3-schema.json");
    // ShopRefund as Open API v3 describes it: Money, epoch seconds, reason, note, status; no id.
    doc["refunds"] = json!([
        { "amount": { "amount": 1000, "divisor": 100, "currency_code": "USD" }, "created_timestamp": 1_717_700_000,
          "reason": "Damaged in transit", "note_from_issuer": null, "status": "Refunded" },
        { "amount": { "amount": 250, "divisor": 100, "currency_code": "USD" }, "created_timestamp": 1_717_600_000,
          "reason": null, "note_from_issuer": "shipping refund", "status": "Refunded" },
    ]);
    let records = normalize_all(Channel::Etsy, DocKind::Order, &doc, &ctx(&acc)).unwrap();
    let Some(Record::Order(order)) = records.first() else { panic!("the order comes first: {records:?}") };
    let refunds: Vec<&manifold_domain::Refund> =
        records.iter().filter_map(|r| if let Record::Refund(r) = r { Some(r) } else { None }).collect();
    assert_eq!(refunds.len(), 2);
    assert_eq!(refunds[0].id, "1234567890-1717600000", "oldest first, named by receipt and time");
    assert_eq!(refunds[0].amount, money("2.50", "USD"));
    assert_eq!(refunds[1].amount, money("10.00", "USD"));
    assert!(refunds.iter().all(|r| r.order_id == order.id && r.lines.is_empty()), "{refunds:?}");
    assert_eq!(refunds[1].created_at, at("2024-06-06T18:53:20Z"));

    doc["refunds"][0]["amount"]["currency_code"] = json!("EUR");
    let err = normalize_all(Channel::Etsy, DocKind::Order, &doc, &ctx(&acc)).unwrap_err();
    assert_eq!(err.path, "refunds[0].amount.currency_code", "{err}");
}

#[test]
fn bigcommerce_v3_refunds_are_refunds_of_the_products_they_name() {
    let acct = account(Channel::Bigcommerce);
    // What `fetch_returns` builds: the order's three reads and the `data` of
    // GET /v3/orders/{id}/payment_actions/refunds (fields as the Payment Actions API documents them).
    let mut doc = json!({
        "order": fixture!("bigcommerce/v2-order-218-get.json"),
        "products": fixture!("bigcommerce/v2-order-products-list.json"),
        "shipping_addresses": fixture!("bigcommerce/v2-order-shipping-addresses-list.json"),
        "refunds": [{
            "id": 3, "order_id": 218, "user_id": 0, "created": "2026-11-28T10:00:00+00:00",
            "reason": "arrived broken", "total_amount": 21.5, "total_tax": 0, "uses_merchant_override_values": false,
            "items": [
                { "item_type": "PRODUCT", "item_id": 66, "quantity": 1, "requested_amount": "16.50" },
                { "item_type": "SHIPPING", "item_id": 218, "quantity": 1, "requested_amount": "5.00" }
            ],
            "payments": [{ "id": 1, "provider_id": "storecredit", "amount": 21.5, "offline": false,
                           "is_declined": false, "declined_message": "" }]
        }]
    });
    let records = normalize_all(Channel::Bigcommerce, DocKind::Return, &doc, &ctx(&acct)).unwrap();
    let [Record::Refund(refund)] = records.as_slice() else { panic!("one refund: {records:?}") };
    assert_eq!(refund.id, "3");
    assert_eq!(refund.order_id.as_str(), "bigcommerce:store-abc123:218");
    assert_eq!(refund.amount, money("21.50", "USD"));
    assert_eq!(refund.created_at, at("2026-11-28T10:00:00Z"));
    assert_eq!(refund.lines.len(), 1, "shipping is money only: {:?}", refund.lines);
    assert_eq!((refund.lines[0].line_id.as_str(), refund.lines[0].quantity), ("66", 1));
    assert_eq!(refund.lines[0].sku.as_ref().map(manifold_domain::Sku::as_str), Some("ABS"));
    assert!(!refund.lines[0].restock, "a refund alone says nothing of goods back");

    doc["refunds"][0]["items"][0]["item_id"] = json!(999);
    let err = normalize_all(Channel::Bigcommerce, DocKind::Return, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "refunds[0].items[0].item_id", "{err}");
}

#[test]
fn shopify_returns_are_read_from_the_graphql_return_with_rest_line_ids() {
    let acct = account(Channel::Shopify);
    // `returns/*` bodies differ by topic (a decline has no order): the return's global id is read back.
    let decline = json!({ "id": 37_674_025_238_u64, "admin_graphql_api_id": "gid://shopify/Return/37674025238",
                          "status": "declined", "decline": { "reason": "other", "note": "Seal broken" } });
    let got = manifold_normalize::classify(Channel::Shopify, Some("returns/decline"), &decline).unwrap();
    assert!(
        matches!(&got, manifold_normalize::Inbound::Thin { kind: DocKind::Return, resource_id, .. }
            if resource_id == "gid://shopify/Return/37674025238"),
        "{got:?}"
    );
    // GraphQL `return(id:)` as the connector queries it.
    let mut doc = json!({ "return": {
        "id": "gid://shopify/Return/945000954", "name": "#1001-R1", "status": "CLOSED",
        "order": { "id": "gid://shopify/Order/450789469" },
        "returnLineItems": { "nodes": [
            { "id": "gid://shopify/ReturnLineItem/677614678", "quantity": 1, "returnReason": "SIZE_TOO_SMALL",
              "fulfillmentLineItem": { "lineItem": { "id": "gid://shopify/LineItem/466157049", "sku": "IPOD2008GREEN" } } }
        ] }
    }});
    let records = normalize_all(Channel::Shopify, DocKind::Return, &doc, &ctx(&acct)).unwrap();
    let [Record::Return(ret)] = records.as_slice() else { panic!("one return: {records:?}") };
    assert_eq!(ret.id, format!("shopify:{}:945000954", acct.account));
    assert_eq!(ret.order_id.as_str(), format!("shopify:{}:450789469", acct.account));
    assert_eq!(ret.state, manifold_domain::ReturnState::Received, "closed: the items are back");
    assert_eq!((ret.lines[0].line_id.as_str(), ret.lines[0].quantity), ("466157049", 1));
    assert_eq!(ret.lines[0].reason.as_deref(), Some("size_too_small"));
    for (status, state) in [
        ("REQUESTED", manifold_domain::ReturnState::Requested),
        ("OPEN", manifold_domain::ReturnState::Approved),
        ("DECLINED", manifold_domain::ReturnState::Rejected),
        ("CANCELED", manifold_domain::ReturnState::Rejected),
    ] {
        doc["return"]["status"] = json!(status);
        let Record::Return(r) = normalize(Channel::Shopify, DocKind::Return, &doc, &ctx(&acct)).unwrap() else {
            panic!()
        };
        assert_eq!(r.state, state, "{status}");
    }
    doc["return"]["returnLineItems"]["nodes"][0]["fulfillmentLineItem"]["lineItem"]["id"] = json!("LineItem-1");
    let err = normalize_all(Channel::Shopify, DocKind::Return, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "return.returnLineItems.nodes[0].fulfillmentLineItem.lineItem.id", "{err}");
}

#[test]
fn tiktok_returns_are_returned_units_of_their_canonical_lines() {
    let acct = account(Channel::Tiktok);
    let order = fixture!("tiktok/order-detail-202309-written-from-docs.json");
    // Two units of the tee (one canonical line, named by the first unit) and a sticker.
    let ret = |id: &str, kind: &str, status: &str, items: serde_json::Value| {
        json!({ "return_id": id, "order_id": order["id"], "return_type": kind, "return_status": status,
                "return_reason": "ecom_order_delivered_refund_and_return_reason_damaged",
                "refund_amount": { "currency": "GBP", "refund_total": "12.99" },
                "create_time": 1_724_558_837, "update_time": 1_724_833_101, "return_line_items": items })
    };
    let doc = json!({ "order": order, "returns": [
        ret("4035463945335048707", "RETURN_AND_REFUND", "RETURN_OR_REFUND_REQUEST_SUCCESS", json!([
            { "order_line_item_id": "577086512123755124", "sku_id": "1729582718312380123", "seller_sku": "SHOP-TEE-BLK-M" },
            { "sku_id": "1729582718312380999", "seller_sku": "STICKERS-01" },
        ])),
        ret("4035463945335048708", "REFUND", "RETURN_OR_REFUND_REQUEST_COMPLETE", json!([
            { "order_line_item_id": "577086512123755123", "sku_id": "1729582718312380123" },
        ])),
        ret("4035463945335048709", "REFUND", "RETURN_OR_REFUND_REQUEST_PENDING", json!([])),
    ]});
    let records = normalize_all(Channel::Tiktok, DocKind::Return, &doc, &ctx(&acct)).unwrap();
    let [Record::Return(back), Record::Refund(money)] = records.as_slice() else {
        panic!("a return and a completed refund: {records:?}")
    };
    assert_eq!(back.state, manifold_domain::ReturnState::Received);
    let lines: Vec<(&str, u32)> = back.lines.iter().map(|l| (l.line_id.as_str(), l.quantity)).collect();
    assert_eq!(lines, [("577086512123755123", 1), ("577086512123755125", 1)], "units on their canonical lines");
    assert_eq!(money.amount, crate::support::money("12.99", "GBP"));
    assert!(money.lines.is_empty(), "money only");

    let mut stray = doc.clone();
    stray["returns"][0]["return_line_items"][0]["order_line_item_id"] = json!("1");
    let err = normalize_all(Channel::Tiktok, DocKind::Return, &stray, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "returns[0].return_line_items[0]", "{err}");
}

#[test]
fn amazon_returns_report_rows_are_returns_per_rma_back_only_once_delivered() {
    let acct = account(Channel::Amazon);
    let order = fixture!("amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json");
    let items = fixture!("amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json");
    // Rows of GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE, keyed by its column names.
    let row = |rma: &str, status: &str, delivered: &str, refunded: &str| {
        json!({ "Order ID": "902-1845936-5435065", "Return request date": "2026-11-20T10:00:00+00:00",
                "Return request status": status, "Amazon RMA ID": rma, "Currency code": "USD",
                "Merchant SKU": "NABetaASINB00551Q3CS", "Return quantity": "1", "Return Reason": "CR-DEFECTIVE",
                "Return delivery date": delivered, "Refunded Amount": refunded })
    };
    let doc = |rows: serde_json::Value| json!({ "order": order["payload"], "order_items": items["payload"]["OrderItems"], "returns": rows });
    let read = |rows| normalize_all(Channel::Amazon, DocKind::Return, &doc(rows), &ctx(&acct)).unwrap();
    let records = read(json!([row("R1", "Approved", "2026-11-25T09:00:00+00:00", "11.01")]));
    let [Record::Refund(money), Record::Return(back)] = records.as_slice() else { panic!("{records:?}") };
    assert_eq!(back.state, manifold_domain::ReturnState::Refunded, "delivered back and refunded");
    assert_eq!((back.lines[0].line_id.as_str(), back.lines[0].quantity), ("05015851154158", 1));
    assert_eq!(back.id, format!("amazon:{}:R1", acct.account));
    assert_eq!(money.amount, crate::support::money("11.01", "USD"));
    // A refund without the goods delivered back is money only: the return is not received.
    let records = read(json!([row("R2", "Approved", "", "11.01")]));
    let [Record::Refund(_), Record::Return(returnless)] = records.as_slice() else { panic!("{records:?}") };
    assert_eq!(returnless.state, manifold_domain::ReturnState::Approved);
    for (status, state) in
        [("Pending", manifold_domain::ReturnState::Requested), ("Rejected", manifold_domain::ReturnState::Rejected)]
    {
        let records = read(json!([row("R3", status, "", "")]));
        let [Record::Return(r)] = records.as_slice() else { panic!("{records:?}") };
        assert_eq!(r.state, state, "{status}");
    }
    let mut stray = row("R4", "Approved", "", "");
    stray["Merchant SKU"] = json!("NOT-SOLD");
    let err = normalize_all(Channel::Amazon, DocKind::Return, &doc(json!([stray])), &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "returns[0].Merchant SKU", "{err}");
    let gone = json!({ "order": null, "order_id": "902-0000000-0000000", "returns": [row("R5", "Approved", "", "")] });
    let err = normalize_all(Channel::Amazon, DocKind::Return, &gone, &ctx(&acct)).unwrap_err();
    assert!(err.to_string().contains("902-0000000-0000000"), "{err}");
}

#[test]
fn ebay_return_summaries_are_returns_back_once_delivered_and_never_when_kept() {
    use manifold_domain::ReturnState;
    let acct = account(Channel::Ebay);
    let order = fixture!("ebay/getorder-written-from-docs.json");
    let search = fixture!("ebay/return-search-written-from-docs.json");
    let summary = |state: &str, refunded: Option<&str>| {
        let mut s = search["members"][0].clone();
        s["state"] = json!(state);
        if let Some(v) = refunded {
            s["sellerTotalRefund"]["actualRefundAmount"] =
                json!({ "value": v.parse::<f64>().unwrap(), "currency": "EUR" });
        }
        s
    };
    let read = |returns: serde_json::Value, kept: serde_json::Value| {
        let doc = json!({ "order": order, "order_id": "12-03456-78901", "returns": returns, "kept": kept });
        normalize_all(Channel::Ebay, DocKind::Return, &doc, &ctx(&acct))
    };
    let records = read(json!([search["members"][0]]), json!([])).unwrap();
    let [Record::Return(back)] = records.as_slice() else { panic!("{records:?}") };
    assert_eq!(back.state, ReturnState::Received, "ITEM_DELIVERED: the goods are back");
    assert_eq!(back.id, format!("ebay:{}:5000012345", acct.account));
    assert_eq!(back.order_id.as_str(), "ebay:ebay-de:12-03456-78901");
    assert_eq!((back.lines[0].line_id.as_str(), back.lines[0].quantity), ("10012345678901", 1));
    assert_eq!(back.lines[0].sku.as_ref().unwrap().as_str(), "IPOD2008PINK");
    assert_eq!(back.reason.as_deref(), Some("NOT_AS_DESCRIBED"));
    assert_eq!(back.created_at, at("2026-11-20T10:00:00Z"));

    // Closed with the money back: refunded (goods back), and a Refund of the order beside it.
    let records = read(json!([summary("CLOSED", Some("14.99"))]), json!([])).unwrap();
    let [Record::Refund(money), Record::Return(closed)] = records.as_slice() else { panic!("{records:?}") };
    assert_eq!(closed.state, ReturnState::Refunded);
    assert_eq!(money.amount, crate::support::money("14.99", "EUR"));
    // The buyer keeps the goods: money only, nothing comes back, and once seen kept a later CLOSED
    // summary (which no longer says so) stays kept.
    for (state, kept) in [("ITEM_KEPT", json!([])), ("CLOSED", json!(["5000012345"]))] {
        let records = read(json!([summary(state, Some("5.00"))]), kept).unwrap();
        let [Record::Refund(_), Record::Return(r)] = records.as_slice() else { panic!("{records:?}") };
        assert_eq!(r.state, ReturnState::Rejected, "{state}");
        assert!(!r.state.goods_back());
    }
    for (state, expected) in [
        ("CLOSED", ReturnState::Rejected),
        ("ITEM_SHIPPED", ReturnState::Approved),
        ("ITEM_READY_TO_SHIP", ReturnState::Approved),
        ("AUTO_REFUND_INITIATED", ReturnState::Approved),
        ("INITIAL", ReturnState::Requested),
    ] {
        let records = read(json!([summary(state, None)]), json!([])).unwrap();
        let [Record::Return(r)] = records.as_slice() else { panic!("{records:?}") };
        assert_eq!(r.state, expected, "{state} without a refund");
    }

    // What cannot be placed is refused with its path: ingest quarantines it.
    let mut stray = summary("INITIAL", None);
    stray["creationInfo"]["item"]["itemId"] = json!("999");
    let err = read(json!([stray]), json!([])).unwrap_err();
    assert_eq!(err.path, "returns[0].creationInfo.item", "{err}");
    let orphan = json!({ "order": null, "order_id": "", "returns": [summary("INITIAL", None)], "kept": [] });
    let err = normalize_all(Channel::Ebay, DocKind::Return, &orphan, &ctx(&acct)).unwrap_err();
    assert!(err.to_string().contains("orderId"), "{err}");
    let gone =
        json!({ "order": null, "order_id": "12-00000-00000", "returns": [summary("INITIAL", None)], "kept": [] });
    let err = normalize_all(Channel::Ebay, DocKind::Return, &gone, &ctx(&acct)).unwrap_err();
    assert!(err.to_string().contains("12-00000-00000"), "{err}");
}
