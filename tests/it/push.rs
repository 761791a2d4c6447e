//! The push consumers end to end: real SQS queues (with their DLQ) and DynamoDB in moto, the channel
//! simulators on loopback, and the test playing the Lambda poller (moto does not run event source
//! mappings): faults that are retried until delivered or dead-lettered with their reason, permanent
//! errors that are not retried, a breaker that really stops calls, isolation between channels,
//! tracking push-back and coalescing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use manifold_app::{
    App,
    app::Settings,
    push::{PushMessage, PushSettings},
};
use manifold_aws::{breaker::DynamoBreakerStore, secrets::StaticSecrets};
use manifold_connectors::breaker::{BreakerPolicy, BreakerState, BreakerStore, Phase};
use manifold_domain::{
    AccountId, Channel, OrderId, Shipment, Sku,
    config::{AccountConfig, ChannelConfig},
};
use manifold_ledger::fanout::PushJob;
use manifold_simulator::{CatalogItem, FaultKind, FaultSpec, SimConfig, SimHandle, Simulator};
use serde_json::json;

use crate::support::{self, DeadLetters, Polled, Stack};

const ACCOUNT: &str = "it-account";

/// A private stack, the simulator, and an `App` whose accounts point at the simulator and whose push
/// queues are real SQS queues with a redrive policy to their own DLQ.
struct Rig {
    sim: SimHandle,
    stack: Stack,
    app: App,
    dlqs: BTreeMap<Channel, String>,
}

impl Rig {
    async fn new(channels: &[Channel], push: PushSettings) -> Self {
        let sim = Simulator::start(channels.iter().fold(SimConfig::default(), |c, ch| c.unlimited(*ch)))
            .await
            .expect("simulator starts on loopback");
        let mut stack = Stack::new().await;
        let mut dlqs = BTreeMap::new();
        for channel in channels {
            let dead_letters = DeadLetters { max_receive: push.max_receive_count, visibility_secs: 5 };
            let (queue, dlq) = support::queue_with_dlq(&stack.sqs, &format!("push-{channel}"), dead_letters).await;
            stack.env.push_queues.insert(*channel, queue);
            dlqs.insert(*channel, dlq);
        }
        let accounts = channels.iter().map(|c| account(&sim, *c)).collect();
        let config = ChannelConfig::of_accounts(accounts);
        let creds = json!({ "access_token": "sim-token" }).to_string();
        let secrets = StaticSecrets(channels.iter().map(|c| (secret_name(*c), creds.clone())).collect());
        let settings = Settings { push, ..Settings::default() };
        let app = App::build(config, stack.env.clone(), settings, &stack.sdk, Arc::new(secrets)).expect("app builds");
        Self { sim, stack, app, dlqs }
    }

    fn queue(&self, channel: Channel) -> &str {
        &self.stack.env.push_queues[&channel]
    }

    async fn send(&self, message: &PushMessage) {
        let channel = message.channel();
        self.stack
            .sqs
            .send_message()
            .queue_url(self.queue(channel))
            .message_body(message.to_body().unwrap())
            .send()
            .await
            .expect("send push job");
    }

    /// Sends what the ledger's `SqsPushQueue` sends: the bare `PushJob` JSON.
    async fn send_ledger_job(&self, job: &PushJob) {
        self.stack
            .sqs
            .send_message()
            .queue_url(self.queue(job.channel))
            .message_body(serde_json::to_string(job).unwrap())
            .send()
            .await
            .expect("send ledger job");
    }

    /// One poll with the template's batch size (10).
    async fn poll(&self, channel: Channel) -> Polled {
        self.poll_batch(channel, 10).await
    }

    async fn poll_batch(&self, channel: Channel, batch_size: i32) -> Polled {
        let app = &self.app;
        support::poll_once(&self.stack.sqs, self.queue(channel), batch_size, |e| app.push_batch(channel, e)).await
    }

    fn requests(&self, channel: Channel) -> u64 {
        self.sim.snapshot().requests.get(&channel).copied().unwrap_or(0)
    }

    /// Messages still on the queue, visible or in flight.
    async fn pending(&self, channel: Channel) -> u64 {
        support::queue_depth(&self.stack.sqs, self.queue(channel)).await
    }

    /// Polls `channel` until its queue is empty (everything delivered, dropped or dead-lettered).
    async fn drain(&self, channel: Channel, batch_size: i32, deadline: Duration) -> Vec<Polled> {
        let start = tokio::time::Instant::now();
        let mut polls = Vec::new();
        loop {
            let polled = self.poll_batch(channel, batch_size).await;
            polls.push(polled);
            if polled.received == 0 && self.pending(channel).await == 0 {
                return polls;
            }
            assert!(start.elapsed() < deadline, "{channel} queue not drained after {deadline:?}");
        }
    }

    async fn breaker_item(&self, channel: Channel) -> Option<BTreeMap<String, AttributeValue>> {
        self.stack
            .ddb
            .get_item()
            .table_name(&self.stack.env.state_table)
            .key("pk", AttributeValue::S(format!("BREAKER#{channel}#{ACCOUNT}")))
            .key("sk", AttributeValue::S("state".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get breaker item")
            .item
            .map(|i| i.into_iter().collect())
    }

    async fn breaker_status(&self, channel: Channel) -> String {
        self.breaker_item(channel)
            .await
            .and_then(|i| i.get("phase").and_then(|p| p.as_m().ok()).and_then(|p| p.get("status")).cloned())
            .and_then(|s| s.as_s().ok().cloned())
            .unwrap_or_else(|| "closed".into())
    }
}

fn secret_name(channel: Channel) -> String {
    format!("manifold/{channel}/{ACCOUNT}")
}

fn account(sim: &SimHandle, channel: Channel) -> AccountConfig {
    let (api_version, settings): (&str, &[(&str, &str)]) = match channel {
        Channel::Shopify => ("2026-07", &[("location_id", "gid://shopify/Location/1")]),
        Channel::Zalando => ("v1", &[("sales_channel_id", "bf48ba35-149d-4b76-8ac9-d08d126b517f")]),
        Channel::Ebay => ("v1", &[]),
        other => panic!("no test account for {other}"),
    };
    // Its secret is `secret_name(channel)`.
    support::sim_account(channel, ACCOUNT, api_version, sim.base_url(channel), settings)
}

fn job(channel: Channel, sku: &str, quantity: u32, version: u64) -> PushJob {
    PushJob {
        channel,
        account: AccountId::new(ACCOUNT).unwrap(),
        sku: Sku::new(sku).unwrap(),
        location: "default".into(),
        channel_sku: sku.to_owned(),
        quantity,
        version,
        trace_id: None,
    }
}

/// Fast retries so a test sees several attempts within seconds (SQS visibility is whole seconds).
fn fast(max_receive_count: u32, failure_threshold: u32, cool_down: Duration) -> PushSettings {
    PushSettings {
        breaker: BreakerPolicy { failure_threshold, cool_down },
        max_receive_count,
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(2),
        auth_delay: Duration::from_secs(2),
        ..PushSettings::default()
    }
}

fn stock_of(sim: &SimHandle, channel: Channel, sku: &str) -> Option<i64> {
    sim.snapshot().stock.get(&channel).and_then(|s| s.get(sku)).copied()
}

#[tokio::test]
async fn with_30_percent_transient_faults_every_push_is_delivered_or_dead_lettered_with_its_reason() {
    let rig = Rig::new(&[Channel::Ebay], fast(5, 5, Duration::from_secs(1))).await;
    rig.sim.inject(FaultSpec {
        channel: Channel::Ebay,
        kind: FaultKind::ServerError,
        probability: Some(0.3),
        next_n: None,
    });
    let sent: Vec<PushJob> = (0..40).map(|i| job(Channel::Ebay, &format!("FAULT-{i:03}"), 100 + i, 1)).collect();
    for j in &sent {
        rig.send_ledger_job(j).await;
    }

    // One message per batch: every job is its own call, so the faults hit many of them.
    let polls = rig.drain(Channel::Ebay, 1, Duration::from_mins(2)).await;

    let dead = rig.stack.drain(&rig.dlqs[&Channel::Ebay]).await;
    let mut dead_skus = Vec::new();
    for m in &dead {
        let Ok(PushMessage::Stock(j)) = PushMessage::from_body(m.body().unwrap_or_default()) else {
            panic!("not a stock job in the DLQ: {m:?}");
        };
        let last =
            rig.app.last_error(m.message_id().unwrap()).await.unwrap().expect("a dead letter has its last error");
        assert_eq!(last.attempt, 5, "{last:?}");
        // The breaker may have opened on a run of failures: then the last attempt was refused locally.
        assert!(
            (last.error_class == "transient" && last.error.contains("simulated server error"))
                || last.error_class == "circuit_open",
            "{last:?}"
        );
        dead_skus.push(j.sku.to_string());
    }
    let delivered: Vec<&PushJob> = sent
        .iter()
        .filter(|j| stock_of(&rig.sim, Channel::Ebay, j.sku.as_str()) == Some(i64::from(j.quantity)))
        .collect();
    assert!(delivered.iter().all(|j| !dead_skus.contains(&j.sku.to_string())), "delivered and dead at once");
    assert_eq!(
        delivered.len() + dead_skus.len(),
        sent.len(),
        "nothing lost: {} delivered, {dead_skus:?} dead",
        delivered.len()
    );
    let retried: usize = polls.iter().map(|p| p.failed).sum();
    assert!(retried > 0, "the faults forced retries");
    assert!(rig.requests(Channel::Ebay) >= u64::try_from(delivered.len() + retried).unwrap().min(40));
}

#[tokio::test]
async fn a_permanent_error_is_called_once_quarantined_and_not_retried() {
    let rig = Rig::new(&[Channel::Ebay], fast(5, 5, Duration::from_secs(1))).await;
    let item = |sku: &str| CatalogItem {
        id: sku.into(),
        sku: sku.into(),
        quantity: 0,
        product_id: None,
        variant_id: None,
        price_minor: None,
    };
    rig.sim.seed_catalog(Channel::Ebay, vec![item("KNOWN-1")]);
    rig.send_ledger_job(&job(Channel::Ebay, "KNOWN-1", 4, 1)).await;
    rig.send_ledger_job(&job(Channel::Ebay, "NO-SUCH-SKU", 3, 1)).await;

    let mut polls = Vec::new();
    while polls.iter().map(|p: &Polled| p.received).sum::<usize>() < 2 {
        polls.push(rig.poll(Channel::Ebay).await);
        assert!(polls.len() < 20, "both jobs received");
    }

    assert!(polls.iter().all(|p| p.failed == 0), "nothing is retried: {polls:?}");
    assert_eq!(rig.requests(Channel::Ebay), 1, "one call for both SKUs, no retry");
    assert_eq!(stock_of(&rig.sim, Channel::Ebay, "KNOWN-1"), Some(4));
    assert_eq!(rig.pending(Channel::Ebay).await, 0);
    let quarantined = rig.app.quarantine.list(false).await.unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let q = &quarantined[0];
    assert_eq!((q.stage.as_str(), q.channel.as_str(), q.account.as_str()), ("push", "ebay", ACCOUNT));
    assert!(q.reason.contains("permanent"), "{}", q.reason);
    assert!(q.payload.contains("NO-SUCH-SKU"), "the job itself is kept for replay");
    assert_eq!(rig.poll(Channel::Ebay).await.received, 0);
    assert_eq!(rig.requests(Channel::Ebay), 1);
}

#[tokio::test]
async fn an_open_circuit_stops_calls_until_the_cool_down_then_one_probe_closes_it() {
    // The cool-down is long against one poll (a few calls to the emulator) even on a busy machine, so
    // the poll right after the breaker opens always meets it open.
    let rig = Rig::new(&[Channel::Ebay], fast(10, 3, Duration::from_secs(10))).await;
    rig.sim.inject(FaultSpec {
        channel: Channel::Ebay,
        kind: FaultKind::ServerError,
        probability: None,
        next_n: Some(3),
    });
    rig.send_ledger_job(&job(Channel::Ebay, "BRK-1", 7, 1)).await;

    // Three failed calls open the breaker, and the state is in DynamoDB for every instance to see.
    let start = tokio::time::Instant::now();
    while rig.breaker_status(Channel::Ebay).await != "open" {
        rig.poll(Channel::Ebay).await;
        assert!(start.elapsed() < Duration::from_mins(3), "the breaker never opened");
    }
    assert_eq!(rig.requests(Channel::Ebay), 3);
    let item = rig.breaker_item(Channel::Ebay).await.unwrap();
    assert_eq!(item["consecutive_failures"].as_n().unwrap(), "3");

    // While open: a fresh job is received and handed back without any request to the channel.
    rig.send_ledger_job(&job(Channel::Ebay, "BRK-2", 8, 1)).await;
    let mut refused = 0;
    while rig.breaker_status(Channel::Ebay).await == "open" {
        let before = rig.requests(Channel::Ebay);
        let polled = rig.poll(Channel::Ebay).await;
        if rig.breaker_status(Channel::Ebay).await == "open" {
            assert_eq!(rig.requests(Channel::Ebay), before, "an open breaker sends nothing");
            assert_eq!(polled.failed, 0, "refused messages are parked (re-sent with a delay), not failed");
            refused += polled.received;
        }
        assert!(start.elapsed() < Duration::from_mins(3), "the breaker never let a probe through");
    }
    assert!(refused > 0, "a poll met the open breaker");

    // After the cool-down one probe goes out, succeeds and closes the breaker; both jobs arrive. The
    // two jobs were parked at different moments, so on a busy machine the second may come back after
    // the probe's poll and go out in a call of its own, once the breaker is closed: one more request
    // at most, never a second probe while it is half-open (the loop above saw none while open).
    rig.drain(Channel::Ebay, 10, Duration::from_mins(1)).await;
    let calls = rig.requests(Channel::Ebay);
    assert!(calls == 4 || calls == 5, "one probe, then at most the other parked job's call: {calls}");
    assert_eq!(rig.breaker_status(Channel::Ebay).await, "closed");
    assert_eq!(stock_of(&rig.sim, Channel::Ebay, "BRK-1"), Some(7));
    assert_eq!(stock_of(&rig.sim, Channel::Ebay, "BRK-2"), Some(8));
    assert!(rig.stack.drain(&rig.dlqs[&Channel::Ebay]).await.is_empty());
}

#[tokio::test]
async fn a_channel_down_for_ten_cool_downs_dead_letters_nothing_and_gets_everything_after_recovery() {
    // Two failures open the breaker; a message may be received three times before the DLQ.
    let rig = Rig::new(&[Channel::Ebay], fast(3, 2, Duration::from_secs(1))).await;
    rig.sim.inject(FaultSpec { channel: Channel::Ebay, kind: FaultKind::ServerError, probability: None, next_n: None });
    for i in 0..5 {
        rig.send_ledger_job(&job(Channel::Ebay, &format!("DOWN-{i}"), 20 + i, 1)).await;
    }
    // The breaker opens, then every cool-down lets one probe through, which fails again: ten of them.
    let start = tokio::time::Instant::now();
    while rig.requests(Channel::Ebay) < 2 + 10 {
        rig.poll(Channel::Ebay).await;
        assert!(start.elapsed() < Duration::from_mins(3), "ten probes never happened");
    }
    assert!(rig.stack.drain(&rig.dlqs[&Channel::Ebay]).await.is_empty(), "an outage alone dead-letters nothing");

    // The channel recovers: the next probe carries what is waiting, and everything arrives.
    rig.sim.clear_faults();
    rig.drain(Channel::Ebay, 10, Duration::from_mins(1)).await;
    for i in 0..5 {
        assert_eq!(stock_of(&rig.sim, Channel::Ebay, &format!("DOWN-{i}")), Some(20 + i64::from(i)), "DOWN-{i}");
    }
    assert!(rig.stack.drain(&rig.dlqs[&Channel::Ebay]).await.is_empty());
    assert_eq!(rig.breaker_status(Channel::Ebay).await, "closed");
}

#[tokio::test]
async fn a_channel_failing_everything_does_not_delay_another_channels_pushes() {
    let rig = Rig::new(&[Channel::Ebay, Channel::Zalando], fast(5, 3, Duration::from_secs(30))).await;
    rig.sim.inject(FaultSpec { channel: Channel::Ebay, kind: FaultKind::ServerError, probability: None, next_n: None });
    for i in 0..15 {
        rig.send_ledger_job(&job(Channel::Ebay, &format!("ISO-{i:02}"), 10 + i, 1)).await;
        rig.send_ledger_job(&job(Channel::Zalando, &format!("ISO-{i:02}"), 20 + i, 1)).await;
    }

    // Both consumers run side by side, as their Lambdas would.
    let start = tokio::time::Instant::now();
    while rig.pending(Channel::Zalando).await > 0 {
        let (_, _) = tokio::join!(rig.poll(Channel::Ebay), rig.poll(Channel::Zalando));
        assert!(start.elapsed() < Duration::from_mins(1), "zalando did not drain");
    }

    for i in 0..15 {
        assert_eq!(stock_of(&rig.sim, Channel::Zalando, &format!("ISO-{i:02}")), Some(20 + i64::from(i)));
        assert_eq!(stock_of(&rig.sim, Channel::Ebay, &format!("ISO-{i:02}")), None);
    }
    assert!(rig.pending(Channel::Ebay).await > 0, "eBay's jobs wait for eBay to recover, nothing is dropped");
    let ebay = rig.breaker_item(Channel::Ebay).await.expect("eBay's failures reached its breaker");
    assert_ne!(ebay["consecutive_failures"].as_n().unwrap(), "0");
    assert!(rig.breaker_item(Channel::Zalando).await.is_none(), "breakers are per channel account");
}

#[tokio::test]
async fn a_shipment_for_a_shopify_order_pushes_its_tracking_back_to_shopify() {
    let rig = Rig::new(&[Channel::Shopify], fast(5, 5, Duration::from_secs(1))).await;
    rig.sim.seed_order(Channel::Shopify, json!({ "id": 450_789_469, "line_items": [] })).unwrap();
    let shipment = Shipment {
        id: "wms-shp-1".into(),
        order_id: OrderId::new(format!("shopify:{ACCOUNT}:450789469")).unwrap(),
        channel: Channel::Shopify,
        account: AccountId::new(ACCOUNT).unwrap(),
        channel_order_id: "450789469".into(),
        carrier: Some("DHL".into()),
        tracking_number: Some("JJD000390007827459".into()),
        tracking_url: None,
        lines: Vec::new(),
        shipped_at: Utc::now(),
    };

    rig.app.enqueue_tracking(&shipment, "trace-tracking-1").await.unwrap();
    rig.drain(Channel::Shopify, 10, Duration::from_secs(20)).await;

    let snap = rig.sim.snapshot();
    let fulfillments: Vec<_> = snap.writes[&Channel::Shopify]
        .iter()
        .filter(|w| w.body["query"].as_str().is_some_and(|q| q.contains("fulfillmentCreate")))
        .collect();
    assert_eq!(fulfillments.len(), 1);
    let f = &fulfillments[0].body["variables"]["fulfillment"];
    assert_eq!(f["trackingInfo"]["number"], "JJD000390007827459");
    assert_eq!(f["trackingInfo"]["company"], "DHL");
    assert_eq!(f["lineItemsByFulfillmentOrder"][0]["fulfillmentOrderId"], "gid://shopify/FulfillmentOrder/450789469");
}

#[tokio::test]
async fn two_jobs_for_one_sku_in_a_batch_push_only_the_newer_quantity_in_one_call_and_stale_jobs_none() {
    let rig = Rig::new(&[Channel::Ebay], fast(5, 5, Duration::from_secs(1))).await;
    rig.send_ledger_job(&job(Channel::Ebay, "COAL-1", 5, 1)).await;
    rig.send_ledger_job(&job(Channel::Ebay, "COAL-1", 9, 2)).await;
    rig.send(&PushMessage::Stock(job(Channel::Ebay, "COAL-2", 3, 1))).await;

    let polled = rig.poll(Channel::Ebay).await;

    assert_eq!(polled, Polled { received: 3, failed: 0 });
    let snap = rig.sim.snapshot();
    let calls = &snap.writes[&Channel::Ebay];
    assert_eq!(calls.len(), 1, "one call for the whole batch");
    let requests = calls[0].body["requests"].as_array().unwrap();
    let coal_1: Vec<_> = requests.iter().filter(|r| r["sku"] == "COAL-1").collect();
    assert_eq!(coal_1.len(), 1);
    assert_eq!(coal_1[0]["shipToLocationAvailability"]["quantity"], 9);
    assert_eq!(stock_of(&rig.sim, Channel::Ebay, "COAL-1"), Some(9));
    assert_eq!(rig.pending(Channel::Ebay).await, 0);

    // A job the fan-out has since superseded (the gate holds a newer version) is dropped unsent.
    assert!(rig.app.push_gate.offer(&job(Channel::Ebay, "COAL-1", 2, 4)).await.unwrap());
    rig.send_ledger_job(&job(Channel::Ebay, "COAL-1", 6, 3)).await;
    assert_eq!(rig.poll(Channel::Ebay).await, Polled { received: 1, failed: 0 });
    assert_eq!(rig.requests(Channel::Ebay), 1);
    assert_eq!(stock_of(&rig.sim, Channel::Ebay, "COAL-1"), Some(9));
}

#[tokio::test]
async fn the_dynamodb_breaker_store_is_compare_and_set_on_the_version() {
    let stack = Stack::new().await;
    let store = DynamoBreakerStore::new(stack.ddb.clone(), &stack.env.state_table);
    let key = "ebay#cas";
    assert_eq!(store.load(key).await.unwrap(), None);
    let open = BreakerState { version: 1, phase: Phase::Open { until: Utc::now() }, consecutive_failures: 5 };

    // Two instances race from the same (absent) state: exactly one wins.
    let (a, b) = tokio::join!(store.compare_and_set(key, 0, &open), store.compare_and_set(key, 0, &open));
    assert!(a.unwrap() ^ b.unwrap());
    let stored = store.load(key).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert!(matches!(stored.phase, Phase::Open { .. }));

    let closed = BreakerState { version: 2, ..BreakerState::default() };
    assert!(!store.compare_and_set(key, 0, &closed).await.unwrap(), "a stale version loses");
    assert!(store.compare_and_set(key, 1, &closed).await.unwrap());
    assert_eq!(store.load(key).await.unwrap(), Some(closed));
}

#[tokio::test]
async fn a_channel_answering_503_to_every_call_trips_the_failed_sync_alarm_within_ten_minutes() {
    // The alarm (template.yaml, checked by tests/it/template.rs) fires on 5 SyncFailed in 10 minutes.
    // With production settings a job's first 5 calls come at most 2 + 4 + 8 + 16 s apart (full jitter),
    // and every one of them that fails counts.
    let production = PushSettings::default();
    let worst: Duration = (1..5).map(|attempt| production.backoff(attempt, 1.0)).sum();
    assert!(worst < Duration::from_mins(10), "the 5th call comes {worst:?} after the first at worst");

    // Observed, on the same schedule shortened: each failed call of the job is one SyncFailed.
    let rig = Rig::new(&[Channel::Ebay], fast(5, 5, Duration::from_secs(1))).await;
    rig.sim.inject(FaultSpec { channel: Channel::Ebay, kind: FaultKind::ServerError, probability: None, next_n: None });
    let trace = support::unique("trace-503");
    let job = job(Channel::Ebay, "DOWN-503", 3, 1);
    rig.stack
        .sqs
        .send_message()
        .queue_url(rig.queue(Channel::Ebay))
        .message_body(serde_json::to_string(&job).unwrap())
        .message_attributes(
            manifold_telemetry::TRACE_ATTRIBUTE,
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(&trace)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let recorder = manifold_telemetry::Recorder::start();
    let start = tokio::time::Instant::now();
    while rig.requests(Channel::Ebay) < 5 {
        rig.poll(Channel::Ebay).await;
        assert!(start.elapsed() < Duration::from_mins(3), "five calls never happened");
    }
    let failed = recorder.sum("SyncFailed", |d| d["trace_id"] == trace.as_str());
    #[allow(clippy::cast_precision_loss)] // a handful of requests
    let calls = rig.requests(Channel::Ebay) as f64;
    assert!((failed - calls).abs() < 1e-9, "every failed call counted: {failed} SyncFailed for {calls} calls");
    assert!(failed >= 5.0, "enough for the alarm: {failed}");
}
