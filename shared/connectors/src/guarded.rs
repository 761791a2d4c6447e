//! A connector behind a circuit breaker: the same trait, so callers cannot forget the breaker and
//! tests can count at the simulator that an open breaker really sends nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manifold_domain::{Channel, Shipment};
use serde_json::Value;

use crate::{
    breaker::{BreakerPolicy, BreakerStore, CircuitBreaker},
    client::{
        Accepted, CallContext, ChannelConnector, FetchedShipment, ListingPage, PriceUpdate, PushOutcome, StockUpdate,
        Submission, SubmissionState,
    },
    error::ConnectorError,
};
use crate::{client::StockRead, content::ContentUpdate};

/// Wraps `inner`; every call goes through the breaker stored under `key` (e.g. `shopify:shop-eu`).
#[derive(Debug)]
pub struct Guarded {
    inner: Arc<dyn ChannelConnector>,
    breaker: CircuitBreaker<Arc<dyn BreakerStore>>,
}

impl Guarded {
    pub fn new(
        inner: Arc<dyn ChannelConnector>,
        store: Arc<dyn BreakerStore>,
        key: impl Into<String>,
        policy: BreakerPolicy,
    ) -> Self {
        Self { inner, breaker: CircuitBreaker::new(store, key, policy) }
    }

    pub fn breaker(&self) -> &CircuitBreaker<Arc<dyn BreakerStore>> {
        &self.breaker
    }
}

#[async_trait]
impl ChannelConnector for Guarded {
    fn channel(&self) -> Channel {
        self.inner.channel()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.breaker.call(self.inner.push_stock(items, ctx)).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.breaker.call(self.inner.push_prices(items, ctx)).await
    }

    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.breaker.call(self.inner.push_content(items, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        self.breaker.call(self.inner.push_tracking(shipment, ctx)).await
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        self.breaker.call(self.inner.fetch_order(channel_order_id, ctx)).await
    }

    async fn fetch_shipment(&self, resource_id: &str, ctx: &CallContext) -> Result<FetchedShipment, ConnectorError> {
        self.breaker.call(self.inner.fetch_shipment(resource_id, ctx)).await
    }

    async fn fetch_returns(&self, resource_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        self.breaker.call(self.inner.fetch_returns(resource_id, ctx)).await
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.breaker.call(self.inner.list_orders_since(since, ctx)).await
    }

    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn crate::HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        self.breaker.call(self.inner.list_orders_since_unheld(since, held, ctx)).await
    }

    async fn sweep_returns(
        &self,
        resume: Option<&str>,
        ctx: &CallContext,
    ) -> Result<crate::ReturnsSweep, ConnectorError> {
        self.breaker.call(self.inner.sweep_returns(resume, ctx)).await
    }

    async fn list_unexported_orders(&self, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.breaker.call(self.inner.list_unexported_orders(ctx)).await
    }

    async fn acknowledge_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Accepted, ConnectorError> {
        self.breaker.call(self.inner.acknowledge_order(channel_order_id, ctx)).await
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        self.breaker.call(self.inner.cancel_order(channel_order_id, reason, ctx)).await
    }

    async fn acknowledge_orders(&self, ids: &[String], ctx: &CallContext) -> Result<Vec<Submission>, ConnectorError> {
        self.breaker.call(self.inner.acknowledge_orders(ids, ctx)).await
    }

    async fn submission_result(
        &self,
        submission: &Submission,
        ctx: &CallContext,
    ) -> Result<SubmissionState, ConnectorError> {
        self.breaker.call(self.inner.submission_result(submission, ctx)).await
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        self.breaker.call(self.inner.read_stock(items, ctx)).await
    }
    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        self.breaker.call(self.inner.list_listings(cursor, ctx)).await
    }
}
