//! The inventory ledger against DynamoDB (moto) through the real SDK: no unit sold twice under
//! concurrency, replays change nothing, ERP updates keep reservations, bundles, all-or-nothing,
//! chunked large orders, release/ship exactly once, and the channel fan-out with coalescing.

use std::{collections::BTreeMap, sync::Arc};

use manifold_domain::{AccountId, Channel, ChannelSku, OrderId, OversellAction, Sku, config::ChannelConfig};
use manifold_ledger::{
    DynamoLedger, Ledger, OrderReservation, Position, PositionKey, ReleaseOutcome, ReservationState, ReserveLine,
    ReserveOutcome, Scope,
    fanout::{PushGate, PushJob, SqsPushQueue, fan_out, push_jobs},
};
use tokio::task::JoinSet;

use crate::support;

const EXAMPLE: &str = include_str!("../../infra/channels.example.toml");

fn config() -> ChannelConfig {
    ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example config")
}

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn key(s: &str) -> PositionKey {
    PositionKey::default_location(sku(s))
}

fn order(channel: Channel, id: &str, lines: &[(&str, u32)], oversell: OversellAction) -> OrderReservation {
    let config = config();
    OrderReservation {
        order_id: OrderId::for_channel(channel, &AccountId::new("acct").unwrap(), id).unwrap(),
        channel,
        account: AccountId::new("acct").unwrap(),
        trace_id: Some(format!("trace-{id}")),
        location: "default".into(),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (s, q))| ReserveLine::new(format!("line-{i}"), sku(s), *q, &config))
            .collect(),
        stockless_lines: vec![],
        oversell,
        version: 0,
    }
}

async fn ledger() -> Arc<DynamoLedger> {
    let aws = support::aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let table = support::create_ledger_table(&ddb).await;
    // moto's transactions are not isolated from each other: the ledger serialises its own writes to it
    // (reads, decisions, retries and conflicts stay concurrent). See `DynamoStore::emulator_safe`.
    Arc::new(DynamoLedger::dynamo_emulator(ddb, table))
}

async fn stock(ledger: &DynamoLedger, items: &[(&str, i64)]) {
    for (s, q) in items {
        ledger.set_on_hand(&key(s), *q, "erp-initial").await.expect("set on hand");
    }
}

async fn triple(ledger: &DynamoLedger, s: &str) -> (i64, i64, i64) {
    let p = ledger.position(&key(s)).await.expect("position");
    (p.on_hand, p.reserved, p.available)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_hundred_concurrent_orders_from_five_channels_sell_exactly_the_twenty_on_hand() {
    let ledger = ledger().await;
    stock(&ledger, &[("HOT", 20)]).await;
    let channels = [Channel::Shopify, Channel::Amazon, Channel::Etsy, Channel::Tiktok, Channel::Ebay];

    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let ledger = ledger.clone();
        let o = order(channels[i % channels.len()], &format!("o{i}"), &[("HOT", 1)], OversellAction::Hold);
        tasks.spawn(async move { ledger.reserve_order(&o).await });
    }
    let (mut reserved, mut oversold) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("reserve").outcome {
            ReserveOutcome::Reserved => reserved += 1,
            ReserveOutcome::Oversold { short_lines, action } => {
                assert_eq!(action, OversellAction::Hold);
                assert_eq!(short_lines.len(), 1);
                assert!(short_lines[0].available < 1, "{short_lines:?}");
                oversold += 1;
            }
            other @ (ReserveOutcome::AlreadyApplied { .. } | ReserveOutcome::Amended) => {
                panic!("every order is new: {other:?}")
            }
        }
    }
    assert_eq!((reserved, oversold), (20, 180));
    assert_eq!(triple(&ledger, "HOT").await, (20, 20, 0));

    let entries = ledger.store().entries(&key("HOT")).await.expect("entries");
    assert_eq!(entries.len(), 21, "one on-hand entry and twenty reservations");
    for e in &entries {
        assert!(e.reserved_after <= e.on_hand_after, "availability went negative: {e:?}");
    }
    let reserving_orders: std::collections::BTreeSet<_> = entries.iter().filter_map(|e| e.order_id.clone()).collect();
    assert_eq!(reserving_orders.len(), 20, "no order reserved twice");
}

/// A flash sale on one SKU whose position is split into six shards, with the SKU's stock spread
/// unevenly over them (a count, a rebalance, then reservations that drain some shards first):
/// concurrent orders from five channels sell exactly the units on hand, through real DynamoDB
/// transactions on the emulator with no in-process lock, and no shard ever gives out more than it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hot_sku_in_six_shards_sells_exactly_its_units_on_hand_to_concurrent_orders() {
    use manifold_ledger::{
        DynamoStore,
        shard::{Rebalanced, Shards, rebalance, shard_key},
        store::Store,
    };
    let aws = support::aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let table = support::create_ledger_table(&ddb).await;
    let hot = sku("FLASH");
    let ledger =
        Arc::new(DynamoLedger::sharded(DynamoStore::new(ddb.clone(), &table), Shards::new([(hot.clone(), 6)])));
    stock(&ledger, &[("FLASH", 27)]).await;
    assert!(matches!(rebalance(ledger.store().inner(), &key("FLASH"), 6).await.unwrap(), Rebalanced::Moved(_)));
    // Uneven: the first orders, one at a time, drain whichever shards their hashes pick.
    for n in 0..5 {
        let o = order(Channel::Shopify, &format!("early-{n}"), &[("FLASH", 2)], OversellAction::Hold);
        assert_eq!(ledger.reserve_order(&o).await.unwrap().outcome, ReserveOutcome::Reserved);
    }
    assert_eq!(triple(&ledger, "FLASH").await, (27, 10, 17));

    let channels = [Channel::Shopify, Channel::Amazon, Channel::Etsy, Channel::Tiktok, Channel::Ebay];
    let mut tasks = JoinSet::new();
    for n in 0..48 {
        let ledger = ledger.clone();
        let o = order(channels[n % 5], &format!("drop-{n}"), &[("FLASH", 1)], OversellAction::Hold);
        tasks.spawn(async move { ledger.reserve_order(&o).await.unwrap() });
    }
    let mut sold = 0;
    while let Some(change) = tasks.join_next().await {
        let change = change.unwrap();
        if change.outcome == ReserveOutcome::Reserved {
            sold += 1;
            // What the fan-out gets is the SKU's sum as it is after the commit, never a shard.
            assert_eq!(change.positions.len(), 1);
            assert_eq!(change.positions[0].location, "default");
        }
    }
    assert_eq!(sold, 17, "exactly the 17 units still on hand are sold");
    assert_eq!(triple(&ledger, "FLASH").await, (27, 27, 0));
    let shards: Vec<PositionKey> = (0..6).map(|k| shard_key(&key("FLASH"), k)).collect();
    let parts = ledger.store().inner().positions(&shards).await.unwrap();
    assert_eq!(parts.iter().map(|p| p.reserved).sum::<i64>(), 27);
    for p in &parts {
        assert!(p.available >= 0 && p.reserved <= p.on_hand, "a shard gave out units it did not have: {p:?}");
    }
    // A cancellation gives its units back to the shard that held them; the sum is sellable again.
    let early = order(Channel::Shopify, "early-0", &[("FLASH", 2)], OversellAction::Hold);
    ledger.release_order(&early.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
    assert_eq!(triple(&ledger, "FLASH").await, (27, 25, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn delivering_every_order_three_times_gives_the_ledger_of_delivering_it_once() {
    let orders: Vec<OrderReservation> = (0..50)
        .map(|i| {
            let lines: Vec<(&str, u32)> = match i % 3 {
                0 => vec![("R-A", 1)],
                1 => vec![("R-A", 2), ("R-B", 1)],
                _ => vec![("GIFT-SET", 1)],
            };
            order(Channel::Woocommerce, &format!("r{i}"), &lines, OversellAction::Hold)
        })
        .collect();
    let initial = [("R-A", 200), ("R-B", 200), ("TEE-BLK-M", 200), ("MUG-WHITE", 200)];

    let once = ledger().await;
    stock(&once, &initial).await;
    for o in &orders {
        once.reserve_order(o).await.expect("reserve once");
    }

    let thrice = ledger().await;
    stock(&thrice, &initial).await;
    // Three copies of each event, in a scrambled but reproducible order, all in flight together.
    let mut deliveries: Vec<&OrderReservation> = orders.iter().chain(&orders).chain(&orders).collect();
    let n = deliveries.len();
    for i in 0..n {
        deliveries.swap(i, (i * 7919 + 13) % n);
    }
    let mut tasks = JoinSet::new();
    for o in deliveries {
        let (ledger, o) = (thrice.clone(), o.clone());
        tasks.spawn(async move { ledger.reserve_order(&o).await });
    }
    let mut applied: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("task").expect("reserve").outcome;
        let kind = match outcome {
            ReserveOutcome::Reserved => "reserved",
            ReserveOutcome::AlreadyApplied { state } => {
                assert_eq!(state, ReservationState::Reserved);
                "already"
            }
            ReserveOutcome::Oversold { .. } => "oversold",
            ReserveOutcome::Amended => panic!("no order changes its lines here"),
        };
        *applied.entry(kind.to_owned()).or_default() += 1;
    }
    assert_eq!(applied, BTreeMap::from([("already".to_owned(), 100), ("reserved".to_owned(), 50)]));
    for (s, _) in initial {
        assert_eq!(triple(&thrice, s).await, triple(&once, s).await, "{s}");
        let a = thrice.store().entries(&key(s)).await.unwrap().len();
        let b = once.store().entries(&key(s)).await.unwrap().len();
        assert_eq!(a, b, "{s}: same number of entries");
    }
    // 17 single-unit orders, 17 orders of two, 16 gift sets (one tee, two mugs each).
    assert_eq!(triple(&thrice, "R-A").await, (200, 17 + 34, 200 - 51));
    assert_eq!(triple(&thrice, "MUG-WHITE").await, (200, 32, 168));
}

#[tokio::test]
async fn an_erp_update_keeps_open_reservations() {
    let ledger = ledger().await;
    stock(&ledger, &[("ERP-1", 10)]).await;
    let o = order(Channel::Shopify, "e1", &[("ERP-1", 4)], OversellAction::Hold);
    ledger.reserve_order(&o).await.unwrap();

    ledger.set_on_hand(&key("ERP-1"), 6, "erp-2026-01-01T00:00").await.unwrap();
    assert_eq!(triple(&ledger, "ERP-1").await, (6, 4, 2));
    // The same ERP message again changes nothing; a newer one applies.
    ledger.set_on_hand(&key("ERP-1"), 100, "erp-2026-01-01T00:00").await.unwrap();
    assert_eq!(triple(&ledger, "ERP-1").await, (6, 4, 2));
    ledger.set_on_hand(&key("ERP-1"), 3, "erp-2026-01-01T00:05").await.unwrap();
    assert_eq!(triple(&ledger, "ERP-1").await, (3, 4, -1), "the reservation survives a count below it");
    let rec = ledger.reservation(&o.order_id).await.unwrap().unwrap();
    assert_eq!(rec.state, ReservationState::Reserved);
    // A negative count is refused (the inventory API answers 400) and changes nothing.
    let refused = ledger.set_on_hand(&key("ERP-1"), -4, "erp-2026-01-01T00:10").await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert_eq!(triple(&ledger, "ERP-1").await, (3, 4, -1));
}

#[tokio::test]
async fn bulk_import_applies_good_rows_and_reports_bad_ones() {
    let ledger = ledger().await;
    let parsed = manifold_ledger::import::parse_csv("sku,location,on_hand\nIMP-A,,5\nIMP-B,,-2\nIMP-C,wh2,7\n");
    let report = manifold_ledger::import::import(&*ledger, parsed.clone(), "import-1").await.unwrap();
    assert_eq!((report.applied, report.errors.len(), report.errors[0].row), (2, 1, 3));
    assert_eq!(triple(&ledger, "IMP-A").await, (5, 0, 5));
    let wh2 = ledger.position(&PositionKey::new(sku("IMP-C"), "wh2")).await.unwrap();
    assert_eq!(wh2.on_hand, 7);
    let again = manifold_ledger::import::import(&*ledger, parsed, "import-1").await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 2));
}

#[tokio::test]
async fn bundles_all_or_nothing_large_orders_cancel_and_ship() {
    let ledger = ledger().await;
    stock(&ledger, &[("TEE-BLK-M", 10), ("MUG-WHITE", 5), ("SHORT", 1)]).await;

    // Two gift sets and a loose mug: 2 tees, 4 + 1 mugs.
    let gifts = order(Channel::Shopify, "b1", &[("GIFT-SET", 2), ("MUG-WHITE", 1)], OversellAction::Hold);
    assert_eq!(ledger.reserve_order(&gifts).await.unwrap().outcome, ReserveOutcome::Reserved);
    assert_eq!(triple(&ledger, "TEE-BLK-M").await, (10, 2, 8));
    assert_eq!(triple(&ledger, "MUG-WHITE").await, (5, 5, 0));

    // One short line: nothing at all is reserved, and the short line is named.
    let mixed = order(Channel::Etsy, "b2", &[("TEE-BLK-M", 1), ("SHORT", 2)], OversellAction::Cancel);
    match ledger.reserve_order(&mixed).await.unwrap().outcome {
        ReserveOutcome::Oversold { short_lines, action } => {
            assert_eq!(action, OversellAction::Cancel);
            assert_eq!(short_lines.len(), 1);
            assert_eq!(
                (short_lines[0].sku.as_str(), short_lines[0].requested, short_lines[0].available),
                ("SHORT", 2, 1)
            );
        }
        other => panic!("expected oversold, got {other:?}"),
    }
    assert_eq!(triple(&ledger, "TEE-BLK-M").await, (10, 2, 8));
    assert_eq!(triple(&ledger, "SHORT").await, (1, 0, 1));

    // 120 lines on 120 SKUs: more than one transaction can hold.
    let many: Vec<String> = (0..120).map(|i| format!("BULK-{i:03}")).collect();
    let initial: Vec<(&str, i64)> = many.iter().map(|s| (s.as_str(), 3)).collect();
    stock(&ledger, &initial).await;
    let lines: Vec<(&str, u32)> = many.iter().map(|s| (s.as_str(), 2)).collect();
    let big = order(Channel::Amazon, "big", &lines, OversellAction::Hold);
    let out = ledger.reserve_order(&big).await.unwrap();
    assert_eq!(out.outcome, ReserveOutcome::Reserved);
    assert_eq!(out.positions.len(), 120);
    for s in &many {
        assert_eq!(triple(&ledger, s).await, (3, 2, 1), "{s}");
    }
    // A second large order is short on its last SKU: the earlier chunks are given back.
    ledger.set_on_hand(&key("BULK-119"), 2, "erp-recount").await.unwrap();
    let big2 =
        order(Channel::Amazon, "big2", &lines.iter().map(|(s, _)| (*s, 1)).collect::<Vec<_>>(), OversellAction::Hold);
    assert!(matches!(ledger.reserve_order(&big2).await.unwrap().outcome, ReserveOutcome::Oversold { .. }));
    for s in &many {
        assert_eq!(ledger.position(&key(s)).await.unwrap().reserved, 2, "{s} rolled back");
    }

    // Cancel releases exactly once, however often the cancellation arrives.
    for _ in 0..3 {
        ledger.release_order(&big.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
    }
    assert_eq!(triple(&ledger, "BULK-000").await, (3, 0, 3));
    assert_eq!(triple(&ledger, "BULK-119").await, (2, 0, 2));

    // Shipping turns the reservation into an on-hand decrement, once.
    let first = ledger.ship_order(&gifts.order_id, &Scope::WholeOrder, "shipment-1").await.unwrap();
    assert!(matches!(first.outcome, ReleaseOutcome::Applied { .. }));
    let again = ledger.ship_order(&gifts.order_id, &Scope::WholeOrder, "shipment-1").await.unwrap();
    assert_eq!(again.outcome, ReleaseOutcome::AlreadyApplied);
    assert_eq!(triple(&ledger, "TEE-BLK-M").await, (8, 0, 8));
    assert_eq!(triple(&ledger, "MUG-WHITE").await, (0, 0, 0));
}

#[tokio::test]
async fn a_shipment_naming_a_stockless_line_ships_the_rest_and_a_gift_card_alone_moves_nothing() {
    let ledger = ledger().await;
    stock(&ledger, &[("SKULESS-A", 5)]).await;
    let mut o = order(Channel::Shopify, "g1", &[("SKULESS-A", 2)], OversellAction::Hold);
    o.stockless_lines = vec!["gift-card".into()];
    ledger.reserve_order(&o).await.unwrap();
    // The record (read back from DynamoDB) knows the gift card line.
    let rec = ledger.reservation(&o.order_id).await.unwrap().unwrap();
    assert_eq!(rec.stockless_lines, vec!["gift-card".to_owned()]);

    let gift_only = Scope::Lines(vec![("gift-card".into(), 1)]);
    let out = ledger.ship_order(&o.order_id, &gift_only, "shipment:gift").await.unwrap();
    assert_eq!(out.outcome, ReleaseOutcome::NothingHeld);
    assert_eq!(triple(&ledger, "SKULESS-A").await, (5, 2, 3), "the stocked line did not ship with it");

    let both = Scope::Lines(vec![("line-0".into(), 2), ("gift-card".into(), 1)]);
    ledger.ship_order(&o.order_id, &both, "shipment:both").await.unwrap();
    assert_eq!(triple(&ledger, "SKULESS-A").await, (3, 0, 3));
    let unknown = ledger.ship_order(&o.order_id, &Scope::Lines(vec![("nope".into(), 1)]), "shipment:x").await;
    assert!(unknown.is_err_and(|e| !e.is_retryable()));
}

fn position(s: &str, available: i64, version: u64) -> Position {
    Position {
        sku: sku(s),
        location: "default".into(),
        on_hand: available,
        reserved: 0,
        available,
        version,
        as_of: None,
    }
}

fn quantities(jobs: &[PushJob]) -> BTreeMap<Channel, (String, u32)> {
    jobs.iter().map(|j| (j.channel, (j.channel_sku.clone(), j.quantity))).collect()
}

#[test]
fn publishable_quantities_follow_each_channels_buffer_cap_and_threshold() {
    let config = config();
    let q = quantities(&push_jobs(&config, &position("TEE-BLK-M", 20, 1), None));
    let expected: BTreeMap<Channel, (String, u32)> = [
        (Channel::Shopify, ("SHOP-TEE-BLK-M", 18)),      // buffer 2
        (Channel::Woocommerce, ("woo-tee-black-m", 19)), // buffer 1
        (Channel::Bigcommerce, ("TEE-BLK-M", 20)),       // no rules
        (Channel::Amazon, ("TEE-BLK-M", 17)),            // buffer 3
        (Channel::Etsy, ("TEE-BLK-M", 19)),              // buffer 1
        (Channel::Tiktok, ("TEE-BLK-M", 14)),            // (20 - 2) * 80%
        (Channel::Zalando, ("TEE-BLK-M", 18)),           // buffer 2
        (Channel::Ebay, ("TEE-BLK-M", 10)),              // capped at 10
        (Channel::Kaufland, ("TEE-BLK-M", 19)),          // buffer 1
        (Channel::Otto, ("OTTO-TEE-BLK-M", 19)),         // buffer 1
    ]
    .into_iter()
    .map(|(c, (s, n))| (c, (s.to_owned(), n)))
    .collect();
    assert_eq!(q, expected);

    let low = quantities(&push_jobs(&config, &position("TEE-BLK-M", 4, 2), None));
    assert_eq!(low[&Channel::Amazon].1, 0, "(4 - 3) = 1 is below end_when_below = 2");
    assert_eq!(low[&Channel::Tiktok].1, 1, "(4 - 2) * 80% = 1.6, rounded down");
    assert_eq!(low[&Channel::Ebay].1, 3);
    let negative = quantities(&push_jobs(&config, &position("TEE-BLK-M", -3, 3), None));
    assert!(negative.values().all(|(_, n)| *n == 0), "back-orders never publish negative stock");
}

#[tokio::test]
async fn fan_out_coalesces_and_never_pushes_a_stale_value() {
    let aws = support::aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let table = support::create_table(&ddb, "pushgate").await;
    let mut urls = BTreeMap::new();
    for c in Channel::ALL {
        urls.insert(c, support::create_queue(&sqs, &format!("push-{c}")).await);
    }
    let config = config();
    let gate = PushGate::new(ddb, table);
    let queue = SqsPushQueue::new(sqs.clone(), urls.clone());

    let v2 = fan_out(&config, &[position("TEE-BLK-M", 20, 2)], &gate, &queue, None).await.unwrap();
    let every = Channel::ALL.len();
    assert_eq!((v2.enqueued.len(), v2.coalesced), (every, 0));
    // A late, older change arrives after the newer one: dropped for every channel.
    let stale = fan_out(&config, &[position("TEE-BLK-M", 25, 1)], &gate, &queue, None).await.unwrap();
    assert_eq!((stale.enqueued.len(), stale.coalesced), (0, every));
    // One unit fewer: eBay stays capped at 10, so only the other channels change.
    let v3 = fan_out(&config, &[position("TEE-BLK-M", 19, 3)], &gate, &queue, None).await.unwrap();
    assert_eq!((v3.enqueued.len(), v3.coalesced), (every - 1, 1));
    assert!(v3.enqueued.iter().all(|j| j.channel != Channel::Ebay));

    // The consumer skips the superseded Shopify job but still pushes eBay's (still current) one.
    let shopify_v2 = v2.enqueued.iter().find(|j| j.channel == Channel::Shopify).unwrap();
    let ebay_v2 = v2.enqueued.iter().find(|j| j.channel == Channel::Ebay).unwrap();
    assert!(!gate.is_current(shopify_v2).await.unwrap());
    assert!(gate.is_current(ebay_v2).await.unwrap());
    let shopify_v3 = v3.enqueued.iter().find(|j| j.channel == Channel::Shopify).unwrap();
    assert!(gate.is_current(shopify_v3).await.unwrap());

    // What actually sits on Shopify's queue: v2 then v3, as JSON jobs.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<PushJob>::new()));
    let jobs = support::eventually("two shopify push jobs", std::time::Duration::from_secs(10), || {
        let (sqs, seen) = (sqs.clone(), seen.clone());
        let url = urls[&Channel::Shopify].clone();
        async move {
            let out = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.ok()?;
            let mut seen = seen.lock().unwrap();
            for m in out.messages.unwrap_or_default() {
                seen.push(serde_json::from_str(m.body()?).expect("a push job"));
            }
            (seen.len() >= 2).then(|| seen.clone())
        }
    })
    .await;
    let versions: std::collections::BTreeSet<u64> = jobs.iter().map(|j| j.version).collect();
    assert_eq!(versions, [2, 3].into_iter().collect());
    assert!(jobs.iter().all(|j| j.channel_sku == "SHOP-TEE-BLK-M"));

    // The merchant remaps the SKU on Shopify: the same quantity at the same version goes out under the
    // new channel SKU (a full sync after a mapping change), and to no other channel.
    let mut remapped = config.clone();
    let shop = remapped.accounts.iter_mut().find(|a| a.channel == Channel::Shopify).unwrap();
    shop.sku_map.retain(|_, master| master.as_str() != "TEE-BLK-M");
    shop.sku_map.insert(ChannelSku::new("SHOP-TEE-BLK-M-V2").unwrap(), Sku::new("TEE-BLK-M").unwrap());
    let again = fan_out(&remapped, &[position("TEE-BLK-M", 19, 3)], &gate, &queue, None).await.unwrap();
    assert_eq!((again.enqueued.len(), again.coalesced), (1, every - 1), "{again:?}");
    assert_eq!(again.enqueued[0].channel_sku, "SHOP-TEE-BLK-M-V2");
    let twice = fan_out(&remapped, &[position("TEE-BLK-M", 19, 3)], &gate, &queue, None).await.unwrap();
    assert_eq!(twice.enqueued.len(), 0, "then coalesced like any value the channel has");
}

#[tokio::test]
async fn a_held_order_that_ships_anyway_leaves_on_hand_once_and_a_backordered_one_ships_what_it_holds() {
    let ledger = ledger().await;
    stock(&ledger, &[("HELD-A", 2), ("HELD-B", 5)]).await;
    let held = order(Channel::Shopify, "held-1", &[("HELD-A", 3)], OversellAction::Hold);
    assert!(matches!(ledger.reserve_order(&held).await.unwrap().outcome, ReserveOutcome::Oversold { .. }));
    // Shipped although nothing was reserved: on-hand goes down by the three units, reserved stays.
    ledger.ship_order(&held.order_id, &Scope::WholeOrder, "ship-held").await.unwrap();
    ledger.ship_order(&held.order_id, &Scope::WholeOrder, "ship-held").await.unwrap();
    ledger.ship_order(&held.order_id, &Scope::WholeOrder, "fulfilled").await.unwrap();
    assert_eq!(triple(&ledger, "HELD-A").await, (-1, 0, -1));
    let rec = ledger.reservation(&held.order_id).await.unwrap().unwrap();
    assert_eq!(rec.state, ReservationState::Shipped);

    // A backordered order holds all its units: shipping it takes them out of `reserved`.
    let back = order(Channel::Ebay, "back-1", &[("HELD-B", 7)], OversellAction::Backorder);
    ledger.reserve_order(&back).await.unwrap();
    assert_eq!(triple(&ledger, "HELD-B").await, (5, 7, -2));
    ledger.ship_order(&back.order_id, &Scope::Lines(vec![("line-0".into(), 7)]), "ship-back").await.unwrap();
    ledger.ship_order(&back.order_id, &Scope::Lines(vec![("line-0".into(), 7)]), "ship-back").await.unwrap();
    assert_eq!(triple(&ledger, "HELD-B").await, (-2, 0, -2));
    let entries = ledger.store().entries(&key("HELD-A")).await.unwrap();
    assert_eq!(entries.len(), 2, "the count and one shipment: {entries:?}");
    assert_eq!((entries[1].on_hand_delta, entries[1].reserved_delta), (-3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_versions_of_an_order_leave_the_latest_ones_reservation_and_never_oversell() {
    let ledger = ledger().await;
    stock(&ledger, &[("EDIT-A", 6)]).await;
    let version = |v: i64, q: u32| {
        let mut o = order(Channel::Etsy, "edit-1", &[("EDIT-A", q)], OversellAction::Hold);
        o.version = v;
        o
    };
    ledger.reserve_order(&version(1, 1)).await.unwrap();
    let mut tasks = JoinSet::new();
    // Versions 2..=9 delivered at once and out of order, each delivered twice.
    for v in (2..=9).rev().chain(2..=9) {
        let ledger = ledger.clone();
        let o = version(v, u32::try_from(v % 5 + 1).unwrap());
        tasks.spawn(async move { ledger.reserve_order(&o).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("reserve");
    }
    let rec = ledger.reservation(&version(1, 1).order_id).await.unwrap().unwrap();
    assert_eq!(rec.order_version, 9);
    assert_eq!(triple(&ledger, "EDIT-A").await, (6, 5, 1), "version 9 holds 9 % 5 + 1 = 5");
    for e in ledger.store().entries(&key("EDIT-A")).await.unwrap() {
        assert!(e.reserved_after <= e.on_hand_after, "oversold: {e:?}");
    }
}

/// An offer whose enqueue and withdrawal both failed stays "in flight" at the gate. The retry of the
/// same transaction (the same trace id) sends it again at once instead of waiting until it is presumed
/// lost; another transaction's offer of that version is still coalesced, and once the channel took it
/// the retry is coalesced too.
#[tokio::test]
async fn a_retried_transaction_resends_its_own_offer_that_never_reached_the_queue() {
    let aws = support::aws().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let table = support::create_table(&ddb, "pushgate-retry").await;
    let gate = PushGate::new(ddb, table);
    let config = config();
    let job = push_jobs(&config, &position("TEE-RETRY", 7, 4), Some("count-42"))
        .into_iter()
        .find(|j| j.channel == Channel::Shopify)
        .expect("a Shopify job");

    assert!(gate.offer(&job).await.unwrap(), "the first offer");
    // (Its enqueue failed here, and so did the withdrawal: nothing records that it never left.)
    let other = PushJob { trace_id: Some("stock-run-7".into()), ..job.clone() };
    assert!(!gate.offer(&other).await.unwrap(), "another transaction's offer of the version in flight");
    assert!(gate.offer(&job).await.unwrap(), "the same transaction's retry goes out again");
    let state = gate.state(&job).await.unwrap().expect("recorded");
    assert_eq!((state.version, state.offered_by.as_deref()), (4, Some("count-42")));

    gate.delivered(&job).await.unwrap();
    assert!(!gate.offer(&job).await.unwrap(), "delivered: the retry is coalesced");
}
