//! What the business rules cost on the hot paths: routing one order (every order pays it once, when
//! first stored) and pricing one SKU (a prices run pays it per listing), through a rule book of 20
//! routing, 20 shipping and 20 price rules with CEL conditions, and compiling that book (once per
//! configuration). `cargo bench --profile dev -p manifold-domain --bench rules`.
//!
//! Target: routing well under a millisecond per order, so rules never show in the ingest latency, and
//! pricing a 100,000-SKU catalog for one account in seconds of CPU.

use std::{fmt::Write as _, hint::black_box};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use manifold_domain::{
    Amount, Currency, Order, Price, Sku,
    config::ChannelConfig,
    rules::{RuleBook, SkuFacts},
};

const ACCOUNT: &str = r#"
version = 1
[[accounts]]
channel = "shopify"
account = "eu"
api_version = "2026-07"
secret = "manifold/shopify/eu"
endpoint = "https://eu.myshopify.com"
rate_limit = { kind = "leaky_bucket", capacity = 40, leak_per_second = 2.0 }
settings = { location_id = "gid://shopify/Location/1" }
"#;

/// 20 rules of each kind; only the last of each fires for the benchmark's order and SKU, so every
/// condition is evaluated.
fn config() -> ChannelConfig {
    let mut text = ACCOUNT.to_owned();
    for i in 0..20 {
        let country = if i == 19 { "AT" } else { "ZZ" };
        let _ = write!(
            text,
            "[[rules.routing]]\nid = \"route-{i}\"\nwhen = 'order.shipping_address.country_code == \"{country}\" && order.totals.total > 100'\ntags = [\"t{i}\"]\n\n"
        );
        let _ = write!(
            text,
            "[[rules.shipping]]\nid = \"ship-{i}\"\nwhen = 'order.shipping_address.country_code in [\"{country}\", \"YY\"] && order.totals.total > {i}'\ncarrier = \"C{i}\"\n\n"
        );
        let prefix = if i == 19 { "TEE-" } else { "NONE-" };
        let _ = write!(
            text,
            "[[rules.price]]\nid = \"price-{i}\"\nwhen = \"sku.startsWith('{prefix}') && price > 10.0\"\npercent = -5\nround = \".99\"\n\n"
        );
    }
    ChannelConfig::parse("bench.toml", &text).expect("the bench configuration is valid")
}

fn order() -> Order {
    serde_json::from_value(serde_json::json!({
        "id": "shopify:eu:1", "channel": "shopify", "account": "eu", "channel_order_id": "1",
        "order_number": "#1", "status": "paid", "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "currency": "EUR",
        "lines": [{"line_id": "1", "sku": "TEE-1", "channel_sku": "TEE-1", "sku_mapped": true, "title": "Tee",
            "quantity": 2, "unit_price": "80.00", "total": "160.00", "tax": "0.00", "discount": "0.00"}],
        "totals": {"subtotal": "160.00", "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": "160.00"},
        "customer": {"email": null, "name": null, "phone": null},
        "shipping_address": {"name": null, "line1": null, "line2": null, "city": "Wien", "region": null,
            "postal_code": "1010", "country_code": "AT"},
        "billing_address": null, "source_version": 1
    }))
    .expect("a canonical order")
}

fn rules(c: &mut Criterion) {
    let config = config();
    let book = RuleBook::new(&config.rules).expect("compiles");
    let order = order();
    let now = Utc::now();
    let tags = SkuFacts::new();
    let routed = book.route(&order, &tags, now);
    assert_eq!((routed.carrier.as_deref(), routed.tags.len()), (Some("C19"), 1), "the last rules fire");
    let eur = Currency::new("EUR").expect("EUR");
    let base = Price {
        sku: Sku::new("TEE-1").expect("a SKU"),
        channel: None,
        currency: eur,
        amount: Amount::parse("24.35", eur).expect("an amount"),
        compare_at: None,
        effective_at: now,
    };
    let account = &config.accounts[0];
    assert_eq!(book.price(account, &base, &[], now).expect("priced").amount.to_string(), "22.99");

    c.bench_function("route one order through 40 rules", |b| b.iter(|| book.route(black_box(&order), &tags, now)));
    c.bench_function("price one SKU through 20 rules", |b| b.iter(|| book.price(account, black_box(&base), &[], now)));
    c.bench_function("compile 60 rules", |b| b.iter(|| RuleBook::new(black_box(&config.rules))));
}

criterion_group!(benches, rules);
criterion_main!(benches);
