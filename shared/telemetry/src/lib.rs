//! Telemetry shared by every function: structured JSON logs with business context, personal-data
//! redaction, trace ids, and CloudWatch Embedded Metric Format (EMF) metrics with a cost estimate.
//!
//! Done once here, not per handler, so every Lambda logs and measures the same way: one grep for a
//! trace id shows a transaction's whole path, and no email or address reaches CloudWatch Logs.

pub mod cost;
pub mod logging;
pub mod metrics;
pub mod redact;

pub use logging::init;
pub use metrics::{MetricSet, Recorder, Unit};

/// Header, SQS message attribute and event field that carry the trace id between hops.
pub const TRACE_HEADER: &str = "x-manifold-trace-id";
/// SQS message attribute name for the trace id.
pub const TRACE_ATTRIBUTE: &str = "trace_id";
