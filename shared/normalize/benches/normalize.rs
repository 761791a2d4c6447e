//! Normalization speed per channel, on each channel's real (or documented-shape) order fixture: the
//! whole step a consumer takes, bytes to canonical order (`normalize/{channel}`), beside parsing the
//! same bytes into a `serde_json::Value` and nothing else (`parse/{channel}`). The goal is
//! `normalize` within 2x of `parse`: the mapping costs less than reading the JSON once more.
//!
//! `cargo bench -p manifold-normalize --bench normalize` (add `-- --quick` for a short run).

use chrono::{TimeZone as _, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use manifold_domain::{Channel, config::ChannelConfig};
use manifold_normalize::{Context, DocKind, normalize};
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../../infra/channels.example.toml");

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Each channel's order document as ingest receives it (Amazon and BigCommerce: the order with the
/// parts their connectors fetch beside it).
fn orders() -> Vec<(Channel, Vec<u8>)> {
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
    ];
    docs.into_iter().map(|(c, d)| (c, serde_json::to_vec(&d).expect("serializable"))).collect()
}

fn bench(c: &mut Criterion) {
    let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example config");
    let received_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for (channel, bytes) in orders() {
        let account = config.accounts.iter().find(|a| a.channel == channel).expect("an example account");
        let ctx = Context { account, received_at };
        // Every fixture must normalize: a bench of an error path would measure the wrong thing.
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        normalize(channel, DocKind::Order, &doc, &ctx).unwrap_or_else(|e| panic!("{channel}: {e}"));
        let mut group = c.benchmark_group(channel.as_str());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", channel.as_str()), &bytes, |b, bytes| {
            b.iter(|| serde_json::from_slice::<Value>(std::hint::black_box(bytes)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("normalize", channel.as_str()), &bytes, |b, bytes| {
            b.iter(|| {
                let doc: Value = serde_json::from_slice(std::hint::black_box(bytes)).unwrap();
                normalize(channel, DocKind::Order, &doc, &ctx).unwrap()
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
