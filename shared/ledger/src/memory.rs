//! An in-memory [`Store`]: one mutex makes every commit atomic. Used by unit tests of the ledger's
//! rules and by local tools; it checks the same conditions the DynamoDB transaction does.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard},
};

use manifold_domain::OrderId;

use crate::{
    model::{LedgerError, Position, PositionKey, ReservationRecord},
    store::{Commit, CommitError, Entry, RecordWrite, SourceMarker, Store},
};

#[derive(Debug, Default)]
struct State {
    positions: BTreeMap<PositionKey, Position>,
    records: BTreeMap<OrderId, ReservationRecord>,
    entries: Vec<Entry>,
    markers: BTreeSet<(PositionKey, String)>,
}

/// Positions, records, entries and markers in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit (commits check, then
        // write without panicking), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every entry written so far, in commit order.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }
}

impl Store for MemoryStore {
    async fn positions(&self, keys: &[PositionKey]) -> Result<Vec<Position>, LedgerError> {
        let state = self.lock();
        Ok(keys.iter().map(|k| state.positions.get(k).cloned().unwrap_or_else(|| Position::empty(k))).collect())
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<ReservationRecord>, LedgerError> {
        Ok(self.lock().records.get(order).cloned())
    }

    async fn has_marker(&self, marker: &SourceMarker) -> Result<bool, LedgerError> {
        Ok(self.lock().markers.contains(&(marker.key.clone(), marker.source_ref.clone())))
    }

    async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        let mut state = self.lock();
        let record_ok = match &commit.record {
            None => true,
            Some(RecordWrite::Create(r)) => !state.records.contains_key(&r.order_id),
            Some(RecordWrite::Replace(r)) => state.records.get(&r.order_id).is_some_and(|old| old.rev + 1 == r.rev),
        };
        let positions_ok = commit
            .positions
            .iter()
            .all(|w| state.positions.get(&w.position.key()).map_or(0, |p| p.version) == w.expected_version);
        let marker_ok =
            commit.marker.as_ref().is_none_or(|m| !state.markers.contains(&(m.key.clone(), m.source_ref.clone())));
        if !(record_ok && positions_ok && marker_ok) {
            return Err(CommitError::Conflict);
        }
        if let Some(RecordWrite::Create(r) | RecordWrite::Replace(r)) = commit.record {
            state.records.insert(r.order_id.clone(), r);
        }
        for w in commit.positions {
            state.positions.insert(w.position.key(), w.position);
        }
        state.entries.extend(commit.entries);
        if let Some(m) = commit.marker {
            state.markers.insert((m.key, m.source_ref));
        }
        Ok(())
    }
}
