//! Counts every AWS call the functions make, as AWS bills it, from inside the SDK: an interceptor on
//! every client the functions build ([`dynamodb`], [`sqs`], [`eventbridge`], [`s3`], [`secrets`]).
//!
//! - Each attempt is one request of `service.Operation` (retries are billed too).
//! - DynamoDB: `ReturnConsumedCapacity: TOTAL` is added to every item operation that does not ask for
//!   it, and the read and write units DynamoDB reports are added up: capacity as DynamoDB counts it,
//!   not as the code guesses it.
//! - SQS: one billed request per started 64 KB of the request or the response, whichever is larger.
//! - EventBridge: one billed event per started 64 KB of each entry of a `PutEvents`.
//!
//! Counts go to the process-wide [`PROCESS`] counter, and to the [`scoped`] counter of the task that
//! made the call (one order's work in ingest). [`invocation`] wraps a Lambda handler: after each
//! invocation it logs what the invocation used (`"aws usage"`, one JSON field), which is where the
//! bench and a CloudWatch Logs Insights query read it from, without a custom metric per function.

use std::{future::Future, sync::Arc};

use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{
            Intercept,
            context::{AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut},
        },
        orchestrator::Metadata,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::{body::SdkBody, config_bag::ConfigBag};
use manifold_telemetry::cost::{Calls, Usage, UsageCounter};

/// Everything this process's clients did since the last [`invocation`] ended.
pub static PROCESS: UsageCounter = UsageCounter::new();

tokio::task_local! {
    static SCOPE: Arc<UsageCounter>;
}

/// Runs `fut` with its AWS calls also counted into `counter`.
pub async fn scoped<F: Future>(counter: Arc<UsageCounter>, fut: F) -> F::Output {
    SCOPE.scope(counter, fut).await
}

/// What the current [`scoped`] task has counted so far (`None` outside a scope).
pub fn in_scope() -> Option<Usage> {
    SCOPE.try_with(|c| c.snapshot()).ok()
}

/// Runs one invocation's handler, then logs the AWS work it did (with the init phase's on the first).
pub async fn invocation<F: Future>(fut: F) -> F::Output {
    let out = fut.await;
    let usage = PROCESS.take();
    if !usage.is_empty() {
        let json = serde_json::to_string(&usage).unwrap_or_default();
        tracing::info!(aws = %json, "aws usage");
    }
    out
}

/// Reads back the usage lines [`invocation`] logged (one JSON log line each), for the bench.
pub fn parse_usage_line(line: &str) -> Option<Usage> {
    if !line.contains("\"aws usage\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = v.get("aws").or_else(|| v.get("fields").and_then(|f| f.get("aws")))?.as_str()?;
    serde_json::from_str(text).ok()
}

fn record(operation: &str, calls: Calls) {
    PROCESS.record(operation, calls);
    let _ = SCOPE.try_with(|c| c.record(operation, calls));
}

const CHUNK: usize = 64 * 1024;

fn chunks(bytes: usize) -> u64 {
    bytes.div_ceil(CHUNK).max(1) as u64
}

/// DynamoDB operations that take `ReturnConsumedCapacity`.
const CAPACITY_OPERATIONS: [&str; 11] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
    "ExecuteStatement",
];

/// The SDK interceptor (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageInterceptor;

fn operation(cfg: &ConfigBag) -> Option<(String, String)> {
    let m = cfg.load::<Metadata>()?;
    let service: String = m.service().chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    Some((service, m.name().to_owned()))
}

impl Intercept for UsageInterceptor {
    fn name(&self) -> &'static str {
        "ManifoldUsage"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some((service, op)) = operation(cfg) else { return Ok(()) };
        let request = context.request_mut();
        if service == "dynamodb" && CAPACITY_OPERATIONS.contains(&op.as_str()) {
            let with_capacity = request.body().bytes().and_then(|b| {
                let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(b).ok()?;
                if doc.contains_key("ReturnConsumedCapacity") {
                    return None;
                }
                doc.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
                serde_json::to_vec(&doc).ok()
            });
            if let Some(body) = with_capacity {
                request.headers_mut().insert("content-length", body.len().to_string());
                *request.body_mut() = SdkBody::from(body);
            }
        }
        let size = request.body().bytes().map_or(0, <[u8]>::len);
        let billed = match (service.as_str(), op.as_str()) {
            ("sqs", _) => chunks(size),
            ("eventbridge", "PutEvents") => request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| {
                    v.get("Entries")?.as_array().map(|entries| {
                        entries.iter().map(|e| chunks(serde_json::to_vec(e).map_or(0, |b| b.len()))).sum()
                    })
                })
                .unwrap_or(1),
            _ => 1,
        };
        record(&format!("{service}.{op}"), Calls { requests: 1, billed, ..Calls::default() });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some((service, op)) = operation(cfg) else { return Ok(()) };
        let Some(body) = context.response().body().bytes() else { return Ok(()) };
        let extra = match service.as_str() {
            // A response over 64 KB (a large ReceiveMessage) bills its further chunks.
            "sqs" => Calls { billed: chunks(body.len()).saturating_sub(1), ..Calls::default() },
            "dynamodb" => {
                let units = consumed_units(body);
                if op.starts_with("Get")
                    || op.starts_with("BatchGet")
                    || op.starts_with("TransactGet")
                    || op == "Query"
                    || op == "Scan"
                {
                    Calls { read_units: units, ..Calls::default() }
                } else {
                    Calls { write_units: units, ..Calls::default() }
                }
            }
            _ => return Ok(()),
        };
        if extra != Calls::default() {
            record(&format!("{service}.{op}"), extra);
        }
        Ok(())
    }
}

/// The `CapacityUnits` of a DynamoDB response's `ConsumedCapacity` (one object, or one per table).
fn consumed_units(body: &[u8]) -> f64 {
    #[derive(serde::Deserialize)]
    struct Capacity {
        #[serde(rename = "CapacityUnits", default)]
        units: f64,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Consumed {
        One(Capacity),
        Many(Vec<Capacity>),
    }
    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(rename = "ConsumedCapacity")]
        consumed: Option<Consumed>,
    }
    match serde_json::from_slice::<Response>(body).ok().and_then(|r| r.consumed) {
        Some(Consumed::One(c)) => c.units,
        Some(Consumed::Many(cs)) => cs.iter().map(|c| c.units).sum(),
        None => 0.0,
    }
}

/// A DynamoDB client whose calls are counted.
pub fn dynamodb(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(UsageInterceptor).build(),
    )
}

/// An SQS client whose calls are counted.
pub fn sqs(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(sdk).interceptor(UsageInterceptor).build())
}

/// An EventBridge client whose calls are counted.
pub fn eventbridge(sdk: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(sdk).interceptor(UsageInterceptor).build(),
    )
}

/// An S3 client whose calls are counted.
pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).interceptor(UsageInterceptor).build())
}

/// A Secrets Manager client whose calls are counted.
pub fn secrets(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(sdk).interceptor(UsageInterceptor).build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_capacity_is_read_from_one_object_or_a_list() {
        assert!((consumed_units(br#"{"ConsumedCapacity":{"TableName":"t","CapacityUnits":1.5}}"#) - 1.5).abs() < 1e-9);
        let many =
            br#"{"ConsumedCapacity":[{"TableName":"a","CapacityUnits":4.0},{"TableName":"b","CapacityUnits":2.0}]}"#;
        assert!((consumed_units(many) - 6.0).abs() < 1e-9);
        assert!(consumed_units(b"{}").abs() < 1e-9);
    }

    #[test]
    fn sqs_bills_each_started_64_kb() {
        assert_eq!(chunks(0), 1);
        assert_eq!(chunks(65_536), 1);
        assert_eq!(chunks(65_537), 2);
    }

    #[test]
    fn a_usage_line_reads_back() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"aws usage","aws":"{\"sqs.SendMessage\":{\"n\":1,\"units\":1}}"}}"#;
        let usage = parse_usage_line(line).unwrap();
        assert_eq!(usage.calls["sqs.SendMessage"].requests, 1);
        assert!(parse_usage_line(r#"{"fields":{"message":"record stored"}}"#).is_none());
    }
}
