//! The configuration's business rules at work on orders ([`manifold_domain::rules`] holds the rules
//! and their evaluation; this module holds where they are applied).
//!
//! - Every order is routed when it is first stored ([`App::routed`], from `store_order`, so webhooks,
//!   polls and reconciliation alike): routing rules, then shipping rules, give its `fulfillment`
//!   (carrier and service for the WMS, the fulfilling location, a hold, tags), and each rule that
//!   applied is logged with its id in the `rule` field and kept on the record. The decision is made
//!   once: the record store keeps it across later updates of the order, as it keeps the ledger's
//!   oversell verdict (a released hold stays released, a rule added since does not re-route an order
//!   already in the warehouse), and the update's event carries it, at no extra read.
//! - A held order reserves nothing (the ledger skips it) until an operator releases it
//!   ([`App::release_order`], `manifold orders release ID`): the release is written on the record with
//!   who and when, and an `OrderUpdated` event lets the ledger reserve it, the pull API and the
//!   webhooks see it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use manifold_domain::{
    Order, OrderId,
    config::ChannelConfig,
    events::EventKind,
    rules::{Release, RuleBook, SkuFacts},
};
use tracing::info;

use crate::{App, outcome::Failure};

/// A configuration and its rules, compiled.
type Compiled = (Arc<ChannelConfig>, Arc<RuleBook>);

/// The compiled rules of the configuration they came from.
#[derive(Debug, Default, Clone)]
pub struct RuleBookCache(Arc<Mutex<Option<Compiled>>>);

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub order_id: String,
    pub rule: String,
    pub reason: String,
    pub released_by: String,
    pub released_at: DateTime<Utc>,
}

impl App {
    /// The rules of the current configuration, compiled (once per configuration).
    pub async fn rule_book(&self) -> Result<Arc<RuleBook>, Failure> {
        let config = self.config().await;
        let mut cache = self.rule_book.0.lock().expect("rule book lock");
        if let Some((of, book)) = cache.as_ref()
            && Arc::ptr_eq(of, &config)
        {
            return Ok(book.clone());
        }
        // The configuration was validated when it loaded, so its rules compile.
        let book = Arc::new(
            RuleBook::new(&config.rules)
                .map_err(|(path, reason)| Failure::permanent("rules", format!("{path}: {reason}")))?,
        );
        *cache = Some((config, book.clone()));
        Ok(book)
    }

    /// The order with the rules' routing decision as of `now`. The record store keeps the decision of
    /// an order stored before (`RecordStore::put_order`), so this one only counts for a new order.
    pub(crate) async fn routed(&self, order: &Order, now: DateTime<Utc>) -> Result<Order, Failure> {
        let book = self.rule_book().await?;
        let facts = if book.needs_product_facts() { self.line_facts(order).await? } else { SkuFacts::new() };
        let fulfillment = book.route(order, &facts, now);
        let routed = (fulfillment != manifold_domain::rules::Fulfillment::default()).then_some(fulfillment);
        Ok(Order { fulfillment: routed, ..order.clone() })
    }

    /// What the content says of an order's products (a read per SKU: orders have few lines), for
    /// rules on product tags or the order's weight.
    pub async fn line_facts(&self, order: &Order) -> Result<SkuFacts, Failure> {
        let skus: std::collections::BTreeSet<&manifold_domain::Sku> =
            order.lines.iter().filter_map(|l| l.sku.as_ref()).collect();
        let content = futures::future::try_join_all(skus.iter().map(|s| self.content.get().get(s))).await?;
        Ok(content.into_iter().flatten().map(manifold_aws::content::facts).collect())
    }

    /// Releases an order held for review: it reserves from now on. `by` names the operator.
    pub async fn release_order(
        &self,
        id: &str,
        by: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Released, Failure> {
        let id = OrderId::new(id).map_err(|e| Failure::permanent("release", e.to_string()))?;
        let order = self
            .records
            .get_order(&id)
            .await?
            .ok_or_else(|| Failure::permanent("release", format!("no order {id} is stored")))?;
        let Some(hold) = order.fulfillment.as_ref().and_then(|f| f.hold.clone()) else {
            return Err(Failure::permanent("release", format!("order {id} is not held")));
        };
        // Released before: the event is published again (the ledger applies it once), so a release
        // whose publish failed is finished by asking again.
        let release = if let Some(r) = &hold.released {
            r.clone()
        } else {
            let release = Release { at: now, by: by.to_owned() };
            if self.records.release_hold(&id, &release).await? {
                release
            } else {
                let stored = self.records.get_order(&id).await?;
                stored
                    .and_then(|o| o.fulfillment?.hold?.released)
                    .ok_or_else(|| Failure::permanent("release", format!("order {id} is no longer held by anything")))?
            }
        };
        let mut released = order;
        if let Some(h) = released.fulfillment.as_mut().and_then(|f| f.hold.as_mut()) {
            h.released = Some(release.clone());
        }
        let detail = crate::ingest::order_detail(EventKind::OrderUpdated, &released, trace_id, now);
        let detail = serde_json::to_string(&detail)
            .map_err(|e| Failure::permanent("release", format!("cannot encode the event: {e}")))?;
        self.bus.publish_json(EventKind::OrderUpdated, detail).await?;
        info!(order_id = %id, rule = %hold.rule, released_by = by, "held order released");
        Ok(Released {
            order_id: id.to_string(),
            rule: hold.rule,
            reason: hold.reason,
            released_by: release.by,
            released_at: release.at,
        })
    }
}
