//! Each channel's order document as ingest receives it, from the crate's real (or documented-shape)
//! fixtures: what the normalization benchmarks measure (the criterion bench and `manifold bench`).
//! Amazon and BigCommerce: the order with the parts their connectors fetch beside it.

use manifold_domain::Channel;
use serde_json::{Value, json};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// (channel, the order document's bytes), one per channel with an order fixture.
pub fn orders() -> Vec<(Channel, Vec<u8>)> {
    let shopify = fixture(include_str!("../fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json"));
    let amazon_order = fixture(include_str!("../fixtures/amazon/orders-v0-getOrder-response-example.json"));
    let amazon_items = fixture(include_str!("../fixtures/amazon/orders-v0-getOrderItems-response-example.json"));
    let docs = [
        (Channel::Shopify, shopify["order"].clone()),
        (Channel::Woocommerce, fixture(include_str!("../fixtures/woocommerce/order-727-rest-v3-retrieve.json"))),
        (
            Channel::Bigcommerce,
            json!({
                "order": fixture(include_str!("../fixtures/bigcommerce/v2-order-218-get.json")),
                "products": fixture(include_str!("../fixtures/bigcommerce/v2-order-products-list.json")),
                "shipping_addresses": fixture(include_str!("../fixtures/bigcommerce/v2-order-shipping-addresses-list.json")),
            }),
        ),
        (
            Channel::Amazon,
            json!({"order": amazon_order["payload"], "order_items": amazon_items["payload"]["OrderItems"]}),
        ),
        (Channel::Etsy, fixture(include_str!("../fixtures/etsy/receipt-written-from-v3-schema.json"))),
        (Channel::Tiktok, fixture(include_str!("../fixtures/tiktok/order-detail-202309-written-from-docs.json"))),
        (Channel::Zalando, fixture(include_str!("../fixtures/zalando/order-jsonapi-written-from-docs.json"))),
        (Channel::Ebay, fixture(include_str!("../fixtures/ebay/getorder-written-from-docs.json"))),
        (Channel::Otto, fixture(include_str!("../fixtures/otto/order-processable-written-from-docs.json"))),
    ];
    docs.into_iter().map(|(c, d)| (c, serde_json::to_vec(&d).unwrap_or_default())).collect()
}
