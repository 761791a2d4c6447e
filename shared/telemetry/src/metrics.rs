//! CloudWatch Embedded Metric Format (EMF): metrics written as structured log lines that CloudWatch
//! turns into metrics, with no API call and no latency on the request path.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
//! Metric names used across the project (the alarms and dashboard in template.yaml read these):
//! `SyncSucceeded`, `SyncFailed`, `Throttled`, `ApiLatency`, `ApiCalls`, `ItemsPushed`, `Oversell`,
//! `Quarantined`, `DlqArrival`, `ReconcileDrift`, `SignatureRejected`, `WebhookAccepted`,
//! `WebhookDuplicate`, `AwsRequests`, `EstimatedCostMicroUsd`, `PropagationMs`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The namespace of every Manifold metric (overridable with `METRICS_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = "Manifold";

/// EMF units (a subset of CloudWatch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

/// One EMF document: a few metrics sharing the same dimensions.
#[must_use = "a metric set does nothing until emitted"]
#[derive(Debug, Clone)]
pub struct MetricSet {
    namespace: String,
    dimensions: BTreeMap<&'static str, String>,
    metrics: Vec<(&'static str, f64, Unit)>,
    properties: Map<String, Value>,
    aggregate: bool,
}

impl MetricSet {
    pub fn new() -> Self {
        let namespace = std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| DEFAULT_NAMESPACE.to_owned());
        Self { namespace, dimensions: BTreeMap::new(), metrics: Vec::new(), properties: Map::new(), aggregate: false }
    }

    /// Adds a dimension (e.g. `Channel`, `Operation`). Each metric is published both per `Channel`
    /// alone and per the full set, so alarms can use the channel-only view.
    pub fn dim(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.insert(name, value.into());
        self
    }

    /// Also publishes the metrics with no dimensions at all, for account-wide alarms (any oversell,
    /// signature failures across channels).
    pub fn aggregate(mut self) -> Self {
        self.aggregate = true;
        self
    }

    pub fn count(mut self, name: &'static str, n: u64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        self.metrics.push((name, n as f64, Unit::Count));
        self
    }

    pub fn millis(mut self, name: &'static str, ms: f64) -> Self {
        self.metrics.push((name, ms, Unit::Milliseconds));
        self
    }

    pub fn value(mut self, name: &'static str, v: f64) -> Self {
        self.metrics.push((name, v, Unit::None));
        self
    }

    /// A searchable, non-metric property (e.g. `trace_id`).
    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(key.to_owned(), value.into());
        self
    }

    /// The EMF JSON document at `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let all: Vec<&str> = self.dimensions.keys().copied().collect();
        let mut dimension_sets = vec![all.clone()];
        if self.dimensions.contains_key("Channel") && all.len() > 1 {
            dimension_sets.push(vec!["Channel"]);
        }
        if all.is_empty() {
            dimension_sets = vec![vec![]];
        } else if self.aggregate {
            dimension_sets.push(vec![]);
        }
        let metric_defs: Vec<Value> =
            self.metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u.as_str()})).collect();
        let mut root = self.properties.clone();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": dimension_sets, "Metrics": metric_defs}]
            }),
        );
        for (k, v) in &self.dimensions {
            root.insert((*k).to_owned(), Value::String(v.clone()));
        }
        for (n, v, _) in &self.metrics {
            root.insert((*n).to_owned(), json!(v));
        }
        Value::Object(root)
    }

    /// Writes the document to stdout, where the Lambda runtime ships it to CloudWatch Logs. Local
    /// runs may set `METRICS_FILE` to collect the documents in a file instead (the demo does).
    pub fn emit(&self) {
        if self.metrics.is_empty() {
            return;
        }
        let line = self.to_emf(chrono::Utc::now().timestamp_millis());
        recorders::offer(&line);
        if let Some(path) = std::env::var_os("METRICS_FILE") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
                return;
            }
        }
        println!("{line}");
    }
}

/// Metric documents as the process emits them, for tests and local tools that count what a run
/// measured (CloudWatch reads them from the log; a test reads them here). Recording is off unless a
/// [`Recorder`] is alive, so it costs one relaxed load per document in Lambda.
mod recorders {
    use std::sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    };

    use serde_json::Value;

    type Sink = Arc<Mutex<Vec<Value>>>;

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static SINKS: Mutex<Vec<(usize, Sink)>> = Mutex::new(Vec::new());
    static NEXT: AtomicUsize = AtomicUsize::new(1);

    pub(super) fn offer(doc: &Value) {
        if LIVE.load(Ordering::Relaxed) == 0 {
            return;
        }
        for (_, sink) in SINKS.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(doc.clone());
        }
    }

    /// Records every metric document emitted in this process while it lives.
    #[derive(Debug)]
    pub struct Recorder {
        id: usize,
        sink: Sink,
    }

    impl Recorder {
        pub fn start() -> Self {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let sink = Sink::default();
            SINKS.lock().unwrap_or_else(PoisonError::into_inner).push((id, sink.clone()));
            LIVE.fetch_add(1, Ordering::Relaxed);
            Self { id, sink }
        }

        /// The documents recorded so far (every document of the process: filter by dimension or
        /// property, since concurrent work records here too).
        pub fn documents(&self) -> Vec<Value> {
            self.sink.lock().unwrap_or_else(PoisonError::into_inner).clone()
        }

        /// The sum of metric `name` over the documents `filter` accepts.
        pub fn sum(&self, name: &str, filter: impl Fn(&Value) -> bool) -> f64 {
            self.documents().iter().filter(|d| filter(d)).filter_map(|d| d.get(name).and_then(Value::as_f64)).sum()
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            SINKS.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| *id != self.id);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub use recorders::Recorder;

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks a document against the EMF specification's rules; `Err` names the first violation.
pub fn validate_emf(doc: &Value) -> Result<(), String> {
    let root = doc.as_object().ok_or("root must be an object")?;
    let aws = root.get("_aws").and_then(Value::as_object).ok_or("_aws object missing")?;
    aws.get("Timestamp").and_then(Value::as_i64).ok_or("_aws.Timestamp must be an integer (ms)")?;
    let directives =
        aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("CloudWatchMetrics must be an array")?;
    for d in directives {
        let ns = d.get("Namespace").and_then(Value::as_str).ok_or("Namespace must be a string")?;
        if ns.is_empty() || ns.len() > 1024 {
            return Err("Namespace length must be 1..=1024".into());
        }
        let dims = d.get("Dimensions").and_then(Value::as_array).ok_or("Dimensions must be an array")?;
        for set in dims {
            let set = set.as_array().ok_or("each dimension set must be an array")?;
            if set.len() > 30 {
                return Err("a dimension set holds at most 30 dimensions".into());
            }
            for name in set {
                let name = name.as_str().ok_or("dimension names are strings")?;
                if !root.get(name).is_some_and(Value::is_string) {
                    return Err(format!("dimension {name} has no string value at the root"));
                }
            }
        }
        let metrics = d.get("Metrics").and_then(Value::as_array).ok_or("Metrics must be an array")?;
        if metrics.len() > 100 {
            return Err("at most 100 metrics per directive".into());
        }
        for m in metrics {
            let name = m.get("Name").and_then(Value::as_str).ok_or("metric Name must be a string")?;
            if let Some(u) = m.get("Unit") {
                let u = u.as_str().ok_or("Unit must be a string")?;
                if !VALID_UNITS.contains(&u) {
                    return Err(format!("unit {u} is not a CloudWatch unit"));
                }
            }
            let v = root.get(name).ok_or_else(|| format!("metric {name} has no value at the root"))?;
            let ok = v.is_number() || v.as_array().is_some_and(|a| a.iter().all(Value::is_number));
            if !ok {
                return Err(format!("metric {name} must be a number or an array of numbers"));
            }
        }
    }
    Ok(())
}

const VALID_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_emf_specification() {
        let doc = MetricSet::new()
            .dim("Channel", "shopify")
            .dim("Operation", "push_stock")
            .count("SyncFailed", 1)
            .millis("ApiLatency", 12.5)
            .property("trace_id", "mf-1")
            .to_emf(1_700_000_000_000);
        validate_emf(&doc).unwrap();
        assert_eq!(doc["Channel"], "shopify");
        assert_eq!(doc["SyncFailed"], 1.0);
        let dims = &doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dims, &json!([["Channel", "Operation"], ["Channel"]]), "channel-only view for alarms");
    }

    #[test]
    fn aggregate_metrics_are_also_published_without_dimensions() {
        let doc = MetricSet::new().dim("Channel", "ebay").count("Oversell", 1).aggregate().to_emf(1);
        validate_emf(&doc).unwrap();
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Channel"], []]));
    }

    #[test]
    fn the_validator_rejects_broken_documents() {
        let mut doc = MetricSet::new().dim("Channel", "etsy").count("Oversell", 1).to_emf(1);
        doc.as_object_mut().unwrap().remove("Channel");
        assert!(validate_emf(&doc).unwrap_err().contains("Channel"));
        let mut doc = MetricSet::new().count("Oversell", 1).to_emf(1);
        doc["Oversell"] = json!("one");
        assert!(validate_emf(&doc).is_err());
        assert!(validate_emf(&json!({"_aws": {"CloudWatchMetrics": []}})).is_err(), "timestamp is required");
    }

    #[test]
    fn a_recorder_sees_what_is_emitted_while_it_lives() {
        let before = MetricSet::new().dim("Channel", "recorder-test-before").count("SyncFailed", 1);
        before.emit();
        let recorder = Recorder::start();
        MetricSet::new().dim("Channel", "recorder-test").count("SyncFailed", 2).emit();
        MetricSet::new().dim("Channel", "recorder-test").count("SyncSucceeded", 1).emit();
        let ours = |d: &Value| d["Channel"] == "recorder-test";
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(recorder.sum("SyncFailed", ours), 2.0));
        assert!(close(recorder.sum("SyncSucceeded", ours), 1.0));
        assert!(close(recorder.sum("SyncFailed", |d| d["Channel"] == "recorder-test-before"), 0.0));
        drop(recorder);
        let later = Recorder::start();
        assert!(later.documents().iter().all(|d| d["Channel"] != "recorder-test"), "a new recorder starts empty");
    }
}
