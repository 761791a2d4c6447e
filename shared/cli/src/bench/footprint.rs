//! Figure 3: each function's cold start, peak memory and binary size, beside a hello-world
//! `lambda_runtime` binary of the same build (`hello-lambda`) started here the same way.
//!
//! A cold start is the time from the process's spawn to its first `GET /runtime/invocation/next`
//! (the end of Lambda's init phase), three starts one at a time per function: the pipeline's own
//! started every function at once on a machine with few cores. Peak RSS is the largest `VmHWM` any of
//! the function's environments reached while it handled the run's events.

use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use manifold_localrt::{Function, FunctionConfig, LogSink, Runtime};
use serde::Serialize;

/// One function's (or the baseline's) figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub function: String,
    pub starts: usize,
    pub init_p50_ms: f64,
    pub init_max_ms: f64,
    /// `init_p50_ms` over the hello-world's (None without a baseline).
    pub x_hello: Option<f64>,
    pub peak_rss_kib: u64,
    pub binary_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub functions: Vec<Row>,
    pub hello: Option<Row>,
    /// Why the baseline is missing, when it is.
    pub hello_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Three cold starts of `f` one at a time, shortest first.
async fn cold_starts(f: &Function) -> Vec<Duration> {
    let mut inits = Vec::new();
    for _ in 0..3 {
        let at = Instant::now();
        if f.start().await.is_ok() {
            inits.push(at.elapsed());
        }
        f.shutdown();
    }
    inits.sort();
    inits
}

/// Measures every function of `runtime` and the hello-world binary in `bin_dir`.
pub async fn measure(runtime: &Runtime, bin_dir: &Path) -> Footprint {
    let hello = Function::new(FunctionConfig {
        logical_id: "hello-lambda".into(),
        name: "hello-lambda".into(),
        arn: "arn:aws:lambda:us-east-1:000000000000:function:hello-lambda".into(),
        // Absolute: the process starts in a task root of its own.
        binary: std::fs::canonicalize(bin_dir.join("hello-lambda")).unwrap_or_else(|_| bin_dir.join("hello-lambda")),
        timeout: Duration::from_secs(3),
        memory_mb: 128,
        handler: "bootstrap".into(),
        // What Lambda sets for any function (a function of the stack's, renamed): the runtime needs it.
        env: runtime
            .functions
            .values()
            .next()
            .map(|f| {
                let mut env = f.config.env.clone();
                env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "hello-lambda".into());
                env
            })
            .unwrap_or_default(),
        max_concurrency: 1,
        logs: LogSink::Discard,
    });
    let mut hello_error = None;
    for _ in 0..3 {
        if let Err(e) = hello.invoke(&serde_json::json!({"hello": "world"})).await {
            hello_error = Some(e.to_string());
            break;
        }
        hello.shutdown();
    }
    let baseline = hello.stats.init_times();
    let base_p50 = baseline.get(baseline.len() / 2).copied();
    let row = |function: String, inits: &[Duration], f: &Function| -> Option<Row> {
        let (p50, max) = (inits.get(inits.len() / 2).copied()?, inits.last().copied()?);
        Some(Row {
            function,
            starts: inits.len(),
            init_p50_ms: ms(p50),
            init_max_ms: ms(max),
            x_hello: base_p50.map(|b| (p50.as_secs_f64() / b.as_secs_f64() * 100.0).round() / 100.0),
            peak_rss_kib: f.stats.peak_rss_kib.load(Ordering::Relaxed),
            binary_bytes: size(&f.config.binary),
        })
    };
    let mut functions = Vec::new();
    for f in runtime.functions.values() {
        let inits = cold_starts(f).await;
        functions.extend(row(f.config.logical_id.clone(), &inits, f));
    }
    functions.sort_by(|a, b| a.function.cmp(&b.function));
    let hello_row = row("hello-lambda (baseline)".into(), &baseline, &hello);
    Footprint { functions, hello: hello_row, hello_error }
}

/// Tenths of a MiB, in integers.
pub fn mib(bytes: u64) -> String {
    let tenths = bytes * 10 / (1024 * 1024);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

impl Footprint {
    pub fn print(&self) {
        println!(
            "\n    cold start and memory (spawn to first `GET next`, three starts one at a time; peak RSS while handling\n    the run's events):\n    {:<32} {:>6} {:>9} {:>9} {:>7} {:>10} {:>10}",
            "function", "starts", "init p50", "init max", "x hello", "peak RSS", "binary"
        );
        for r in self.functions.iter().chain(&self.hello) {
            println!(
                "    {:<32} {:>6} {:>6.1} ms {:>6.1} ms {:>7} {:>10} {:>10}",
                r.function,
                r.starts,
                r.init_p50_ms,
                r.init_max_ms,
                r.x_hello.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
                mib(r.peak_rss_kib * 1024),
                mib(r.binary_bytes)
            );
        }
        if let Some(e) = &self.hello_error {
            println!("    (no baseline: hello-lambda did not start: {e})");
        }
    }
}
