//! What a transaction costs: AWS requests and channel API calls, counted as they happen and turned into
//! an estimate in micro-dollars, published as metrics per channel (`AwsRequests`, `ApiCalls`,
//! `EstimatedCostMicroUsd`).
//!
//! Prices are us-east-1 on-demand list prices (per million requests) and only an estimate: they leave
//! out free tiers, data transfer and Lambda duration, which the dashboard shows separately.

use std::sync::atomic::{AtomicU64, Ordering};

/// A billable kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billable {
    LambdaInvoke,
    DynamoWrite,
    DynamoRead,
    SqsRequest,
    EventBridgeEvent,
    SecretsManagerCall,
    /// A call to a channel's API: free in dollars, but counted against the channel's quota.
    ChannelApiCall,
}

impl Billable {
    /// List price in micro-dollars per request.
    pub fn micro_usd(self) -> f64 {
        match self {
            Billable::LambdaInvoke => 0.2,
            Billable::DynamoWrite => 0.625,
            Billable::DynamoRead => 0.125,
            Billable::SqsRequest => 0.4,
            Billable::EventBridgeEvent => 1.0,
            Billable::SecretsManagerCall => 5.0,
            Billable::ChannelApiCall => 0.0,
        }
    }
}

/// Counters for one invocation or one order. Cheap to share across tasks.
#[derive(Debug, Default)]
pub struct CostMeter {
    aws_requests: AtomicU64,
    api_calls: AtomicU64,
    /// Nano-dollars, so integer atomics can hold fractional micro-dollar prices.
    nano_usd: AtomicU64,
}

impl CostMeter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, what: Billable, n: u64) {
        if what == Billable::ChannelApiCall {
            self.api_calls.fetch_add(n, Ordering::Relaxed);
        } else {
            self.aws_requests.fetch_add(n, Ordering::Relaxed);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let nano = (what.micro_usd() * 1000.0 * n as f64).round() as u64;
        self.nano_usd.fetch_add(nano, Ordering::Relaxed);
    }

    pub fn aws_requests(&self) -> u64 {
        self.aws_requests.load(Ordering::Relaxed)
    }

    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }

    pub fn micro_usd(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let nano = self.nano_usd.load(Ordering::Relaxed) as f64;
        nano / 1000.0
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

    #[test]
    fn an_order_through_the_pipeline_is_priced_from_its_requests() {
        let m = CostMeter::new();
        m.record(Billable::LambdaInvoke, 2);
        m.record(Billable::DynamoWrite, 3);
        m.record(Billable::SqsRequest, 2);
        m.record(Billable::EventBridgeEvent, 1);
        m.record(Billable::ChannelApiCall, 4);
        assert_eq!(m.aws_requests(), 8);
        assert_eq!(m.api_calls(), 4);
        assert!((m.micro_usd() - (0.4 + 1.875 + 0.8 + 1.0)).abs() < 1e-9, "{}", m.micro_usd());
        crate::metrics::validate_emf(&m.to_metrics("shopify", "ingest").to_emf(1)).unwrap();
    }
}
