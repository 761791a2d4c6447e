//! Rate-limit utilisation: pushes 5,000 SKUs to the Shopify and BigCommerce simulators with limits
//! small enough to bind within seconds, and prints how much of the allowance the limiter used and how
//! often it was refused. `cargo bench -p manifold-connectors --bench ratelimit`.
//!
//! Utilisation = allowance spent / allowance the simulated channel made available while the push ran
//! (Shopify: bucket capacity + restore rate x elapsed, in cost points; BigCommerce: requests per window
//! x windows started). The target is at least 80 % with zero 429s.

use std::{collections::BTreeMap, time::Duration};

use manifold_connectors::{CallContext, StockUpdate, build, http_client};
use manifold_domain::{
    AccountId, Channel, Sku,
    config::{AccountConfig, RateLimit},
};
use manifold_simulator::{SimConfig, SimLimit, Simulator};

fn account(
    endpoint: String,
    channel: Channel,
    version: &str,
    rate_limit: RateLimit,
    settings: &[(&str, &str)],
) -> AccountConfig {
    AccountConfig {
        channel,
        account: AccountId::new("bench").expect("valid id"),
        api_version: version.to_owned(),
        secret: "bench".to_owned(),
        endpoint,
        enabled: true,
        rate_limit,
        max_concurrency: 1,
        sync: manifold_domain::config::SyncCadences::default(),
        stock: manifold_domain::config::StockRules::default(),
        shipping: manifold_domain::config::ShippingRules::default(),
        sku_map: BTreeMap::new(),
        item_ids: BTreeMap::new(),
        settings: settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        pricing: None,
    }
}

fn items(n: usize, shopify: bool) -> Vec<StockUpdate> {
    (0..n)
        .map(|i| StockUpdate {
            sku: Sku::new(format!("SKU-{i:05}")).expect("valid sku"),
            channel_sku: format!("SKU-{i:05}"),
            quantity: 5,
            channel_item_id: shopify.then(|| format!("gid://shopify/InventoryItem/{i}")),
        })
        .collect()
}

async fn run(
    name: &str,
    channel: Channel,
    sim_limit: SimLimit,
    account_of: impl Fn(String) -> AccountConfig,
    shopify: bool,
) {
    let sim = Simulator::start(SimConfig::default().with_limit(channel, sim_limit)).await.expect("simulator starts");
    let creds = [("access_token", "bench")].into_iter().collect();
    let connector =
        build(&account_of(sim.base_url(channel)), creds, http_client(Duration::from_secs(10)).expect("client"));
    let start = std::time::Instant::now();
    let outcome = connector.push_stock(&items(5000, shopify), &CallContext::new("bench")).await.expect("push succeeds");
    let elapsed = start.elapsed();
    let snap = sim.snapshot();
    let allowance = snap.allowance[&channel];
    println!(
        "{name}: {} SKUs delivered in {:.2} s, {} requests, {} refused (429/THROTTLED), allowance used {:.1} of {:.1} = {:.1} %",
        outcome.delivered.len(),
        elapsed.as_secs_f64(),
        snap.requests[&channel],
        snap.throttled.get(&channel).copied().unwrap_or(0),
        allowance.spent,
        allowance.available,
        100.0 * allowance.spent / allowance.available.max(f64::EPSILON),
    );
    sim.shutdown().await;
}

#[tokio::main]
async fn main() {
    // Shopify: 20 mutations of 10 points into a 40-point bucket restoring 40/s; the account is configured
    // with the documented 1000/50 so the limiter has to learn the real figures from throttleStatus.
    run(
        "shopify (bucket 40 pts, 40 pts/s)",
        Channel::Shopify,
        SimLimit::Points { capacity: 40.0, restore_per_second: 40.0 },
        |e| {
            account(
                e,
                Channel::Shopify,
                "2026-07",
                RateLimit::LeakyBucket { capacity: 1000.0, leak_per_second: 50.0 },
                &[("location_id", "gid://shopify/Location/1")],
            )
        },
        true,
    )
    .await;
    // Shopify with 25-item batches: 200 mutations, long enough for the steady state to dominate.
    run(
        "shopify, 25 per call (bucket 100 pts, 100 pts/s)",
        Channel::Shopify,
        SimLimit::Points { capacity: 100.0, restore_per_second: 100.0 },
        |e| {
            account(
                e,
                Channel::Shopify,
                "2026-07",
                RateLimit::LeakyBucket { capacity: 1000.0, leak_per_second: 50.0 },
                &[("location_id", "gid://shopify/Location/1"), ("batch_size", "25")],
            )
        },
        true,
    )
    .await;
    // BigCommerce: 100 calls of 50 SKUs into 25 requests per 1 s window; configured as 150 per 30 s.
    run(
        "bigcommerce (25 req / 1 s window)",
        Channel::Bigcommerce,
        SimLimit::Window { requests: 25, window_ms: 1000 },
        |e| {
            account(
                e,
                Channel::Bigcommerce,
                "v3",
                RateLimit::FixedWindow { requests: 150, window_seconds: 30 },
                &[("location_id", "1"), ("batch_size", "50")],
            )
        },
        false,
    )
    .await;
}
