//! The inventory ledger: one authoritative stock position per master SKU and location, so no unit is
//! sold twice and every channel learns the new availability within seconds.
//!
//! - [`model`]: positions, reservation requests and records, outcomes, errors.
//! - [`engine`]: the rules (all-or-nothing reservation, idempotent release/ship, on-hand from the
//!   source of truth), written once over a [`store::Store`].
//! - [`dynamo`] and [`memory`]: the two stores (DynamoDB transactions; a mutex for unit tests).
//! - [`import`]: bulk on-hand import from the ERP/WMS (JSON and CSV), with per-row errors.
//! - [`fanout`]: per-channel publishable quantities, coalesced push jobs, the push queue.

use std::future::Future;

use manifold_domain::OrderId;

pub mod dynamo;
pub mod engine;
pub mod fanout;
pub mod import;
pub mod memory;
pub mod model;
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
    /// Applies an order event: reserves every line or none. Applying the same order twice reserves once.
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
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send;

    /// Shipment: turns what `scope` reserved into an on-hand decrement, once per `shipment_ref`.
    fn ship_order(
        &self,
        order: &OrderId,
        scope: &Scope,
        shipment_ref: &str,
    ) -> impl Future<Output = Result<Change<ReleaseOutcome>, LedgerError>> + Send;

    /// Sets on-hand from the source of truth, keeping open reservations; once per `source_ref`.
    fn set_on_hand(
        &self,
        key: &PositionKey,
        on_hand: i64,
        source_ref: &str,
    ) -> impl Future<Output = Result<Change<SetOutcome>, LedgerError>> + Send;

    fn position(&self, key: &PositionKey) -> impl Future<Output = Result<Position, LedgerError>> + Send;
}
