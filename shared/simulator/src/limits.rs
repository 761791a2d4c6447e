//! Channel-side rate limits as the channels document them, with figures small enough to bind in a test
//! when configured so: Shopify's leaky bucket of cost points, token buckets (Amazon, Etsy's per-second
//! allowance, TikTok) and fixed windows (BigCommerce, Zalando).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::Allowance;

/// A configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimLimit {
    /// Points restored at `restore_per_second` up to `capacity` (Shopify GraphQL cost).
    Points { capacity: f64, restore_per_second: f64 },
    /// Requests: `rate_per_second` sustained, `burst` at once.
    TokenBucket { rate_per_second: f64, burst: f64 },
    /// `requests` per window of `window_ms`, the window starting with its first request.
    Window { requests: u32, window_ms: u64 },
}

/// The outcome of asking for allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Allowed(Status),
    Refused { retry_after: Duration, status: Status },
}

/// What the channel tells the client about its allowance after a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    pub limit: f64,
    pub remaining: f64,
    pub rate: f64,
    pub reset_in: Duration,
}

#[derive(Debug, Clone)]
pub struct SimLimiter {
    limit: SimLimit,
    level: f64,
    last: Instant,
    window_start: Option<Instant>,
    used_in_window: u32,
    windows: u32,
    first: Option<Instant>,
    spent: f64,
}

impl SimLimiter {
    pub fn new(limit: SimLimit) -> Self {
        let level = match limit {
            SimLimit::Points { capacity, .. } => capacity,
            SimLimit::TokenBucket { burst, .. } => burst,
            SimLimit::Window { .. } => 0.0,
        };
        Self {
            limit,
            level,
            last: Instant::now(),
            window_start: None,
            used_in_window: 0,
            windows: 0,
            first: None,
            spent: 0.0,
        }
    }

    /// Takes `cost` if available.
    pub fn take(&mut self, cost: f64) -> Verdict {
        let now = Instant::now();
        self.first.get_or_insert(now);
        match self.limit {
            SimLimit::Points { capacity: cap, restore_per_second: rate }
            | SimLimit::TokenBucket { rate_per_second: rate, burst: cap } => {
                self.level = (self.level + now.duration_since(self.last).as_secs_f64() * rate).min(cap);
                self.last = now;
                if self.level + 1e-9 >= cost {
                    self.level = (self.level - cost).max(0.0);
                    self.spent += cost;
                    Verdict::Allowed(Status { limit: cap, remaining: self.level, rate, reset_in: Duration::ZERO })
                } else {
                    let wait = Duration::from_secs_f64((cost - self.level) / rate);
                    Verdict::Refused {
                        retry_after: wait,
                        status: Status { limit: cap, remaining: self.level, rate, reset_in: wait },
                    }
                }
            }
            SimLimit::Window { requests, window_ms } => {
                let window = Duration::from_millis(window_ms);
                let start = match self.window_start {
                    Some(s) if now.duration_since(s) < window => s,
                    _ => {
                        self.window_start = Some(now);
                        self.used_in_window = 0;
                        self.windows += 1;
                        now
                    }
                };
                let reset_in = window.saturating_sub(now.duration_since(start));
                let limit = f64::from(requests);
                if self.used_in_window < requests {
                    self.used_in_window += 1;
                    self.spent += 1.0;
                    let remaining = f64::from(requests - self.used_in_window);
                    Verdict::Allowed(Status { limit, remaining, rate: 0.0, reset_in })
                } else {
                    Verdict::Refused {
                        retry_after: reset_in,
                        status: Status { limit, remaining: 0.0, rate: 0.0, reset_in },
                    }
                }
            }
        }
    }

    /// Spent versus made available since the first request.
    pub fn allowance(&self) -> Allowance {
        let elapsed = self.first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        let available = match self.limit {
            SimLimit::Points { capacity: cap, restore_per_second: rate }
            | SimLimit::TokenBucket { rate_per_second: rate, burst: cap } => cap + rate * elapsed,
            SimLimit::Window { requests, .. } => f64::from(requests) * f64::from(self.windows),
        };
        Allowance { spent: self.spent, available }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_refuses_beyond_quota_and_says_when_it_resets() {
        let mut l = SimLimiter::new(SimLimit::Window { requests: 2, window_ms: 60_000 });
        assert!(matches!(l.take(1.0), Verdict::Allowed(s) if (s.remaining - 1.0).abs() < 1e-9));
        assert!(matches!(l.take(1.0), Verdict::Allowed(_)));
        assert!(matches!(l.take(1.0), Verdict::Refused { retry_after, .. } if retry_after > Duration::from_secs(59)));
    }

    #[test]
    fn points_bucket_refuses_costs_above_the_level() {
        let mut l = SimLimiter::new(SimLimit::Points { capacity: 20.0, restore_per_second: 1.0 });
        assert!(matches!(l.take(10.0), Verdict::Allowed(_)));
        assert!(matches!(l.take(10.0), Verdict::Allowed(_)));
        assert!(matches!(l.take(10.0), Verdict::Refused { .. }));
    }
}
