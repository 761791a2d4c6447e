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
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
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
