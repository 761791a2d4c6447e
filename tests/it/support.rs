//! Shared test plumbing: SDK clients pointed at moto, unique resource names, polling with a deadline.
//!
//! moto must be running (`infra/local/test.sh` starts it). Tests never skip when it is not: they fail
//! with a message saying how to start it.

#![allow(dead_code)]

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

/// An enabled account of `channel` named `name` at `endpoint` (a simulator's), API version `api_version`,
/// its secret at `manifold/{channel}/{name}`, unlimited, with `settings` and no rules, maps or ids: a test
/// sets what else it needs with struct update syntax.
pub fn sim_account(
    channel: manifold_domain::Channel,
    name: &str,
    api_version: &str,
    endpoint: String,
    settings: &[(&str, &str)],
) -> manifold_domain::config::AccountConfig {
    use manifold_domain::config;
    config::AccountConfig {
        channel,
        account: manifold_domain::AccountId::new(name).expect("a valid account id"),
        api_version: api_version.to_owned(),
        secret: format!("manifold/{channel}/{name}"),
        endpoint,
        enabled: true,
        rate_limit: config::RateLimit::Unlimited,
        max_concurrency: 2,
        sync: config::SyncCadences::default(),
        stock: config::StockRules::default(),
        shipping: config::ShippingRules::default(),
        sku_map: std::collections::BTreeMap::new(),
        item_ids: std::collections::BTreeMap::new(),
        settings: settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        pricing: None,
    }
}

/// A Shopify `orders/create` delivery to `shop-eu` of `body`, as the webhook enqueues it.
pub fn shopify_delivery(trace_id: &str, body: String) -> manifold_app::IngestEnvelope {
    manifold_app::IngestEnvelope {
        v: 1,
        channel: manifold_domain::Channel::Shopify,
        account: "shop-eu".into(),
        source: manifold_app::Source::Webhook,
        topic: Some("orders/create".into()),
        event_id: format!("evt-{trace_id}"),
        trace_id: trace_id.to_owned(),
        received_at: chrono::Utc::now(),
        body,
        document: None,
    }
}

/// The moto endpoint: `AWS_ENDPOINT_URL`, or moto's default port on loopback.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// SDK configuration for moto: the production code path with a local endpoint and dummy credentials.
pub async fn aws() -> aws_config::SdkConfig {
    let endpoint = endpoint();
    let probe = format!("{endpoint}/moto-api/");
    let reachable = tokio::net::TcpStream::connect(endpoint.trim_start_matches("http://").trim_end_matches('/')).await;
    assert!(
        reachable.is_ok(),
        "moto is not reachable at {probe}: run the tests through infra/local/test.sh (or start it with infra/local/moto.sh start)"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Creates a table with the key schema every Manifold table uses (`pk`, `sk`: strings).
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, prefix: &str) -> String {
    let name = unique(prefix);
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("sk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("sk").key_type(KeyType::Range).build().unwrap())
        .send()
        .await
        .expect("create table in moto");
    name
}

/// Creates a ledger table as template.yaml's `LedgerTable`: the key schema and the `Changed` index
/// of positions by the hour they changed in.
pub async fn create_ledger_table(ddb: &aws_sdk_dynamodb::Client) -> String {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, Projection, ProjectionType};
    let name = unique("ledger");
    let attribute =
        |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build();
    let key = |n: &str, k: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(k).build();
    let changed = GlobalSecondaryIndex::builder()
        .index_name(manifold_ledger::dynamo::CHANGED_INDEX)
        .key_schema(key("changed", KeyType::Hash).unwrap())
        .key_schema(key("updated_at", KeyType::Range).unwrap())
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .unwrap();
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "changed", "updated_at"].into_iter().map(|n| attribute(n).unwrap()).collect(),
        ))
        .key_schema(key("pk", KeyType::Hash).unwrap())
        .key_schema(key("sk", KeyType::Range).unwrap())
        .global_secondary_indexes(changed)
        .send()
        .await
        .expect("create ledger table in moto");
    name
}

/// Creates a standard queue and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    sqs.create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .expect("create queue in moto")
        .queue_url
        .expect("queue url")
}

/// Polls `check` until it returns `Some`, or panics after `deadline`. Never a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private set of Manifold resources in moto (tables, queues, bus) with the same key schemas and
/// wiring as the template, so tests never see each other's data.
pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub env: manifold_aws::AwsEnv,
    /// Receives every event published on the stack's bus (a rule on `source = manifold`).
    pub events_queue: String,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Each queue's dead-letter queue, by queue URL (empty unless built [`Stack::with_dead_letters`]).
    pub dlqs: std::collections::BTreeMap<String, String>,
}

/// How the queues of a [`Stack`] dead-letter, as the template's redrive policies do.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters {
    /// Receives before SQS moves a message to its DLQ (the template's `MaxReceiveCount`).
    pub max_receive: u32,
    /// The queues' visibility timeout in seconds: how long a failed message waits before its retry.
    pub visibility_secs: u32,
}

impl Stack {
    pub async fn new() -> Self {
        Self::build(None).await
    }

    /// A stack whose ingest, ledger (event capture) and push queues each have their own DLQ.
    pub async fn with_dead_letters(dead_letters: DeadLetters) -> Self {
        Self::build(Some(dead_letters)).await
    }

    async fn build(dead_letters: Option<DeadLetters>) -> Self {
        let sdk = aws().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let eb = aws_sdk_eventbridge::Client::new(&sdk);
        let records_table = create_records_table(&ddb).await;
        let bus = unique("bus");
        eb.create_event_bus().name(&bus).send().await.expect("create bus");
        let mut dlqs = std::collections::BTreeMap::new();
        let mut queue = async |prefix: &str| match dead_letters {
            Some(d) => {
                let (queue, dlq) = queue_with_dlq(&sqs, prefix, d).await;
                dlqs.insert(queue.clone(), dlq);
                queue
            }
            None => create_queue(&sqs, prefix).await,
        };
        let events_queue = queue("events").await;
        let arn = queue_arn(&sqs, &events_queue).await;
        let rule = unique("rule");
        eb.put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(r#"{"source":["manifold"]}"#)
            .send()
            .await
            .expect("put rule");
        eb.put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("capture").arn(arn).build().unwrap())
            .send()
            .await
            .expect("put targets");
        let mut push_queues = std::collections::BTreeMap::new();
        for c in manifold_domain::Channel::ALL {
            push_queues.insert(c, queue(&format!("push-{c}")).await);
        }
        let env = manifold_aws::AwsEnv {
            records_table,
            idempotency_table: create_table(&ddb, "idem").await,
            ledger_table: create_ledger_table(&ddb).await,
            state_table: create_table(&ddb, "state").await,
            quarantine_table: create_table(&ddb, "quarantine").await,
            event_bus: bus,
            ingest_queue_url: queue("ingest").await,
            push_queues,
        };
        Self { sdk, env, events_queue, ddb, sqs, dlqs }
    }

    /// Receives (and deletes) everything currently on a queue, polling until `quiet` passes empty.
    pub async fn drain(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut out = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                empty_polls += 1;
                continue;
            }
            for m in &msgs {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
            out.extend(msgs);
        }
        out
    }

    /// Detail-types of the events published so far (consumed from the capture queue).
    pub async fn events(&self) -> Vec<serde_json::Value> {
        self.drain(&self.events_queue.clone())
            .await
            .into_iter()
            .map(|m| serde_json::from_str(m.body().unwrap_or("null")).expect("event json"))
            .collect()
    }
}

/// Converts received SQS messages into the Lambda event the consumers take, as the event source
/// mapping would (moto does not run the mappings).
pub fn lambda_event(messages: &[aws_sdk_sqs::types::Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    manifold_app::local::to_lambda_event(messages)
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .expect("queue arn")
}

/// The records table, with the `by_trace` index the template declares.
pub async fn create_records_table(ddb: &aws_sdk_dynamodb::Client) -> String {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, Projection, ProjectionType};
    let name = unique("records");
    let attr = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("trace_id"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by_trace")
                .key_schema(key("trace_id", KeyType::Hash))
                .key_schema(key("pk", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create records table");
    name
}

/// A queue whose messages go to their own DLQ after `max_receive` deliveries, with the visibility
/// timeout of `dead_letters` (short, so a retried message comes back within a test). Returns the queue
/// URL and its DLQ's.
pub async fn queue_with_dlq(sqs: &aws_sdk_sqs::Client, prefix: &str, dead_letters: DeadLetters) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq = create_queue(sqs, &format!("{prefix}-dlq")).await;
    let dlq_arn = queue_arn(sqs, &dlq).await;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": dead_letters.max_receive.to_string(),
    });
    let queue = sqs
        .create_queue()
        .queue_name(unique(prefix))
        .attributes(QueueAttributeName::VisibilityTimeout, dead_letters.visibility_secs.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create queue with DLQ")
        .queue_url
        .expect("queue url");
    (queue, dlq)
}

/// Messages on a queue: visible, in flight and delayed.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum()
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

/// Plays the Lambda SQS poller once: receives up to `batch_size` messages with all their attributes
/// (long-polling for a second when the queue is empty, so callers can loop on it without sleeping),
/// hands them to `handler` as one Lambda batch, deletes every message not reported as a batch item
/// failure. The failures come back after the queue's visibility timeout, as in AWS.
pub async fn poll_once<F, Fut>(sqs: &aws_sdk_sqs::Client, url: &str, batch_size: i32, handler: F) -> Polled
where
    F: FnOnce(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(batch_size)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Polled { received: 0, failed: 0 };
    }
    let response = handler(lambda_event(&messages)).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    for m in &messages {
        if !failed.contains(&m.message_id().unwrap_or_default()) {
            let receipt = m.receipt_handle().unwrap_or_default();
            if let Err(e) = sqs.delete_message().queue_url(url).receipt_handle(receipt).send().await {
                // The batch outlived the visibility timeout and another poller holds the message now:
                // it comes back and is handled again, as the mapping would redeliver it.
                let stale = e.as_service_error().is_some_and(DeleteMessageError::is_receipt_handle_is_invalid);
                assert!(stale, "delete: {e:?}");
            }
        }
    }
    Polled { received: messages.len(), failed: failed.len() }
}

/// SDK configuration whose calls go through `endpoint` (a fault proxy listener in front of moto), with
/// one attempt per call: the code under test decides what is retried, not the SDK.
pub async fn sdk_via(endpoint: String) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// A chromedriver on a free loopback port (Debian's `chromium-driver`, which `infra/local/bootstrap.sh`
/// installs), stopped when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: std::process::Child,
    port: u16,
}

impl ChromeDriver {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver and waits until it answers.
pub async fn chromedriver() -> ChromeDriver {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
    assert!(
        std::path::Path::new(&binary).exists(),
        "{binary} is missing: run infra/local/bootstrap.sh, which installs Debian's chromium and chromium-driver"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = ChromeDriver { child, port };
    let status = format!("{}/status", driver.url());
    eventually("chromedriver answers", Duration::from_secs(30), || {
        let status = status.clone();
        async move { reqwest::get(&status).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;
    driver
}
