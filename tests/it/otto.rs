//! OTTO Market end to end against moto. OTTO pushes nothing: its orders arrive through the scheduler's
//! orders tier, at the account's `sync.orders` cadence (5 minutes in the example). A tick starts the
//! OTTO account's orders run, the run's page (handed over as the SyncQueue's mapping would) lists the
//! orders changed in the last two cadences through the connector, ingest stores each as a delivery (not
//! drift), the ledger reserves its units, and OTTO's push function writes the new availability to the
//! OTTO simulator. When OTTO later cancels the order, the next run brings the cancellation and the
//! units go back on sale.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use manifold_app::{
    App,
    app::Settings,
    ledger::{LedgerOutcome, OnHandUpdate},
    sync::{
        Slot, SyncKind, SyncRun,
        job::PageMessage,
        store::{DynamoSyncStore, SyncStore},
    },
};
use manifold_aws::secrets::StaticSecrets;
use manifold_domain::{
    Channel, OrderId, OrderStatus, Sku,
    config::{AccountConfig, ChannelConfig},
};
use manifold_ledger::{Ledger, PositionKey};
use manifold_simulator::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::{
    fixtures::EXAMPLE,
    support::{self, Stack},
};

const ORDER: &str = include_str!("../../shared/normalize/fixtures/otto/order-processable-written-from-docs.json");
const SALES_ORDER: &str = "5f1b8a55-2b7c-4f0e-9d1a-6c3e2a7b9d10";

/// A private stack with a sync queue, the simulator, and an `App` whose one account is the example's
/// OTTO account (pointed at the simulator, its secret holding the app's client credentials).
struct Rig {
    stack: Stack,
    sim: SimHandle,
    app: App,
    sync_queue: String,
    runs: DynamoSyncStore,
    account: AccountConfig,
}

impl Rig {
    async fn new() -> Self {
        let stack = Stack::new().await;
        let sync_queue = support::create_queue(&stack.sqs, "sync").await;
        let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
        let example = ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example configuration");
        let mut account = example.accounts.into_iter().find(|a| a.channel == Channel::Otto).expect("an OTTO account");
        account.endpoint = sim.base_url(Channel::Otto);
        let secrets =
            StaticSecrets(HashMap::from([(account.secret.clone(), crate::fixtures::account_secret(Channel::Otto))]));
        let config = ChannelConfig::of_accounts(vec![account.clone()]);
        let settings =
            Settings { sync_queue_url: Some(sync_queue.clone()), emulator_safe_ledger: true, ..Settings::default() };
        let app = App::build(config, stack.env.clone(), settings, &stack.sdk, Arc::new(secrets)).expect("app");
        let runs = DynamoSyncStore::new(stack.ddb.clone(), &stack.env.state_table);
        Self { stack, sim, app, sync_queue, runs, account }
    }

    /// One scheduler tick at `now`, then the pages of the OTTO orders run it started (the other kinds'
    /// runs are not this test's business). Returns the orders run as recorded.
    async fn orders_tier(&self, now: DateTime<Utc>) -> SyncRun {
        let slot = Slot::new(Channel::Otto, self.account.account.clone(), SyncKind::Orders).to_string();
        let tick = self.app.tick(now).await.expect("tick");
        let run = tick.started.iter().find(|s| s.slot == slot).expect("the orders slot is due").run.clone();
        loop {
            let pages: Vec<PageMessage> = self
                .stack
                .drain(&self.sync_queue)
                .await
                .iter()
                .map(|m| serde_json::from_str(m.body().unwrap_or_default()).expect("a page message"))
                .filter(|p: &PageMessage| p.run == run)
                .collect();
            if pages.is_empty() {
                return self.runs.run(&run).await.expect("read run").expect("the run exists");
            }
            for page in pages {
                self.app.sync_page(&page, now).await.expect("the orders page runs");
            }
        }
    }

    /// Feeds the bus events published so far to the ledger consumer, as the LedgerQueue rule would.
    async fn ledger(&self) -> Vec<(String, LedgerOutcome)> {
        let mut out = Vec::new();
        for e in self.stack.events().await {
            let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
            let outcome = self.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("the ledger applies it");
            out.push((kind, outcome));
        }
        out
    }

    /// Runs OTTO's push function over its queue until OTTO shows `want` (channel SKU, quantity).
    async fn push_until(&self, want: &[(&str, i64)]) {
        let url = self.stack.env.push_queues[&Channel::Otto].clone();
        support::eventually("OTTO to show the ledger's availability", Duration::from_secs(30), || async {
            manifold_app::local::poll_once(&self.app.sqs, &url, |e| self.app.push_batch(Channel::Otto, e))
                .await
                .expect("the push function polls its queue");
            let stock = self.sim.snapshot().stock.remove(&Channel::Otto).unwrap_or_default();
            want.iter().all(|(sku, q)| stock.get(*sku) == Some(q)).then_some(())
        })
        .await;
    }

    async fn position(&self, sku: &str) -> (i64, i64, i64) {
        let p = self.app.ledger.position(&PositionKey::new(Sku::new(sku).unwrap(), "default")).await.unwrap();
        (p.on_hand, p.reserved, p.available)
    }
}

fn at(doc: &mut Value, when: DateTime<Utc>) {
    let stamp = when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    doc["lastModifiedDate"] = json!(stamp);
    doc["orderLifecycleInformation"]["lifecycleChangeDate"] = json!(stamp);
}

#[tokio::test]
async fn an_otto_order_arrives_through_the_orders_tier_reserves_and_reaches_otto_s_availability() {
    let rig = Rig::new().await;
    let now = Utc::now();
    for (sku, on_hand) in [("TEE-BLK-M", 10), ("MUG-WHITE", 5)] {
        let count = OnHandUpdate { on_hand, location: None, source_ref: Some(format!("erp-{sku}")), as_of: None };
        rig.app.set_on_hand(sku, &count, "trace-erp", now).await.expect("the ERP count");
    }
    // OTTO lists the ERP's counts less its buffer of 1.
    rig.push_until(&[("OTTO-TEE-BLK-M", 9), ("MUG-WHITE", 4)]).await;
    let _ = rig.stack.events().await;

    // A buyer orders two tees and a mug on OTTO; no webhook tells anyone.
    let mut order: Value = serde_json::from_str(ORDER).unwrap();
    at(&mut order, now - chrono::Duration::minutes(1));
    rig.sim.seed_order(Channel::Otto, order.clone()).unwrap();

    // The orders tier's run lists it and ingests it: a delivery, not a missed webhook.
    let run = rig.orders_tier(now).await;
    assert_eq!((run.examined, run.drift, run.errors), (1, 0, 0), "{run:?}");
    let id = OrderId::new(format!("otto:otto-partner-1:{SALES_ORDER}")).unwrap();
    let stored = rig.app.records.get_order(&id).await.unwrap().expect("the order is stored");
    assert_eq!(stored.status, OrderStatus::Paid);
    assert_eq!(
        stored.quantities_by_sku().into_iter().map(|(s, q)| (s.to_string(), q)).collect::<Vec<_>>(),
        [("MUG-WHITE".to_owned(), 1), ("TEE-BLK-M".to_owned(), 2)]
    );

    // The ledger reserves its units, and OTTO's push function publishes what is left.
    let applied = rig.ledger().await;
    assert!(matches!(applied.as_slice(), [(k, LedgerOutcome::Reserved { .. })] if k == "OrderAccepted"), "{applied:?}");
    assert_eq!(rig.position("TEE-BLK-M").await, (10, 2, 8));
    assert_eq!(rig.position("MUG-WHITE").await, (5, 1, 4));
    rig.push_until(&[("OTTO-TEE-BLK-M", 7), ("MUG-WHITE", 3)]).await;

    // OTTO cancels the order; the next run (five minutes on) brings the cancellation, and the units
    // are on sale again.
    for unit in order["positionItems"].as_array_mut().unwrap() {
        unit["fulfillmentStatus"] = json!("CANCELLED_BY_MARKETPLACE");
    }
    at(&mut order, now + chrono::Duration::minutes(5));
    rig.sim.seed_order(Channel::Otto, order).unwrap();
    let later = now + chrono::Duration::minutes(6);
    let run = rig.orders_tier(later).await;
    assert_eq!((run.examined, run.drift, run.errors), (1, 0, 0), "{run:?}");
    let stored = rig.app.records.get_order(&id).await.unwrap().expect("still stored");
    assert_eq!(stored.status, OrderStatus::Cancelled);
    let applied = rig.ledger().await;
    assert!(
        applied.iter().any(|(k, o)| k == "OrderCancelled" && matches!(o, LedgerOutcome::Released { .. })),
        "{applied:?}"
    );
    assert_eq!(rig.position("TEE-BLK-M").await, (10, 0, 10));
    rig.push_until(&[("OTTO-TEE-BLK-M", 9), ("MUG-WHITE", 4)]).await;
}
