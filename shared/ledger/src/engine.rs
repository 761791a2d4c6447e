//! The ledger's rules, written once over any [`Store`]: reserve all or nothing, release and ship
//! exactly what was reserved and only once, set on-hand without touching reservations.
//!
//! A shipment is a fact, not a request: units of the shipped lines that the order does not hold (a
//! held order the merchant shipped anyway, an increase that could not be reserved) leave on-hand
//! without touching `reserved`, so a shipment never leaves phantom stock; the per-line `shipped`
//! counters and `applied_refs` make every unit count once however often the shipment is replayed.
//!
//! Concurrency control is optimistic: read the positions, decide, and commit new values conditional on
//! the versions read. A commit that loses a race re-reads and decides again, so a reservation only
//! ever lands when `on_hand - reserved >= qty` held at the version it replaced, and every entry records
//! exact before/after values. Orders touching more positions than one transaction can hold are
//! reserved chunk by chunk; the reservation record is updated in every chunk's transaction, so it
//! always says exactly what is held, and a short chunk releases the earlier chunks before the order is
//! rejected (compensation rather than truncation).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use manifold_domain::{AdjustmentReason, InventoryAdjustment, OrderId, OversellAction, ShortLine};
use rand::Rng;
use tracing::{debug, info, warn};

use crate::{
    Ledger,
    model::{
        Change, Held, LedgerError, LineRecord, OrderReservation, Position, PositionKey, ReleaseOutcome,
        ReservationRecord, ReservationState, ReserveOutcome, Scope, SetOutcome,
    },
    store::{Commit, CommitError, Entry, POSITIONS_PER_COMMIT, PositionWrite, RecordWrite, SourceMarker, Store},
};

/// Units to move at one position: `held` out of what the order holds there, and (shipments only)
/// `unheld` units the order never held (a held order that ships anyway, an increase that could not be
/// reserved), which leave on-hand without touching `reserved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Qty {
    held: u64,
    unheld: u64,
}

impl Qty {
    fn held(held: u64) -> Self {
        Self { held, unheld: 0 }
    }

    fn total(self) -> u64 {
        self.held + self.unheld
    }
}

/// Units to move per position.
type Deltas = BTreeMap<PositionKey, Qty>;

/// Attempts before a call gives up under contention (the error is retryable).
const MAX_ATTEMPTS: u32 = 100;

/// A chunked reservation left in `Reserving` longer than this is taken over by the next delivery.
const RESERVING_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What a release or a shipment does to a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Movement {
    /// Cancellation or refund: the units become available again.
    Release,
    /// The units left: reserved and on-hand both go down.
    Ship,
}

/// The ledger over a store. `StockLedger<DynamoStore>` in production, `StockLedger<MemoryStore>` in
/// unit tests.
#[derive(Debug)]
pub struct StockLedger<S> {
    store: S,
    chunk: usize,
}

impl<S: Store> StockLedger<S> {
    /// The ledger over `store` (a [`DynamoStore`](crate::DynamoStore) becomes a
    /// [`ShardedStore`](crate::shard::ShardedStore) without hot SKUs).
    pub fn new(store: impl Into<S>) -> Self {
        Self { store: store.into(), chunk: POSITIONS_PER_COMMIT }
    }

    /// Uses smaller chunks than a transaction allows (tests exercise the chunked path cheaply).
    #[must_use]
    pub fn with_chunk_size(mut self, positions_per_commit: usize) -> Self {
        self.chunk = positions_per_commit.clamp(1, POSITIONS_PER_COMMIT);
        self
    }

    /// The store, for a ledger over it with other rules (a SKU that becomes hot).
    pub fn into_store(self) -> S {
        self.store
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The order's reservation record, if any.
    pub async fn reservation(&self, order: &OrderId) -> Result<Option<ReservationRecord>, LedgerError> {
        self.store.reservation(order).await
    }

    async fn reserve(&self, req: &OrderReservation) -> Result<Change<ReserveOutcome>, LedgerError> {
        validate(req)?;
        let required = requirements(&to_line_records(req), &req.location);
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(rec) = self.store.reservation(&req.order_id).await? {
                return match rec.state {
                    ReservationState::Reserving if Utc::now() - rec.updated_at > RESERVING_LEASE => {
                        warn!(order_id = %req.order_id, "taking over a stalled chunked reservation");
                        self.reserve_in_chunks(rec, &required, req).await
                    }
                    ReservationState::Reserving => Err(LedgerError::InProgress(req.order_id.clone())),
                    _ if req.version > rec.order_version => self.amend(req).await,
                    state => Ok(Change { outcome: ReserveOutcome::AlreadyApplied { state }, positions: vec![] }),
                };
            }
            if required.len() > self.chunk {
                let rec = new_record(req, ReservationState::Reserving);
                match self
                    .store
                    .commit(Commit { record: Some(RecordWrite::Create(rec.clone())), ..Commit::default() })
                    .await
                {
                    Ok(()) => return self.reserve_in_chunks(rec, &required, req).await,
                    Err(CommitError::Conflict) => continue,
                    Err(CommitError::Failed(e)) => return Err(e),
                }
            }
            let keys: Vec<PositionKey> = required.keys().cloned().collect();
            let positions = self.store.positions(&keys).await?;
            let short = shortages(&required, &positions);
            let backorder = req.oversell == OversellAction::Backorder;
            let mut rec = new_record(req, ReservationState::Reserved);
            let mut commit = Commit::default();
            if short.is_empty() || backorder {
                if backorder && !short.is_empty() {
                    rec.state = ReservationState::Backordered;
                    rec.short_lines.clone_from(&short);
                }
                for (key, qty) in &required {
                    rec.add_held(key, signed(*qty));
                }
                commit = moves(&positions, &required, Move::Reserve, req);
            } else {
                rec.state = ReservationState::Rejected;
                rec.short_lines.clone_from(&short);
            }
            let changed: Vec<Position> = commit.positions.iter().map(|w| w.position.clone()).collect();
            commit.record = Some(RecordWrite::Create(rec));
            match self.store.commit(commit).await {
                Ok(()) => {
                    let outcome = if short.is_empty() {
                        ReserveOutcome::Reserved
                    } else {
                        info!(order_id = %req.order_id, channel = %req.channel, short = short.len(), action = ?req.oversell, "order oversold");
                        ReserveOutcome::Oversold { short_lines: short, action: req.oversell }
                    };
                    return Ok(Change { outcome, positions: changed });
                }
                Err(CommitError::Conflict) => backoff(attempt).await,
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(LedgerError::Contention { what: format!("reserving {}", req.order_id), attempts: MAX_ATTEMPTS })
    }

    /// A later version of an applied order: the reservation follows its lines. Units the edit adds
    /// are reserved all or nothing under the account's oversell policy (Backorder reserves anyway;
    /// Hold and Cancel reserve none of the increase and report the order oversold), units it removes
    /// are released, in one transaction with the record. A version that changes no line is only
    /// recorded, so an older version arriving later cannot undo it. A closed order (released,
    /// cancelled, shipped) stays closed.
    async fn amend(&self, req: &OrderReservation) -> Result<Change<ReserveOutcome>, LedgerError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some(rec) = self.store.reservation(&req.order_id).await? else {
                return Err(LedgerError::InProgress(req.order_id.clone()));
            };
            let state = rec.state;
            if req.version <= rec.order_version
                || matches!(state, ReservationState::Released | ReservationState::Shipped)
            {
                return Ok(Change { outcome: ReserveOutcome::AlreadyApplied { state }, positions: vec![] });
            }
            if state == ReservationState::Reserving {
                return Err(LedgerError::InProgress(req.order_id.clone()));
            }
            let lines = amended_lines(&rec, req);
            let mut next = rec.clone();
            next.rev += 1;
            next.updated_at = Utc::now();
            next.order_version = req.version;
            next.stockless_lines.clone_from(&req.stockless_lines);
            let mut commit = Commit::default();
            let mut short = Vec::new();
            let changed_lines = lines != rec.lines;
            if changed_lines {
                let outstanding: Vec<LineRecord> =
                    lines.iter().map(|l| LineRecord { quantity: l.outstanding(), ..l.clone() }).collect();
                let target = requirements(&outstanding, &rec.location);
                let mut increase = BTreeMap::new();
                let mut decrease = BTreeMap::new();
                let mut keys: Vec<PositionKey> = target.keys().cloned().collect();
                keys.extend(rec.held.iter().map(|h| PositionKey::new(h.sku.clone(), h.location.clone())));
                keys.sort();
                keys.dedup();
                for key in &keys {
                    let (want, have) = (target.get(key).copied().unwrap_or(0), rec.held_quantity(key));
                    if want > have {
                        increase.insert(key.clone(), want - have);
                    } else if have > want {
                        decrease.insert(key.clone(), have - want);
                    }
                }
                if increase.len() + decrease.len() > self.chunk {
                    return Err(LedgerError::Invalid(format!(
                        "an edit of order {} changes {} positions; at most {} may change at once",
                        req.order_id,
                        increase.len() + decrease.len(),
                        self.chunk
                    )));
                }
                let touched: Vec<PositionKey> = increase.keys().chain(decrease.keys()).cloned().collect();
                let positions = self.store.positions(&touched).await?;
                short = shortages(&increase, &positions);
                let backorder = req.oversell == OversellAction::Backorder;
                if !short.is_empty() && !backorder {
                    // The increase is refused (all or nothing); what the edit removed is still released.
                    increase.clear();
                }
                for (key, qty) in &increase {
                    next.add_held(key, signed(*qty));
                }
                for (key, qty) in &decrease {
                    next.add_held(key, -signed(*qty));
                }
                let ctx =
                    EntryContext { order_id: &req.order_id, channel: req.channel, trace_id: req.trace_id.as_deref() };
                let as_deltas = |m: &BTreeMap<PositionKey, u64>| {
                    m.iter().map(|(k, q)| (k.clone(), Qty::held(*q))).collect::<Deltas>()
                };
                commit = moves_with(&positions, &as_deltas(&increase), Move::Reserve, &ctx);
                let released = moves_with(&positions, &as_deltas(&decrease), Move::Release, &ctx);
                commit.positions.extend(released.positions);
                commit.entries.extend(released.entries);
                next.lines = lines;
                next.oversell = req.oversell;
                next.state = match (short.is_empty(), backorder) {
                    (false, true) => ReservationState::Backordered,
                    (false, false) if next.held.is_empty() => ReservationState::Rejected,
                    (false, false) => state,
                    (true, _) if state == ReservationState::Backordered => state,
                    (true, _) => ReservationState::Reserved,
                };
                next.short_lines.clone_from(&short);
            }
            let changed: Vec<Position> = commit.positions.iter().map(|w| w.position.clone()).collect();
            commit.record = Some(RecordWrite::Replace(next.clone()));
            match self.store.commit(commit).await {
                Ok(()) => {
                    let outcome = if !changed_lines {
                        ReserveOutcome::AlreadyApplied { state }
                    } else if short.is_empty() {
                        info!(order_id = %req.order_id, version = req.version, "reservation follows an order edit");
                        ReserveOutcome::Amended
                    } else {
                        info!(order_id = %req.order_id, short = short.len(), action = ?req.oversell, "order edit oversold");
                        ReserveOutcome::Oversold { short_lines: short, action: req.oversell }
                    };
                    return Ok(Change { outcome, positions: changed });
                }
                Err(CommitError::Conflict) => backoff(attempt).await,
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(LedgerError::Contention { what: format!("amending {}", req.order_id), attempts: MAX_ATTEMPTS })
    }

    /// Reserves `required` chunk by chunk from a `Reserving` record, releasing what was held if a
    /// chunk is short and the policy is not to back-order.
    async fn reserve_in_chunks(
        &self,
        mut rec: ReservationRecord,
        required: &BTreeMap<PositionKey, u64>,
        req: &OrderReservation,
    ) -> Result<Change<ReserveOutcome>, LedgerError> {
        let mut changed = BTreeMap::new();
        let keys: Vec<PositionKey> = required.keys().cloned().collect();
        for chunk in keys.chunks(self.chunk) {
            let wanted: BTreeMap<PositionKey, u64> = chunk
                .iter()
                .map(|k| (k.clone(), required[k].saturating_sub(rec.held_quantity(k))))
                .filter(|(_, q)| *q > 0)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let mut attempt = 0;
            loop {
                let wanted_keys: Vec<PositionKey> = wanted.keys().cloned().collect();
                let positions = self.store.positions(&wanted_keys).await?;
                let short = shortages(&wanted, &positions);
                if !short.is_empty() && rec.oversell != OversellAction::Backorder {
                    return self.reject_chunked(rec, required, req, changed).await;
                }
                let mut next = rec.clone();
                next.rev += 1;
                next.updated_at = Utc::now();
                for (key, qty) in &wanted {
                    next.add_held(key, signed(*qty));
                }
                if !short.is_empty() {
                    next.state = ReservationState::Backordered;
                    next.short_lines.extend(short);
                }
                let mut commit = moves(&positions, &wanted, Move::Reserve, req);
                for w in &commit.positions {
                    changed.insert(w.position.key(), w.position.clone());
                }
                commit.record = Some(RecordWrite::Replace(next.clone()));
                match self.store.commit(commit).await {
                    Ok(()) => {
                        rec = next;
                        break;
                    }
                    Err(CommitError::Conflict) => {
                        if self.store.reservation(&req.order_id).await?.is_none_or(|r| r.rev != rec.rev) {
                            return Err(LedgerError::InProgress(req.order_id.clone()));
                        }
                        attempt += 1;
                        if attempt >= MAX_ATTEMPTS {
                            return Err(LedgerError::Contention {
                                what: format!("reserving {}", req.order_id),
                                attempts: attempt,
                            });
                        }
                        backoff(attempt).await;
                    }
                    Err(CommitError::Failed(e)) => return Err(e),
                }
            }
        }
        let backordered = rec.state == ReservationState::Backordered;
        let short = rec.short_lines.clone();
        rec.state = if backordered { ReservationState::Backordered } else { ReservationState::Reserved };
        rec.rev += 1;
        rec.updated_at = Utc::now();
        self.commit_record(rec, &req.order_id).await?;
        let outcome = if backordered {
            ReserveOutcome::Oversold { short_lines: short, action: OversellAction::Backorder }
        } else {
            ReserveOutcome::Reserved
        };
        Ok(Change { outcome, positions: changed.into_values().collect() })
    }

    /// A chunk was short: report every short position, give back what earlier chunks took, and
    /// record the order as rejected.
    async fn reject_chunked(
        &self,
        rec: ReservationRecord,
        required: &BTreeMap<PositionKey, u64>,
        req: &OrderReservation,
        mut changed: BTreeMap<PositionKey, Position>,
    ) -> Result<Change<ReserveOutcome>, LedgerError> {
        let mut short = Vec::new();
        let keys: Vec<PositionKey> = required.keys().cloned().collect();
        for chunk in keys.chunks(POSITIONS_PER_COMMIT) {
            let positions = self.store.positions(chunk).await?;
            let missing: BTreeMap<PositionKey, u64> =
                chunk.iter().map(|k| (k.clone(), required[k].saturating_sub(rec.held_quantity(k)))).collect();
            short.extend(shortages(&missing, &positions));
        }
        let (mut rec, released) = self.move_held(rec, Movement::Release, req.trace_id.as_deref()).await?;
        for p in released {
            changed.insert(p.key(), p);
        }
        rec.state = ReservationState::Rejected;
        rec.short_lines.clone_from(&short);
        rec.rev += 1;
        rec.updated_at = Utc::now();
        self.commit_record(rec, &req.order_id).await?;
        info!(order_id = %req.order_id, short = short.len(), action = ?req.oversell, "chunked order oversold, earlier chunks released");
        Ok(Change {
            outcome: ReserveOutcome::Oversold { short_lines: short, action: req.oversell },
            positions: changed.into_values().collect(),
        })
    }

    /// Moves everything `rec` holds (release or ship), chunk by chunk, each chunk updating the record.
    async fn move_held(
        &self,
        mut rec: ReservationRecord,
        movement: Movement,
        trace_id: Option<&str>,
    ) -> Result<(ReservationRecord, Vec<Position>), LedgerError> {
        let mut changed = Vec::new();
        while !rec.held.is_empty() {
            let chunk: Deltas = rec
                .held
                .iter()
                .take(self.chunk)
                .map(|h| (PositionKey::new(h.sku.clone(), h.location.clone()), Qty::held(h.quantity)))
                .collect();
            let (next, positions) = self.commit_movement(&rec, &chunk, movement, trace_id, |_| {}).await?;
            rec = next;
            changed.extend(positions);
        }
        Ok((rec, changed))
    }

    /// One conditional commit moving `deltas` out of the record's holding; `finish` adjusts the new
    /// record (line counters, state, applied reference) before it is written.
    async fn commit_movement(
        &self,
        rec: &ReservationRecord,
        deltas: &Deltas,
        movement: Movement,
        trace_id: Option<&str>,
        finish: impl Fn(&mut ReservationRecord),
    ) -> Result<(ReservationRecord, Vec<Position>), LedgerError> {
        for attempt in 0..MAX_ATTEMPTS {
            let keys: Vec<PositionKey> = deltas.keys().cloned().collect();
            let positions = self.store.positions(&keys).await?;
            let mut next = rec.clone();
            next.rev += 1;
            next.updated_at = Utc::now();
            for (key, qty) in deltas {
                next.add_held(key, -signed(qty.held));
            }
            finish(&mut next);
            let kind = match movement {
                Movement::Release => Move::Release,
                Movement::Ship => Move::Ship,
            };
            let ctx = EntryContext { order_id: &rec.order_id, channel: rec.channel, trace_id };
            let mut commit = moves_with(&positions, deltas, kind, &ctx);
            let changed = commit.positions.iter().map(|w| w.position.clone()).collect();
            commit.record = Some(RecordWrite::Replace(next.clone()));
            match self.store.commit(commit).await {
                Ok(()) => return Ok((next, changed)),
                Err(CommitError::Conflict) => {
                    let current = self.store.reservation(&rec.order_id).await?;
                    if current.is_none_or(|c| c.rev != rec.rev) {
                        return Err(LedgerError::InProgress(rec.order_id.clone()));
                    }
                    backoff(attempt).await;
                }
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(LedgerError::Contention { what: format!("moving stock of {}", rec.order_id), attempts: MAX_ATTEMPTS })
    }

    async fn commit_record(&self, rec: ReservationRecord, order: &OrderId) -> Result<(), LedgerError> {
        match self.store.commit(Commit { record: Some(RecordWrite::Replace(rec)), ..Commit::default() }).await {
            Ok(()) => Ok(()),
            Err(CommitError::Conflict) => Err(LedgerError::InProgress(order.clone())),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }

    async fn release_or_ship(
        &self,
        order: &OrderId,
        scope: &Scope,
        op_ref: &str,
        movement: Movement,
        trace_id: Option<&str>,
    ) -> Result<Change<ReleaseOutcome>, LedgerError> {
        if op_ref.trim().is_empty() {
            return Err(LedgerError::Invalid("a release or shipment needs a reference".into()));
        }
        for attempt in 0..MAX_ATTEMPTS {
            let Some(rec) = self.store.reservation(order).await? else {
                if movement == Movement::Release
                    && *scope == Scope::WholeOrder
                    && let Some(tomb) = tombstone(order, op_ref)
                {
                    // A cancellation that overtakes its order: leave a tombstone so the late order
                    // event reserves nothing.
                    match self
                        .store
                        .commit(Commit { record: Some(RecordWrite::Create(tomb)), ..Commit::default() })
                        .await
                    {
                        Ok(()) => return Ok(Change { outcome: ReleaseOutcome::NothingHeld, positions: vec![] }),
                        Err(CommitError::Conflict) => continue,
                        Err(CommitError::Failed(e)) => return Err(e),
                    }
                }
                return Ok(Change { outcome: ReleaseOutcome::NothingHeld, positions: vec![] });
            };
            if rec.applied_refs.iter().any(|r| r == op_ref) {
                return Ok(Change { outcome: ReleaseOutcome::AlreadyApplied, positions: vec![] });
            }
            if rec.state == ReservationState::Reserving {
                return Err(LedgerError::InProgress(order.clone()));
            }
            let (deltas, line_moves) = match scope {
                Scope::WholeOrder => whole_order_deltas(&rec, movement),
                Scope::Lines(lines) => line_deltas(&rec, lines, movement)?,
            };
            if matches!(scope, Scope::Lines(_)) && deltas.len() > self.chunk {
                return Err(LedgerError::Invalid(format!(
                    "a partial release or shipment may touch at most {} positions; release the whole order instead",
                    self.chunk
                )));
            }
            let finish = |r: &mut ReservationRecord| {
                for (line_id, units) in &line_moves {
                    if let Some(l) = r.lines.iter_mut().find(|l| &l.line_id == line_id) {
                        match movement {
                            Movement::Release => l.released += units,
                            Movement::Ship => l.shipped += units,
                        }
                    }
                }
                if r.lines.iter().all(|l| l.outstanding() == 0) && r.held.is_empty() {
                    r.state = if r.lines.iter().any(|l| l.shipped > 0) {
                        ReservationState::Shipped
                    } else {
                        ReservationState::Released
                    };
                }
                r.applied_refs.push(op_ref.to_owned());
            };
            if deltas.is_empty() {
                let mut next = rec.clone();
                next.rev += 1;
                next.updated_at = Utc::now();
                if *scope == Scope::WholeOrder && movement == Movement::Release {
                    finish(&mut next);
                } else {
                    next.applied_refs.push(op_ref.to_owned());
                }
                match self.store.commit(Commit { record: Some(RecordWrite::Replace(next)), ..Commit::default() }).await
                {
                    Ok(()) => return Ok(Change { outcome: ReleaseOutcome::NothingHeld, positions: vec![] }),
                    Err(CommitError::Conflict) => {
                        backoff(attempt).await;
                        continue;
                    }
                    Err(CommitError::Failed(e)) => return Err(e),
                }
            }
            // Whole-order moves larger than one commit go chunk by chunk; every chunk shrinks `held`
            // in the record, so a retry after a crash moves only what is left.
            let mut rec = rec;
            let mut changed = Vec::new();
            let keys: Vec<PositionKey> = deltas.keys().cloned().collect();
            let chunks: Vec<&[PositionKey]> = keys.chunks(self.chunk).collect();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let part: Deltas = chunk.iter().map(|k| (k.clone(), deltas[k])).collect();
                let step = self
                    .commit_movement(&rec, &part, movement, trace_id, |r| {
                        if i == last {
                            finish(r);
                        }
                    })
                    .await;
                match step {
                    Ok((next, positions)) => {
                        rec = next;
                        changed.extend(positions);
                    }
                    Err(LedgerError::InProgress(_)) if i == 0 => {
                        // The record changed under us before anything moved: decide again.
                        backoff(attempt).await;
                        break;
                    }
                    Err(e) => return Err(e),
                }
                if i == last {
                    let moved = deltas
                        .iter()
                        .map(|(k, q)| Held { sku: k.sku.clone(), location: k.location.clone(), quantity: q.total() })
                        .collect();
                    debug!(order_id = %order, ?movement, "stock moved");
                    return Ok(Change { outcome: ReleaseOutcome::Applied { moved }, positions: changed });
                }
            }
        }
        Err(LedgerError::Contention { what: format!("moving stock of {order}"), attempts: MAX_ATTEMPTS })
    }

    /// [`Ledger::return_units`]: one conditional commit of the record (lines' `returned`, the applied
    /// reference) and the positions the units go back to, so a return is taken back exactly once even
    /// when its notifications race.
    async fn take_back(
        &self,
        order: &OrderId,
        lines: &[(String, u32)],
        location: Option<&str>,
        return_ref: &str,
    ) -> Result<Change<ReleaseOutcome>, LedgerError> {
        if return_ref.trim().is_empty() {
            return Err(LedgerError::Invalid("a return needs a reference".into()));
        }
        if let Some(l) = location {
            manifold_domain::config::validate_location(l).map_err(LedgerError::Invalid)?;
        }
        for attempt in 0..MAX_ATTEMPTS {
            let Some(rec) = self.store.reservation(order).await? else {
                return Ok(Change { outcome: ReleaseOutcome::NothingHeld, positions: vec![] });
            };
            if rec.applied_refs.iter().any(|r| r == return_ref) {
                return Ok(Change { outcome: ReleaseOutcome::AlreadyApplied, positions: vec![] });
            }
            if rec.state == ReservationState::Reserving {
                return Err(LedgerError::InProgress(order.clone()));
            }
            let to = location.unwrap_or(&rec.location);
            let mut next = rec.clone();
            next.rev += 1;
            next.updated_at = Utc::now();
            next.applied_refs.push(return_ref.to_owned());
            let mut deltas: BTreeMap<PositionKey, i64> = BTreeMap::new();
            for (line_id, units) in lines {
                if rec.stockless_lines.contains(line_id) {
                    continue;
                }
                let line = next
                    .lines
                    .iter_mut()
                    .find(|l| &l.line_id == line_id)
                    .ok_or_else(|| LedgerError::Invalid(format!("line {line_id} is not on order {order}")))?;
                let back = (*units).min(line.shipped.saturating_sub(line.returned));
                line.returned += back;
                for c in &line.components {
                    *deltas.entry(PositionKey::new(c.sku.clone(), to)).or_insert(0) +=
                        i64::from(back) * i64::from(c.per_unit);
                }
            }
            deltas.retain(|_, d| *d != 0);
            if deltas.len() > self.chunk {
                return Err(LedgerError::Invalid(format!(
                    "a return may touch at most {} positions at once; split it",
                    self.chunk
                )));
            }
            let keys: Vec<PositionKey> = deltas.keys().cloned().collect();
            let positions = self.store.positions(&keys).await?;
            let mut commit = Commit { record: Some(RecordWrite::Replace(next)), ..Commit::default() };
            for old in &positions {
                let delta = deltas[&old.key()];
                let new = Position {
                    on_hand: old.on_hand + delta,
                    available: old.available + delta,
                    version: old.version + 1,
                    ..old.clone()
                };
                commit.entries.push(Entry {
                    version: new.version,
                    adjustment: InventoryAdjustment {
                        sku: new.sku.clone(),
                        location: new.location.clone(),
                        reason: AdjustmentReason::Return,
                        on_hand_delta: delta,
                        reserved_delta: 0,
                        on_hand_after: new.on_hand,
                        reserved_after: new.reserved,
                        order_id: Some(order.clone()),
                        channel: Some(rec.channel),
                        trace_id: None,
                        at: Utc::now(),
                    },
                });
                commit.positions.push(PositionWrite { expected_version: old.version, position: new });
            }
            let changed: Vec<Position> = commit.positions.iter().map(|w| w.position.clone()).collect();
            match self.store.commit(commit).await {
                Ok(()) if changed.is_empty() => {
                    return Ok(Change { outcome: ReleaseOutcome::NothingHeld, positions: vec![] });
                }
                Ok(()) => {
                    let moved = deltas
                        .iter()
                        .map(|(k, d)| Held {
                            sku: k.sku.clone(),
                            location: k.location.clone(),
                            quantity: d.unsigned_abs(),
                        })
                        .collect();
                    debug!(order_id = %order, "returned units taken back");
                    return Ok(Change { outcome: ReleaseOutcome::Applied { moved }, positions: changed });
                }
                Err(CommitError::Conflict) => backoff(attempt).await,
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(LedgerError::Contention { what: format!("taking back a return of {order}"), attempts: MAX_ATTEMPTS })
    }

    async fn set(
        &self,
        key: &PositionKey,
        on_hand: i64,
        source_ref: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Change<SetOutcome>, LedgerError> {
        if source_ref.trim().is_empty() {
            return Err(LedgerError::Invalid("an on-hand update needs a source reference".into()));
        }
        // The location is part of the position's key: refuse a name that is not one (`#`, blanks).
        manifold_domain::config::validate_location(&key.location).map_err(LedgerError::Invalid)?;
        // A count is what is on the shelf: never below zero (the import refuses such rows the same way).
        if on_hand < 0 {
            return Err(LedgerError::Invalid(format!("on_hand {on_hand} is negative; a count cannot be below zero")));
        }
        let marker = SourceMarker { key: key.clone(), source_ref: source_ref.to_owned() };
        for attempt in 0..MAX_ATTEMPTS {
            let Some(old) = self.store.positions(std::slice::from_ref(key)).await?.pop() else {
                return Err(LedgerError::Invalid(format!("no position returned for {key}")));
            };
            // The stale count loses: a count as of a time the position's latest count is newer than
            // (or as of that same time, unless it is that count re-sent under its reference).
            if let (Some(as_of), Some(applied)) = (as_of, old.as_of)
                && as_of <= applied
            {
                if self.store.has_marker(&marker).await? {
                    return Ok(Change { outcome: SetOutcome::AlreadyApplied, positions: vec![] });
                }
                return Err(LedgerError::Stale { key: key.clone(), as_of, applied });
            }
            let new = Position {
                on_hand,
                available: on_hand - old.reserved,
                version: old.version + 1,
                as_of: as_of.or(old.as_of),
                ..old.clone()
            };
            let entry = Entry {
                version: new.version,
                adjustment: InventoryAdjustment {
                    sku: key.sku.clone(),
                    location: key.location.clone(),
                    reason: AdjustmentReason::SetOnHand,
                    on_hand_delta: on_hand - old.on_hand,
                    reserved_delta: 0,
                    on_hand_after: new.on_hand,
                    reserved_after: new.reserved,
                    order_id: None,
                    channel: None,
                    trace_id: None,
                    at: Utc::now(),
                },
            };
            let commit = Commit {
                record: None,
                positions: vec![PositionWrite { expected_version: old.version, position: new.clone() }],
                entries: vec![entry],
                marker: Some(marker.clone()),
            };
            match self.store.commit(commit).await {
                Ok(()) => return Ok(Change { outcome: SetOutcome::Applied, positions: vec![new] }),
                Err(CommitError::Conflict) => {
                    if self.store.has_marker(&marker).await? {
                        return Ok(Change { outcome: SetOutcome::AlreadyApplied, positions: vec![] });
                    }
                    backoff(attempt).await;
                }
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(LedgerError::Contention { what: format!("setting on-hand of {key}"), attempts: MAX_ATTEMPTS })
    }
}

impl<S: Store> StockLedger<S> {
    /// The positions a change reports, read back when the store keeps some as sums of others (a hot
    /// SKU's shards): concurrent commits on different shards each computed the whole from their own
    /// read, and the fan-out must see what is there.
    async fn settled<O>(&self, change: Change<O>) -> Result<Change<O>, LedgerError> {
        if !self.store.sums_positions() || change.positions.is_empty() {
            return Ok(change);
        }
        let keys: Vec<PositionKey> = change.positions.iter().map(Position::key).collect();
        let positions = self.store.positions(&keys).await?;
        Ok(Change { outcome: change.outcome, positions })
    }
}

impl<S: Store> Ledger for StockLedger<S> {
    async fn reserve_order(&self, order: &OrderReservation) -> Result<Change<ReserveOutcome>, LedgerError> {
        let change = self.reserve(order).await?;
        self.settled(change).await
    }

    async fn release_order_traced(
        &self,
        order: &OrderId,
        scope: &Scope,
        release_ref: &str,
        trace_id: Option<&str>,
    ) -> Result<Change<ReleaseOutcome>, LedgerError> {
        let change = self.release_or_ship(order, scope, release_ref, Movement::Release, trace_id).await?;
        self.settled(change).await
    }

    async fn ship_order_traced(
        &self,
        order: &OrderId,
        scope: &Scope,
        shipment_ref: &str,
        trace_id: Option<&str>,
    ) -> Result<Change<ReleaseOutcome>, LedgerError> {
        let change = self.release_or_ship(order, scope, shipment_ref, Movement::Ship, trace_id).await?;
        self.settled(change).await
    }

    async fn return_units(
        &self,
        order: &OrderId,
        lines: &[(String, u32)],
        location: Option<&str>,
        return_ref: &str,
    ) -> Result<Change<ReleaseOutcome>, LedgerError> {
        let change = self.take_back(order, lines, location, return_ref).await?;
        self.settled(change).await
    }

    async fn set_on_hand_as_of(
        &self,
        key: &PositionKey,
        on_hand: i64,
        source_ref: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Change<SetOutcome>, LedgerError> {
        let change = self.set(key, on_hand, source_ref, as_of).await?;
        self.settled(change).await
    }

    async fn position(&self, key: &PositionKey) -> Result<Position, LedgerError> {
        self.store
            .positions(std::slice::from_ref(key))
            .await?
            .pop()
            .ok_or_else(|| LedgerError::Invalid(format!("no position returned for {key}")))
    }
}

fn validate(req: &OrderReservation) -> Result<(), LedgerError> {
    if req.location.trim().is_empty() {
        return Err(LedgerError::Invalid("location must not be empty".into()));
    }
    for line in &req.lines {
        if line.quantity == 0 || line.components.is_empty() || line.components.iter().any(|c| c.per_unit == 0) {
            return Err(LedgerError::Invalid(format!("line {} has nothing to reserve", line.line_id)));
        }
    }
    Ok(())
}

fn to_line_records(req: &OrderReservation) -> Vec<LineRecord> {
    req.lines
        .iter()
        .map(|l| LineRecord {
            line_id: l.line_id.clone(),
            sku: l.sku.clone(),
            quantity: l.quantity,
            components: l.components.clone(),
            released: 0,
            shipped: 0,
            returned: 0,
        })
        .collect()
}

/// Units needed per position: every line's components times its quantity, summed (two bundles that
/// share a component add up).
pub fn requirements(lines: &[LineRecord], location: &str) -> BTreeMap<PositionKey, u64> {
    let mut out = BTreeMap::new();
    for line in lines {
        for c in &line.components {
            *out.entry(PositionKey::new(c.sku.clone(), location)).or_insert(0) +=
                u64::from(line.quantity) * u64::from(c.per_unit);
        }
    }
    out
}

/// Positions that cannot cover what is required of them.
pub fn shortages(required: &BTreeMap<PositionKey, u64>, positions: &[Position]) -> Vec<ShortLine> {
    positions
        .iter()
        .filter_map(|p| {
            let wanted = *required.get(&p.key())?;
            (p.available < signed(wanted)).then(|| ShortLine {
                sku: p.sku.clone(),
                requested: u32::try_from(wanted).unwrap_or(u32::MAX),
                available: p.available,
            })
        })
        .collect()
}

/// A whole-order release gives back everything held; a whole-order shipment ships every line's
/// outstanding units: what the order holds leaves `reserved` and on-hand, the rest (never reserved)
/// leaves on-hand only.
fn whole_order_deltas(rec: &ReservationRecord, movement: Movement) -> (Deltas, Vec<(String, u32)>) {
    let mut deltas: Deltas =
        rec.held.iter().map(|h| (PositionKey::new(h.sku.clone(), h.location.clone()), Qty::held(h.quantity))).collect();
    let line_moves: Vec<(String, u32)> = rec.lines.iter().map(|l| (l.line_id.clone(), l.outstanding())).collect();
    if movement == Movement::Ship {
        for (key, needed) in units_needed(rec, &line_moves) {
            let q = deltas.entry(key).or_default();
            q.unheld = needed.saturating_sub(q.held);
        }
        deltas.retain(|_, q| q.total() > 0);
    }
    (deltas, line_moves)
}

/// Units per position that `(line_id, units)` take from stock.
fn units_needed(rec: &ReservationRecord, line_moves: &[(String, u32)]) -> BTreeMap<PositionKey, u64> {
    let mut needed = BTreeMap::new();
    for (line_id, units) in line_moves {
        let Some(line) = rec.lines.iter().find(|l| &l.line_id == line_id) else { continue };
        for c in &line.components {
            *needed.entry(PositionKey::new(c.sku.clone(), rec.location.clone())).or_insert(0) +=
                u64::from(*units) * u64::from(c.per_unit);
        }
    }
    needed
}

fn line_deltas(
    rec: &ReservationRecord,
    lines: &[(String, u32)],
    movement: Movement,
) -> Result<(Deltas, Vec<(String, u32)>), LedgerError> {
    let mut moves = Vec::new();
    for (line_id, units) in lines {
        let Some(line) = rec.lines.iter().find(|l| &l.line_id == line_id) else {
            // A line without stock (gift card, service) ships and refunds as a no-op.
            if rec.stockless_lines.contains(line_id) {
                continue;
            }
            return Err(LedgerError::Invalid(format!("order {} has no line {line_id}", rec.order_id)));
        };
        let units = (*units).min(line.outstanding());
        if units == 0 {
            continue;
        }
        moves.push((line_id.clone(), units));
    }
    // What the order holds moves first. A release never gives back more than the order holds (a
    // partly reserved order holds less than its lines); a shipment takes the rest from on-hand alone.
    let mut deltas: Deltas = units_needed(rec, &moves)
        .into_iter()
        .map(|(key, needed)| {
            let held = needed.min(rec.held_quantity(&key));
            let unheld = if movement == Movement::Ship { needed - held } else { 0 };
            (key, Qty { held, unheld })
        })
        .collect();
    deltas.retain(|_, q| q.total() > 0);
    Ok((deltas, moves))
}

/// The record's lines as a later version of the order has them: each line keeps what was already
/// released and shipped (an edit cannot take back units that left), a line the new version dropped
/// keeps only those, and a new line starts with nothing moved.
fn amended_lines(rec: &ReservationRecord, req: &OrderReservation) -> Vec<LineRecord> {
    let mut lines: Vec<LineRecord> = req
        .lines
        .iter()
        .map(|l| {
            let old = rec.lines.iter().find(|o| o.line_id == l.line_id);
            let (released, shipped, returned) = old.map_or((0, 0, 0), |o| (o.released, o.shipped, o.returned));
            LineRecord {
                line_id: l.line_id.clone(),
                sku: l.sku.clone(),
                quantity: l.quantity.max(released + shipped),
                components: l.components.clone(),
                released,
                shipped,
                returned,
            }
        })
        .collect();
    for old in rec.lines.iter().filter(|o| !req.lines.iter().any(|l| l.line_id == o.line_id)) {
        lines.push(LineRecord { quantity: old.released + old.shipped, ..old.clone() });
    }
    lines
}

fn new_record(req: &OrderReservation, state: ReservationState) -> ReservationRecord {
    ReservationRecord {
        order_id: req.order_id.clone(),
        channel: req.channel,
        account: req.account.clone(),
        location: req.location.clone(),
        state,
        lines: to_line_records(req),
        held: vec![],
        short_lines: vec![],
        stockless_lines: req.stockless_lines.clone(),
        oversell: req.oversell,
        applied_refs: vec![],
        order_version: req.version,
        rev: 0,
        updated_at: Utc::now(),
    }
}

/// A record for an order cancelled before it was ever reserved. `None` when the order id is not a
/// canonical `{channel}:{account}:{id}` (then no tombstone is left).
fn tombstone(order: &OrderId, op_ref: &str) -> Option<ReservationRecord> {
    let mut parts = order.as_str().splitn(3, ':');
    let channel = parts.next()?.parse().ok()?;
    let account = manifold_domain::AccountId::new(parts.next()?).ok()?;
    Some(ReservationRecord {
        order_id: order.clone(),
        channel,
        account,
        location: crate::model::DEFAULT_LOCATION.to_owned(),
        state: ReservationState::Released,
        lines: vec![],
        held: vec![],
        short_lines: vec![],
        stockless_lines: vec![],
        oversell: OversellAction::Hold,
        applied_refs: vec![op_ref.to_owned()],
        order_version: 0,
        rev: 0,
        updated_at: Utc::now(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Move {
    Reserve,
    Release,
    Ship,
}

struct EntryContext<'a> {
    order_id: &'a OrderId,
    channel: manifold_domain::Channel,
    trace_id: Option<&'a str>,
}

fn moves(positions: &[Position], deltas: &BTreeMap<PositionKey, u64>, kind: Move, req: &OrderReservation) -> Commit {
    let ctx = EntryContext { order_id: &req.order_id, channel: req.channel, trace_id: req.trace_id.as_deref() };
    let deltas: Deltas = deltas.iter().map(|(k, q)| (k.clone(), Qty::held(*q))).collect();
    moves_with(positions, &deltas, kind, &ctx)
}

/// New position values and their entries for moving `deltas`; conditional on the versions read.
fn moves_with(positions: &[Position], deltas: &Deltas, kind: Move, ctx: &EntryContext) -> Commit {
    let at = Utc::now();
    let mut commit = Commit::default();
    for old in positions {
        let Some(qty) = deltas.get(&old.key()) else { continue };
        let (held, total) = (signed(qty.held), signed(qty.total()));
        let (on_hand_delta, reserved_delta) = match kind {
            Move::Reserve => (0, held),
            Move::Release => (0, -held),
            // Units never reserved leave on-hand only.
            Move::Ship => (-total, -held),
        };
        let new = Position {
            on_hand: old.on_hand + on_hand_delta,
            reserved: old.reserved + reserved_delta,
            available: old.on_hand + on_hand_delta - (old.reserved + reserved_delta),
            version: old.version + 1,
            ..old.clone()
        };
        let reason = match kind {
            Move::Reserve if new.available < 0 => AdjustmentReason::Backorder,
            Move::Reserve => AdjustmentReason::Reserve,
            Move::Release => AdjustmentReason::Release,
            Move::Ship => AdjustmentReason::Ship,
        };
        commit.entries.push(Entry {
            version: new.version,
            adjustment: InventoryAdjustment {
                sku: new.sku.clone(),
                location: new.location.clone(),
                reason,
                on_hand_delta,
                reserved_delta,
                on_hand_after: new.on_hand,
                reserved_after: new.reserved,
                order_id: Some(ctx.order_id.clone()),
                channel: Some(ctx.channel),
                trace_id: ctx.trace_id.map(str::to_owned),
                at,
            },
        });
        commit.positions.push(PositionWrite { expected_version: old.version, position: new });
    }
    commit
}

fn signed(q: u64) -> i64 {
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// Full-jitter exponential backoff, capped at 50 ms: contention on one SKU clears in a few rounds.
async fn backoff(attempt: u32) {
    let cap = 1u64 << attempt.min(6);
    let ms = rand::rng().random_range(0..=cap.min(50));
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use manifold_domain::{AccountId, Channel, OrderId, OversellAction, Sku, config::ChannelConfig};

    use super::*;
    use crate::{MemoryLedger, MemoryStore, model::ReserveLine};

    const CONFIG: &str = r#"
version = 1
[[bundles]]
sku = "KIT"
components = [{ sku = "A", quantity = 2 }, { sku = "B", quantity = 1 }]
"#;

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    fn key(s: &str) -> PositionKey {
        PositionKey::default_location(sku(s))
    }

    fn order(id: &str, lines: &[(&str, u32)], oversell: OversellAction) -> OrderReservation {
        let config = ChannelConfig::parse("test.toml", CONFIG).unwrap();
        OrderReservation {
            order_id: OrderId::new(format!("shopify:shop:{id}")).unwrap(),
            channel: Channel::Shopify,
            account: AccountId::new("shop").unwrap(),
            trace_id: Some("trace-1".into()),
            location: "default".into(),
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (s, q))| ReserveLine::new(format!("L{i}"), sku(s), *q, &config))
                .collect(),
            stockless_lines: vec![],
            oversell,
            version: 0,
        }
    }

    async fn stocked(items: &[(&str, i64)]) -> MemoryLedger {
        let ledger = StockLedger::new(MemoryStore::default());
        for (s, q) in items {
            ledger.set_on_hand(&key(s), *q, "erp-1").await.unwrap();
        }
        ledger
    }

    async fn avail(ledger: &MemoryLedger, s: &str) -> (i64, i64, i64) {
        let p = ledger.position(&key(s)).await.unwrap();
        (p.on_hand, p.reserved, p.available)
    }

    #[tokio::test]
    async fn stockless_lines_ship_as_no_ops_and_unknown_lines_stay_an_error() {
        let ledger = stocked(&[("A", 10)]).await;
        let mut o = order("1", &[("A", 3)], OversellAction::Hold);
        o.stockless_lines = vec!["GIFTCARD".into()];
        ledger.reserve_order(&o).await.unwrap();
        // Only the gift card ships: nothing moves, and the stocked line is not shipped with it.
        let gift = Scope::Lines(vec![("GIFTCARD".into(), 1)]);
        let out = ledger.ship_order(&o.order_id, &gift, "ship-gift").await.unwrap();
        assert_eq!(out.outcome, ReleaseOutcome::NothingHeld);
        assert_eq!(avail(&ledger, "A").await, (10, 3, 7));
        // A shipment of both ships the stocked line.
        let both = Scope::Lines(vec![("L0".into(), 2), ("GIFTCARD".into(), 1)]);
        let out = ledger.ship_order(&o.order_id, &both, "ship-both").await.unwrap();
        assert!(matches!(out.outcome, ReleaseOutcome::Applied { .. }), "{out:?}");
        assert_eq!(avail(&ledger, "A").await, (8, 1, 7));
        // A line the order never had is still refused, and changes nothing.
        let err = ledger.ship_order(&o.order_id, &Scope::Lines(vec![("NOPE".into(), 1)]), "ship-x").await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("has no line NOPE"), "{err}");
        assert_eq!(avail(&ledger, "A").await, (8, 1, 7));
    }

    #[tokio::test]
    async fn a_held_order_that_ships_takes_on_hand_down_once_without_touching_reserved() {
        let ledger = stocked(&[("A", 2), ("B", 10)]).await;
        let other = order("other", &[("B", 4)], OversellAction::Hold);
        ledger.reserve_order(&other).await.unwrap();
        // Short on A: held, nothing reserved.
        let held = order("1", &[("A", 3), ("B", 1)], OversellAction::Hold);
        let out = ledger.reserve_order(&held).await.unwrap();
        assert!(matches!(out.outcome, ReserveOutcome::Oversold { .. }), "{out:?}");
        assert_eq!(avail(&ledger, "B").await, (10, 4, 6));
        // The WMS ships it anyway (the merchant found stock): the units leave on-hand; another
        // order's reservation is untouched.
        let shipped = ledger.ship_order(&held.order_id, &Scope::WholeOrder, "ship-1").await.unwrap();
        assert!(matches!(shipped.outcome, ReleaseOutcome::Applied { .. }), "{shipped:?}");
        assert_eq!(avail(&ledger, "A").await, (-1, 0, -1), "three left although the ledger counted two");
        assert_eq!(avail(&ledger, "B").await, (9, 4, 5));
        let rec = ledger.reservation(&held.order_id).await.unwrap().unwrap();
        assert_eq!(rec.state, ReservationState::Shipped);
        assert!(rec.lines.iter().all(|l| l.shipped == l.quantity), "{rec:?}");
        // Replays of the shipment, another shipment and the channel's fulfilled status move nothing more.
        assert_eq!(
            ledger.ship_order(&held.order_id, &Scope::WholeOrder, "ship-1").await.unwrap().outcome,
            ReleaseOutcome::AlreadyApplied
        );
        ledger.ship_order(&held.order_id, &Scope::WholeOrder, "fulfilled").await.unwrap();
        ledger.ship_order(&held.order_id, &Scope::Lines(vec![("L0".into(), 3)]), "ship-2").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (-1, 0, -1));
        assert_eq!(avail(&ledger, "B").await, (9, 4, 5));
        let entries = ledger.store().entries();
        let ship_a =
            entries.iter().find(|e| e.adjustment.sku == sku("A") && e.adjustment.reason == AdjustmentReason::Ship);
        let ship_a = &ship_a.unwrap().adjustment;
        assert_eq!((ship_a.on_hand_delta, ship_a.reserved_delta), (-3, 0));
    }

    #[tokio::test]
    async fn a_held_order_shipped_line_by_line_counts_each_unit_once() {
        let ledger = stocked(&[("A", 1)]).await;
        let held = order("1", &[("A", 4)], OversellAction::Hold);
        ledger.reserve_order(&held).await.unwrap();
        ledger.ship_order(&held.order_id, &Scope::Lines(vec![("L0".into(), 1)]), "s1").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (0, 0, 0));
        // More than is outstanding is capped at the line's three remaining units.
        ledger.ship_order(&held.order_id, &Scope::Lines(vec![("L0".into(), 9)]), "s2").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (-3, 0, -3));
        ledger.ship_order(&held.order_id, &Scope::WholeOrder, "s3").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (-3, 0, -3));
        let rec = ledger.reservation(&held.order_id).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.lines[0].shipped), (ReservationState::Shipped, 4));
    }

    #[tokio::test]
    async fn a_held_order_released_before_it_ships_moves_nothing() {
        let ledger = stocked(&[("A", 1)]).await;
        let held = order("1", &[("A", 4)], OversellAction::Hold);
        ledger.reserve_order(&held).await.unwrap();
        ledger.release_order(&held.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        let out = ledger.ship_order(&held.order_id, &Scope::WholeOrder, "late-ship").await.unwrap();
        assert_eq!(out.outcome, ReleaseOutcome::NothingHeld);
        assert_eq!(avail(&ledger, "A").await, (1, 0, 1));
    }

    fn hour(hh: u32) -> chrono::DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 30, hh, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_count_older_than_the_applied_one_loses_and_a_resent_count_is_recognised() {
        let ledger = stocked(&[]).await;
        ledger.set_on_hand_as_of(&key("A"), 10, "count-10h", Some(hour(10))).await.unwrap();
        let o = order("1", &[("A", 3)], OversellAction::Hold);
        ledger.reserve_order(&o).await.unwrap();
        ledger.ship_order(&o.order_id, &Scope::WholeOrder, "ship-1").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (7, 0, 7));
        // The 10:00 count re-sent after the shipment (same reference): recognised, nothing re-applied.
        let again = ledger.set_on_hand_as_of(&key("A"), 10, "count-10h", Some(hour(10))).await.unwrap();
        assert_eq!(again.outcome, SetOutcome::AlreadyApplied);
        // An older count, or another count as of the same time, loses; nothing changes.
        for (q, r, t) in [(10, "count-9h", Some(hour(9))), (12, "other-10h", Some(hour(10)))] {
            let err = ledger.set_on_hand_as_of(&key("A"), q, r, t).await.unwrap_err();
            assert!(matches!(err, LedgerError::Stale { .. }) && !err.is_retryable(), "{err}");
            assert!(err.to_string().contains("stale count for A@default"), "{err}");
        }
        assert_eq!(avail(&ledger, "A").await, (7, 0, 7));
        // A newer count applies and becomes the one to beat; a count without a time still applies.
        ledger.set_on_hand_as_of(&key("A"), 20, "count-11h", Some(hour(11))).await.unwrap();
        assert_eq!(ledger.position(&key("A")).await.unwrap().as_of, Some(hour(11)));
        ledger.set_on_hand(&key("A"), 15, "manual").await.unwrap();
        let p = ledger.position(&key("A")).await.unwrap();
        assert_eq!((p.on_hand, p.as_of), (15, Some(hour(11))));
        assert!(ledger.set_on_hand_as_of(&key("A"), 1, "late", Some(hour(10))).await.is_err());
    }

    fn version(mut o: OrderReservation, v: i64) -> OrderReservation {
        o.version = v;
        o
    }

    #[tokio::test]
    async fn later_versions_adjust_the_reservation_by_the_difference_and_older_ones_change_nothing() {
        let ledger = stocked(&[("A", 10), ("B", 10), ("C", 10)]).await;
        let v1 = version(order("1", &[("A", 2), ("B", 1)], OversellAction::Hold), 100);
        ledger.reserve_order(&v1).await.unwrap();
        // v2: A up to 5, B removed, C added.
        let mut v2 = version(order("1", &[("A", 5), ("C", 2)], OversellAction::Hold), 200);
        v2.lines[1].line_id = "L2".into();
        let out = ledger.reserve_order(&v2).await.unwrap();
        assert_eq!(out.outcome, ReserveOutcome::Amended);
        assert_eq!(out.positions.len(), 3);
        assert_eq!(avail(&ledger, "A").await, (10, 5, 5));
        assert_eq!(avail(&ledger, "B").await, (10, 0, 10));
        assert_eq!(avail(&ledger, "C").await, (10, 2, 8));
        // Replays of v2 and the late v1 change nothing.
        for late in [&v2, &v1] {
            let again = ledger.reserve_order(late).await.unwrap();
            assert_eq!(again.outcome, ReserveOutcome::AlreadyApplied { state: ReservationState::Reserved });
        }
        assert_eq!(avail(&ledger, "A").await, (10, 5, 5));
        assert_eq!(avail(&ledger, "B").await, (10, 0, 10));
        // v3 only changes the status (same lines): recorded, so a late v2' with other lines cannot win.
        let v3 = version(v2.clone(), 300);
        assert!(matches!(ledger.reserve_order(&v3).await.unwrap().outcome, ReserveOutcome::AlreadyApplied { .. }));
        let mut stale = version(order("1", &[("A", 1)], OversellAction::Hold), 250);
        stale.trace_id = None;
        assert!(matches!(ledger.reserve_order(&stale).await.unwrap().outcome, ReserveOutcome::AlreadyApplied { .. }));
        assert_eq!(avail(&ledger, "A").await, (10, 5, 5));
        // v4: A down to 1 after one unit shipped: the shipped unit stays shipped, nothing more is held.
        ledger.ship_order(&v1.order_id, &Scope::Lines(vec![("L0".into(), 1)]), "ship-1").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (9, 4, 5));
        let v4 = version(order("1", &[("A", 1)], OversellAction::Hold), 400);
        assert_eq!(ledger.reserve_order(&v4).await.unwrap().outcome, ReserveOutcome::Amended);
        assert_eq!(avail(&ledger, "A").await, (9, 0, 9));
        assert_eq!(avail(&ledger, "C").await, (10, 0, 10));
        // A cancellation as a later version releases what is left; later versions cannot reopen it.
        ledger.release_order(&v1.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        let v5 = version(order("1", &[("A", 3)], OversellAction::Hold), 500);
        let out = ledger.reserve_order(&v5).await.unwrap();
        assert!(matches!(out.outcome, ReserveOutcome::AlreadyApplied { .. }), "{out:?}");
        assert_eq!(avail(&ledger, "A").await, (9, 0, 9));
    }

    #[tokio::test]
    async fn an_increase_is_all_or_nothing_under_the_accounts_policy() {
        let ledger = stocked(&[("A", 4), ("B", 4)]).await;
        let v1 = version(order("1", &[("A", 2), ("B", 2)], OversellAction::Hold), 1);
        ledger.reserve_order(&v1).await.unwrap();
        // v2 wants 6 A (4 more, 2 available) and 1 B: the increase is refused, the decrease applies.
        let v2 = version(order("1", &[("A", 6), ("B", 1)], OversellAction::Hold), 2);
        let out = ledger.reserve_order(&v2).await.unwrap();
        assert_eq!(
            out.outcome,
            ReserveOutcome::Oversold {
                short_lines: vec![ShortLine { sku: sku("A"), requested: 4, available: 2 }],
                action: OversellAction::Hold
            }
        );
        assert_eq!(avail(&ledger, "A").await, (4, 2, 2), "the increase reserved nothing");
        assert_eq!(avail(&ledger, "B").await, (4, 1, 3));
        let rec = ledger.reservation(&v1.order_id).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.lines[0].quantity, rec.short_lines.len()), (ReservationState::Reserved, 6, 1));
        // Partly reserved: shipping the line takes the two held units from reserved, four from on-hand.
        ledger.ship_order(&v1.order_id, &Scope::Lines(vec![("L0".into(), 6)]), "ship").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (-2, 0, -2));

        // Under Backorder the same increase is reserved anyway.
        let ledger = stocked(&[("A", 4)]).await;
        let b1 = version(order("2", &[("A", 2)], OversellAction::Backorder), 1);
        ledger.reserve_order(&b1).await.unwrap();
        let b2 = version(order("2", &[("A", 6)], OversellAction::Backorder), 2);
        let out = ledger.reserve_order(&b2).await.unwrap();
        assert!(matches!(out.outcome, ReserveOutcome::Oversold { action: OversellAction::Backorder, .. }));
        assert_eq!(avail(&ledger, "A").await, (4, 6, -2));
        let rec = ledger.reservation(&b1.order_id).await.unwrap().unwrap();
        assert_eq!(rec.state, ReservationState::Backordered);

        // A held order edited down to what is available is reserved.
        let ledger = stocked(&[("A", 2)]).await;
        let h1 = version(order("3", &[("A", 5)], OversellAction::Hold), 1);
        assert!(matches!(ledger.reserve_order(&h1).await.unwrap().outcome, ReserveOutcome::Oversold { .. }));
        let h2 = version(order("3", &[("A", 2)], OversellAction::Hold), 2);
        assert_eq!(ledger.reserve_order(&h2).await.unwrap().outcome, ReserveOutcome::Amended);
        assert_eq!(avail(&ledger, "A").await, (2, 2, 0));
        let rec = ledger.reservation(&h1.order_id).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.short_lines.len()), (ReservationState::Reserved, 0));
    }

    #[tokio::test]
    async fn concurrent_edits_never_oversell_and_the_latest_version_wins() {
        let ledger = std::sync::Arc::new(stocked(&[("A", 10)]).await);
        ledger.reserve_order(&version(order("1", &[("A", 1)], OversellAction::Hold), 1)).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for v in (2..=30).rev() {
            let ledger = ledger.clone();
            let q = u32::try_from(v % 7 + 1).unwrap();
            tasks.spawn(async move {
                ledger.reserve_order(&version(order("1", &[("A", q)], OversellAction::Hold), v)).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let rec = ledger.reservation(&OrderId::new("shopify:shop:1").unwrap()).await.unwrap().unwrap();
        assert_eq!(rec.order_version, 30);
        assert_eq!(avail(&ledger, "A").await, (10, 3, 7), "version 30 holds 30 % 7 + 1 = 3");
    }

    #[tokio::test]
    async fn a_negative_count_is_refused_and_changes_nothing() {
        let ledger = stocked(&[("A", 5)]).await;
        let err = ledger.set_on_hand(&key("A"), -1, "erp-2").await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("on_hand -1 is negative"), "{err}");
        let bad_location = PositionKey::new(sku("A"), "wh#2");
        let err = ledger.set_on_hand(&bad_location, 1, "erp-3").await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("not a location name"), "{err}");
        assert_eq!(avail(&ledger, "A").await, (5, 0, 5));
    }

    #[tokio::test]
    async fn a_short_line_reserves_nothing_and_names_the_line() {
        let ledger = stocked(&[("A", 5), ("B", 1)]).await;
        let out = ledger.reserve_order(&order("1", &[("A", 2), ("B", 3)], OversellAction::Hold)).await.unwrap();
        assert_eq!(
            out.outcome,
            ReserveOutcome::Oversold {
                short_lines: vec![ShortLine { sku: sku("B"), requested: 3, available: 1 }],
                action: OversellAction::Hold
            }
        );
        assert_eq!(avail(&ledger, "A").await, (5, 0, 5));
        assert_eq!(avail(&ledger, "B").await, (1, 0, 1));
        let again = ledger.reserve_order(&order("1", &[("A", 2), ("B", 3)], OversellAction::Hold)).await.unwrap();
        assert_eq!(again.outcome, ReserveOutcome::AlreadyApplied { state: ReservationState::Rejected });
    }

    #[tokio::test]
    async fn bundles_reserve_their_components_and_shared_components_add_up() {
        let ledger = stocked(&[("A", 10), ("B", 10)]).await;
        let out = ledger.reserve_order(&order("1", &[("KIT", 2), ("A", 1)], OversellAction::Hold)).await.unwrap();
        assert_eq!(out.outcome, ReserveOutcome::Reserved);
        assert_eq!(avail(&ledger, "A").await, (10, 5, 5), "2 kits x 2 + 1");
        assert_eq!(avail(&ledger, "B").await, (10, 2, 8));
    }

    #[tokio::test]
    async fn replaying_an_order_reserves_once() {
        let ledger = stocked(&[("A", 10)]).await;
        let o = order("1", &[("A", 3)], OversellAction::Hold);
        assert_eq!(ledger.reserve_order(&o).await.unwrap().outcome, ReserveOutcome::Reserved);
        assert_eq!(
            ledger.reserve_order(&o).await.unwrap().outcome,
            ReserveOutcome::AlreadyApplied { state: ReservationState::Reserved }
        );
        assert_eq!(avail(&ledger, "A").await, (10, 3, 7));
    }

    #[tokio::test]
    async fn backorder_reserves_anyway_and_goes_negative() {
        let ledger = stocked(&[("A", 1)]).await;
        let out = ledger.reserve_order(&order("1", &[("A", 3)], OversellAction::Backorder)).await.unwrap();
        assert!(matches!(out.outcome, ReserveOutcome::Oversold { action: OversellAction::Backorder, .. }));
        assert_eq!(avail(&ledger, "A").await, (1, 3, -2));
        let entries = ledger.store().entries();
        assert_eq!(entries.last().unwrap().adjustment.reason, AdjustmentReason::Backorder);
    }

    #[tokio::test]
    async fn cancel_releases_exactly_once_and_ship_decrements_on_hand() {
        let ledger = stocked(&[("A", 10), ("B", 10)]).await;
        let o1 = order("1", &[("A", 3)], OversellAction::Hold);
        let o2 = order("2", &[("A", 2), ("B", 1)], OversellAction::Hold);
        ledger.reserve_order(&o1).await.unwrap();
        ledger.reserve_order(&o2).await.unwrap();
        let first = ledger.release_order(&o1.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        assert!(matches!(first.outcome, ReleaseOutcome::Applied { .. }));
        let second = ledger.release_order(&o1.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        assert_eq!(second.outcome, ReleaseOutcome::AlreadyApplied);
        assert_eq!(avail(&ledger, "A").await, (10, 2, 8));
        ledger.ship_order(&o2.order_id, &Scope::WholeOrder, "shipment-9").await.unwrap();
        ledger.ship_order(&o2.order_id, &Scope::WholeOrder, "shipment-9").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (8, 0, 8));
        assert_eq!(avail(&ledger, "B").await, (9, 0, 9));
        let rec = ledger.reservation(&o2.order_id).await.unwrap().unwrap();
        assert_eq!(rec.state, ReservationState::Shipped);
    }

    #[tokio::test]
    async fn a_return_takes_back_shipped_units_once_to_the_location_it_names() {
        let ledger = stocked(&[("A", 10), ("B", 10)]).await;
        let o = order("1", &[("A", 3), ("KIT", 1)], OversellAction::Hold);
        ledger.reserve_order(&o).await.unwrap();
        ledger.ship_order(&o.order_id, &Scope::WholeOrder, "ship-1").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (5, 0, 5), "3 A and the kit's 2 A left");

        // Two of the three A come back; asking for more than shipped is capped.
        let back = vec![("L0".to_owned(), 2)];
        let change = ledger.return_units(&o.order_id, &back, None, "return:r1").await.unwrap();
        assert!(matches!(change.outcome, ReleaseOutcome::Applied { .. }));
        assert_eq!(avail(&ledger, "A").await, (7, 0, 7));
        let again = ledger.return_units(&o.order_id, &back, None, "return:r1").await.unwrap();
        assert_eq!(again.outcome, ReleaseOutcome::AlreadyApplied, "the same return is taken back once");
        let more = vec![("L0".to_owned(), 5)];
        ledger.return_units(&o.order_id, &more, None, "return:r2").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (8, 0, 8), "only the one shipped A not yet back");

        // The kit comes back damaged: its components go to the damaged location, not on sale.
        let kit = vec![("L1".to_owned(), 1)];
        ledger.return_units(&o.order_id, &kit, Some("damaged"), "return:r3").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (8, 0, 8));
        let damaged = ledger.position(&PositionKey::new(sku("A"), "damaged")).await.unwrap();
        assert_eq!((damaged.on_hand, damaged.available), (2, 2));

        let unknown = vec![("L9".to_owned(), 1)];
        assert!(matches!(
            ledger.return_units(&o.order_id, &unknown, None, "return:r4").await,
            Err(LedgerError::Invalid(m)) if m.contains("L9")
        ));
        let none = OrderId::new("shopify:shop:never").unwrap();
        let nothing = ledger.return_units(&none, &back, None, "return:r5").await.unwrap();
        assert_eq!(nothing.outcome, ReleaseOutcome::NothingHeld, "an order the ledger never held");
    }

    #[tokio::test]
    async fn partial_refund_and_shipment_by_line() {
        let ledger = stocked(&[("A", 10), ("B", 10)]).await;
        let o = order("1", &[("A", 4), ("KIT", 1)], OversellAction::Hold);
        ledger.reserve_order(&o).await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (10, 6, 4));
        ledger.release_order(&o.order_id, &Scope::Lines(vec![("L0".into(), 1)]), "refund-1").await.unwrap();
        ledger.ship_order(&o.order_id, &Scope::Lines(vec![("L1".into(), 1)]), "ship-1").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (8, 3, 5), "one A released, the kit's two A shipped");
        assert_eq!(avail(&ledger, "B").await, (9, 0, 9));
        // The rest of the order is released by a later cancellation: exactly the 3 A still held.
        ledger.release_order(&o.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        assert_eq!(avail(&ledger, "A").await, (8, 0, 8));
    }

    #[tokio::test]
    async fn on_hand_from_the_erp_keeps_reservations_and_applies_once() {
        let ledger = stocked(&[("A", 10)]).await;
        ledger.reserve_order(&order("1", &[("A", 4)], OversellAction::Hold)).await.unwrap();
        let set = ledger.set_on_hand(&key("A"), 6, "erp-2").await.unwrap();
        assert_eq!(set.outcome, SetOutcome::Applied);
        assert_eq!(avail(&ledger, "A").await, (6, 4, 2));
        assert_eq!(ledger.set_on_hand(&key("A"), 6, "erp-2").await.unwrap().outcome, SetOutcome::AlreadyApplied);
    }

    #[tokio::test]
    async fn large_orders_go_in_chunks_and_a_short_chunk_rolls_back_the_earlier_ones() {
        let skus: Vec<String> = (0..10).map(|i| format!("S{i:02}")).collect();
        let stock: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), if s == "S08" { 0 } else { 5 })).collect();
        let ledger = stocked(&stock).await.with_chunk_size(3);
        let lines: Vec<(&str, u32)> = skus.iter().map(|s| (s.as_str(), 1)).collect();
        let out = ledger.reserve_order(&order("big", &lines, OversellAction::Hold)).await.unwrap();
        assert_eq!(
            out.outcome,
            ReserveOutcome::Oversold {
                short_lines: vec![ShortLine { sku: sku("S08"), requested: 1, available: 0 }],
                action: OversellAction::Hold
            }
        );
        for s in &skus {
            assert_eq!(ledger.position(&key(s)).await.unwrap().reserved, 0, "{s} rolled back");
        }
        let fine: Vec<(&str, u32)> = lines.iter().copied().filter(|(s, _)| *s != "S08").collect();
        let out = ledger.reserve_order(&order("big2", &fine, OversellAction::Hold)).await.unwrap();
        assert_eq!(out.outcome, ReserveOutcome::Reserved);
        assert_eq!(out.positions.len(), 9);
        let rec = ledger.reservation(&OrderId::new("shopify:shop:big2").unwrap()).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.held.len()), (ReservationState::Reserved, 9));
        ledger.release_order(&rec.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        assert_eq!(avail(&ledger, "S00").await, (5, 0, 5));
    }

    #[tokio::test]
    async fn a_cancellation_that_overtakes_its_order_leaves_a_tombstone() {
        let ledger = stocked(&[("A", 10)]).await;
        let o = order("1", &[("A", 4)], OversellAction::Hold);
        let out = ledger.release_order(&o.order_id, &Scope::WholeOrder, "cancel").await.unwrap();
        assert_eq!(out.outcome, ReleaseOutcome::NothingHeld);
        let late = ledger.reserve_order(&o).await.unwrap();
        assert_eq!(late.outcome, ReserveOutcome::AlreadyApplied { state: ReservationState::Released });
        assert_eq!(avail(&ledger, "A").await, (10, 0, 10));
    }

    #[tokio::test]
    async fn concurrent_orders_never_oversell() {
        let ledger = std::sync::Arc::new(stocked(&[("A", 20)]).await);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let ledger = ledger.clone();
            tasks.spawn(async move {
                ledger.reserve_order(&order(&i.to_string(), &[("A", 1)], OversellAction::Hold)).await
            });
        }
        let mut reserved = 0;
        while let Some(r) = tasks.join_next().await {
            if r.unwrap().unwrap().outcome == ReserveOutcome::Reserved {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 20);
        assert_eq!(avail(&ledger, "A").await, (20, 20, 0));
        assert!(ledger.store().entries().iter().all(|e| e.adjustment.reserved_after <= e.adjustment.on_hand_after));
    }
}
