//! Normalization speed per channel, on each channel's real (or documented-shape) order fixture: the
//! whole step a consumer takes, bytes to canonical order (`normalize/{channel}`), beside parsing the
//! same bytes into a `serde_json::Value` and nothing else (`parse/{channel}`). The goal is
//! `normalize` within 2x of `parse`: the mapping costs less than reading the JSON once more.
//!
//! `cargo bench -p manifold-normalize --bench normalize` (add `-- --quick` for a short run).

use chrono::{TimeZone as _, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use manifold_domain::config::ChannelConfig;
use manifold_normalize::{Context, DocKind, normalize, samples};
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../../infra/channels.example.toml");

fn bench(c: &mut Criterion) {
    let config = ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example config");
    let received_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for (channel, bytes) in samples::orders() {
        let account = config.accounts.iter().find(|a| a.channel == channel).expect("an example account");
        let ctx = Context { account, received_at };
        // Every fixture must normalize: a bench of an error path would measure the wrong thing.
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        normalize(channel, DocKind::Order, &doc, &ctx).unwrap_or_else(|e| panic!("{channel}: {e}"));
        let mut group = c.benchmark_group(channel.as_str());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", channel.as_str()), &bytes, |b, bytes| {
            b.iter(|| serde_json::from_slice::<Value>(std::hint::black_box(bytes)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("normalize", channel.as_str()), &bytes, |b, bytes| {
            b.iter(|| {
                let doc: Value = serde_json::from_slice(std::hint::black_box(bytes)).unwrap();
                normalize(channel, DocKind::Order, &doc, &ctx).unwrap()
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
