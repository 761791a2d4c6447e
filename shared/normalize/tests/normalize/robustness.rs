//! Arbitrary JSON never panics a normalizer or the classifier.

use manifold_domain::Channel;
use manifold_normalize::{DocKind, body_event_id, classify, normalize_all};
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::support::{account, ctx};

const KINDS: [DocKind; 5] =
    [DocKind::Order, DocKind::Refund, DocKind::Shipment, DocKind::InventoryLevel, DocKind::Product];

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
    "created_at",
    "updated_at",
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
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 .:/-]{0,12}".prop_map(Value::String),
        Just(Value::String("USD".into())),
        Just(Value::String("2024-01-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn normalize_and_classify_never_panic(doc in arb_json(), topic in prop::option::of("[a-z_/.]{0,16}")) {
        for channel in Channel::ALL {
            let acct = account(channel);
            for kind in KINDS {
                let _ = normalize_all(channel, kind, &doc, &ctx(&acct));
            }
            let _ = classify(channel, topic.as_deref(), &doc);
            let _ = body_event_id(channel, &doc);
        }
    }
}
