//! The storage port under the ledger: read positions and reservation records, and commit a set of
//! writes atomically, each one conditional on what was read.
//!
//! The reservation, release and shipment rules live once, in [`crate::engine`]; a store only has to
//! be atomic. Two stores exist: DynamoDB (`TransactWriteItems`) for production and an in-memory one
//! (a mutex) for fast unit tests of the rules.

use std::future::Future;

use manifold_domain::{InventoryAdjustment, OrderId};

use crate::model::{LedgerError, Position, PositionKey, ReservationRecord};

/// The most items one DynamoDB transaction may hold.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Positions per commit: each position brings its entry, and the reservation record takes one slot.
pub const POSITIONS_PER_COMMIT: usize = (MAX_TRANSACTION_ITEMS - 1) / 2;

/// How a commit writes the reservation record.
#[derive(Debug, Clone)]
pub enum RecordWrite {
    /// Only if no record exists for the order (first application of an order event).
    Create(ReservationRecord),
    /// Only if the stored record's `rev` is `record.rev - 1`.
    Replace(ReservationRecord),
}

/// A new position value, written only if the stored version is still `expected_version`
/// (0: the position must not exist yet).
#[derive(Debug, Clone)]
pub struct PositionWrite {
    pub expected_version: u64,
    pub position: Position,
}

/// An immutable ledger entry: the adjustment that produced `version` of its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: u64,
    pub adjustment: InventoryAdjustment,
}

/// Marks an on-hand update from the source of truth as applied, so it applies once.
#[derive(Debug, Clone)]
pub struct SourceMarker {
    pub key: PositionKey,
    pub source_ref: String,
}

/// Writes that happen together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub record: Option<RecordWrite>,
    pub positions: Vec<PositionWrite>,
    pub entries: Vec<Entry>,
    pub marker: Option<SourceMarker>,
}

impl Commit {
    /// Items the commit writes (what a DynamoDB transaction is billed on).
    pub fn item_count(&self) -> usize {
        usize::from(self.record.is_some())
            + self.positions.len()
            + self.entries.len()
            + usize::from(self.marker.is_some())
    }
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A condition no longer held (someone wrote first): re-read and decide again.
    #[error("a condition of the commit no longer holds")]
    Conflict,
    #[error(transparent)]
    Failed(#[from] LedgerError),
}

/// Atomic, conditional storage of positions, entries and reservation records.
pub trait Store: Send + Sync {
    /// Current positions for `keys`, in the same order; never-written positions come back empty.
    fn positions(&self, keys: &[PositionKey]) -> impl Future<Output = Result<Vec<Position>, LedgerError>> + Send;

    fn reservation(
        &self,
        order: &OrderId,
    ) -> impl Future<Output = Result<Option<ReservationRecord>, LedgerError>> + Send;

    fn has_marker(&self, marker: &SourceMarker) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Applies every write of `commit`, or none of them.
    fn commit(&self, commit: Commit) -> impl Future<Output = Result<(), CommitError>> + Send;

    /// Whether some positions are sums of others ([`crate::shard::ShardedStore`]): a position's
    /// value after a commit is then read back, not computed from the one read before it.
    fn sums_positions(&self) -> bool {
        false
    }
}
