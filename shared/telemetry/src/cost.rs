//! What work costs, counted rather than estimated: every AWS call a function makes is counted as it
//! happens (`manifold_aws::usage`, an SDK interceptor) into a [`Usage`]: requests per service and
//! operation, DynamoDB read and write units as DynamoDB reports them (`ReturnConsumedCapacity` on every
//! call), SQS requests in the 64 KB units SQS bills, EventBridge events in 64 KB units. [`Prices`] turns
//! counts into dollars at dated us-east-1 list prices.
//!
//! A [`CostMeter`] holds one order's (or one invocation's) counted usage plus the channel API calls it
//! made, and publishes it as metrics per channel (`AwsRequests`, `ApiCalls`, `EstimatedCostMicroUsd`).
//! Prices leave out free tiers and data transfer.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

/// Counted calls of one service operation (`dynamodb.PutItem`, `sqs.SendMessageBatch`...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Calls {
    /// Requests sent (each retry attempt is one: AWS bills attempts).
    #[serde(rename = "n")]
    pub requests: u64,
    /// Billed request units where a service bills by payload: SQS per started 64 KB of a request
    /// or its response, EventBridge per started 64 KB of each event. Equal to `requests` elsewhere.
    #[serde(rename = "units", default)]
    pub billed: u64,
    /// DynamoDB read request units reported by DynamoDB.
    #[serde(rename = "rru", default, skip_serializing_if = "is_zero")]
    pub read_units: f64,
    /// DynamoDB write request units reported by DynamoDB.
    #[serde(rename = "wru", default, skip_serializing_if = "is_zero")]
    pub write_units: f64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Calls {
    fn add(&mut self, other: &Calls) {
        self.requests += other.requests;
        self.billed += other.billed;
        self.read_units += other.read_units;
        self.write_units += other.write_units;
    }
}

/// Counted AWS work, by `service.Operation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Usage {
    pub calls: BTreeMap<String, Calls>,
}

impl Usage {
    pub fn record(&mut self, operation: &str, calls: Calls) {
        self.calls.entry(operation.to_owned()).or_default().add(&calls);
    }

    pub fn merge(&mut self, other: &Usage) {
        for (op, c) in &other.calls {
            self.record(op, *c);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Every request, all services.
    pub fn requests(&self) -> u64 {
        self.calls.values().map(|c| c.requests).sum()
    }

    /// The calls of one service (`dynamodb`, `sqs`, `eventbridge`, `s3`, `secretsmanager`).
    pub fn service(&self, service: &str) -> Calls {
        let mut total = Calls::default();
        for (op, c) in &self.calls {
            if op.split_once('.').is_some_and(|(s, _)| s == service) {
                total.add(c);
            }
        }
        total
    }

    /// Dollars at `prices`.
    pub fn usd(&self, prices: &Prices) -> f64 {
        let mut usd = 0.0;
        for (op, c) in &self.calls {
            let service = op.split_once('.').map_or(op.as_str(), |(s, _)| s);
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let units = c.billed as f64;
            usd += match service {
                "dynamodb" => c.read_units * prices.dynamodb_read_unit + c.write_units * prices.dynamodb_write_unit,
                "sqs" => units * prices.sqs_request,
                "eventbridge" => units * prices.eventbridge_event,
                "secretsmanager" => units * prices.secrets_manager_call,
                "s3" if op.ends_with("GetObject") || op.ends_with("HeadObject") || op.starts_with("s3.List") => {
                    units * prices.s3_get
                }
                "s3" => units * prices.s3_put,
                _ => 0.0,
            };
        }
        usd
    }
}

/// Usage counted process-wide: what the SDK interceptor adds to, and what each invocation takes.
#[derive(Debug, Default)]
pub struct UsageCounter(Mutex<Usage>);

impl UsageCounter {
    pub const fn new() -> Self {
        Self(Mutex::new(Usage { calls: BTreeMap::new() }))
    }

    pub fn record(&self, operation: &str, calls: Calls) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(operation, calls);
    }

    /// What was counted since the last take, and a fresh start.
    pub fn take(&self) -> Usage {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn snapshot(&self) -> Usage {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// us-east-1 list prices in dollars per unit, with the date they were read. Free tiers, data transfer
/// and savings plans are left out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    /// When these prices were taken from the AWS pricing pages.
    pub as_of: &'static str,
    /// Lambda, arm64: per request and per GB-second of billed duration.
    pub lambda_request: f64,
    pub lambda_arm64_gb_second: f64,
    /// DynamoDB on-demand: per read and per write request unit.
    pub dynamodb_read_unit: f64,
    pub dynamodb_write_unit: f64,
    /// SQS standard queue: per request (64 KB unit).
    pub sqs_request: f64,
    /// EventBridge: per custom event put (64 KB unit).
    pub eventbridge_event: f64,
    /// API Gateway HTTP API: per request (512 KB unit).
    pub http_api_request: f64,
    /// CloudWatch Logs: per GB ingested (standard class).
    pub logs_ingested_gb: f64,
    /// CloudWatch: per custom metric per month (first 10,000).
    pub custom_metric_month: f64,
    pub secrets_manager_call: f64,
    pub s3_get: f64,
    pub s3_put: f64,
}

impl Prices {
    /// us-east-1 on-demand list prices (aws.amazon.com/{lambda,dynamodb,sqs,eventbridge,api-gateway,
    /// cloudwatch,secrets-manager,s3}/pricing), DynamoDB after its November 2024 on-demand reduction.
    pub const US_EAST_1: Prices = Prices {
        as_of: "2025-06-01",
        lambda_request: 0.20e-6,
        lambda_arm64_gb_second: 0.000_013_333_4,
        dynamodb_read_unit: 0.125e-6,
        dynamodb_write_unit: 0.625e-6,
        sqs_request: 0.40e-6,
        eventbridge_event: 1.00e-6,
        http_api_request: 1.00e-6,
        logs_ingested_gb: 0.50,
        custom_metric_month: 0.30,
        secrets_manager_call: 0.05e-4,
        s3_get: 0.4e-6,
        s3_put: 5.0e-6,
    };

    /// Lambda's charge for `invocations` with `billed_ms` of duration at `memory_mb`.
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    pub fn lambda(&self, invocations: u64, billed_ms: u64, memory_mb: u32) -> f64 {
        invocations as f64 * self.lambda_request
            + billed_ms as f64 / 1000.0 * f64::from(memory_mb) / 1024.0 * self.lambda_arm64_gb_second
    }
}

/// One order's (or one invocation's) counted work: the AWS usage counted while it ran, plus the calls
/// to a channel's API (free in dollars, counted against the channel's quota). Cheap to share.
#[derive(Debug, Default)]
pub struct CostMeter {
    aws: UsageCounter,
    api_calls: AtomicU64,
}

impl CostMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds counted AWS work.
    pub fn add_usage(&self, usage: &Usage) {
        for (op, c) in &usage.calls {
            self.aws.record(op, *c);
        }
    }

    pub fn add_api_calls(&self, n: u64) {
        self.api_calls.fetch_add(n, Ordering::Relaxed);
    }

    pub fn usage(&self) -> Usage {
        self.aws.snapshot()
    }

    pub fn aws_requests(&self) -> u64 {
        self.aws.snapshot().requests()
    }

    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }

    /// The counted AWS work at us-east-1 prices, in micro-dollars (Lambda duration not included: the
    /// invocation's billed duration is known to Lambda, not to the code it runs).
    pub fn micro_usd(&self) -> f64 {
        self.aws.snapshot().usd(&Prices::US_EAST_1) * 1e6
    }

    /// The counters as an EMF metric set for `channel` and `operation`.
    pub fn to_metrics(&self, channel: &str, operation: &str) -> crate::MetricSet {
        crate::MetricSet::new()
            .dim("Channel", channel)
            .dim("Operation", operation)
            .count("AwsRequests", self.aws_requests())
            .count("ApiCalls", self.api_calls())
            .value("EstimatedCostMicroUsd", self.micro_usd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(requests: u64, billed: u64, rru: f64, wru: f64) -> Calls {
        Calls { requests, billed, read_units: rru, write_units: wru }
    }

    #[test]
    fn counted_work_is_priced_by_what_each_service_bills() {
        let m = CostMeter::new();
        let mut usage = Usage::default();
        usage.record("dynamodb.TransactWriteItems", calls(1, 1, 0.0, 4.0));
        usage.record("dynamodb.GetItem", calls(2, 2, 1.0, 0.0));
        // Two SendMessage calls, one of them 100 KB: three billed requests.
        usage.record("sqs.SendMessage", calls(2, 3, 0.0, 0.0));
        usage.record("eventbridge.PutEvents", calls(1, 1, 0.0, 0.0));
        m.add_usage(&usage);
        m.add_usage(&usage);
        m.add_api_calls(4);
        assert_eq!(m.aws_requests(), 12);
        assert_eq!(m.api_calls(), 4);
        let expected = 2.0 * (4.0 * 0.625 + 1.0 * 0.125 + 3.0 * 0.4 + 1.0);
        assert!((m.micro_usd() - expected).abs() < 1e-9, "{} vs {expected}", m.micro_usd());
        assert_eq!(m.usage().service("dynamodb"), calls(6, 6, 2.0, 8.0));
        crate::metrics::validate_emf(&m.to_metrics("shopify", "ingest").to_emf(1)).unwrap();
    }

    #[test]
    fn lambda_is_priced_per_request_and_gb_second() {
        // 1M invocations of 100 ms at 1024 MB: $0.20 + 100,000 GB-s.
        let usd = Prices::US_EAST_1.lambda(1_000_000, 100_000_000, 1024);
        assert!((usd - (0.20 + 100_000.0 * 0.000_013_333_4)).abs() < 1e-6, "{usd}");
    }

    #[test]
    fn usage_taken_starts_afresh_and_reads_back_from_json() {
        let counter = UsageCounter::new();
        counter.record("sqs.ReceiveMessage", calls(1, 1, 0.0, 0.0));
        counter.record("sqs.ReceiveMessage", calls(1, 2, 0.0, 0.0));
        let taken = counter.take();
        assert_eq!(taken.calls["sqs.ReceiveMessage"], calls(2, 3, 0.0, 0.0));
        assert!(counter.take().is_empty());
        let json = serde_json::to_string(&taken).unwrap();
        assert_eq!(json, r#"{"sqs.ReceiveMessage":{"n":2,"units":3}}"#);
        assert_eq!(serde_json::from_str::<Usage>(&json).unwrap(), taken);
    }
}
