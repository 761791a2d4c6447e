//! Figures 2 and 5: the work the run did, counted, and what it costs.
//!
//! Counted, per function, between two [`Snapshot`]s: Lambda invocations and billed duration (the
//! local runtime times each invocation and init, rounded up to the millisecond as Lambda bills an
//! OS-only runtime); every AWS call the function made, with DynamoDB units as DynamoDB reported them,
//! from the `aws usage` line each invocation logs (`manifold_aws::usage`); the bytes it logged; its
//! EMF metric datapoints and series. Beside them: the event source mappings' SQS receives and batch
//! deletes, EventBridge's deliveries to the ledger queue, and the HTTP API's requests. Prices are
//! [`Prices::US_EAST_1`].

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Seek, SeekFrom},
    path::Path,
    sync::atomic::Ordering,
};

use manifold_localrt::{Runtime, wiring::WiringStats};
use manifold_telemetry::cost::{Prices, Usage};
use serde::Serialize;

/// Lambda's own START, END and REPORT lines per invocation, which CloudWatch Logs ingests beside the
/// function's output (about 250 bytes together).
const PLATFORM_LOG_BYTES: u64 = 250;
/// The functions that run on a schedule: their work is per hour, not per order.
pub const SCHEDULED: [&str; 2] = ["SchedulerFunction", "ZalandoPollFunction"];

#[derive(Debug, Clone, Default)]
struct FunctionMark {
    invocations: u64,
    billed_ms: u64,
    log_offset: u64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    functions: BTreeMap<String, FunctionMark>,
    http_requests: u64,
    received_units: u64,
    batches: u64,
    received: BTreeMap<String, u64>,
}

pub fn snapshot(runtime: &Runtime, wiring: &WiringStats, logs: &Path) -> Snapshot {
    let functions = runtime
        .functions
        .values()
        .map(|f| {
            let id = f.config.logical_id.clone();
            let log_offset = std::fs::metadata(logs.join(format!("{id}.log"))).map_or(0, |m| m.len());
            let mark = FunctionMark {
                invocations: f.stats.invocations.load(Ordering::Relaxed),
                billed_ms: f.stats.billed_ms.load(Ordering::Relaxed),
                log_offset,
            };
            (id, mark)
        })
        .collect();
    Snapshot {
        functions,
        http_requests: wiring.http_requests.load(Ordering::Relaxed),
        received_units: wiring.received_units.load(Ordering::Relaxed),
        batches: wiring.batches.load(Ordering::Relaxed),
        received: wiring.received_messages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
    }
}

/// One function's counted work between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionWork {
    pub invocations: u64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub log_bytes: u64,
    pub metric_datapoints: u64,
    pub aws: Usage,
}

/// Everything counted between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Work {
    pub functions: BTreeMap<String, FunctionWork>,
    pub http_requests: u64,
    /// The event source mappings' receives that returned messages, in billed 64 KB units.
    pub esm_receive_units: u64,
    /// One `DeleteMessageBatch` per batch, as Lambda's event source mapping deletes.
    pub esm_delete_batches: u64,
    /// EventBridge's deliveries to SQS (the ledger rule's queue), each a billed SQS request.
    pub bus_to_queue: u64,
    /// Distinct custom metrics (namespace, name, dimension values) the run emitted.
    pub metric_series: usize,
}

/// The new lines of `path` after `offset`.
fn new_lines(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// The (namespace, metric, dimensions) series and the datapoints of one EMF document.
fn emf(line: &str, series: &mut BTreeSet<String>) -> u64 {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else { return 0 };
    let mut points = 0;
    for directive in doc["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten() {
        let namespace = directive["Namespace"].as_str().unwrap_or_default();
        for dims in directive["Dimensions"].as_array().into_iter().flatten() {
            let values: Vec<String> = dims
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .map(|d| format!("{d}={}", doc[d].as_str().unwrap_or_default()))
                .collect();
            for m in directive["Metrics"].as_array().into_iter().flatten() {
                series.insert(format!("{namespace}/{}[{}]", m["Name"].as_str().unwrap_or_default(), values.join(",")));
                points += 1;
            }
        }
    }
    points
}

/// What was counted from `before` until now.
pub fn since(before: &Snapshot, runtime: &Runtime, wiring: &WiringStats, logs: &Path) -> Work {
    let now = snapshot(runtime, wiring, logs);
    let mut series = BTreeSet::new();
    let mut functions = BTreeMap::new();
    for f in runtime.functions.values() {
        let id = &f.config.logical_id;
        let (a, b) = (before.functions.get(id).cloned().unwrap_or_default(), now.functions[id].clone());
        let text = new_lines(&logs.join(format!("{id}.log")), a.log_offset);
        let mut aws = Usage::default();
        let mut metric_datapoints = 0;
        for line in text.lines() {
            if let Some(u) = manifold_aws::usage::parse_usage_line(line) {
                aws.merge(&u);
            } else if line.contains("\"_aws\"") {
                metric_datapoints += emf(line, &mut series);
            }
        }
        let invocations = b.invocations - a.invocations;
        functions.insert(
            id.clone(),
            FunctionWork {
                invocations,
                billed_ms: b.billed_ms - a.billed_ms,
                memory_mb: f.config.memory_mb,
                log_bytes: b.log_offset.saturating_sub(a.log_offset) + invocations * PLATFORM_LOG_BYTES,
                metric_datapoints,
                aws,
            },
        );
    }
    let ledger_queue = |s: &Snapshot| s.received.get("LedgerQueue").copied().unwrap_or(0);
    Work {
        functions,
        http_requests: now.http_requests - before.http_requests,
        esm_receive_units: now.received_units - before.received_units,
        esm_delete_batches: now.batches - before.batches,
        bus_to_queue: ledger_queue(&now) - ledger_queue(before),
        metric_series: series.len(),
    }
}

/// Work per order (the scheduled functions left out: theirs is per hour).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerOrder {
    pub lambda_invocations: f64,
    pub lambda_billed_ms: f64,
    pub lambda_gb_seconds: f64,
    pub dynamodb_read_units: f64,
    pub dynamodb_write_units: f64,
    pub dynamodb_requests: f64,
    /// Billed SQS requests (64 KB units): the functions' sends, the mappings' receives and deletes,
    /// EventBridge's deliveries.
    pub sqs_requests: f64,
    pub eventbridge_events: f64,
    pub http_api_requests: f64,
    pub log_bytes: f64,
    pub metric_datapoints: f64,
    pub other_aws_requests: f64,
}

/// Dollars per million orders, by what bills them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CostPerMillion {
    pub lambda: f64,
    pub dynamodb: f64,
    pub sqs: f64,
    pub eventbridge: f64,
    pub http_api: f64,
    pub logs: f64,
    /// The run's distinct custom metrics for a month, spread over a million orders that month.
    pub metrics: f64,
    pub other: f64,
    pub total: f64,
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn per(n: u64, units: impl TryInto<u64>) -> f64 {
    n as f64 / units.try_into().unwrap_or(u64::MAX).max(1) as f64
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

impl Work {
    /// The functions that do per-order work.
    fn order_functions(&self) -> impl Iterator<Item = (&String, &FunctionWork)> {
        self.functions.iter().filter(|(id, _)| !SCHEDULED.contains(&id.as_str()))
    }

    /// All the functions' AWS calls (scheduled ones left out).
    pub fn aws(&self) -> Usage {
        let mut all = Usage::default();
        for (_, f) in self.order_functions() {
            all.merge(&f.aws);
        }
        all
    }

    pub fn per_order(&self, orders: usize) -> PerOrder {
        let aws = self.aws();
        let sum = |f: fn(&FunctionWork) -> u64| self.order_functions().map(|(_, w)| f(w)).sum::<u64>();
        #[allow(clippy::cast_precision_loss)]
        let gb_s: f64 =
            self.order_functions().map(|(_, w)| w.billed_ms as f64 / 1000.0 * f64::from(w.memory_mb) / 1024.0).sum();
        let ddb = aws.service("dynamodb");
        let sqs = aws.service("sqs").billed + self.esm_receive_units + self.esm_delete_batches + self.bus_to_queue;
        let known = ["dynamodb", "sqs", "eventbridge"];
        let other = aws.requests() - known.iter().map(|s| aws.service(s).requests).sum::<u64>();
        #[allow(clippy::cast_precision_loss)]
        let orders_f = orders.max(1) as f64;
        PerOrder {
            lambda_invocations: round(per(sum(|w| w.invocations), orders), 2),
            lambda_billed_ms: round(per(sum(|w| w.billed_ms), orders), 1),
            lambda_gb_seconds: round(gb_s / orders_f, 5),
            dynamodb_read_units: round(ddb.read_units / orders_f, 2),
            dynamodb_write_units: round(ddb.write_units / orders_f, 2),
            dynamodb_requests: round(per(ddb.requests, orders), 2),
            sqs_requests: round(per(sqs, orders), 2),
            eventbridge_events: round(per(aws.service("eventbridge").billed, orders), 2),
            http_api_requests: round(per(self.http_requests, orders), 2),
            log_bytes: round(per(sum(|w| w.log_bytes), orders), 0),
            metric_datapoints: round(per(sum(|w| w.metric_datapoints), orders), 2),
            other_aws_requests: round(per(other, orders), 3),
        }
    }

    pub fn cost_per_million(&self, orders: usize, prices: &Prices) -> CostPerMillion {
        #[allow(clippy::cast_precision_loss)]
        let scale = 1e6 / orders.max(1) as f64;
        let aws = self.aws();
        let lambda: f64 =
            self.order_functions().map(|(_, w)| prices.lambda(w.invocations, w.billed_ms, w.memory_mb)).sum();
        let ddb = aws.service("dynamodb");
        let dynamodb = ddb.read_units * prices.dynamodb_read_unit + ddb.write_units * prices.dynamodb_write_unit;
        #[allow(clippy::cast_precision_loss)]
        let sqs = (aws.service("sqs").billed + self.esm_receive_units + self.esm_delete_batches + self.bus_to_queue)
            as f64
            * prices.sqs_request;
        #[allow(clippy::cast_precision_loss)]
        let eventbridge = aws.service("eventbridge").billed as f64 * prices.eventbridge_event;
        #[allow(clippy::cast_precision_loss)]
        let http_api = self.http_requests as f64 * prices.http_api_request;
        #[allow(clippy::cast_precision_loss)]
        let logs = self.order_functions().map(|(_, w)| w.log_bytes).sum::<u64>() as f64 / 1e9 * prices.logs_ingested_gb;
        #[allow(clippy::cast_precision_loss)]
        let other = aws.usd(prices) - dynamodb - aws.service("sqs").billed as f64 * prices.sqs_request - eventbridge;
        #[allow(clippy::cast_precision_loss)]
        let metrics = self.metric_series as f64 * prices.custom_metric_month;
        let mut c = CostPerMillion {
            lambda: round(lambda * scale, 2),
            dynamodb: round(dynamodb * scale, 2),
            sqs: round(sqs * scale, 2),
            eventbridge: round(eventbridge * scale, 2),
            http_api: round(http_api * scale, 2),
            logs: round(logs * scale, 2),
            // A month's fee for each series, whatever the volume: at a million orders a month.
            metrics: round(metrics, 2),
            other: round(other.max(0.0) * scale, 2),
            total: 0.0,
        };
        c.total = round(c.lambda + c.dynamodb + c.sqs + c.eventbridge + c.http_api + c.logs + c.metrics + c.other, 2);
        c
    }

    /// Figure 5: AWS calls per unit of each hot path, by operation.
    pub fn hot_paths(&self, orders: usize) -> Vec<HotPath> {
        let mut paths = Vec::new();
        let mut add = |path: &str, unit: &str, units: u64, usage: Usage| {
            if units == 0 {
                return;
            }
            let by_operation =
                usage.calls.iter().map(|(op, c)| (op.clone(), round(per(c.requests, units), 2))).collect();
            paths.push(HotPath {
                path: path.to_owned(),
                unit: unit.to_owned(),
                units,
                calls: round(per(usage.requests(), units), 2),
                by_operation,
            });
        };
        let of = |id: &str| self.functions.get(id).cloned().unwrap_or_default();
        let webhook = of("WebhookFunction");
        add("webhook", "new delivery", webhook.invocations, webhook.aws);
        add("ingest", "order", orders as u64, of("IngestFunction").aws);
        add("ledger", "reservation (one order)", orders as u64, of("LedgerFunction").aws);
        let mut push = Usage::default();
        let mut batches = 0;
        for (id, w) in &self.functions {
            if id.starts_with("Push") {
                push.merge(&w.aws);
                batches += w.invocations;
            }
        }
        add("push", "batch", batches, push);
        paths
    }
}

/// The AWS calls of one hot path per unit.
#[derive(Debug, Clone, Serialize)]
pub struct HotPath {
    pub path: String,
    pub unit: String,
    pub units: u64,
    pub calls: f64,
    pub by_operation: BTreeMap<String, f64>,
}
