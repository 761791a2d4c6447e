//! The hot-SKU figures: one SKU sold by many concurrent single-unit orders (a flash sale), with its
//! position whole and then split into shards (`manifold_ledger::shard`), against the emulator.
//!
//! Each run stocks a fresh SKU with three units for every four orders, evens its shards out, then
//! places the orders `CONCURRENCY` at a time through the ledger. Printed per run: units sold against
//! units on hand (they must be equal: never an oversell, never an undersell), conflicts and commits
//! per order as the store counted them, and the modelled DynamoDB ceiling for that SKU.
//!
//! The model: DynamoDB serves about 1,000 write units a second per partition. A single-line
//! reservation writes its position and the position's entry in the position's partition, in a
//! transaction (2 units per item per started KB: 4 units), so a partition takes about 250
//! reservations a second, and fewer as conflicts (each a transaction that wrote nothing but was
//! attempted) add attempts. A whole position is one partition; each shard is a partition of its own.

use std::{sync::Arc, time::Instant};

use futures::StreamExt;
use manifold_domain::{AccountId, Channel, OrderId, OversellAction, Sku, config::ChannelConfig};
use manifold_ledger::{
    DynamoLedger, DynamoStore, Ledger, OrderReservation, PositionKey, ReserveLine, ReserveOutcome,
    shard::{Shards, rebalance},
};
use serde::Serialize;

use crate::CliError;

/// Orders in flight at once.
pub const CONCURRENCY: usize = 32;
/// Write units a partition serves per second, and a single-line reservation's units in its position's
/// partition (position and entry, transactional, under 1 KB each).
const PARTITION_UNITS: f64 = 1_000.0;
const UNITS_PER_RESERVATION: f64 = 4.0;

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub shards: u32,
    pub orders: usize,
    pub on_hand: i64,
    pub sold: usize,
    pub short: usize,
    pub seconds: f64,
    pub orders_per_second: f64,
    pub conflicts_per_order: f64,
    pub commits_per_order: f64,
    /// Write units the commits reported, per order (sold or short).
    pub write_units_per_order: f64,
    /// Reservations a second DynamoDB would take for this SKU, by the model in the module docs.
    pub modelled_ceiling_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotSku {
    pub concurrency: usize,
    pub runs: Vec<Run>,
}

fn order(sku: &Sku, run: &str, n: usize) -> Result<OrderReservation, CliError> {
    let config = ChannelConfig::parse("bench", "version = 1")?;
    let account = AccountId::new("drop").map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(OrderReservation {
        order_id: OrderId::for_channel(Channel::Tiktok, &account, &format!("{run}-{n}"))
            .map_err(|e| CliError::Usage(e.to_string()))?,
        channel: Channel::Tiktok,
        account,
        trace_id: None,
        location: manifold_ledger::DEFAULT_LOCATION.into(),
        lines: vec![ReserveLine::new("1", sku.clone(), 1, &config)],
        stockless_lines: vec![],
        oversell: OversellAction::Hold,
        version: 0,
    })
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// One run with the SKU's position in `shards` shards (1: whole).
async fn run(ddb: &aws_sdk_dynamodb::Client, table: &str, orders: usize, shards: u32) -> Result<Run, CliError> {
    let tag = format!("{}-{}", shards, chrono::Utc::now().timestamp_millis());
    let sku = Sku::new(format!("HOT-{tag}")).map_err(|e| CliError::Usage(e.to_string()))?;
    let key = PositionKey::default_location(sku.clone());
    let ledger =
        Arc::new(DynamoLedger::sharded(DynamoStore::new(ddb.clone(), table), Shards::new([(sku.clone(), shards)])));
    let on_hand = i64::try_from(orders * 3 / 4).unwrap_or(i64::MAX);
    ledger.set_on_hand(&key, on_hand, &format!("bench-{tag}")).await?;
    rebalance(ledger.store().inner(), &key, shards).await?;
    let placed: Vec<OrderReservation> = (0..orders).map(|n| order(&sku, &tag, n)).collect::<Result<_, _>>()?;
    let before = ledger.store().stats();
    let started = Instant::now();
    let outcomes: Vec<Result<bool, CliError>> = futures::stream::iter(placed)
        .map(|o| {
            let ledger = ledger.clone();
            async move {
                let change = ledger.reserve_order(&o).await?;
                Ok(matches!(change.outcome, ReserveOutcome::Reserved))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let after = ledger.store().stats();
    let mut sold = 0;
    for o in outcomes {
        if o? {
            sold += 1;
        }
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let (n, conflicts, commits) =
        (orders.max(1) as f64, (after.conflicts - before.conflicts) as f64, (after.commits - before.commits) as f64);
    let conflicts_per_order = conflicts / n;
    #[allow(clippy::cast_precision_loss)]
    let orders_per_second = orders as f64 / seconds.max(1e-9);
    Ok(Run {
        shards,
        orders,
        on_hand,
        sold,
        short: orders - sold,
        seconds: round(seconds, 2),
        orders_per_second: round(orders_per_second, 1),
        conflicts_per_order: round(conflicts_per_order, 2),
        commits_per_order: round(commits / n, 2),
        write_units_per_order: round((after.reported_units - before.reported_units) / n, 2),
        modelled_ceiling_per_second: round(
            f64::from(shards) * PARTITION_UNITS / (UNITS_PER_RESERVATION * (1.0 + conflicts_per_order)),
            0,
        ),
    })
}

/// The hot-SKU figures: the SKU whole, then in `shards` shards.
pub async fn measure(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    orders: usize,
    shards: u32,
) -> Result<HotSku, CliError> {
    let mut runs = Vec::new();
    for n in [1, shards.max(2)] {
        runs.push(run(ddb, table, orders, n).await?);
    }
    Ok(HotSku { concurrency: CONCURRENCY, runs })
}

impl HotSku {
    pub fn print(&self) {
        for r in &self.runs {
            println!(
                "    {:>2} shard(s): sold {} of {} on hand ({}), {} short; {:.1} orders/s here; {:.2} conflicts and {:.2} \
                 commits per order; {:.2} write units per order; modelled DynamoDB ceiling {:.0} reservations/s",
                r.shards,
                r.sold,
                r.on_hand,
                if i64::try_from(r.sold).ok() == Some(r.on_hand) { "exact" } else { "NOT EXACT" },
                r.short,
                r.orders_per_second,
                r.conflicts_per_order,
                r.commits_per_order,
                r.write_units_per_order,
                r.modelled_ceiling_per_second
            );
        }
    }
}
