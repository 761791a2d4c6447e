//! A connector that gets one second chance after the channel refuses its credentials.
//!
//! A refused token (401/403, [`FailureClass::Auth`]) is often not a wrong secret but a stale one: the
//! access token was revoked early, or another instance rotated the refresh token and wrote the new one
//! to the secret. So before a refusal counts as an auth failure, the connector is rebuilt from a fresh
//! read of the secret (dropping its cached tokens) and the call is sent once more. Concurrent calls that
//! were refused by the same connector share one rebuild.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manifold_domain::{Channel, Shipment};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{client::StockRead, content::ContentUpdate};
use crate::{
    client::{
        Accepted, CallContext, ChannelConnector, FetchedShipment, ListingPage, PriceUpdate, PushOutcome, StockUpdate,
        Submission, SubmissionState,
    },
    error::{ConnectorError, FailureClass},
};

/// Builds the account's connector again from a fresh read of its secret.
#[async_trait]
pub trait Rebuild: Send + Sync + std::fmt::Debug {
    async fn rebuild(&self) -> Result<Arc<dyn ChannelConnector>, ConnectorError>;
}

/// The connector in use and how many times it was rebuilt.
type Current = (u64, Arc<dyn ChannelConnector>);

/// Wraps an account's connector; see the module docs.
#[derive(Debug)]
pub struct Reauthorizing {
    channel: Channel,
    current: RwLock<Current>,
    rebuilding: Mutex<()>,
    rebuild: Box<dyn Rebuild>,
}

impl Reauthorizing {
    pub fn new(inner: Arc<dyn ChannelConnector>, rebuild: impl Rebuild + 'static) -> Self {
        Self {
            channel: inner.channel(),
            current: RwLock::new((0, inner)),
            rebuilding: Mutex::new(()),
            rebuild: Box::new(rebuild),
        }
    }

    fn current(&self) -> Current {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the connector of generation `refused`, unless a concurrent call already did.
    async fn renew(&self, refused: u64) -> Result<Arc<dyn ChannelConnector>, ConnectorError> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let (generation, connector) = self.current();
        if generation != refused {
            return Ok(connector);
        }
        let fresh = self.rebuild.rebuild().await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (generation + 1, fresh.clone());
        Ok(fresh)
    }

    async fn run<'a, T, F, Fut>(&'a self, call: F) -> Result<T, ConnectorError>
    where
        F: Fn(Arc<dyn ChannelConnector>) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, ConnectorError>> + Send + 'a,
        T: Send,
    {
        let (generation, connector) = self.current();
        match call(connector).await {
            Err(e) if e.class == FailureClass::Auth => {
                tracing::warn!(channel = %self.channel, error = %e, "credentials refused: re-reading the secret and retrying once");
                let fresh = self.renew(generation).await?;
                call(fresh).await
            }
            other => other,
        }
    }
}

#[async_trait]
impl ChannelConnector for Reauthorizing {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn max_batch(&self) -> usize {
        self.current().1.max_batch()
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.run(|c| async move { c.push_stock(items, ctx).await }).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.run(|c| async move { c.push_prices(items, ctx).await }).await
    }

    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        self.run(|c| async move { c.push_content(items, ctx).await }).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        self.run(|c| async move { c.push_tracking(shipment, ctx).await }).await
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        self.run(|c| async move { c.fetch_order(channel_order_id, ctx).await }).await
    }

    async fn fetch_shipment(&self, resource_id: &str, ctx: &CallContext) -> Result<FetchedShipment, ConnectorError> {
        self.run(|c| async move { c.fetch_shipment(resource_id, ctx).await }).await
    }

    async fn fetch_returns(&self, resource_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        self.run(|c| async move { c.fetch_returns(resource_id, ctx).await }).await
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.run(|c| async move { c.list_orders_since(since, ctx).await }).await
    }

    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn crate::HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        self.run(|c| async move { c.list_orders_since_unheld(since, held, ctx).await }).await
    }

    async fn sweep_returns(
        &self,
        resume: Option<&str>,
        ctx: &CallContext,
    ) -> Result<crate::ReturnsSweep, ConnectorError> {
        self.run(|c| async move { c.sweep_returns(resume, ctx).await }).await
    }

    async fn list_unexported_orders(&self, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.run(|c| async move { c.list_unexported_orders(ctx).await }).await
    }

    async fn acknowledge_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Accepted, ConnectorError> {
        self.run(|c| async move { c.acknowledge_order(channel_order_id, ctx).await }).await
    }

    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        self.run(|c| async move { c.cancel_order(channel_order_id, reason, ctx).await }).await
    }

    async fn acknowledge_orders(&self, ids: &[String], ctx: &CallContext) -> Result<Vec<Submission>, ConnectorError> {
        self.run(|c| async move { c.acknowledge_orders(ids, ctx).await }).await
    }

    async fn submission_result(
        &self,
        submission: &Submission,
        ctx: &CallContext,
    ) -> Result<SubmissionState, ConnectorError> {
        self.run(|c| async move { c.submission_result(submission, ctx).await }).await
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        self.run(|c| async move { c.read_stock(items, ctx).await }).await
    }
    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        self.run(|c| async move { c.list_listings(cursor, ctx).await }).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Refuses every call while its credential is `stale`.
    #[derive(Debug)]
    struct Fake {
        stale: bool,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl ChannelConnector for Fake {
        fn channel(&self) -> Channel {
            Channel::Etsy
        }
        fn max_batch(&self) -> usize {
            1
        }
        async fn push_stock(&self, items: &[StockUpdate], _: &CallContext) -> Result<PushOutcome, ConnectorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            if self.stale {
                return Err(ConnectorError::new(FailureClass::Auth, "invalid_token").with_status(401));
            }
            Ok(PushOutcome {
                delivered: items.iter().map(|i| i.channel_sku.clone()).collect(),
                ..PushOutcome::default()
            })
        }
        async fn push_prices(&self, _: &[PriceUpdate], _: &CallContext) -> Result<PushOutcome, ConnectorError> {
            Err(ConnectorError::transient("down"))
        }
        async fn push_tracking(&self, _: &Shipment, _: &CallContext) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn fetch_order(&self, _: &str, _: &CallContext) -> Result<Value, ConnectorError> {
            Ok(Value::Null)
        }
        async fn list_orders_since(&self, _: DateTime<Utc>, _: &CallContext) -> Result<Vec<Value>, ConnectorError> {
            Ok(Vec::new())
        }
        async fn cancel_order(&self, _: &str, _: &str, _: &CallContext) -> Result<Accepted, ConnectorError> {
            Ok(Accepted::Done)
        }
        async fn read_stock(&self, _: &[StockRead], _: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
            Ok(Vec::new())
        }
        async fn list_listings(&self, _: Option<&str>, _: &CallContext) -> Result<ListingPage, ConnectorError> {
            Ok(ListingPage::default())
        }
    }

    /// Hands out connectors whose credentials are `stale` or not.
    #[derive(Debug)]
    struct Rebuilds {
        count: Arc<AtomicUsize>,
        stale: bool,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Rebuild for Rebuilds {
        async fn rebuild(&self) -> Result<Arc<dyn ChannelConnector>, ConnectorError> {
            self.count.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(Fake { stale: self.stale, calls: self.calls.clone() }))
        }
    }

    fn rig(fresh_is_stale: bool) -> (Arc<Reauthorizing>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let rebuilds = Arc::new(AtomicUsize::new(0));
        let inner = Arc::new(Fake { stale: true, calls: calls.clone() });
        let r = Reauthorizing::new(
            inner,
            Rebuilds { count: rebuilds.clone(), stale: fresh_is_stale, calls: calls.clone() },
        );
        (Arc::new(r), calls, rebuilds)
    }

    fn item() -> Vec<StockUpdate> {
        vec![StockUpdate {
            sku: manifold_domain::Sku::new("A").unwrap(),
            channel_sku: "A".into(),
            quantity: 1,
            channel_item_id: None,
        }]
    }

    #[tokio::test]
    async fn a_refused_call_is_retried_once_with_a_rebuilt_connector() {
        let (r, calls, rebuilds) = rig(false);
        let out = r.push_stock(&item(), &CallContext::new("t")).await.unwrap();
        assert_eq!(out.delivered, vec!["A"]);
        assert_eq!((calls.load(Ordering::SeqCst), rebuilds.load(Ordering::SeqCst)), (2, 1));
        r.push_stock(&item(), &CallContext::new("t")).await.unwrap();
        assert_eq!(rebuilds.load(Ordering::SeqCst), 1, "the rebuilt connector is kept");
    }

    #[tokio::test]
    async fn a_second_refusal_is_the_auth_failure() {
        let (r, calls, rebuilds) = rig(true);
        let err = r.push_stock(&item(), &CallContext::new("t")).await.unwrap_err();
        assert_eq!(err.class, FailureClass::Auth);
        assert_eq!((calls.load(Ordering::SeqCst), rebuilds.load(Ordering::SeqCst)), (2, 1));
    }

    #[tokio::test]
    async fn concurrent_refusals_share_one_rebuild() {
        let (r, calls, rebuilds) = rig(false);
        let results = futures::future::join_all((0..20).map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.push_stock(&item(), &CallContext::new("t")).await })
        }))
        .await;
        assert!(results.into_iter().all(|x| x.unwrap().is_ok()));
        assert_eq!(rebuilds.load(Ordering::SeqCst), 1);
        assert!(calls.load(Ordering::SeqCst) <= 40, "at most one retry per call");
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        let (r, _, rebuilds) = rig(false);
        assert_eq!(r.push_prices(&[], &CallContext::new("t")).await.unwrap_err().class, FailureClass::Transient);
        assert_eq!(rebuilds.load(Ordering::SeqCst), 0);
    }
}
