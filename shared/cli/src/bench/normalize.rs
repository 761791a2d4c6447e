//! Figure 4 in the bench's run: each channel's order fixture from bytes to a canonical order, beside
//! parsing the same bytes into a `serde_json::Value` and nothing more. A quick median of repeated
//! batches; `cargo bench -p manifold-normalize --bench normalize` (criterion) is the careful version.

use std::time::{Duration, Instant};

use chrono::Utc;
use manifold_domain::config::ChannelConfig;
use manifold_normalize::{Context, DocKind, normalize, samples};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub channel: String,
    pub bytes: usize,
    pub parse_us: f64,
    pub normalize_us: f64,
    pub ratio: f64,
}

/// Median time of one call of `f`, from 15 batches sized to take about 10 ms each.
fn median_us(mut f: impl FnMut()) -> f64 {
    let once = {
        let at = Instant::now();
        f();
        at.elapsed().max(Duration::from_nanos(100))
    };
    let per_batch = (Duration::from_millis(10).as_nanos() / once.as_nanos()).clamp(1, 100_000);
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let at = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            #[allow(clippy::cast_precision_loss)] // batch sizes far below 2^52
            let each = at.elapsed().as_secs_f64() * 1e6 / per_batch as f64;
            each
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One row per channel with an order fixture; a fixture that does not normalize is left out with a
/// note (it would measure an error path).
pub fn measure(config: &ChannelConfig) -> Vec<Row> {
    let received_at = Utc::now();
    let mut rows = Vec::new();
    for (channel, bytes) in samples::orders() {
        let Some(account) = config.accounts.iter().find(|a| a.channel == channel) else { continue };
        let ctx = Context { account, received_at };
        let run = || -> Option<()> {
            let doc: Value = serde_json::from_slice(std::hint::black_box(&bytes)).ok()?;
            normalize(channel, DocKind::Order, &doc, &ctx).ok().map(|_| ())
        };
        if run().is_none() {
            eprintln!("    {channel}: its fixture does not normalize; left out");
            continue;
        }
        let parse_us = median_us(|| {
            let _ = std::hint::black_box(serde_json::from_slice::<Value>(std::hint::black_box(&bytes)));
        });
        let normalize_us = median_us(|| {
            let _ = std::hint::black_box(run());
        });
        rows.push(Row {
            channel: channel.to_string(),
            bytes: bytes.len(),
            parse_us: round2(parse_us),
            normalize_us: round2(normalize_us),
            ratio: round2(normalize_us / parse_us),
        });
    }
    rows
}
