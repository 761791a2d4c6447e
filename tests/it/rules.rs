//! Business rules and prices against moto and the simulators: a promotion window re-prices every
//! listing of every channel at its start and end through the scheduler's tick, the sync runs, the
//! push queues and the push consumers; orders are routed to a carrier and held for review until an
//! operator releases them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use manifold_app::{
    ledger::{LedgerOutcome, OnHandUpdate},
    prices::PriceInput,
    sync::job::PageMessage,
};
use manifold_domain::{
    Channel, Sku,
    config::{Cadence, ChannelConfig},
    rules::{OrderMatch, PriceRule, RoutingRule, Rules, Scope, ShippingRule, Window},
};
use manifold_ledger::Ledger as _;
use manifold_simulator::Write;
use serde_json::json;

use crate::{
    inbound::{Harness, shopify_headers},
    matrix::{catalog_item, mentions},
    support::{create_queue, lambda_event},
};

const BASE: &str = "24.35";
const BASE_MINOR: &str = "2435";
/// 24.35 less 20 %.
const PROMOTED: &str = "19.48";
const PROMOTED_MINOR: &str = "1948";

/// Every account on demand only, so the tick starts nothing but what a promotion window asks for.
pub(crate) fn on_demand(config: &mut ChannelConfig) {
    for a in &mut config.accounts {
        a.sync.stock = Cadence::OnDemand;
        a.sync.prices = Cadence::OnDemand;
        a.sync.images = Cadence::OnDemand;
        a.sync.reconcile = Cadence::OnDemand;
        a.sync.listings = Cadence::OnDemand;
        a.sync.orders = Cadence::Realtime;
    }
}

fn price_rule(id: &str) -> PriceRule {
    PriceRule {
        id: id.into(),
        scope: Scope::default(),
        window: None,
        when: None,
        percent: None,
        amount: None,
        fixed: None,
        round: None,
        floor: None,
        ceiling: None,
    }
}

/// The sync queue's pages, run as its consumer would with the clock at `now`, until none is left.
async fn run_pages(h: &Harness, sync_queue: &str, now: DateTime<Utc>) -> usize {
    let mut pages = 0;
    loop {
        let messages = h.stack.drain(sync_queue).await;
        if messages.is_empty() {
            return pages;
        }
        for m in messages {
            let page: PageMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            h.app.sync_page(&page, now).await.expect("the page runs");
            pages += 1;
        }
    }
}

/// Runs each channel's push consumer over what its queue holds; the channel's new writes.
pub(crate) async fn push_all(h: &Harness) -> BTreeMap<Channel, Vec<Write>> {
    let before = h.sim.snapshot().writes;
    for channel in Channel::ALL {
        let messages = h.stack.drain(&h.stack.env.push_queues[&channel]).await;
        if !messages.is_empty() {
            let response = h.app.push_batch(channel, lambda_event(&messages)).await;
            assert!(response.batch_item_failures.is_empty(), "{channel}: {:?}", response.batch_item_failures);
        }
    }
    let after = h.sim.snapshot().writes;
    Channel::ALL
        .into_iter()
        .map(|c| {
            let seen = before.get(&c).map_or(0, Vec::len);
            (c, after.get(&c).map(|w| w[seen..].to_vec()).unwrap_or_default())
        })
        .collect()
}

/// Every channel wrote `amount` (as a decimal or in minor units).
fn every_channel_wrote(writes: &BTreeMap<Channel, Vec<Write>>, amount: &str, minor: &str) {
    for (channel, w) in writes {
        assert!(
            w.iter().any(|w| mentions(w, amount) || mentions(w, minor)),
            "{channel} was not given {amount}: {:?}",
            w.iter().map(|w| format!("{} {} {}", w.method, w.path, w.body)).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_promotion_window_reprices_every_listing_at_its_start_and_end_and_an_unchanged_run_calls_no_channel() {
    let sdk = crate::support::aws().await;
    let sync_queue = create_queue(&aws_sdk_sqs::Client::new(&sdk), "sync").await;
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let (start, end) = (t0 + Duration::hours(1), t0 + Duration::hours(2));
    let q = sync_queue.clone();
    let h = Harness::with_settings(
        |c| {
            on_demand(c);
            let mut promotion = price_rule("winter-sale");
            promotion.percent = Some("-20".parse().unwrap());
            promotion.window = Some(Window { start: start.naive_utc(), end: end.naive_utc(), time_zone: "UTC".into() });
            let mut guard = price_rule("no-cheap-mugs");
            guard.scope.sku_prefixes = vec!["MUG-".into()];
            guard.floor = Some("30".parse().unwrap());
            c.rules = Rules { price: vec![promotion, guard], ..Rules::default() };
        },
        move |s| s.sync_queue_url = Some(q),
    )
    .await;

    // Two listings on every channel, synced so each account knows its ids; a base price for each, in
    // the currency the listing shows. Shopify also lists a mug whose price the guard refuses.
    let mut listed = Vec::new();
    for (i, channel) in Channel::ALL.into_iter().enumerate() {
        let mut items: Vec<_> = (1..=2).map(|k| catalog_item(channel, 100 * (i + 1) + k).0).collect();
        if channel == Channel::Shopify {
            let mut mug = catalog_item(channel, 100 * (i + 1) + 3).0;
            mug.sku = "MUG-1".into();
            items.push(mug);
        }
        let count = items.len();
        h.sim.seed_catalog(channel, items);
        let account = h.app.config().await.enabled_accounts().find(|a| a.channel == channel).cloned().unwrap();
        let report = h.app.sync_listings(&account).await.expect("listing sync");
        assert_eq!(report.listed, count, "{channel}");
        for stored in h.app.listings.account_listings(channel, &account.account).await.unwrap() {
            let currency = stored.listing.currency.map_or_else(|| "EUR".to_owned(), |c| c.to_string());
            let mug = stored.listing.sku == "MUG-1";
            let input = PriceInput {
                amount: json!(if mug { "9.99" } else { BASE }),
                currency,
                compare_at: None,
                effective_at: Some(t0 - Duration::days(1)),
                source_ref: None,
            };
            h.app.set_price(&stored.listing.sku, &input, "trace-erp", t0).await.expect("base price");
            if !mug {
                listed.push((channel, account.account.clone(), stored.listing.sku.clone()));
            }
        }
    }
    assert_eq!(listed.len(), 2 * Channel::ALL.len());

    // The hourly run: every listing gets its base price; the mug is refused by the guard, never sent.
    let run = h.app.run_tier("prices", t0).await.unwrap();
    assert_eq!(run.push_jobs, listed.len(), "{run:?}");
    assert!(run.note.as_deref().is_some_and(|n| n.contains("refused")), "{run:?}");
    every_channel_wrote(&push_all(&h).await, BASE, BASE_MINOR);
    let quarantined = h.app.quarantine.list(false).await.unwrap();
    let refused: Vec<_> = quarantined.iter().filter(|q| q.stage == "price").collect();
    assert!(!refused.is_empty() && refused.iter().all(|q| q.reason.contains("MUG-1") && q.reason.contains("floor 30")));
    let requests: u64 = h.sim.snapshot().requests.values().sum();

    // Nothing changed: the next run queues nothing and no channel is called.
    let again = h.app.run_tier("prices", t0 + Duration::minutes(5)).await.unwrap();
    assert_eq!(again.push_jobs, 0, "{again:?}");
    assert!(push_all(&h).await.values().all(Vec::is_empty));
    assert_eq!(h.sim.snapshot().requests.values().sum::<u64>(), requests);

    // The window opens: the tick starts a prices run of every account at its edge, once.
    let ticked = h.app.tick(start).await.unwrap();
    assert_eq!(ticked.started.len(), Channel::ALL.len(), "{ticked:?}");
    assert!(ticked.started.iter().all(|r| r.slot.ends_with("#prices")));
    assert!(h.app.tick(start + Duration::minutes(1)).await.unwrap().started.is_empty(), "one run per edge");
    run_pages(&h, &sync_queue, start).await;
    every_channel_wrote(&push_all(&h).await, PROMOTED, PROMOTED_MINOR);
    for (channel, account, sku) in &listed {
        let delivered = h.app.prices.delivered_of(*channel, account, std::slice::from_ref(sku)).await.unwrap();
        let d = &delivered[sku];
        assert_eq!(
            (d.amount.to_string().as_str(), d.rules.as_slice()),
            (PROMOTED, ["winter-sale".to_owned()].as_slice())
        );
    }
    // `manifold trace` finds each delivered price under the run's trace id.
    let (channel, account, sku) = &listed[0];
    let trace =
        h.app.prices.delivered_of(*channel, account, std::slice::from_ref(sku)).await.unwrap()[sku].trace_id.clone();
    let traced = h.app.records.by_trace(&trace).await.unwrap();
    assert!(traced.iter().any(|r| r.kind == "price_delivery" && r.record["rules"][0] == "winter-sale"), "{traced:?}");

    // The window closes: the price returns by itself, on every listing, with no rule on it.
    assert_eq!(h.app.tick(end).await.unwrap().started.len(), Channel::ALL.len());
    run_pages(&h, &sync_queue, end).await;
    every_channel_wrote(&push_all(&h).await, BASE, BASE_MINOR);
    for (channel, account, sku) in &listed {
        let d = &h.app.prices.delivered_of(*channel, account, std::slice::from_ref(sku)).await.unwrap()[sku];
        assert_eq!((d.amount.to_string().as_str(), d.rules.len()), (BASE, 0));
    }
    let history = h.app.prices.history(&Sku::new(&listed[0].2).unwrap(), 10).await.unwrap();
    assert_eq!(history.len(), 1, "the base price itself never changed");
}

/// The Shopify fixture order, shipped to Austria, under another id, with this total.
fn austrian_order(id: u64, total: &str, updated_at: &str) -> Vec<u8> {
    let mut order: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let order = &mut order["order"];
    order["id"] = json!(id);
    order["name"] = json!(format!("#{id}"));
    order["total_price"] = json!(total);
    order["updated_at"] = json!(updated_at);
    order["shipping_address"]["country_code"] = json!("AT");
    serde_json::to_vec(order).unwrap()
}

async fn deliver(h: &Harness, body: &[u8], event_id: &str, topic: &str) -> Vec<(String, LedgerOutcome)> {
    let headers = shopify_headers(body, event_id, topic);
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, body, Utc::now()).await.status, 200);
    h.run_ingest().await;
    let mut out = Vec::new();
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        out.push((kind.clone(), h.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("ledger applies")));
    }
    out
}

fn reserved_jobs(applied: &[(String, LedgerOutcome)]) -> bool {
    applied.iter().any(|(_, o)| matches!(o, LedgerOutcome::Reserved { .. }))
}

#[tokio::test]
async fn an_austrian_order_gets_the_configured_carrier_and_a_large_one_reserves_nothing_until_released() {
    let h = Harness::with_config(|c| {
        c.rules = Rules {
            routing: vec![RoutingRule {
                id: "review-large".into(),
                scope: Scope::default(),
                window: None,
                when: Some("order.totals.total > 1000".into()),
                order: OrderMatch::default(),
                hold: Some("value above 1000".into()),
                location: None,
                tags: vec!["review".into()],
            }],
            shipping: vec![ShippingRule {
                id: "alpine-express".into(),
                scope: Scope { channels: vec![Channel::Shopify], ..Scope::default() },
                window: None,
                when: Some(r#"order.shipping_address.country_code in ["AT", "CH"] && order.totals.total > 100"#.into()),
                order: OrderMatch::default(),
                carrier: "DHL".into(),
                service: Some("Express".into()),
            }],
            price: Vec::new(),
        };
    })
    .await;
    let update = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-1".into()), as_of: None };
    h.app.set_on_hand("IPOD2009BLACK", &update, "trace-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;

    // 181.09 to Austria: DHL Express, reserved at once.
    let applied = deliver(&h, &austrian_order(501, "181.09", "2026-11-30T10:00:00Z"), "evt-r1", "orders/create").await;
    assert!(reserved_jobs(&applied), "{applied:?}");
    let small =
        h.app.records.get_order(&manifold_domain::OrderId::new("shopify:shop-eu:501").unwrap()).await.unwrap().unwrap();
    let f = small.fulfillment.expect("routed");
    assert_eq!((f.carrier.as_deref(), f.service.as_deref(), f.hold.is_none()), (Some("DHL"), Some("Express"), true));
    assert_eq!(f.rules.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(), ["alpine-express"]);
    assert_eq!(position(&h).await.reserved, 1);

    // 1500 to Austria: held for review, with the rule and reason on the record; nothing reserved,
    // not even when the channel updates the order.
    let id = manifold_domain::OrderId::new("shopify:shop-eu:502").unwrap();
    let applied = deliver(&h, &austrian_order(502, "1500.00", "2026-11-30T11:00:00Z"), "evt-r2", "orders/create").await;
    assert!(!reserved_jobs(&applied), "{applied:?}");
    assert!(
        applied.iter().any(|(_, o)| matches!(o, LedgerOutcome::Ignored(why) if why.contains("held"))),
        "{applied:?}"
    );
    let applied =
        deliver(&h, &austrian_order(502, "1500.00", "2026-11-30T11:30:00Z"), "evt-r3", "orders/updated").await;
    assert!(!reserved_jobs(&applied), "an update keeps the hold: {applied:?}");
    let stored = h.app.records.get_order(&id).await.unwrap().unwrap();
    let hold = stored.fulfillment.as_ref().and_then(|f| f.hold.clone()).expect("held");
    assert_eq!((hold.rule.as_str(), hold.reason.as_str()), ("review-large", "value above 1000"));
    assert_eq!(stored.fulfillment.as_ref().unwrap().carrier.as_deref(), Some("DHL"));
    assert_eq!(position(&h).await.reserved, 1);
    // The trace of the order's webhook shows why.
    let traced = h.app.records.by_trace(&held_trace(&h, &id).await).await.unwrap();
    assert!(traced.iter().any(|r| r.record["fulfillment"]["hold"]["rule"] == "review-large"), "{traced:?}");

    // Released by an operator: the ledger reserves it; the release is on the record.
    let released = h.app.release_order(id.as_str(), "ops@merchant", "trace-release", Utc::now()).await.unwrap();
    assert_eq!(released.rule, "review-large");
    let mut applied = Vec::new();
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        applied.push(h.app.apply_event(&kind, &e["detail"], Utc::now()).await.unwrap());
    }
    assert!(applied.iter().any(|o| matches!(o, LedgerOutcome::Reserved { .. })), "{applied:?}");
    assert_eq!(position(&h).await.reserved, 2);
    let stored = h.app.records.get_order(&id).await.unwrap().unwrap();
    let release = stored.fulfillment.and_then(|f| f.hold).and_then(|h| h.released).expect("released");
    assert_eq!(release.by, "ops@merchant");
    // Asking again publishes the release again (a lost publish is finished so); the ledger applies
    // it once.
    let again = h.app.release_order(id.as_str(), "someone-else", "trace-release-2", Utc::now()).await.unwrap();
    assert_eq!(again.released_by, "ops@merchant");
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        h.app.apply_event(&kind, &e["detail"], Utc::now()).await.unwrap();
    }
    assert_eq!(position(&h).await.reserved, 2);
    // An order that is not held cannot be released.
    let err = h.app.release_order("shopify:shop-eu:501", "ops", "t", Utc::now()).await.unwrap_err();
    assert!(err.to_string().contains("not held"), "{err}");
}

/// The trace id the held order was stored under.
async fn held_trace(h: &Harness, id: &manifold_domain::OrderId) -> String {
    let item = h
        .stack
        .ddb
        .get_item()
        .table_name(&h.stack.env.records_table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ORDER#{id}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("CURRENT".into()))
        .send()
        .await
        .unwrap();
    item.item.unwrap()["trace_id"].as_s().unwrap().clone()
}

async fn position(h: &Harness) -> manifold_ledger::Position {
    let key = manifold_ledger::PositionKey::new(Sku::new("IPOD2009BLACK").unwrap(), "default");
    h.app.ledger.position(&key).await.unwrap()
}

#[tokio::test]
async fn a_price_file_applies_its_good_rows_reports_the_bad_ones_by_number_and_a_stale_price_changes_nothing() {
    let h = Harness::new().await;
    let now = Utc::now();
    let sku = format!("CSV-{}", now.timestamp_micros());
    let csv = format!(
        "sku,amount,currency,compare_at,effective_at\n\
         {sku},19.99,EUR,24.99,2026-11-01T00:00:00Z\n\
         {sku}-2,abc,EUR,,\n\
         {sku}-3,5.00,EURO,,\n\
         {sku}-4,-1.00,EUR,,\n\
         {sku},18.99,EUR,,2026-10-01T00:00:00Z\n"
    );
    let report = h.app.import_prices(&csv, true, "erp-file-1", "trace-csv", now).await.unwrap();
    assert_eq!(report["applied"], 1, "{report}");
    let rows: Vec<u64> = report["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [2, 3, 4, 5], "{report}");
    let reasons = report["errors"].to_string();
    assert!(reasons.contains("amount") && reasons.contains("EURO") && reasons.contains("positive"), "{reasons}");
    assert!(reasons.contains("already set"), "the older row is stale: {reasons}");

    let stored = h.app.prices.get().get(&Sku::new(&sku).unwrap()).await.unwrap().expect("applied");
    assert_eq!(
        (stored.amount.to_string().as_str(), stored.compare_at.map(|c| c.to_string())),
        ("19.99", Some("24.99".into()))
    );
    // The same file again changes nothing; a newer price through the API is the next history entry.
    let again = h.app.import_prices(&csv, true, "erp-file-1", "trace-csv-2", now).await.unwrap();
    assert_eq!((again["applied"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(1)), "{again}");
    let newer: PriceInput =
        serde_json::from_value(json!({ "amount": 17.5, "currency": "EUR", "source_ref": "erp-42" })).unwrap();
    h.app.set_price(&sku, &newer, "trace-put", now).await.unwrap();
    let older: PriceInput =
        serde_json::from_value(json!({ "amount": "16.00", "currency": "EUR", "effective_at": "2026-01-01T00:00:00Z" }))
            .unwrap();
    let stale = h.app.set_price(&sku, &older, "trace-put-2", now).await.unwrap_err();
    assert_eq!(manifold_app::prices::api_status(&stale), 409, "{stale}");
    let history = h.app.prices.history(&Sku::new(&sku).unwrap(), 10).await.unwrap();
    let amounts: Vec<String> = history.iter().map(|c| c.price.amount.to_string()).collect();
    assert_eq!(amounts, ["17.50", "19.99"], "newest first");
    assert_eq!(history[0].source_ref, "erp-42");
    assert_eq!(history[1].source_ref, "erp-file-1#1");
}

#[tokio::test]
async fn product_tags_and_weights_from_the_pim_hold_route_and_price_as_the_rules_say() {
    let h = Harness::with_config(|c| {
        on_demand(c);
        c.rules = Rules {
            routing: vec![RoutingRule {
                id: "fragile-review".into(),
                scope: Scope { tags: vec!["fragile".into()], ..Scope::default() },
                window: None,
                when: None,
                order: OrderMatch::default(),
                hold: Some("fragile goods are checked by hand".into()),
                location: None,
                tags: Vec::new(),
            }],
            shipping: vec![ShippingRule {
                id: "heavy-freight".into(),
                scope: Scope::default(),
                window: None,
                when: None,
                order: OrderMatch { min_weight_g: Some(20_000), ..OrderMatch::default() },
                carrier: "DB Schenker".into(),
                service: None,
            }],
            price: vec![PriceRule {
                percent: Some("-50".parse().unwrap()),
                scope: Scope { tags: vec!["clearance".into()], ..Scope::default() },
                ..price_rule("clearance")
            }],
        };
    })
    .await;
    let now = Utc::now();
    let content = |tags: &[&str], weight_grams: Option<u32>| manifold_app::content::ContentInput {
        title: "Tagged".into(),
        description: None,
        attributes: BTreeMap::new(),
        images: Vec::new(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        weight_grams,
        updated_at: Some(now),
    };

    // The PIM tags the fixture order's first SKU fragile, and every SKU weighs 25 kg: the order is
    // held by the tag rule and goes by freight.
    let fixture: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    let skus: Vec<String> = fixture["order"]["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["sku"].as_str().filter(|s| !s.is_empty()).map(str::to_owned))
        .collect();
    for (i, sku) in skus.iter().enumerate() {
        let tags: &[&str] = if i == 0 { &["fragile"] } else { &[] };
        h.app.set_content(sku, &content(tags, Some(25_000)), "trace-pim", now).await.unwrap();
    }
    let applied =
        deliver(&h, &austrian_order(7_100_001, "50.00", "2026-12-01T10:00:00Z"), "tag-1", "orders/create").await;
    assert!(!reserved_jobs(&applied), "a held order reserves nothing: {applied:?}");
    let id = manifold_domain::OrderId::new("shopify:shop-eu:7100001").unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("stored");
    let fulfillment = stored.fulfillment.expect("routed");
    assert_eq!(fulfillment.hold.as_ref().map(|h| h.rule.as_str()), Some("fragile-review"));
    assert_eq!(fulfillment.carrier.as_deref(), Some("DB Schenker"), "{:?}", fulfillment.rules);

    // Two Shopify listings, one tagged clearance: only that one is marked down by the prices run.
    let items: Vec<_> = (1..=2).map(|k| catalog_item(Channel::Shopify, 900 + 3 * k).0).collect();
    h.sim.seed_catalog(Channel::Shopify, items.clone());
    let account = h.app.config().await.enabled_accounts().find(|a| a.channel == Channel::Shopify).cloned().unwrap();
    h.app.sync_listings(&account).await.unwrap();
    for item in &items {
        let price = PriceInput {
            amount: json!("40.00"),
            currency: "USD".into(),
            compare_at: None,
            effective_at: Some(now),
            source_ref: None,
        };
        h.app.set_price(&item.sku, &price, "trace-erp", now).await.unwrap();
    }
    h.app.set_content(&items[0].sku, &content(&["clearance"], None), "trace-pim", now).await.unwrap();
    let page = h.app.price_page(&account, None, "trace-prices", now).await.unwrap();
    assert_eq!(page.pushed, 2, "{page:?}");
    push_all(&h).await;
    let skus: Vec<String> = items.iter().map(|i| i.sku.clone()).collect();
    let delivered = h.app.prices.delivered_of(Channel::Shopify, &account.account, &skus).await.unwrap();
    assert_eq!(delivered[&skus[0]].amount.to_string(), "20.00");
    assert_eq!(delivered[&skus[0]].rules, ["clearance"]);
    assert_eq!((delivered[&skus[1]].amount.to_string().as_str(), delivered[&skus[1]].rules.len()), ("40.00", 0));
}

/// An operator's release racing the channel's updates of the same order: the store's write of an
/// update is conditional on the version it read, so a release landing between its read and its
/// write makes it retry (as SQS would redeliver it), never overwrite the release.
#[tokio::test]
async fn a_release_racing_updates_of_the_order_is_never_lost() {
    let h = Harness::with_config(|c| {
        c.rules = Rules {
            routing: vec![RoutingRule {
                id: "review-all".into(),
                scope: Scope::default(),
                window: None,
                when: None,
                order: OrderMatch::default(),
                hold: Some("every order is checked".into()),
                location: None,
                tags: Vec::new(),
            }],
            ..Rules::default()
        };
    })
    .await;
    for n in 0..6_u64 {
        let number = 7_200_000 + n;
        deliver(&h, &austrian_order(number, "50.00", "2026-11-30T10:00:00Z"), &format!("race-{n}"), "orders/create")
            .await;
        let id = manifold_domain::OrderId::new(format!("shopify:shop-eu:{number}")).unwrap();
        let stored = h.app.records.get_order(&id).await.unwrap().expect("stored");
        let updates = async {
            for k in 1..=4_i64 {
                let order = manifold_domain::Order {
                    source_version: stored.source_version + k,
                    updated_at: stored.updated_at + Duration::seconds(k),
                    ..stored.clone()
                };
                let key = format!("race-{n}-update-{k}");
                let mut attempts = 0;
                // A write that lost the race is retryable: the message would come back.
                while let Err(e) = h.app.store_order(&order, &key, "trace-race", Utc::now()).await {
                    attempts += 1;
                    assert!(e.is_retryable() && attempts < 10, "{e}");
                }
            }
        };
        let release = h.app.release_order(id.as_str(), "ops", "trace-release", Utc::now());
        let ((), released) = tokio::join!(updates, release);
        released.expect("released");
        let after = h.app.records.get_order(&id).await.unwrap().unwrap();
        assert_eq!(after.source_version, stored.source_version + 4, "every update stored");
        let hold = after.fulfillment.and_then(|f| f.hold).expect("still the held order");
        assert_eq!(hold.released.map(|r| r.by).as_deref(), Some("ops"), "order {n}: the release survived the updates");
    }
}
