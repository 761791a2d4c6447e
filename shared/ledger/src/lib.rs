//! The inventory ledger: one authoritative stock position per master SKU and location, so no unit is
//! sold twice and every channel learns the new availability within seconds.
//!
//! - [`model`]: positions, reservation requests and records, outcomes, errors.
//! - [`engine`]: the rules (all-or-nothing reservation, idempotent release/ship, on-hand from the
//!   source of truth), written once over a [`store::Store`].
//! - [`dynamo`] and [`memory`]: the two stores (DynamoDB transactions; a mutex for unit tests).
//! - [`import`]: bulk on-hand import from the ERP/WMS (JSON and CSV), with per-row errors.
//! - [`fanout`]: per-channel publishable quantities, coalesced push jobs, the push queue.
//!
//! One location model: each channel account sells from exactly one ledger location (`stock.location`
//! in its configuration, default [`DEFAULT_LOCATION`]). Its orders reserve there
//! ([`OrderReservation::from_order`]) and the fan-out publishes to it only the positions at that
//! location ([`fanout::push_jobs`]), so stock at two locations never overwrites itself on a channel.
//! Bundles are published as min over components of floor(available / quantity per bundle) at each
//! location ([`fanout::bundle_position`]).
//!
//! Orders are followed version by version ([`OrderReservation::version`]): a later version whose lines
//! changed adjusts the reservation by the difference, an older one changes nothing. Shipments are facts:
//! units the order never held leave on-hand without touching `reserved`. Absolute counts may carry an
//! as-of time; a count older than the one a position applied is [`LedgerError::Stale`].

use std::future::Future;

use chrono::{DateTime, Utc};

use manifold_domain::OrderId;

pub mod dynamo;
pub mod engine;
pub mod fanout;
pub mod import;
pub mod memory;
pub mod model;
pub mod shard;
pub mod store;

pub use dynamo::{DynamoLedger, DynamoStore};
pub use engine::StockLedger;
pub use memory::MemoryStore;
pub use model::{
    Change, Component, DEFAULT_LOCATION, Held, LedgerError, OrderReservation, Position, PositionKey, ReleaseOutcome,
    ReservationRecord, ReservationState, ReserveLine, ReserveOutcome, Scope, SetOutcome,
};

/// The in-memory ledger (unit tests, local tools).
pub type MemoryLedger = StockLedger<MemoryStore>;

/// What the order pipeline and the ERP sync need from the ledger.
pub trait Ledger: Send + Sync {
    /// Applies an order event: reserves every line or none. Applying the same order twice reserves once;
    /// a later version ([`OrderReservation::version`]) whose lines changed adjusts the reservation by
    /// the difference ([`ReserveOutcome::Amended`], or `Oversold` when an increase is refused), and an
    /// older version changes nothing.
    fn reserve_order(
        &self,
        order: &OrderReservation,
    ) -> impl Future<Output = Result<Change<ReserveOutcome>, LedgerError>> + Send;

    /// Cancellation or refund: gives back exactly what `scope` reserved, once per `release_ref`.
    fn release_order(
        &self,
        order: &OrderId,
        scope: &Scope,
        release_ref: &str,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send {
        self.release_order_traced(order, scope, release_ref, None)
    }

    /// [`Ledger::release_order`], its entries carrying the transaction's `trace_id` (as a
    /// reservation's carry its order's), so `manifold trace` finds the release under it.
    fn release_order_traced(
        &self,
        order: &OrderId,
        scope: &Scope,
        release_ref: &str,
        trace_id: Option<&str>,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send;

    /// Shipment: turns what `scope` reserved into an on-hand decrement, once per `shipment_ref`.
    fn ship_order(
        &self,
        order: &OrderId,
        scope: &Scope,
        shipment_ref: &str,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send {
        self.ship_order_traced(order, scope, shipment_ref, None)
    }

    /// [`Ledger::ship_order`], its entries carrying `trace_id`.
    fn ship_order_traced(
        &self,
        order: &OrderId,
        scope: &Scope,
        shipment_ref: &str,
        trace_id: Option<&str>,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send;

    /// Goods a buyer sent back: each `(line id, units)` line takes at most the units it shipped and
    /// did not have back onto on-hand, at `location` (the order's own when `None`: a restock; another
    /// one, such as a damaged-goods location, keeps them off sale), once per `return_ref`.
    fn return_units(
        &self,
        order: &OrderId,
        lines: &[(String, u32)],
        location: Option<&str>,
        return_ref: &str,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send;

    /// Sets on-hand from the source of truth, keeping open reservations; once per `source_ref`. A
    /// count with an `as_of` time applies only if it is newer than the count the position last
    /// applied: an older one fails with [`LedgerError::Stale`] and changes nothing (one as of the same
    /// time is that same count re-sent: `AlreadyApplied` under its `source_ref`, else stale too).
    fn set_on_hand_as_of(
        &self,
        key: &PositionKey,
        on_hand: i64,
        source_ref: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Change<SetOutcome>, LedgerError>> + Send;

    /// A count without an as-of time: applied once per `source_ref`, whatever its age.
    fn set_on_hand(
        &self,
        key: &PositionKey,
        on_hand: i64,
        source_ref: &str,
    ) -> impl Future<Output = Result<Change<SetOutcome>, LedgerError>> + Send {
        self.set_on_hand_as_of(key, on_hand, source_ref, None)
    }

    fn position(&self, key: &PositionKey) -> impl Future<Output = Result<Position, LedgerError>> + Send;
}
