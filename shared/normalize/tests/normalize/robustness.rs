//! No input panics a normalizer or the classifier.
//!
//! A panic in a normalizer kills the whole Lambda batch, and the message comes back until it dead-letters
//! without ever reaching the quarantine, so every channel's entry points (each [`DocKind`] through
//! `normalize` / `normalize_all` / `normalize_order`, `classify` with and without topics, `body_event_id`)
//! must answer anything with a value or an error. One module of targets per channel, each fed:
//!
//! * mutations of that channel's published fixtures (and the combined documents its connector builds):
//!   fields removed, or replaced by arbitrary JSON or by edge values (amounts past `Decimal`'s range,
//!   dates past chrono's, huge quantities);
//! * arbitrary JSON built from the keys the normalizers read;
//! * arbitrary bytes: random ones and the fixtures' text with bytes flipped, inserted or cut, parsed as a
//!   body would be.
//!
//! Case counts stay modest so the set runs in seconds in CI: `PROPTEST_CASES` (default 128 per target)
//! raises them for a longer local run. Inputs that once panicked are pinned at the end as plain tests.

use std::sync::OnceLock;

use manifold_domain::{Channel, config::AccountConfig};
use manifold_normalize::{DocKind, Inbound, body_event_id, classify, normalize, normalize_all, normalize_order};
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Map, Value, json};

use crate::support::{account, ctx};

const KINDS: [DocKind; 5] =
    [DocKind::Order, DocKind::Refund, DocKind::Shipment, DocKind::InventoryLevel, DocKind::Product];

/// Cases per target unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 128;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    // No regression files written into the source tree: inputs that failed once are pinned below as tests.
    TestRunner::new(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() })
}

fn accounts() -> &'static [AccountConfig] {
    static ACCOUNTS: OnceLock<Vec<AccountConfig>> = OnceLock::new();
    ACCOUNTS.get_or_init(|| Channel::ALL.iter().map(|c| account(*c)).collect())
}

fn account_of(channel: Channel) -> &'static AccountConfig {
    accounts().iter().find(|a| a.channel == channel).expect("an account per channel")
}

/// Everything the ingest path may call on a body or a fetched document; any `Err` is fine.
fn exercise(channel: Channel, doc: &Value, topic: Option<&str>) {
    let acct = account_of(channel);
    let ctx = ctx(acct);
    for kind in KINDS {
        let _ = normalize_all(channel, kind, doc, &ctx);
        let _ = normalize(channel, kind, doc, &ctx);
    }
    let _ = normalize_order(channel, doc, &ctx);
    let _ = body_event_id(channel, doc);
    for topic in [None, topic] {
        // A full notification is normalized next, exactly as ingest does.
        if let Ok(Inbound::Full { kind, doc }) = classify(channel, topic, doc) {
            let _ = normalize_all(channel, kind, &doc, &ctx);
        }
    }
}

// ---------------------------------------------------------------- inputs

macro_rules! fixtures {
    ($($channel:ident: [$($path:literal),* $(,)?]),* $(,)?) => {
        /// Every fixture: (channel, file name, text).
        const FIXTURES: &[(Channel, &str, &str)] = &[
            $($((Channel::$channel, $path, include_str!(concat!("../../fixtures/", $path))),)*)*
        ];
    };
}

fixtures! {
    Amazon: [
        "amazon/listings-item-mfn-quantity-change-notification.json",
        "amazon/listings-item-status-change-notification.json",
        "amazon/order-change-notification.json",
        "amazon/orders-2026-01-01-getOrder-response-example.json",
        "amazon/orders-v0-getOrder-response-example.json",
        "amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json",
        "amazon/orders-v0-getOrderItems-response-example.json",
        "amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json",
    ],
    Bigcommerce: [
        "bigcommerce/v2-order-218-get.json",
        "bigcommerce/v2-order-products-list.json",
        "bigcommerce/v2-order-shipments-list.json",
        "bigcommerce/v2-order-shipping-addresses-list.json",
        "bigcommerce/webhook-store-order-created.json",
        "bigcommerce/webhook-store-order-refund-created.json",
        "bigcommerce/webhook-store-order-statusUpdated.json",
        "bigcommerce/webhook-store-order-updated.json",
        "bigcommerce/webhook-store-product-inventory-order-updated.json",
        "bigcommerce/webhook-store-product-inventory-updated.json",
        "bigcommerce/webhook-store-product-updated.json",
        "bigcommerce/webhook-store-shipment-created.json",
        "bigcommerce/webhook-store-sku-inventory-updated.json",
    ],
    Ebay: ["ebay/getorder-written-from-docs.json", "ebay/notification-order-written-from-docs.json"],
    Etsy: [
        "etsy/receipt-written-from-v3-schema.json",
        "etsy/webhook-order-paid-api-evangelist-transcription.json",
        "etsy/webhook-order-paid-reported-in-etsy-open-api-discussion-1564.json",
    ],
    Shopify: [
        "shopify/fulfillment-1069019877-rest-2026-07-create.json",
        "shopify/inventory-level-rest-2026-07-set.json",
        "shopify/order-1073459976-rest-2026-07-create-eur-custom-item.json",
        "shopify/order-1073459981-rest-2026-07-create-paid.json",
        "shopify/order-450789469-legacy-python-api-fixture.json",
        "shopify/order-450789469-rest-2026-07-get.json",
        "shopify/product-632910392-rest-2026-07-get.json",
        "shopify/refund-929361472-rest-2026-07-create.json",
    ],
    Tiktok: ["tiktok/order-detail-202309-written-from-docs.json", "tiktok/webhook-order-status-written-from-docs.json"],
    Woocommerce: [
        "woocommerce/order-727-rest-v3-retrieve.json",
        "woocommerce/order-refund-rest-v3-create.json",
        "woocommerce/orders-rest-v3-list.json",
        "woocommerce/product-rest-v3-retrieve.json",
    ],
    Zalando: ["zalando/order-jsonapi-written-from-docs.json"],
    Kaufland: [
        "kaufland/order-two-units-one-offer.json",
        "kaufland/order-czk-cancelled.json",
        "kaufland/notification-order-new.json",
    ],
    Otto: [
        "otto/order-announced-written-from-docs.json",
        "otto/order-cancelled-written-from-docs.json",
        "otto/order-processable-written-from-docs.json",
    ],
}

fn fixture(path: &str) -> Value {
    let (_, _, text) = FIXTURES.iter().find(|(_, p, _)| *p == path).expect("listed fixture");
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The documents a channel's normalizers are given: each fixture as is, plus the combined documents its
/// connector assembles from several calls (see each channel module's docs).
fn documents(channel: Channel) -> &'static [Value] {
    static DOCS: OnceLock<Vec<(Channel, Vec<Value>)>> = OnceLock::new();
    let all = DOCS.get_or_init(|| {
        Channel::ALL
            .iter()
            .map(|&c| {
                let mut docs: Vec<Value> = FIXTURES
                    .iter()
                    .filter(|(fc, _, _)| *fc == c)
                    .map(|(_, _, text)| serde_json::from_str(text).expect("fixture is JSON"))
                    .collect();
                docs.extend(combined(c));
                (c, docs)
            })
            .collect()
    });
    &all.iter().find(|(c, _)| *c == channel).expect("every channel").1
}

fn combined(channel: Channel) -> Vec<Value> {
    match channel {
        Channel::Bigcommerce => vec![json!({
            "order": fixture("bigcommerce/v2-order-218-get.json"),
            "products": fixture("bigcommerce/v2-order-products-list.json"),
            "shipping_addresses": fixture("bigcommerce/v2-order-shipping-addresses-list.json"),
        })],
        Channel::Amazon => [
            ("amazon/orders-v0-getOrder-response-example.json", "amazon/orders-v0-getOrderItems-response-example.json"),
            (
                "amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json",
                "amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json",
            ),
        ]
        .iter()
        .map(|(order, items)| {
            json!({"order": fixture(order)["payload"], "order_items": fixture(items)["payload"]["OrderItems"]})
        })
        .collect(),
        Channel::Woocommerce => vec![json!({
            "order": fixture("woocommerce/orders-rest-v3-list.json")[1],
            "refund": fixture("woocommerce/order-refund-rest-v3-create.json"),
        })],
        Channel::Shopify => vec![
            fixture("shopify/order-1073459981-rest-2026-07-create-paid.json")["order"].clone(),
            fixture("shopify/refund-929361472-rest-2026-07-create.json")["refund"].clone(),
        ],
        _ => Vec::new(),
    }
}

/// Topics the header-topic channels send, so mutated bodies reach every branch of `classify`.
fn topics(channel: Channel) -> &'static [&'static str] {
    match channel {
        Channel::Shopify => &[
            "orders/create",
            "orders/updated",
            "orders/edited",
            "refunds/create",
            "fulfillments/create",
            "inventory_levels/update",
            "products/update",
        ],
        Channel::Woocommerce => &["order.created", "order.updated", "product.updated", "coupon.created"],
        _ => &[""],
    }
}

/// Keys the normalizers look for, so random documents reach deep code paths.
const KEYS: &[&str] = &[
    "order",
    "id",
    "line_items",
    "quantity",
    "price",
    "sku",
    "currency",
    "products",
    "order_items",
    "payload",
    "data",
    "attributes",
    "included",
    "type",
    "amount",
    "divisor",
    "currency_code",
    "status",
    "status_id",
    "created_at",
    "updated_at",
    "date_created",
    "transactions",
    "shipments",
    "orderItems",
    "lineItems",
    "refund",
    "inventory",
    "method",
    "value",
    "scope",
    "NotificationType",
    "Payload",
    "event_type",
    "resource_url",
    "metadata",
    "topic",
    "notification",
    "order_id",
    "orderId",
    "price_ex_tax",
    "sale_price",
    "ItemPrice",
    "QuantityOrdered",
    "relationships",
    "order_lines",
];

/// Values at the edges of what the normalizers convert: amounts past `Decimal` (about 7.9e28), dates past
/// chrono, quantities past u32, odd text.
fn edge_value() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!("79228162514264337593543950335"),
        json!("-79228162514264337593543950335"),
        json!("79228162514264337593543950336"),
        json!("99999999999999999999999999"),
        json!("1e28"),
        json!("9.9e27"),
        json!("1e-30"),
        json!("0.00000000000000000000000000001"),
        json!(1e28),
        json!(7.9e28),
        json!(1e300),
        json!(-1e300),
        json!(f64::MIN_POSITIVE),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(u32::MAX),
        json!(4_294_967_296_u64),
        json!(-1),
        json!(0),
        json!(""),
        json!(" "),
        json!("NaN"),
        json!("-0"),
        json!("+262143-12-31T23:59:59Z"),
        json!("9999-12-31T23:59:59+14:00"),
        json!("0000-01-01T00:00:00-14:00"),
        json!("Fri, 31 Dec 9999 23:59:59 -1200"),
        json!(8_210_298_412_800_i64),
        json!(-8_334_632_851_200_i64),
        json!("ü€𝄞"),
        json!("\u{0}"),
        json!("USD"),
        json!("JPY"),
        json!("KWD"),
        json!("absolute"),
        json!("ORDER_CHANGE"),
        json!("store/order/created"),
        json!("store/shipment/created"),
        json!("/receipts/"),
        json!([]),
        json!({}),
    ])
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => edge_value(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        2 => "[a-zA-Z0-9 .:/+-]{0,16}".prop_map(Value::String),
        1 => Just(Value::String("2024-01-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a document: the node at a (randomly chosen) position is removed or replaced.
#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Replace(Value),
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, Edit)>> {
    let edit = prop_oneof![
        1 => Just(Edit::Remove),
        2 => edge_value().prop_map(Edit::Replace),
        2 => arb_json().prop_map(Edit::Replace),
    ];
    prop::collection::vec((any::<prop::sample::Index>(), edit), 1..4)
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    At(usize),
}

/// Every position in a document, root first.
fn positions(doc: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(here.clone());
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    here.push(Step::Key(k.clone()));
                    walk(v, here, out);
                    here.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    here.push(Step::At(i));
                    walk(v, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

fn apply(doc: &mut Value, (index, edit): &(prop::sample::Index, Edit)) {
    let all = positions(doc);
    let path = &all[index.index(all.len())];
    let Some((last, parent_path)) = path.split_last() else {
        *doc = match edit {
            Edit::Remove => Value::Null,
            Edit::Replace(v) => v.clone(),
        };
        return;
    };
    let parent = parent_path.iter().fold(doc, |node, step| match step {
        Step::Key(k) => &mut node[k.as_str()],
        Step::At(i) => &mut node[*i],
    });
    match (parent, last, edit) {
        (Value::Object(map), Step::Key(k), Edit::Remove) => {
            map.remove(k);
        }
        (Value::Array(items), Step::At(i), Edit::Remove) => {
            items.remove(*i);
        }
        (parent, Step::Key(k), Edit::Replace(v)) => parent[k.as_str()] = v.clone(),
        (parent, Step::At(i), Edit::Replace(v)) => parent[*i] = v.clone(),
        _ => unreachable!("positions follow the document's shape"),
    }
}

/// Byte-level damage to a fixture's text: flip, insert, delete or cut.
#[derive(Debug, Clone)]
enum ByteEdit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    let interesting = prop_oneof![any::<u8>(), prop::sample::select(b"0123456789-.eE\"{}[],:\\ ntf".to_vec())];
    let edit = prop_oneof![
        4 => (any::<prop::sample::Index>(), interesting.clone()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        2 => (any::<prop::sample::Index>(), interesting).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        2 => any::<prop::sample::Index>().prop_map(ByteEdit::Delete),
        1 => any::<prop::sample::Index>().prop_map(ByteEdit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn damage(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        if bytes.is_empty() {
            break;
        }
        match edit {
            ByteEdit::Set(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            ByteEdit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            ByteEdit::Delete(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            ByteEdit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

// ---------------------------------------------------------------- targets

fn topic_for(channel: Channel, index: prop::sample::Index) -> Option<&'static str> {
    let topics = topics(channel);
    Some(topics[index.index(topics.len())]).filter(|t| !t.is_empty())
}

fn mutated_fixtures(channel: Channel) {
    let docs = documents(channel);
    let inputs = (any::<prop::sample::Index>(), edits(), any::<prop::sample::Index>());
    runner()
        .run(&inputs, |(which, edits, topic)| {
            let mut doc = docs[which.index(docs.len())].clone();
            for edit in &edits {
                apply(&mut doc, edit);
            }
            exercise(channel, &doc, topic_for(channel, topic));
            Ok(())
        })
        .unwrap();
}

fn arbitrary_json(channel: Channel) {
    let inputs = (arb_json(), prop::option::of("[a-z_/.]{0,16}"), any::<prop::sample::Index>());
    runner()
        .run(&inputs, |(doc, random_topic, topic)| {
            exercise(channel, &doc, random_topic.as_deref().or(topic_for(channel, topic)));
            Ok(())
        })
        .unwrap();
}

fn arbitrary_bytes(channel: Channel) {
    let docs = documents(channel);
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (any::<prop::sample::Index>(), byte_edits())
            .prop_map(move |(which, edits)| damage(docs[which.index(docs.len())].to_string().into_bytes(), &edits)),
    ];
    runner()
        .run(&(bytes, any::<prop::sample::Index>()), |(bytes, topic)| {
            let topic = topic_for(channel, topic);
            if let Ok(doc) = serde_json::from_slice::<Value>(&bytes) {
                exercise(channel, &doc, topic);
            }
            exercise(channel, &Value::String(String::from_utf8_lossy(&bytes).into_owned()), topic);
            Ok(())
        })
        .unwrap();
}

macro_rules! targets {
    ($($module:ident => $channel:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn mutated_fixtures_never_panic() {
                mutated_fixtures(Channel::$channel);
            }

            #[test]
            fn arbitrary_json_never_panics() {
                arbitrary_json(Channel::$channel);
            }

            #[test]
            fn arbitrary_bytes_never_panic() {
                arbitrary_bytes(Channel::$channel);
            }
        }
    )*};
}

targets! {
    amazon => Amazon,
    bigcommerce => Bigcommerce,
    ebay => Ebay,
    etsy => Etsy,
    kaufland => Kaufland,
    shopify => Shopify,
    tiktok => Tiktok,
    woocommerce => Woocommerce,
    zalando => Zalando,
    otto => Otto,
}

#[test]
fn every_channel_has_targets_and_fixtures() {
    // `targets!` lists each channel once; this fails when a channel is added without fixtures to mutate.
    for channel in Channel::ALL {
        assert!(!documents(channel).is_empty(), "{channel} has no fixtures to mutate");
    }
}

// ---------------------------------------------------------------- pinned regressions

/// Found by `tiktok::mutated_fixtures_never_panic`: a `sale_price` at `Decimal::MAX` made the subtotal
/// (`Amount::times` / `checked_add`) panic with "Addition overflowed". Amounts past the supported bound are
/// now refused where they stand.
#[test]
fn an_amount_past_the_bound_is_an_error_naming_its_field() {
    let acct = account(Channel::Tiktok);
    let mut doc = fixture("tiktok/order-detail-202309-written-from-docs.json");
    doc["line_items"][0]["sale_price"] = json!("79228162514264337593543950335");
    let err = normalize_order(Channel::Tiktok, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "line_items[0].sale_price");
    assert!(err.message.contains("beyond the supported"), "{err}");

    // The same in minor units (Etsy) and as a JSON float (Zalando, WooCommerce).
    let acct = account(Channel::Etsy);
    let mut doc = fixture("etsy/receipt-written-from-v3-schema.json");
    doc["transactions"][0]["price"]["amount"] = json!(i64::MAX);
    doc["transactions"][0]["price"]["divisor"] = json!(1);
    assert_eq!(normalize_order(Channel::Etsy, &doc, &ctx(&acct)).unwrap_err().path, "transactions[0].price");
    let acct = account(Channel::Woocommerce);
    let mut doc = fixture("woocommerce/order-727-rest-v3-retrieve.json");
    doc["line_items"][0]["price"] = json!(1e28);
    assert_eq!(normalize_order(Channel::Woocommerce, &doc, &ctx(&acct)).unwrap_err().path, "line_items[0].price");
}

/// Found by `amazon::mutated_fixtures_never_panic` ("Multiplication overflowed" in a line total). Within the
/// bound a line total cannot overflow, but enough maximal lines still add up past `Decimal`: the sum is an
/// error, not a panic.
#[test]
fn lines_that_add_up_past_decimal_are_an_error() {
    let acct = account(Channel::Shopify);
    let mut doc = fixture("shopify/order-450789469-rest-2026-07-get.json");
    let line = json!({"id": 1, "sku": "X", "title": "x", "quantity": u32::MAX, "price": "1000000000000000"});
    doc["order"]["line_items"] = Value::Array(vec![line; 20_000]);
    doc["order"]["total_line_items_price"] = Value::Null;
    let err = normalize_order(Channel::Shopify, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "order.line_items");
    assert!(err.message.contains("decimal range"), "{err}");
}

/// Found by `kaufland::mutated_fixtures_never_panic`: an order whose `order_units` is an empty list
/// indexed its first unit. It is an error naming the list now.
#[test]
fn a_kaufland_order_without_units_is_an_error_naming_them() {
    let acct = account(Channel::Kaufland);
    let mut doc = fixture("kaufland/order-two-units-one-offer.json");
    doc["data"]["order_units"] = json!([]);
    let err = normalize_order(Channel::Kaufland, &doc, &ctx(&acct)).unwrap_err();
    assert_eq!(err.path, "data.order_units");
}
