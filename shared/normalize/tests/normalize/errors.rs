//! Errors name the offending field.

use manifold_domain::Channel;
use manifold_normalize::normalize_order;
use serde_json::json;

use crate::support::{account, ctx, json};

macro_rules! fixture {
    ($path:literal) => {
        json(include_str!(concat!("../../fixtures/", $path)))
    };
}

#[test]
fn a_string_quantity_names_its_line() {
    let acct = account(Channel::Woocommerce);
    let mut doc = fixture!("woocommerce/order-727-rest-v3-retrieve.json");
    doc["line_items"][0]["quantity"] = json!("2");
    let err = normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "line_items[0].quantity");
    assert!(err.message.contains("integer") && err.message.contains("string"), "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn paths_follow_the_wrapper_and_the_combined_input() {
    let acct = account(Channel::Shopify);
    let mut doc = fixture!("shopify/order-450789469-rest-2026-07-get.json");
    doc["order"]["line_items"][2]["price"] = json!(true);
    let err = normalize_order(Channel::Shopify, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "order.line_items[2].price");

    let acct = account(Channel::Bigcommerce);
    let doc = json!({
        "order": fixture!("bigcommerce/v2-order-218-get.json"),
        "products": [{"id": 1, "sku": "A", "name": "a", "quantity": 1, "price_ex_tax": "abc"}],
    });
    let err = normalize_order(Channel::Bigcommerce, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "products[0].price_ex_tax");
}

#[test]
fn missing_currency_bad_country_and_unknown_status_are_named() {
    let acct = account(Channel::Woocommerce);
    let base = fixture!("woocommerce/order-727-rest-v3-retrieve.json");

    let mut doc = base.clone();
    doc.as_object_mut().unwrap().remove("currency");
    assert_eq!(normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap_err().path, "currency");

    let mut doc = base.clone();
    doc["billing"]["country"] = json!("United States");
    assert_eq!(normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap_err().path, "billing.country");

    let mut doc = base;
    doc["status"] = json!("wc-custom-thing");
    let err = normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "status");
    assert!(err.message.contains("wc-custom-thing"), "{err}");
}

#[test]
fn mixed_currencies_are_refused() {
    let acct = account(Channel::Ebay);
    let mut doc = fixture!("ebay/getorder-written-from-docs.json");
    doc["lineItems"][0]["lineItemCost"]["currency"] = json!("USD");
    let err = normalize_order(Channel::Ebay, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "lineItems[0].lineItemCost.currency");
}
