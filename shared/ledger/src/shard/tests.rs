use std::sync::Arc;

use manifold_domain::{AccountId, Channel, OrderId, OversellAction, Sku, config::ChannelConfig};

use super::*;
use crate::{
    Ledger, MemoryStore, StockLedger,
    model::{OrderReservation, ReserveLine, ReserveOutcome, Scope},
};

type Sharded = StockLedger<ShardedStore<MemoryStore>>;

const HOT: &str = "DROP-1";

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn key() -> PositionKey {
    PositionKey::default_location(sku(HOT))
}

fn ledger(n: u32) -> Arc<Sharded> {
    Arc::new(StockLedger::new(ShardedStore::new(MemoryStore::default(), Shards::new([(sku(HOT), n)]))))
}

fn order(n: usize, quantity: u32) -> OrderReservation {
    let config = ChannelConfig::parse("test.toml", "version = 1").unwrap();
    OrderReservation {
        order_id: OrderId::new(format!("tiktok:shop:{n}")).unwrap(),
        channel: Channel::Tiktok,
        account: AccountId::new("shop").unwrap(),
        trace_id: None,
        location: "default".into(),
        lines: vec![ReserveLine::new("L1", sku(HOT), quantity, &config)],
        stockless_lines: vec![],
        oversell: OversellAction::Hold,
        version: 0,
    }
}

async fn parts(ledger: &Sharded, n: u32) -> Vec<Position> {
    ledger.store().inner().positions(&physical(&Shards::new([(sku(HOT), n)]), &key())).await.unwrap()
}

/// Puts `units[k]` on-hand into shard k directly (an uneven start, as a drained sale leaves it).
async fn uneven(ledger: &Sharded, units: &[i64]) {
    let mut commit = Commit::default();
    for (k, u) in units.iter().enumerate() {
        let mut p = Position::empty(&shard_key(&key(), u32::try_from(k).unwrap()));
        p.on_hand = *u;
        p.available = *u;
        p.version = 1;
        commit.positions.push(PositionWrite { expected_version: 0, position: p });
    }
    ledger.store().inner().commit(commit).await.unwrap();
}

#[test]
fn shard_locations_name_their_position() {
    let k = shard_key(&key(), 3);
    assert_eq!(k.location, "default#S3");
    assert_eq!(shard_of(&k.location), Some(("default", 3)));
    assert_eq!(shard_of("default"), None);
    assert_eq!(logical(&k), key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_over_uneven_shards_sell_exactly_the_units_on_hand() {
    let ledger = ledger(8);
    // 37 units spread unevenly: some shards empty, one holding most.
    uneven(&ledger, &[20, 0, 9, 0, 5, 0, 2, 1]).await;
    assert_eq!(ledger.position(&key()).await.unwrap().available, 37);
    let tasks: Vec<_> = (0..120)
        .map(|n| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.reserve_order(&order(n, 1)).await.unwrap().outcome })
        })
        .collect();
    let mut reserved = 0;
    let mut short = 0;
    for t in tasks {
        match t.await.unwrap() {
            ReserveOutcome::Reserved => reserved += 1,
            ReserveOutcome::Oversold { .. } => short += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved, short), (37, 83), "exactly the units on hand are sold");
    let total = ledger.position(&key()).await.unwrap();
    assert_eq!((total.on_hand, total.reserved, total.available), (37, 37, 0));
    for p in parts(&ledger, 8).await {
        assert!(p.reserved <= p.on_hand && p.available >= 0, "no shard gives out units it does not have: {p:?}");
    }
}

#[tokio::test]
async fn an_order_larger_than_any_shard_takes_from_several_and_comes_back_whole() {
    let ledger = ledger(4);
    uneven(&ledger, &[2, 3, 1, 0]).await;
    let change = ledger.reserve_order(&order(1, 5)).await.unwrap();
    assert_eq!(change.outcome, ReserveOutcome::Reserved);
    assert_eq!(change.positions[0].available, 1, "the change reports the sum as it is now");
    // A cancellation gives the 5 units back; a shipment of another order takes on-hand down.
    ledger.release_order(&order(1, 5).order_id, &Scope::WholeOrder, "cancel").await.unwrap();
    assert_eq!(ledger.position(&key()).await.unwrap().available, 6);
    ledger.reserve_order(&order(2, 2)).await.unwrap();
    ledger.ship_order(&order(2, 2).order_id, &Scope::WholeOrder, "shp-1").await.unwrap();
    let total = ledger.position(&key()).await.unwrap();
    assert_eq!((total.on_hand, total.reserved, total.available), (4, 0, 4));
    assert!(parts(&ledger, 4).await.iter().all(|p| p.reserved == 0 && p.on_hand >= 0));
}

#[tokio::test]
async fn counts_and_the_rebalancer_keep_the_total_and_even_the_shards() {
    let ledger = ledger(4);
    ledger.set_on_hand(&key(), 10, "erp-1").await.unwrap();
    assert_eq!(ledger.position(&key()).await.unwrap().on_hand, 10);
    ledger.reserve_order(&order(1, 3)).await.unwrap();
    let moved = rebalance(ledger.store().inner(), &key(), 4).await.unwrap();
    assert!(matches!(moved, Rebalanced::Moved(m) if m > 0), "{moved:?}");
    let shards: Vec<i64> = parts(&ledger, 4).await[1..].iter().map(|p| p.available).collect();
    assert_eq!(shards.iter().sum::<i64>(), 7);
    assert!(shards.iter().max().unwrap() - shards.iter().min().unwrap() <= 1, "{shards:?}");
    assert_eq!(rebalance(ledger.store().inner(), &key(), 4).await.unwrap(), Rebalanced::Even);
    let total = ledger.position(&key()).await.unwrap();
    assert_eq!((total.on_hand, total.reserved, total.available), (10, 3, 7));
    // A lower count takes free units out of the shards, never below what is reserved in total.
    ledger.set_on_hand(&key(), 4, "erp-2").await.unwrap();
    let total = ledger.position(&key()).await.unwrap();
    assert_eq!((total.on_hand, total.reserved, total.available), (4, 3, 1));
}

#[tokio::test]
async fn stock_on_the_whole_position_before_sharding_stays_sellable_and_moves_into_the_shards() {
    let store = MemoryStore::default();
    let whole: StockLedger<MemoryStore> = StockLedger::new(store);
    whole.set_on_hand(&key(), 6, "erp-1").await.unwrap();
    // The SKU becomes hot: the same store, now sharded in 4.
    let ledger: Sharded = StockLedger::new(ShardedStore::new(whole.into_store(), Shards::new([(sku(HOT), 4)])));
    assert_eq!(ledger.position(&key()).await.unwrap().available, 6);
    assert_eq!(ledger.reserve_order(&order(1, 2)).await.unwrap().outcome, ReserveOutcome::Reserved);
    rebalance(ledger.store().inner(), &key(), 4).await.unwrap();
    let p = parts(&ledger, 4).await;
    assert_eq!(p[0].available, 0, "the whole position keeps only its reservations: {p:?}");
    assert_eq!(p[1..].iter().map(|s| s.available).sum::<i64>(), 4);
    assert_eq!(ledger.position(&key()).await.unwrap().available, 4);
}

#[tokio::test]
async fn a_backorder_account_reserves_beyond_the_shards_as_on_a_whole_position() {
    let ledger = ledger(4);
    uneven(&ledger, &[1, 0, 1, 0]).await;
    let mut o = order(1, 5);
    o.oversell = OversellAction::Backorder;
    let change = ledger.reserve_order(&o).await.unwrap();
    assert!(matches!(change.outcome, ReserveOutcome::Oversold { action: OversellAction::Backorder, .. }), "{change:?}");
    let total = ledger.position(&key()).await.unwrap();
    assert_eq!((total.on_hand, total.reserved, total.available), (2, 5, -3));
}
