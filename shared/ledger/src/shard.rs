//! Hot SKUs: one SKU's position split into shards, so a flash sale is not capped by one item.
//!
//! A DynamoDB item takes about 1,000 write units a second, and a single-line reservation writes its
//! position, its entry and the reservation record in one transaction (6 units): one position caps a
//! SKU near 160 reservations a second, fewer when concurrent orders conflict on its version. A SKU
//! listed in the configuration's `hot_skus` keeps its on-hand in `shards` positions instead
//! (`{location}#S{k}`, each in a partition of its own), and [`ShardedStore`] sits under the ledger's
//! rules so that nothing above it changes:
//!
//! - a read of the SKU's position reads every shard and returns their sum (on-hand, reserved,
//!   available; the version is the sum of the shards' versions, which grows with every change to any
//!   of them), so availability everywhere is the sum;
//! - a commit that moves the SKU's stock re-reads the shards and takes the movement from them, starting
//!   at a shard picked by hashing the order (so concurrent orders spread over shards and rarely meet)
//!   and falling back to the next ones while the first cannot cover it. Each shard write is conditional
//!   on the shard's version, so a shard never gives out units it does not have: a reservation the
//!   shards cannot cover is a conflict, and the ledger re-reads the sum and either retries or finds the
//!   order short. Never an oversell; and an order is short only when the sum is;
//! - [`rebalance`] evens out the shards' available units (one transaction over the shards, conditional
//!   on their versions), so that fallbacks stay rare as the sale drains some shards first. The stock
//!   tier of the scheduled sync runs it for every hot SKU.
//!
//! The shard count only grows: a raised count adds empty shards that the rebalancer fills; stock in a
//! shard above a lowered count would no longer be seen (an undersell), so lowering is refused by
//! nothing but this rule.

use std::{collections::BTreeMap, ops::Deref};

use manifold_domain::{AdjustmentReason, InventoryAdjustment, Sku, config::ChannelConfig};

use crate::{
    model::{LedgerError, Position, PositionKey},
    store::{Commit, CommitError, Entry, PositionWrite, Store},
};

/// `{location}#S{k}`: shard `k` of a position at `location` (a location name has no `#`).
pub fn shard_key(key: &PositionKey, k: u32) -> PositionKey {
    PositionKey::new(key.sku.clone(), format!("{}#S{k}", key.location))
}

/// The location and shard index of a shard's location (`None` for a whole position's).
pub fn shard_of(location: &str) -> Option<(&str, u32)> {
    let (base, k) = location.rsplit_once("#S")?;
    Some((base, k.parse().ok()?))
}

/// The position a shard belongs to (itself for a whole position).
pub fn logical(key: &PositionKey) -> PositionKey {
    match shard_of(&key.location) {
        Some((base, _)) => PositionKey::new(key.sku.clone(), base),
        None => key.clone(),
    }
}

/// Shard counts of the hot SKUs (every other SKU has one whole position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shards(BTreeMap<Sku, u32>);

impl Shards {
    pub fn new(counts: impl IntoIterator<Item = (Sku, u32)>) -> Self {
        Self(counts.into_iter().filter(|(_, n)| *n > 1).collect())
    }

    pub fn from_config(config: &ChannelConfig) -> Self {
        Self::new(config.hot_skus.iter().map(|h| (h.sku.clone(), h.shards)))
    }

    /// Shards of `sku`'s positions (1: not sharded).
    pub fn of(&self, sku: &Sku) -> u32 {
        self.0.get(sku).copied().unwrap_or(1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Sku, u32)> {
        self.0.iter().map(|(s, n)| (s, *n))
    }
}

/// FNV-1a: the same shard for the same order on every build and platform.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The sum of a position's shards, as the whole position it stands for.
pub fn sum(key: &PositionKey, shards: &[Position]) -> Position {
    let mut p = Position::empty(key);
    for s in shards {
        p.on_hand += s.on_hand;
        p.reserved += s.reserved;
        p.version += s.version;
        p.as_of = p.as_of.max(s.as_of);
    }
    p.available = p.on_hand - p.reserved;
    p
}

/// A [`Store`] whose hot SKUs' positions are kept in shards (see the module docs). Every other
/// position, the reservation records and the markers go to the inner store as they are.
#[derive(Debug)]
pub struct ShardedStore<S> {
    inner: S,
    shards: Shards,
}

impl<S> ShardedStore<S> {
    pub fn new(inner: S, shards: Shards) -> Self {
        Self { inner, shards }
    }

    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> Deref for ShardedStore<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.inner
    }
}

/// The keys a logical position is stored under: the whole position, then each shard. The whole
/// position stays part of the sum, so stock it held before the SKU was sharded (or that a process
/// still on the old configuration wrote) is never lost from view; the rebalancer moves it into the
/// shards.
fn physical(shards: &Shards, key: &PositionKey) -> Vec<PositionKey> {
    match shards.of(&key.sku) {
        1 => vec![key.clone()],
        n => std::iter::once(key.clone()).chain((0..n).map(|k| shard_key(key, k))).collect(),
    }
}

/// Units moved at one shard.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    on_hand: i64,
    reserved: i64,
}

/// How a movement of `on_hand` and `reserved` at a sharded position is taken from its parts (read
/// just now: the whole position first, then the shards), walking the shards from `start` (in
/// `1..parts`) and the whole position last; `None` when they cannot cover a reservation, unless
/// `backorder` (the ledger decided to reserve beyond what is on hand: the rest goes to the first
/// shard, as it would on a whole position).
fn allocate(
    shards: &[Position],
    start: usize,
    on_hand_delta: i64,
    reserved_delta: i64,
    backorder: bool,
) -> Option<Vec<Part>> {
    let n = shards.len();
    let order: Vec<usize> = if n > 1 {
        (0..n - 1).map(|i| 1 + (start - 1 + i) % (n - 1)).chain(std::iter::once(0)).collect()
    } else {
        vec![0]
    };
    let mut parts = vec![Part::default(); n];
    let free = |i: usize, parts: &[Part]| {
        let s = &shards[i];
        (s.on_hand + parts[i].on_hand) - (s.reserved + parts[i].reserved)
    };
    if reserved_delta > 0 && on_hand_delta == 0 {
        // A reservation: each shard gives what it has free, from `start` on.
        let mut left = reserved_delta;
        for &i in &order {
            let take = left.min(free(i, &parts).max(0));
            parts[i].reserved += take;
            left -= take;
        }
        if left > 0 && backorder {
            parts[order[0]].reserved += left;
            left = 0;
        }
        return (left == 0).then_some(parts);
    }
    // Units no longer reserved (a release, or the held part of a shipment): from the shards that hold
    // reservations; a shipment's held units leave on-hand at the same shards.
    let held_out = (-reserved_delta).max(0);
    let shipped_held = if on_hand_delta < 0 { held_out.min(-on_hand_delta) } else { 0 };
    let mut left = held_out;
    let mut shipped_left = shipped_held;
    for &i in &order {
        let take = left.min((shards[i].reserved + parts[i].reserved).max(0));
        parts[i].reserved -= take;
        let ship = shipped_left.min(take);
        parts[i].on_hand -= ship;
        shipped_left -= ship;
        left -= take;
    }
    if left > 0 {
        // The shards hold fewer reservations than the whole position says: not a state this store
        // writes; let the ledger re-read.
        return None;
    }
    if reserved_delta > 0 {
        // More reserved together with an on-hand change (not a movement the ledger makes today): the
        // reservation part as above, on-hand below.
        let mut more = reserved_delta;
        for &i in &order {
            let take = more.min(free(i, &parts).max(0));
            parts[i].reserved += take;
            more -= take;
        }
        if more > 0 && !backorder {
            return None;
        }
        parts[order[0]].reserved += more;
    }
    // What on-hand still has to move: a count, or units shipped that the order never held.
    let mut rest = on_hand_delta + shipped_held;
    if rest > 0 {
        // New stock goes to the shard with the fewest free units; the rebalancer evens out the rest.
        let i = order.iter().copied().filter(|&i| i > 0 || n == 1).min_by_key(|&i| free(i, &parts)).unwrap_or(0);
        parts[i].on_hand += rest;
    } else {
        // Stock leaving: from free units first, the most first; what no shard has free comes off
        // the first shard (a count may put on-hand below what is reserved, as on a whole position).
        let mut by_free = order.clone();
        by_free.sort_by_key(|&i| std::cmp::Reverse(free(i, &parts)));
        for i in by_free {
            let take = (-rest).min(free(i, &parts).max(0));
            parts[i].on_hand -= take;
            rest += take;
        }
        if rest < 0 {
            parts[order[0]].on_hand += rest;
        }
    }
    Some(parts)
}

impl<S: Store> ShardedStore<S> {
    /// The commit with each hot SKU's position write turned into writes of the shards that move.
    async fn split(&self, commit: Commit) -> Result<Commit, CommitError> {
        if self.shards.is_empty() || !commit.positions.iter().any(|w| self.shards.of(&w.position.sku) > 1) {
            return Ok(commit);
        }
        let Commit { record, positions, entries, marker } = commit;
        let mut out = Commit { record, positions: Vec::new(), entries: Vec::new(), marker };
        let mut moved: BTreeMap<PositionKey, Entry> = BTreeMap::new();
        for e in entries {
            let key = PositionKey::new(e.adjustment.sku.clone(), e.adjustment.location.clone());
            if self.shards.of(&key.sku) > 1 {
                moved.insert(key, e);
            } else {
                out.entries.push(e);
            }
        }
        for write in positions {
            let key = write.position.key();
            let n = self.shards.of(&key.sku);
            if n <= 1 {
                out.positions.push(write);
                continue;
            }
            let keys = physical(&self.shards, &key);
            let current = self.inner.positions(&keys).await?;
            let entry = moved.remove(&key);
            let (on_hand_delta, reserved_delta, adjustment) = match &entry {
                Some(e) => (e.adjustment.on_hand_delta, e.adjustment.reserved_delta, Some(&e.adjustment)),
                // A write without an entry (an as-of stamp): on-hand to what the ledger decided.
                None => (write.position.on_hand - sum(&key, &current).on_hand, 0, None),
            };
            let salt = adjustment
                .and_then(|a| a.order_id.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| format!("{}:{}", key, write.position.version));
            let start = 1 + (fnv(&salt) % n) as usize;
            let backorder = adjustment.is_some_and(|a| a.reason == AdjustmentReason::Backorder);
            let Some(mut parts) = allocate(&current, start, on_hand_delta, reserved_delta, backorder) else {
                return Err(CommitError::Conflict);
            };
            if parts.iter().all(|p| p.on_hand == 0 && p.reserved == 0) {
                // Nothing moves (a count equal to on-hand, with its as-of time): stamp one shard.
                parts[start] = Part::default();
            }
            for (i, (shard, part)) in current.iter().zip(&parts).enumerate() {
                let touched = part.on_hand != 0 || part.reserved != 0 || (i == start && entry.is_none());
                if !touched {
                    continue;
                }
                let mut next = shard.clone();
                next.on_hand += part.on_hand;
                next.reserved += part.reserved;
                next.available = next.on_hand - next.reserved;
                next.version += 1;
                if write.position.as_of.is_some() {
                    next.as_of = write.position.as_of;
                }
                if let Some(a) = adjustment {
                    out.entries.push(Entry {
                        version: next.version,
                        adjustment: InventoryAdjustment {
                            location: next.location.clone(),
                            on_hand_delta: part.on_hand,
                            reserved_delta: part.reserved,
                            on_hand_after: next.on_hand,
                            reserved_after: next.reserved,
                            ..a.clone()
                        },
                    });
                }
                out.positions.push(PositionWrite { expected_version: shard.version, position: next });
            }
        }
        Ok(out)
    }
}

impl<S: Store> Store for ShardedStore<S> {
    async fn positions(&self, keys: &[PositionKey]) -> Result<Vec<Position>, LedgerError> {
        if self.shards.is_empty() {
            return self.inner.positions(keys).await;
        }
        let physical: Vec<Vec<PositionKey>> = keys.iter().map(|k| physical(&self.shards, k)).collect();
        let all: Vec<PositionKey> = physical.iter().flatten().cloned().collect();
        let read = self.inner.positions(&all).await?;
        let mut read = read.into_iter();
        Ok(keys
            .iter()
            .zip(&physical)
            .map(|(key, parts)| {
                let shards: Vec<Position> = read.by_ref().take(parts.len()).collect();
                if parts.len() == 1 {
                    shards.into_iter().next().unwrap_or_else(|| Position::empty(key))
                } else {
                    sum(key, &shards)
                }
            })
            .collect())
    }

    async fn reservation(
        &self,
        order: &manifold_domain::OrderId,
    ) -> Result<Option<crate::ReservationRecord>, LedgerError> {
        self.inner.reservation(order).await
    }

    async fn has_marker(&self, marker: &crate::store::SourceMarker) -> Result<bool, LedgerError> {
        self.inner.has_marker(marker).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        let commit = self.split(commit).await?;
        self.inner.commit(commit).await
    }

    fn sums_positions(&self) -> bool {
        !self.shards.is_empty()
    }
}

/// What [`rebalance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// Moved this many units between shards.
    Moved(i64),
    /// Already even (within one unit), or nothing free to move.
    Even,
    /// A shard changed while moving: nothing moved; the next run tries again.
    Conflict,
}

/// Evens out the free units of `key`'s `n` shards in one commit conditional on their versions (see
/// the module docs), and moves what the whole position still has free into them. On-hand and
/// reservations in total do not change. `store` is the inner store (the shards' own).
pub async fn rebalance<S: Store>(store: &S, key: &PositionKey, n: u32) -> Result<Rebalanced, LedgerError> {
    if n <= 1 {
        return Ok(Rebalanced::Even);
    }
    let keys = physical(&Shards::new([(key.sku.clone(), n)]), key);
    let parts = store.positions(&keys).await?;
    let total = sum(key, &parts);
    if total.available <= 0 {
        return Ok(Rebalanced::Even);
    }
    let shards = &parts[1..];
    let (lo, hi) = shards.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s.available), hi.max(s.available)));
    if hi - lo <= 1 && parts[0].available <= 0 {
        return Ok(Rebalanced::Even);
    }
    // The whole position keeps only what it has reserved (less, if a count left it below that); the
    // shards share the rest evenly.
    let whole_target = parts[0].available.min(0);
    let share = total.available - whole_target;
    let count = i64::from(n);
    let (each, extra) = (share / count, share % count);
    let now = chrono::Utc::now();
    let mut commit = Commit::default();
    let mut moved = 0;
    for (i, shard) in parts.iter().enumerate() {
        let target =
            if i == 0 { whole_target } else { each + i64::from(i64::try_from(i - 1).unwrap_or(i64::MAX) < extra) };
        let delta = target - shard.available;
        if delta == 0 {
            continue;
        }
        moved += delta.max(0);
        let mut next = shard.clone();
        next.on_hand += delta;
        next.available = next.on_hand - next.reserved;
        next.version += 1;
        commit.entries.push(Entry {
            version: next.version,
            adjustment: InventoryAdjustment {
                sku: next.sku.clone(),
                location: next.location.clone(),
                reason: AdjustmentReason::Rebalance,
                on_hand_delta: delta,
                reserved_delta: 0,
                on_hand_after: next.on_hand,
                reserved_after: next.reserved,
                order_id: None,
                channel: None,
                trace_id: Some(format!("rebalance:{key}")),
                at: now,
            },
        });
        commit.positions.push(PositionWrite { expected_version: shard.version, position: next });
    }
    match store.commit(commit).await {
        Ok(()) => Ok(Rebalanced::Moved(moved)),
        Err(CommitError::Conflict) => Ok(Rebalanced::Conflict),
        Err(CommitError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests;
