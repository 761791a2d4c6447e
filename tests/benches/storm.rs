//! The duplicate storm at scale, as a bench command: the integration tests' storm (`tests/it/storm.rs`)
//! with 10,000 orders by default, against the running emulator, every AWS call of the functions
//! recorded by the test proxy. Prints throughput, deliveries, the duplicates refused at each layer,
//! AWS calls per order, ingest-to-reserved latency and wall time.
//!
//! `cargo bench --profile dev -p manifold-tests --bench storm -- --orders 10000`
//! (after `source .local/stack.env`, with moto running: `infra/local/moto.sh start`). Against an
//! emulator the figures measure the emulator and this one process playing every function, not AWS.

use manifold_app::app::Settings;

#[allow(unused_imports)]
#[path = "../it/awsproxy.rs"]
mod awsproxy;
#[allow(dead_code)]
#[path = "../it/fixtures.rs"]
mod fixtures;
// Its tests are not built here: what only they use is unused.
#[allow(dead_code, unused_imports)]
#[path = "../it/storm.rs"]
mod storm;
#[path = "../it/support.rs"]
mod support;

/// The value after `--orders` (cargo adds `--bench` and may add filters: anything else is ignored).
fn orders() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--orders")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000, |v| v.parse().expect("--orders takes a number"))
}

#[allow(clippy::cast_precision_loss)]
fn per(n: usize, d: usize) -> f64 {
    n as f64 / d.max(1) as f64
}

#[tokio::main]
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
async fn main() {
    let orders = orders();
    let proxy = awsproxy::AwsProxy::new(&support::endpoint(), "123456789012");
    let sdk = support::sdk_via(proxy.listen("Functions").await).await;
    let channels = [manifold_domain::Channel::Shopify];
    let mut rig = storm::Rig::new(support::Stack::new().await, &sdk, Settings::default(), &channels).await;
    rig.as_functions(&proxy).await;
    let plan = storm::Plan::new(orders, storm::SKUS, 9_000_000, storm::SEED);
    println!(
        "storm bench: {orders} orders, {} deliveries ({} distinct), {} senders, {} pollers per queue",
        plan.deliveries.len(),
        plan.distinct(),
        storm::SENDERS,
        storm::POLLERS
    );
    rig.count(storm::SKUS, plan.initial, "bench-initial").await;
    let before = proxy.calls().len();

    let report = storm::run(&rig, &plan, false).await;

    let calls = proxy.calls().len() - before;
    let stored = rig.stored_orders().await.len();
    let wall = report.wall.as_secs_f64();
    println!(
        "  wall time:          {wall:.1} s (deliveries answered at {:.1} s, ingest queue drained at {:.1} s)",
        report.sent.as_secs_f64(),
        report.ingest_drained.as_secs_f64()
    );
    println!("  orders/s:           {:.1} (stored {stored} of {orders})", stored as f64 / wall);
    println!("  deliveries:         {} ({:.1}/s)", report.deliveries, report.deliveries as f64 / wall);
    println!("  refused by webhook: {} (same delivery again)", report.webhook_duplicates);
    println!("  refused by ingest:  {} (same order version, another delivery)", report.ingested.saturating_sub(stored));
    println!("  sender retries:     {} (409 in progress / 503)", report.sender_retries);
    println!("  batch failures:     ingest {}, ledger {}", report.ingest_failures, report.ledger_failures);
    println!(
        "  AWS calls:          {calls} = {:.1} per order (as IAM authorizes them: a transaction counts each item)",
        per(calls, orders)
    );
    // Per function and action: where each order's calls go (the webhook's claim, enqueue and
    // completion; ingest's reads, transaction items and event; the ledger's reservation).
    let mut by_action: std::collections::BTreeMap<(String, String), usize> = std::collections::BTreeMap::new();
    for call in &proxy.calls()[before..] {
        *by_action.entry((call.function.clone(), call.action.clone())).or_default() += 1;
    }
    let mut function = String::new();
    for ((f, action), n) in &by_action {
        if *f != function {
            let total: usize = by_action.iter().filter(|((g, _), _)| g == f).map(|(_, n)| n).sum();
            println!("    {f}: {:.2} per order", per(total, orders));
            function.clone_from(f);
        }
        println!("      {action:<32} {:.2}", per(*n, orders));
    }
    println!(
        "  ingest to reserved: p50 {:.2?}, p99 {:.2?} (first accepted delivery to the ledger batch that reserved it)",
        storm::quantile(&report.latencies, 0.5),
        storm::quantile(&report.latencies, 0.99)
    );
    let lost = orders - stored;
    let units_ok = {
        let mut ok = true;
        for (sku, units) in plan.ordered() {
            let p = rig.position(&sku).await;
            ok &= (p.reserved, p.available) == (units, plan.initial - units);
        }
        ok
    };
    println!("  stock taken once:   {}", if units_ok { "yes" } else { "NO" });
    assert!(lost == 0 && units_ok, "orders lost ({lost}) or stock wrong");
}
