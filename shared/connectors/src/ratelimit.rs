//! Client-side rate limiting: wait before sending instead of being refused after.
//!
//! One [`RateLimiter`] per channel account, built from the account's configured [`RateLimit`] and then
//! corrected by what the channel says about itself in every response ([`Signals`]): Shopify's
//! `throttleStatus`, BigCommerce's `X-Rate-Limit-Requests-Left` and reset time, Etsy's
//! `x-remaining-this-second`, SP-API's `x-amzn-RateLimit-Limit`, and `Retry-After` on a 429. The
//! configured figures are only the starting estimate; the channel's own numbers win, so the allowance
//! is used fully (other apps sharing a BigCommerce store quota included) without being throttled.
//!
//! The limiter keeps track of the cost of requests in flight: a response describes the channel's
//! state after that request, not after the others still on the wire, so those are subtracted again.

use std::time::Duration;

use manifold_domain::config::RateLimit;

/// Share of the channel's refill rate the limiter counts on. Requests granted evenly spaced can arrive
/// bunched up (network jitter), and a bucket refilled at exactly the channel's rate would then be a
/// token short now and then; 3% slack absorbs that without giving much allowance away.
const REFILL_SAFETY: f64 = 0.97;
use tokio::{sync::Mutex, time::Instant};

/// What one response said about the remaining allowance. Every field is optional: channels say
/// different things, and most responses of most channels say nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// `Retry-After` (or an equivalent) on a refusal: send nothing before it passes.
    pub retry_after: Option<Duration>,
    /// Points-based bucket state (Shopify GraphQL `extensions.cost.throttleStatus`).
    pub points: Option<PointsStatus>,
    /// Fixed-window state (BigCommerce `X-Rate-Limit-Requests-Left`, `X-Rate-Limit-Time-Reset-Ms`).
    pub window: Option<WindowStatus>,
    /// Sustained rate the channel grants this operation (SP-API `x-amzn-RateLimit-Limit`).
    pub rate_per_second: Option<f64>,
    /// Requests left in the current second (Etsy `x-remaining-this-second`).
    pub remaining_this_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointsStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStatus {
    pub requests_left: u32,
    pub reset_in: Duration,
    /// Requests per window, when the channel says (`X-Rate-Limit-Requests-Quota`).
    pub quota: Option<u32>,
}

/// Permission to send one request of some cost. Hand it back through [`RateLimiter::observe`] (with the
/// response's signals) or [`RateLimiter::release`] (when no response came).
#[derive(Debug)]
#[must_use = "a permit must be returned to the limiter with observe() or release()"]
pub struct Permit {
    cost: f64,
}

/// How much allowance this limiter has handed out, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LimiterStats {
    pub granted: u64,
    pub granted_cost: f64,
    pub waited: Duration,
}

#[derive(Debug)]
enum Model {
    /// Leaky bucket in points (Shopify) or token bucket in requests: `available` refills at `rate` up
    /// to `capacity`.
    Bucket {
        capacity: f64,
        rate: f64,
        available: f64,
        last: Instant,
    },
    /// `quota` requests per `window`, resetting at `reset_at`.
    Window {
        quota: u32,
        window: Duration,
        remaining: f64,
        reset_at: Instant,
    },
    Unlimited,
}

#[derive(Debug)]
struct State {
    model: Model,
    paused_until: Option<Instant>,
    in_flight: f64,
    stats: LimiterStats,
}

/// A per-account limiter: configured allowance, corrected by live signals.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    pub fn new(limit: &RateLimit) -> Self {
        let now = Instant::now();
        let model = match *limit {
            RateLimit::LeakyBucket { capacity, leak_per_second } => {
                Model::Bucket { capacity, rate: leak_per_second, available: capacity, last: now }
            }
            RateLimit::TokenBucket { rate_per_second, burst } => {
                // One token of the burst is kept back as slack: two requests granted 1/rate apart can
                // reach the channel closer together than that, and its bucket must still hold a token.
                let capacity = f64::from(burst.saturating_sub(1).max(1));
                Model::Bucket { capacity, rate: rate_per_second, available: capacity, last: now }
            }
            RateLimit::FixedWindow { requests, window_seconds } => {
                let window = Duration::from_secs(u64::from(window_seconds));
                Model::Window { quota: requests, window, remaining: f64::from(requests), reset_at: now + window }
            }
            RateLimit::Unlimited => Model::Unlimited,
        };
        Self { state: Mutex::new(State { model, paused_until: None, in_flight: 0.0, stats: LimiterStats::default() }) }
    }

    /// Waits until a request of `cost` (points for Shopify, 1 elsewhere) fits the allowance.
    pub async fn acquire(&self, cost: f64) -> Permit {
        let started = Instant::now();
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                match s.try_take(cost, now) {
                    Ok(granted) => {
                        s.in_flight += granted;
                        s.stats.granted += 1;
                        s.stats.granted_cost += granted;
                        s.stats.waited += now - started;
                        return Permit { cost: granted };
                    }
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Returns a permit and corrects the model with what the response said.
    pub async fn observe(&self, permit: Permit, signals: &Signals) {
        let mut s = self.state.lock().await;
        s.in_flight = (s.in_flight - permit.cost).max(0.0);
        let others = s.in_flight;
        let now = Instant::now();
        if let Some(d) = signals.retry_after {
            let until = now + d;
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
        match &mut s.model {
            Model::Bucket { capacity, rate, available, last } => {
                refill(*capacity, *rate, available, last, now);
                if let Some(p) = signals.points {
                    *capacity = p.maximum_available.max(1.0);
                    *rate = p.restore_rate.max(f64::EPSILON);
                    *available = (p.currently_available - others).min(*capacity);
                }
                if let Some(r) = signals.rate_per_second.filter(|r| *r > 0.0) {
                    *rate = r;
                }
                if let Some(left) = signals.remaining_this_second {
                    *available = available.min(left - others);
                }
                if signals.retry_after.is_some() {
                    *available = available.min(0.0);
                }
            }
            Model::Window { quota, window, remaining, reset_at } => {
                if let Some(w) = signals.window {
                    if let Some(q) = w.quota {
                        *quota = q;
                    }
                    *remaining = f64::from(w.requests_left) - others;
                    *reset_at = now + w.reset_in;
                    if *window < w.reset_in {
                        *window = w.reset_in;
                    }
                }
                if signals.retry_after.is_some() {
                    *remaining = remaining.min(0.0);
                }
            }
            Model::Unlimited => {}
        }
    }

    /// Returns a permit for a request that got no response (its cost may or may not have been counted).
    pub async fn release(&self, permit: Permit) {
        let mut s = self.state.lock().await;
        s.in_flight = (s.in_flight - permit.cost).max(0.0);
    }

    pub async fn stats(&self) -> LimiterStats {
        self.state.lock().await.stats
    }
}

impl State {
    /// Takes `cost` from the allowance, or says how long to wait before asking again.
    fn try_take(&mut self, cost: f64, now: Instant) -> Result<f64, Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        match &mut self.model {
            Model::Unlimited => Ok(cost),
            Model::Bucket { capacity, rate, available, last } => {
                refill(*capacity, *rate, available, last, now);
                // A request costlier than the whole bucket still goes once the bucket is full.
                let cost = cost.min(*capacity);
                if *available >= cost {
                    *available -= cost;
                    Ok(cost)
                } else {
                    Err(Duration::from_secs_f64(((cost - *available) / (*rate * REFILL_SAFETY)).min(3600.0)))
                }
            }
            Model::Window { quota, window, remaining, reset_at } => {
                if now >= *reset_at {
                    *remaining = f64::from(*quota);
                    *reset_at = now + *window;
                }
                if *remaining >= 1.0 {
                    *remaining -= 1.0;
                    Ok(1.0)
                } else {
                    Err(*reset_at - now)
                }
            }
        }
    }
}

fn refill(capacity: f64, rate: f64, available: &mut f64, last: &mut Instant, now: Instant) {
    let elapsed = now.saturating_duration_since(*last).as_secs_f64();
    *available = (*available + elapsed * rate * REFILL_SAFETY).min(capacity);
    *last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_spends_the_burst_then_paces_at_the_rate() {
        let l = RateLimiter::new(&RateLimit::TokenBucket { rate_per_second: 10.0, burst: 5 });
        let start = Instant::now();
        for _ in 0..15 {
            let p = l.acquire(1.0).await;
            l.observe(p, &Signals::default()).await;
        }
        // 4 at once (one token of the burst is slack), then 11 more at 97 % of 10/s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1100) && elapsed < Duration::from_millis(1200), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_status_replaces_the_configured_estimate() {
        let l = RateLimiter::new(&RateLimit::LeakyBucket { capacity: 1000.0, leak_per_second: 50.0 });
        let p = l.acquire(10.0).await;
        let points = PointsStatus { maximum_available: 100.0, currently_available: 0.0, restore_rate: 100.0 };
        l.observe(p, &Signals { points: Some(points), ..Signals::default() }).await;
        let start = Instant::now();
        let p = l.acquire(50.0).await;
        l.release(p).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(490) && waited < Duration::from_millis(600), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn window_headers_account_for_other_apps_and_the_reset_time() {
        let l = RateLimiter::new(&RateLimit::FixedWindow { requests: 150, window_seconds: 30 });
        let p = l.acquire(1.0).await;
        let window = WindowStatus { requests_left: 1, reset_in: Duration::from_secs(2), quota: Some(150) };
        l.observe(p, &Signals { window: Some(window), ..Signals::default() }).await;
        let start = Instant::now();
        let p = l.acquire(1.0).await; // the last one left
        l.release(p).await;
        assert!(start.elapsed() < Duration::from_millis(5));
        let p = l.acquire(1.0).await; // waits for the reset the channel announced, not 30 s
        l.release(p).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_everything() {
        let l = RateLimiter::new(&RateLimit::Unlimited);
        let p = l.acquire(1.0).await;
        l.observe(p, &Signals { retry_after: Some(Duration::from_secs(3)), ..Signals::default() }).await;
        let start = Instant::now();
        let p = l.acquire(1.0).await;
        l.release(p).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_are_subtracted_from_reported_allowance() {
        let l = RateLimiter::new(&RateLimit::TokenBucket { rate_per_second: 1.0, burst: 10 });
        let a = l.acquire(1.0).await;
        let b = l.acquire(1.0).await;
        // `a` comes back saying 5 left; `b` is still in flight, so only 4 are really ours.
        l.observe(a, &Signals { remaining_this_second: Some(5.0), ..Signals::default() }).await;
        for _ in 0..4 {
            let p = l.acquire(1.0).await;
            l.release(p).await;
        }
        let start = Instant::now();
        let p = l.acquire(1.0).await;
        l.release(p).await;
        l.release(b).await;
        assert!(start.elapsed() >= Duration::from_millis(900), "{:?}", start.elapsed());
    }
}
