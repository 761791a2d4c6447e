//! Ledger benchmark: reservations per second on one hot SKU and spread over many SKUs, and the write
//! cost per order line.
//!
//! Run against moto (`infra/local/moto.sh start`):
//! `AWS_ENDPOINT_URL=http://127.0.0.1:4566 cargo run -p manifold-ledger --bin ledger-bench`
//! Knobs: `BENCH_ORDERS` (default 300), `BENCH_CONCURRENCY` (default 32), `BENCH_SKUS` (default 100).
//! Against an emulator the figures measure the emulator (and the ledger's serialised commits to it,
//! see `DynamoStore::emulator_safe`), not DynamoDB.

use std::{sync::Arc, time::Instant};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use futures::{StreamExt, stream};
use manifold_domain::{AccountId, Channel, OrderId, OversellAction, Sku};
use manifold_ledger::{
    Component, DynamoLedger, DynamoStore, Ledger, OrderReservation, PositionKey, ReserveLine, ReserveOutcome,
    StockLedger,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn single_line_order(run: &str, i: usize, sku: &Sku) -> Result<OrderReservation, Error> {
    let account = AccountId::new("bench")?;
    Ok(OrderReservation {
        order_id: OrderId::for_channel(Channel::Shopify, &account, &format!("{run}-{i}"))?,
        channel: Channel::Shopify,
        account,
        trace_id: None,
        location: manifold_ledger::DEFAULT_LOCATION.to_owned(),
        lines: vec![ReserveLine {
            line_id: "1".into(),
            sku: sku.clone(),
            quantity: 1,
            components: vec![Component { sku: sku.clone(), per_unit: 1 }],
        }],
        stockless_lines: vec![],
        oversell: OversellAction::Hold,
        version: 0,
    })
}

/// Reserves `orders` concurrently; returns (reserved, seconds).
async fn run(ledger: &Arc<DynamoLedger>, orders: Vec<OrderReservation>, concurrency: usize) -> (usize, f64) {
    let start = Instant::now();
    let reserved = stream::iter(orders)
        .map(|o| {
            let ledger = ledger.clone();
            async move { matches!(ledger.reserve_order(&o).await.map(|c| c.outcome), Ok(ReserveOutcome::Reserved)) }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (reserved, start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let orders = env_number("BENCH_ORDERS", 300);
    let concurrency = env_number("BENCH_CONCURRENCY", 32);
    let skus = env_number("BENCH_SKUS", 100).max(1);
    let emulator = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.contains("127.0.0.1") || u.contains("localhost"));

    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let table = format!("ledger-bench-{}-{}", std::process::id(), chrono::Utc::now().timestamp());
    ddb.create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build()?,
        )
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("sk").attribute_type(ScalarAttributeType::S).build()?,
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?)
        .key_schema(KeySchemaElement::builder().attribute_name("sk").key_type(KeyType::Range).build()?)
        .send()
        .await?;
    let store = DynamoStore::new(ddb.clone(), &table);
    let ledger: Arc<DynamoLedger> = Arc::new(StockLedger::new(if emulator { store.emulator_safe() } else { store }));
    println!("ledger-bench: {orders} single-line orders per run, concurrency {concurrency}, table {table}");
    if emulator {
        println!("  (emulator: commits are serialised in-process; these figures measure moto, not DynamoDB)");
    }

    let hot = Sku::new("BENCH-HOT")?;
    ledger.set_on_hand(&PositionKey::default_location(hot.clone()), i64::try_from(orders)?, "bench").await?;
    let before = ledger.store().stats();
    let hot_orders = (0..orders).map(|i| single_line_order("hot", i, &hot)).collect::<Result<Vec<_>, _>>()?;
    let (reserved, secs) = run(&ledger, hot_orders, concurrency).await;
    let after = ledger.store().stats();
    #[allow(clippy::cast_precision_loss)]
    let per_second = reserved as f64 / secs;
    println!(
        "hot SKU:   {reserved} reserved in {secs:.2}s = {per_second:.1} reservations/s, {} conflicts retried",
        after.conflicts - before.conflicts
    );

    let many: Vec<Sku> = (0..skus).map(|i| Sku::new(format!("BENCH-{i:05}"))).collect::<Result<_, _>>()?;
    let per_sku = i64::try_from(orders.div_ceil(skus))?;
    for s in &many {
        ledger.set_on_hand(&PositionKey::default_location(s.clone()), per_sku, "bench").await?;
    }
    let before_many = ledger.store().stats();
    let spread = (0..orders).map(|i| single_line_order("many", i, &many[i % skus])).collect::<Result<Vec<_>, _>>()?;
    let (reserved_many, secs_many) = run(&ledger, spread, concurrency).await;
    let after_many = ledger.store().stats();
    #[allow(clippy::cast_precision_loss)]
    let per_second_many = reserved_many as f64 / secs_many;
    println!(
        "{skus} SKUs:  {reserved_many} reserved in {secs_many:.2}s = {per_second_many:.1} reservations/s, {} conflicts retried",
        after_many.conflicts - before_many.conflicts
    );

    let lines = reserved + reserved_many;
    let items = (after.items - before.items) + (after_many.items - before_many.items);
    let reported =
        (after.reported_units - before.reported_units) + (after_many.reported_units - before_many.reported_units);
    #[allow(clippy::cast_precision_loss)]
    let items_per_line = items as f64 / lines.max(1) as f64;
    println!("writes:    {items_per_line:.2} items per single-line order (position + entry + reservation record)");
    if reported > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let units = reported / lines.max(1) as f64;
        println!("           {units:.2} write units per order line, as reported by ReturnConsumedCapacity=TOTAL");
    } else {
        println!(
            "           {:.2} write units per order line, counted (the endpoint reports no consumed capacity): \
             a transactional write costs 2 WCU per item up to 1 KB",
            items_per_line * 2.0
        );
    }
    ddb.delete_table().table_name(&table).send().await?;
    Ok(())
}
