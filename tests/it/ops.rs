//! The operator CLI's cores (`manifold_cli`) against moto: redrive moves every dead letter back exactly
//! once, even across an interrupted run; quarantine replay goes through the real ingest path and marks
//! only successes; `trace`, `usage` and `normalize` report what is really stored or built.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::{NaiveDate, TimeZone as _, Utc};
use manifold_app::{App, IngestEnvelope, app::Settings, ingest::IngestOutcome};
use manifold_aws::{
    quarantine::{DynamoQuarantine, Quarantine, QuarantinedPayload, Retention},
    secrets::StaticSecrets,
    state::StateStore,
};
use manifold_cli::{
    CliError,
    aws::Aws,
    commands::{
        dlq::{self, Forward, REDRIVE_ATTRIBUTE, Redriver, Route},
        normalize::{self, NormalizeArgs},
        quarantine::{self, QuarantineItem, QuarantineList, Replay},
        stock, trace, usage,
    },
    output::Human as _,
};
use manifold_domain::{Channel, Record, config::ChannelConfig};
use manifold_ledger::{
    DynamoLedger, Ledger, PositionKey,
    fanout::{PushGate, push_jobs},
};
use manifold_normalize::DocKind;

use crate::support::{self, Stack};

const CONFIG: &str = include_str!("../../infra/channels.example.toml");
const SHOPIFY_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");

fn config() -> ChannelConfig {
    ChannelConfig::parse("channels.example.toml", CONFIG).expect("example config")
}

/// A DLQ, its source queue and a state table of their own.
struct Queues {
    sqs: aws_sdk_sqs::Client,
    ddb: aws_sdk_dynamodb::Client,
    state_table: String,
    route: Route,
}

impl Queues {
    async fn new() -> Self {
        let sdk = support::aws().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let route = Route {
            name: "ingest".to_owned(),
            channel: None,
            dlq_url: support::create_queue(&sqs, "dlq").await,
            source_url: support::create_queue(&sqs, "source").await,
        };
        let state_table = support::create_table(&ddb, "state").await;
        Self { sqs, ddb, state_table, route }
    }

    fn redriver(&self) -> Redriver<'_> {
        Redriver::new(&self.sqs, &self.ddb, &self.state_table, &self.route)
    }

    /// Dead-letters `n` distinct messages, each with a trace id and a string attribute.
    async fn dead_letter(&self, n: usize) -> BTreeMap<String, String> {
        let mut sent = BTreeMap::new();
        for i in 0..n {
            let body = format!(r#"{{"n":{i},"event_id":"evt-{i}"}}"#);
            let trace = format!("trace-{i}");
            let attr = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build().unwrap();
            self.sqs
                .send_message()
                .queue_url(&self.route.dlq_url)
                .message_body(&body)
                .message_attributes("trace_id", attr(&trace))
                .message_attributes("kind", attr("order"))
                .send()
                .await
                .expect("send to dlq");
            sent.insert(body, trace);
        }
        sent
    }
}

/// Asserts the source queue holds each body of `sent` exactly once, with its original attributes plus
/// `redrive_id`, and that the DLQ is empty.
async fn assert_moved_exactly_once(stack: &Stack, q: &Queues, sent: &BTreeMap<String, String>) {
    let moved = stack.drain(&q.route.source_url).await;
    let bodies: Vec<&str> = moved.iter().map(|m| m.body().unwrap_or_default()).collect();
    assert_eq!(bodies.len(), sent.len(), "every dead letter once, none twice: {bodies:?}");
    assert_eq!(bodies.iter().copied().collect::<BTreeSet<_>>(), sent.keys().map(String::as_str).collect());
    let mut redrive_ids = BTreeSet::new();
    for m in &moved {
        let attrs = m.message_attributes().expect("attributes kept");
        let s = |k: &str| attrs.get(k).and_then(|v| v.string_value()).map(str::to_owned);
        assert_eq!(s("trace_id").as_ref(), sent.get(m.body().unwrap_or_default()), "trace id kept");
        assert_eq!(s("kind").as_deref(), Some("order"), "other attributes kept");
        redrive_ids.insert(s(REDRIVE_ATTRIBUTE).expect("redrive_id marks the copy"));
    }
    assert_eq!(redrive_ids.len(), sent.len(), "each copy names its own dead letter");
    assert!(stack.drain(&q.route.dlq_url).await.is_empty(), "the DLQ is empty");
}

#[tokio::test]
async fn redrive_moves_every_dead_letter_back_exactly_once() {
    // Given 25 dead letters with attributes
    let stack = Stack::new().await;
    let q = Queues::new().await;
    let sent = q.dead_letter(25).await;

    // When they are redriven
    let report = q.redriver().run().await.expect("redrive");

    // Then the source holds each exactly once, attributes intact, and the DLQ is empty
    assert_eq!((report.moved, report.already_sent, report.resent), (25, 0, 0));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_moved_exactly_once(&stack, &q, &sent).await;
}

#[tokio::test]
async fn an_interrupted_redrive_resumes_without_losing_or_duplicating() {
    // Given 12 dead letters, and a first run that dies after sending 4 of them (before deleting them)
    // and after writing the marker of a 5th (before sending it)
    let stack = Stack::new().await;
    let q = Queues::new().await;
    let sent = q.dead_letter(12).await;
    let first = q.redriver();
    let batch = support::eventually("a batch of at least 5 dead letters", Duration::from_secs(10), || async {
        let got = first.receive().await.expect("receive");
        if got.len() >= 5 {
            Some(got)
        } else {
            release(&q, &got).await;
            None
        }
    })
    .await;
    for m in &batch[..4] {
        assert_eq!(first.forward(m).await.expect("forward"), Forward::Sent);
    }
    q.ddb
        .put_item()
        .table_name(&q.state_table)
        .item("pk", AttributeValue::S(format!("REDRIVE#{}", batch[4].message_id().unwrap())))
        .item("sk", AttributeValue::S("marker".into()))
        .item("state", AttributeValue::S("sending".into()))
        .send()
        .await
        .expect("marker of the 5th");
    // The crash: what it had received becomes visible again (as after its visibility timeout).
    release(&q, &batch).await;

    // When redrive runs again
    let report = q.redriver().run().await.expect("second redrive");

    // Then the 4 sent ones are only deleted, the 5th is sent (it never was), and nothing is doubled
    assert_eq!((report.moved, report.already_sent, report.resent), (12, 4, 1), "{report:?}");
    assert_moved_exactly_once(&stack, &q, &sent).await;
}

async fn release(q: &Queues, messages: &[aws_sdk_sqs::types::Message]) {
    for m in messages {
        q.sqs
            .change_message_visibility()
            .queue_url(&q.route.dlq_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .expect("release");
    }
}

#[tokio::test]
async fn dlq_show_reads_dead_letters_without_consuming_them() {
    let stack = Stack::new().await;
    let q = Queues::new().await;
    let sent = q.dead_letter(3).await;
    let aws = Aws::new(manifold_aws::AwsEnv { state_table: q.state_table.clone(), ..stack.env.clone() }, &stack.sdk);

    let shown = dlq::show(&aws, &q.route, 10).await.expect("show");

    assert_eq!(shown.messages.len(), 3);
    for m in &shown.messages {
        assert_eq!(m.trace_id.as_ref(), sent.get(&m.body), "trace id from the attribute");
        assert!(m.receive_count.is_some() && m.sent_at.is_some());
    }
    let left = dlq::depth(&q.sqs, &q.route.dlq_url).await.expect("depth");
    assert_eq!(left.visible, 3, "show leaves the dead letters visible in the DLQ");
}

/// A Shopify `orders/create` delivery of the published order fixture, as the webhook enqueues it.
fn shopify_envelope(trace_id: &str) -> IngestEnvelope {
    let doc: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    support::shopify_delivery(trace_id, doc["order"].to_string())
}

fn quarantined(envelope: &IngestEnvelope, reason: &str) -> QuarantinedPayload {
    QuarantinedPayload {
        id: QuarantinedPayload::new_id(),
        channel: envelope.channel.to_string(),
        account: envelope.account.clone(),
        stage: "config".into(),
        reason: reason.into(),
        trace_id: envelope.trace_id.clone(),
        received_at: envelope.received_at,
        payload: serde_json::to_string(envelope).unwrap(),
        replayed_at: None,
    }
}

#[tokio::test]
async fn quarantine_replay_stores_the_record_and_marks_only_successes() {
    // Given a Shopify order quarantined while its account was missing from the configuration (now
    // fixed), and a payload that still cannot be processed
    let stack = Stack::new().await;
    let app = App::build(
        config(),
        stack.env.clone(),
        Settings::default(),
        &stack.sdk,
        Arc::new(StaticSecrets(HashMap::new())),
    )
    .expect("app");
    let quarantine = DynamoQuarantine::new(stack.ddb.clone(), &stack.env.quarantine_table);
    let trace_id = support::unique("trace");
    let good = quarantined(&shopify_envelope(&trace_id), r#"unknown shopify account "shop-eu""#);
    let mut broken_envelope = shopify_envelope(&support::unique("trace"));
    broken_envelope.body = "not json".into();
    let broken = quarantined(&broken_envelope, "body is not JSON");
    quarantine.put(&good).await.unwrap();
    quarantine.put(&broken).await.unwrap();

    // When every unreplayed item is replayed
    let report = quarantine::replay(&app, None, Utc::now()).await.expect("replay");

    // Then the order is stored and its item marked; the broken one fails again and stays unreplayed
    let outcome = |id: &str| report.items.iter().find(|i| i.id == id).map(|i| i.replay.clone()).unwrap();
    assert!(
        matches!(outcome(&good.id), Replay::Succeeded { detail } if detail.contains("shopify:shop-eu:1073459981")),
        "{report:?}"
    );
    let Replay::FailedAgain { requarantined_as: Some(kept), .. } = outcome(&broken.id) else {
        panic!("the broken payload fails again and is kept: {report:?}")
    };
    assert!(quarantine.get(&good.id).await.unwrap().unwrap().replayed_at.is_some());
    // It failed at another stage than recorded (parsing, not the configuration): the new item
    // supersedes the old one, so the broken payload is listed once.
    assert_ne!(kept, broken.id);
    assert!(quarantine.get(&broken.id).await.unwrap().unwrap().replayed_at.is_some());
    assert!(quarantine.get(&kept).await.unwrap().unwrap().replayed_at.is_none());
    // Replayed again, it fails the same way and is kept under the same id: nothing new is listed.
    let again = quarantine::replay(&app, Some(&kept), Utc::now()).await.expect("replay the kept item");
    assert!(
        matches!(&again.items[0].replay, Replay::FailedAgain { requarantined_as: Some(id), .. } if *id == kept),
        "{again:?}"
    );
    let listed = quarantine.list(false).await.unwrap();
    assert_eq!(listed.iter().filter(|q| q.trace_id == broken.trace_id).count(), 1, "{listed:?}");

    // And the trace shows the stored order and the (replayed) quarantine entry
    let aws = Aws::new(stack.env.clone(), &stack.sdk);
    let traced = trace::trace(&aws, &trace_id).await.expect("trace");
    assert_eq!(traced.records.iter().map(|r| r.pk.as_str()).collect::<Vec<_>>(), ["ORDER#shopify:shop-eu:1073459981"]);
    assert_eq!(traced.quarantine.len(), 1);
    assert!(traced.quarantine[0].replayed_at.is_some());

    // And replaying the same item again changes nothing: the order is already stored at that version
    let again = quarantine::replay(&app, Some(&good.id), Utc::now()).await.expect("replay again");
    assert!(
        matches!(&again.items[0].replay, Replay::Succeeded { detail } if detail.contains("unchanged")),
        "{again:?}"
    );
}

#[tokio::test]
async fn usage_sums_per_channel_and_day_within_the_window() {
    let stack = Stack::new().await;
    let state = StateStore::new(stack.ddb.clone(), &stack.env.state_table);
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    state.add_usage("shopify", day(9), 10, 20, 2, 1500.0).await.unwrap();
    state.add_usage("shopify", day(10), 5, 8, 1, 500.0).await.unwrap();
    state.add_usage("shopify", day(10), 1, 2, 0, 100.0).await.unwrap();
    state.add_usage("etsy", day(10), 3, 4, 1, 400.0).await.unwrap();
    state.add_usage("etsy", day(1), 99, 99, 99, 99.0).await.unwrap(); // outside the window

    let report = usage::usage(&state, &[Channel::Shopify, Channel::Etsy], 2, day(10)).await.expect("usage");

    let rows: Vec<(&str, &str, u64)> =
        report.days.iter().map(|u| (u.day.as_str(), u.channel.as_str(), u.api_calls)).collect();
    assert_eq!(rows, [("2026-03-09", "shopify", 10), ("2026-03-10", "etsy", 3), ("2026-03-10", "shopify", 6)]);
    assert_eq!((report.totals.api_calls, report.totals.aws_requests, report.totals.orders), (19, 34, 4));
    assert!((report.totals.usd - 0.0025).abs() < 1e-9, "{}", report.totals.usd);
}

#[test]
fn normalize_prints_the_record_and_names_the_broken_field() {
    // A published Shopify order through the same normalizer as the ingest Lambda
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json"
    );
    let args = NormalizeArgs {
        channel: Channel::Shopify,
        kind: DocKind::Order,
        config: concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/channels.example.toml").into(),
        account: None,
        file: fixture.into(),
    };
    let normalized = normalize::run(&args).expect("normalize");
    let Record::Order(order) = &normalized.0 else { panic!("expected an order, got {:?}", normalized.0) };
    assert_eq!((order.id.as_str(), order.account.as_str()), ("shopify:shop-eu:1073459981", "shop-eu"));

    // The same document with a line price that is not money
    let mut doc: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    doc["order"]["line_items"][0]["price"] = "twelve".into();
    let err = normalize::normalize_document(&config(), Channel::Shopify, DocKind::Order, None, "doc", &doc.to_string())
        .expect_err("a broken price must fail");
    let CliError::Normalize { error, .. } = &err else { panic!("expected a normalize error, got {err:?}") };
    assert!(error.path.ends_with("line_items[0].price"), "path {:?}", error.path);
    assert!(err.to_string().contains("line_items[0].price"), "the message names the field: {err}");
    assert_ne!(err.exit_code(), 0);
}

#[tokio::test]
async fn stock_shows_the_position_and_what_each_channel_was_last_handed() {
    // Given 30 on hand from the ERP, and the fan-out having handed Shopify its quantity
    let stack = Stack::new().await;
    let config = config();
    let key = PositionKey::default_location(manifold_domain::Sku::new("TEE-BLK-M").unwrap());
    let ledger = DynamoLedger::dynamo_emulator(stack.ddb.clone(), &stack.env.ledger_table);
    let change = ledger.set_on_hand(&key, 30, "erp-1").await.expect("set on hand");
    let gate = PushGate::new(stack.ddb.clone(), &stack.env.state_table);
    let shopify_job =
        push_jobs(&config, &change.positions[0], None).into_iter().find(|j| j.channel == Channel::Shopify).unwrap();
    assert!(gate.offer(&shopify_job).await.unwrap());

    // When the operator asks for the SKU
    let report = stock::stock(&Aws::new(stack.env.clone(), &stack.sdk), &config, &key).await.expect("stock");

    // Then the position is the ledger's, Shopify shows what it was handed, the others nothing yet
    assert_eq!((report.position.on_hand, report.position.reserved, report.position.available), (30, 0, 30));
    assert_eq!(report.position.version, shopify_job.version);
    let shopify = report.channels.iter().find(|c| c.channel == Channel::Shopify).unwrap();
    assert_eq!(shopify.last_published, Some(u64::from(shopify_job.quantity)));
    assert_eq!(shopify.publishable_now, shopify_job.quantity);
    assert_eq!(shopify.channel_sku, "SHOP-TEE-BLK-M");
    assert!(report.channels.iter().filter(|c| c.channel != Channel::Shopify).all(|c| c.last_published.is_none()));
}

#[tokio::test]
async fn quarantined_payloads_expire_by_ttl_and_the_cli_says_when() {
    // Given an app whose quarantine keeps payloads for 7 days (QUARANTINE_RETENTION_DAYS=7)
    let stack = Stack::new().await;
    let settings = Settings { quarantine_retention: Retention::days(7).unwrap(), ..Settings::default() };
    let app = App::build(config(), stack.env.clone(), settings, &stack.sdk, Arc::new(StaticSecrets(HashMap::new())))
        .expect("app");

    // When a payload that cannot be processed goes through ingest
    let mut envelope = shopify_envelope(&support::unique("trace"));
    envelope.body = "not json".into();
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let outcome = app.ingest(&envelope, now).await.expect("quarantined, not failed");
    let IngestOutcome::Quarantined { id: Some(id), .. } = outcome else { panic!("{outcome:?}") };

    // Then its item carries the TTL attribute: expires_at, epoch seconds (a Number), 7 days after it
    let expires = now + chrono::Duration::days(7);
    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.env.quarantine_table)
        .key("pk", AttributeValue::S(format!("Q#{id}")))
        .key("sk", AttributeValue::S("payload".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("stored");
    assert_eq!(item.get("expires_at"), Some(&AttributeValue::N(expires.timestamp().to_string())));

    // And `manifold quarantine list` and `show` say when it goes, in text and in JSON
    let listed = app.quarantine.list_stored(false).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].expires_at, Some(expires));
    let list = QuarantineList { items: listed };
    let text = list.human();
    assert!(text.contains("EXPIRES") && text.contains("2026-03-08 12:00"), "{text}");
    assert_eq!(serde_json::to_value(&list).unwrap()["items"][0]["expires_at"], "2026-03-08T12:00:00Z");
    let shown = QuarantineItem(app.quarantine.get_stored(&id).await.unwrap().expect("shown")).human();
    assert!(shown.contains("expires   2026-03-08T12:00:00Z"), "{shown}");

    // And a replay that fails the same way is the same failure: kept once, under its id, with the
    // original's expiry (a replay does not extend the retention)
    let report = quarantine::replay(&app, Some(&id), now + chrono::Duration::days(2)).await.expect("replay");
    let Replay::FailedAgain { requarantined_as: Some(again), .. } = &report.items[0].replay else {
        panic!("{report:?}")
    };
    assert_eq!(again, &id);
    let kept = app.quarantine.get_stored(&id).await.unwrap().unwrap();
    assert_eq!((kept.expires_at, kept.payload.replayed_at), (Some(expires), None));
    assert_eq!(app.quarantine.list(true).await.unwrap().len(), 1);

    // And the QuarantineTable of the stack created from template.yaml expires items on that attribute
    let table = std::env::var("QUARANTINE_TABLE")
        .expect("QUARANTINE_TABLE is unset: run through infra/local/test.sh, which creates the stack with stack.py");
    let ttl = stack.ddb.describe_time_to_live().table_name(table).send().await.expect("describe TTL");
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled));
}
