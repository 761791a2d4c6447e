//! `manifold bench`: the product measured end to end in one run, through the local runtime of the real
//! binaries (release ones: `infra/local/bench.sh`), the channel simulators and the local AWS emulator.
//! It prints every figure and writes them as JSON (`.local/bench/latest.json` by default), so two runs
//! can be compared.
//!
//! 1. the oversell window ([`window`]): webhook POST to every other channel holding the new quantity;
//! 2. work and cost per order ([`work`]): counted, then priced at dated us-east-1 list prices;
//! 3. cold start, peak memory and binary size beside a hello-world Lambda ([`footprint`]);
//! 4. normalization beside a plain JSON parse ([`normalize`]);
//! 5. AWS calls per webhook, ingest, reservation and push batch ([`work::Work::hot_paths`]);
//!
//! and the hot-SKU figures ([`hot_sku`]): one SKU sold concurrently with its position in 1 and in N
//! shards. Figures are reported, never asserted: the emulator and this machine set them, not AWS.

pub mod footprint;
pub mod hot_sku;
pub mod normalize;
pub mod window;
pub mod work;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use manifold_domain::Sku;
use manifold_ledger::{DEFAULT_LOCATION, DynamoLedger, Ledger, PositionKey};
use manifold_localrt::{
    LocalAws, Logs, Options, Runtime,
    wiring::{Wiring, WiringOptions},
};
use manifold_simulator::{SimConfig, Simulator};
use manifold_telemetry::cost::Prices;
use serde::Serialize;

use crate::{CliError, demo, seed};

/// Options of `manifold bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Channel configuration to run with (endpoints are pointed at the simulators).
    #[arg(long, default_value = "infra/channels.example.toml")]
    pub config: PathBuf,
    /// The transformed template (`infra/local/stack.py transform` writes it).
    #[arg(long, default_value = ".local/template.json")]
    pub template: PathBuf,
    /// The stack created from it in the local emulator.
    #[arg(long, env = "MANIFOLD_STACK", default_value = "manifold-local")]
    pub stack: String,
    /// Where the functions' binaries are (`infra/local/bench.sh` passes the release ones).
    #[arg(long, env = "MANIFOLD_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Port of the local HTTP API on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Orders posted in the oversell-window run.
    #[arg(long, default_value_t = 500)]
    pub orders: usize,
    /// Lines per order, each a SKU of its own.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Orders posted per second: a steady rate the pipeline keeps up with, so the window measures the
    /// path rather than a backlog (on moto the ledger takes about 0.9 s an order; 500 orders take
    /// about 11 minutes at the default).
    #[arg(long, default_value_t = 0.8)]
    pub rate: f64,
    /// On-hand units of every SKU before the run.
    #[arg(long, default_value_t = 10)]
    pub on_hand: i64,
    /// Concurrent single-unit orders of the hot SKU (0 skips the hot-SKU figures).
    #[arg(long, default_value_t = 400)]
    pub hot_orders: usize,
    /// Shards of the hot SKU's position in its sharded run.
    #[arg(long, default_value_t = 8)]
    pub hot_shards: u32,
    /// Where the JSON copy goes.
    #[arg(long, default_value = ".local/bench/latest.json")]
    pub json_out: PathBuf,
    /// Where the functions' logs go (the work is counted from them).
    #[arg(long, default_value = ".local/bench/logs")]
    pub logs: PathBuf,
}

/// Where and when the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub binaries: String,
}

fn machine(bin_dir: &std::path::Path) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        cpu_model,
        binaries: bin_dir.display().to_string(),
    }
}

/// Figure 1 with its setting.
#[derive(Debug, Clone, Serialize)]
pub struct WindowFigure {
    pub orders: usize,
    pub lines: usize,
    pub rate_per_second: f64,
    pub channels: Vec<String>,
    pub windows: window::Windows,
    /// The emulated event source mappings' polling: from a message's `SentTimestamp` to the poll that
    /// received it, per queue hop (an SQS event source mapping long-polls in AWS).
    pub poll_delay: window::Spread,
    pub idle_poll_ms: u64,
    pub wall_seconds: f64,
}

/// Figure 2.
#[derive(Debug, Clone, Serialize)]
pub struct CostFigure {
    pub per_order: work::PerOrder,
    pub metric_series: usize,
    pub cost_per_million_orders: work::CostPerMillion,
    pub prices: Prices,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub oversell_window: WindowFigure,
    pub work_and_cost: CostFigure,
    pub cold_start: footprint::Footprint,
    pub normalization: Vec<normalize::Row>,
    pub hot_paths: Vec<work::HotPath>,
    pub hot_sku: Option<hot_sku::HotSku>,
    pub work: work::Work,
}

fn usage(what: &str) -> impl Fn(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError::Usage(format!("{what}: {e}"))
}

pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let root = std::env::current_dir().map_err(|e| CliError::Usage(e.to_string()))?;
    let aws = LocalAws::from_env();
    let sdk = aws.sdk_config().await;
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| manifold_localrt::binary_dir(&root));
    let machine = machine(&bin_dir);
    println!("manifold bench: {} CPU(s), {}; binaries in {}", machine.cpus, machine.cpu_model, machine.binaries);

    let example = std::fs::read_to_string(&args.config)
        .map_err(|source| CliError::Read { path: args.config.display().to_string(), source })?;
    let example_config = manifold_domain::config::ChannelConfig::parse(seed::CONFIG_KEY, &example)?;
    println!("\n[4] normalization, bytes to canonical order, beside a plain JSON parse (median of 15 batches)");
    let normalization = normalize::measure(&example_config);
    for r in &normalization {
        println!(
            "    {:<12} {:>6} bytes  parse {:>7.1} µs  normalize {:>7.1} µs  ratio {:.2}",
            r.channel, r.bytes, r.parse_us, r.normalize_us, r.ratio
        );
    }

    println!("\n    setting up: simulators, configuration, {} SKUs, functions", args.orders * args.lines);
    let sim = Simulator::start(SimConfig::default()).await.map_err(|e| usage("cannot start the simulators")(&e))?;
    let (plain_text, _) = seed::config_for_simulators(&example, &sim)?;
    // A run's SKUs, order ids and delivery ids are its own, so a second run on the same stack
    // (`KEEP_MOTO=1`) measures new orders, not duplicates of the first run's.
    let run_tag = chrono::Utc::now().timestamp() % 1_000_000;
    let skus: Vec<String> = (0..args.orders * args.lines).map(|i| format!("BENCH-{run_tag}-{i:05}")).collect();
    let first_order = usize::try_from(run_tag).unwrap_or(0) * 10_000;
    let sku_refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let (text, config) = demo::with_item_ids(&plain_text, &sku_refs)?;
    let catalog = demo::seed_catalogs(&sim, &config, &sku_refs);
    for ((channel, key), q) in window::initial_listing(&config, &catalog, &skus, args.on_hand) {
        sim.set_stock(channel, &key, q);
    }
    let logs = root.join(&args.logs);
    let _ = std::fs::remove_dir_all(&logs);
    let runtime = Runtime::load(
        &args.template,
        &args.stack,
        aws.clone(),
        Options {
            logs: Logs::Dir(logs.clone()),
            // As in the demo: each ledger process serialises its own commits on the emulator.
            overrides: BTreeMap::from([("MANIFOLD_LOCAL_EMULATOR".to_owned(), "1".to_owned())]),
            ..Options::new(bin_dir.clone())
        },
    )
    .await
    .map_err(|e| usage("local runtime")(&e))?;
    let bucket = runtime
        .stack
        .physical
        .get("ConfigBucket")
        .cloned()
        .ok_or_else(|| CliError::Usage(format!("stack {} has no ConfigBucket", args.stack)))?;
    seed::put_config(&sdk, &bucket, &text).await?;
    seed::put_secrets(&sdk, &config).await?;
    let env = manifold_aws::AwsEnv::from_env()?;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let ledger = Arc::new(DynamoLedger::new(manifold_ledger::DynamoStore::new(ddb.clone(), &env.ledger_table)));
    let seeded: Vec<Result<(), CliError>> = futures::stream::iter(skus.iter().cloned())
        .map(|sku| {
            let (ledger, on_hand) = (ledger.clone(), args.on_hand);
            async move {
                let sku_key = Sku::new(sku.as_str()).map_err(|e| CliError::Usage(format!("{sku}: {e}")))?;
                let key = PositionKey::new(sku_key, DEFAULT_LOCATION);
                ledger.set_on_hand(&key, on_hand, &format!("bench-{sku}")).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    seeded.into_iter().collect::<Result<Vec<()>, CliError>>()?;
    let inits = futures::future::join_all(runtime.functions.values().map(|f| f.start())).await;
    if let Some(e) = inits.into_iter().find_map(Result::err) {
        return Err(CliError::Usage(e.to_string()));
    }
    let runtime = Arc::new(runtime);
    let options = WiringOptions {
        http_addr: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        // The order path alone: the scheduled syncs' work is per hour, not per order.
        schedules: false,
        ..WiringOptions::default()
    };
    let idle_poll_ms = u64::try_from(options.idle_poll.as_millis()).unwrap_or(u64::MAX);
    let wiring = Wiring::start(runtime.clone(), options).await.map_err(|e| usage("wiring")(&e))?;
    let api = wiring.url();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queues: Vec<(String, String)> = runtime
        .template
        .sqs_mappings()
        .map_err(|e| usage("mappings")(&e))?
        .into_iter()
        .filter_map(|m| Some((m.queue.clone(), runtime.stack.queue_url(&m.queue).ok()?)))
        .collect();
    demo::wait_idle(&sqs, &queues).await?;
    println!(
        "    {} functions up, {} SKUs at {} on hand in the ledger and listed on every simulator ({:.0} s)",
        runtime.functions.len(),
        skus.len(),
        args.on_hand,
        started.elapsed().as_secs_f64()
    );

    println!(
        "\n[1] oversell window: {} orders of {} lines, {:.1}/s, as signed webhooks (Shopify, WooCommerce in turn)",
        args.orders, args.lines, args.rate
    );
    wiring.stats.poll_delays_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    let before = work::snapshot(&runtime, &wiring.stats, &logs);
    let run_started = Instant::now();
    let posted = window::post_orders(&api, &skus, first_order, args.orders, args.lines, args.rate).await?;
    let limit = Duration::from_mins(2);
    let deadline = Instant::now() + limit;
    while !window::settled(&config, &catalog, &sim, &posted, args.on_hand) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    demo::wait_idle(&sqs, &queues).await?;
    let wall_seconds = (run_started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let counted = work::since(&before, &runtime, &wiring.stats, &logs);
    let windows = window::windows(&config, &catalog, &sim.stock_changes(), &posted, args.on_hand);
    #[allow(clippy::cast_precision_loss)] // milliseconds far below 2^52
    let poll_delay = window::Spread::of(wiring.stats.poll_delays().into_iter().map(|d| d as f64).collect());
    let oversell_window = WindowFigure {
        orders: args.orders,
        lines: args.lines,
        rate_per_second: args.rate,
        channels: config.enabled_accounts().map(|a| a.channel.to_string()).collect(),
        windows,
        poll_delay,
        idle_poll_ms,
        wall_seconds,
    };
    print_window(&oversell_window);

    let prices = Prices::US_EAST_1;
    let work_and_cost = CostFigure {
        per_order: counted.per_order(args.orders),
        metric_series: counted.metric_series,
        cost_per_million_orders: counted.cost_per_million(args.orders, &prices),
        prices,
    };
    print_cost(&work_and_cost, &counted, args.lines, oversell_window.channels.len());
    let hot_paths = counted.hot_paths(args.orders);
    println!("\n[5] AWS calls on the hot paths (counted in the functions, every attempt)");
    for p in &hot_paths {
        let ops: Vec<String> = p.by_operation.iter().map(|(op, n)| format!("{op} {n}")).collect();
        println!("    {:<8} {:>5.2} per {:<24} {}", p.path, p.calls, p.unit, ops.join(", "));
    }

    // The cold starts with the configuration a merchant starts from, not the bench's thousands of
    // item ids.
    seed::put_config(&sdk, &bucket, &plain_text).await?;
    println!("\n[3] cold start, memory, binary size");
    let cold_start = footprint::measure(&runtime, &bin_dir).await;
    cold_start.print();
    drop(wiring);
    runtime.shutdown();

    let hot_sku = if args.hot_orders > 0 {
        println!(
            "\n[hot SKU] {} single-unit orders of one SKU, {} at a time: its position whole, then in {} shards",
            args.hot_orders,
            hot_sku::CONCURRENCY,
            args.hot_shards
        );
        let figures = hot_sku::measure(&ddb, &env.ledger_table, args.hot_orders, args.hot_shards).await?;
        figures.print();
        Some(figures)
    } else {
        None
    };

    let report = Report {
        machine,
        oversell_window,
        work_and_cost,
        cold_start,
        normalization,
        hot_paths,
        hot_sku,
        work: counted,
    };
    if let Some(dir) = args.json_out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| usage("report")(&e))?;
    std::fs::write(&args.json_out, json)
        .map_err(|source| CliError::Read { path: args.json_out.display().to_string(), source })?;
    println!("\nDone in {:.0} s; the figures as JSON: {}", started.elapsed().as_secs_f64(), args.json_out.display());
    Ok(())
}

fn print_window(f: &WindowFigure) {
    let w = &f.windows;
    println!(
        "    {} orders ({} refused), {} channel updates measured over {} channels, wall {:.0} s",
        f.orders,
        w.refused,
        w.updates,
        f.channels.len(),
        f.wall_seconds
    );
    println!(
        "    window, POST to every other channel holding the new quantity: p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms ({} orders{})",
        w.window.p50_ms,
        w.window.p99_ms,
        w.window.max_ms,
        w.window.count,
        if w.unfinished > 0 { format!(", {} never finished", w.unfinished) } else { String::new() }
    );
    for (channel, s) in &w.by_channel {
        println!("      {channel:<12} p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms", s.p50_ms, s.p99_ms, s.max_ms);
    }
    println!(
        "    of which the emulated event source polling (per queue hop, idle poll every {} ms; AWS long-polls):\n      \
         p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms over {} receives; an order crosses 3 hops (ingest, ledger, push)",
        f.idle_poll_ms, f.poll_delay.p50_ms, f.poll_delay.p99_ms, f.poll_delay.max_ms, f.poll_delay.count
    );
    println!("    anchors: an hourly CSV sync leaves up to 3,600,000 ms; Zalando's stock SLA is 600,000 ms");
}

fn print_cost(f: &CostFigure, counted: &work::Work, lines: usize, channels: usize) {
    let p = &f.per_order;
    let c = &f.cost_per_million_orders;
    println!(
        "\n[2] work per order ({lines}-line basket, fanned out to {channels} channels), counted in this run:\n    \
         Lambda {:.2} invocations, {:.1} billed ms ({:.4} GB-s, arm64 at the template's memory sizes)\n    \
         DynamoDB {:.2} requests: {:.2} read units, {:.2} write units (as the emulator reports them by DynamoDB's rules)\n    \
         SQS {:.2} requests (64 KB units: sends, event source receives and batch deletes, the bus's deliveries)\n    \
         EventBridge {:.2} events; HTTP API {:.2} requests; other AWS {:.3} requests\n    \
         CloudWatch Logs {:.0} bytes; {:.2} metric datapoints ({} distinct custom metrics in the run)",
        p.lambda_invocations,
        p.lambda_billed_ms,
        p.lambda_gb_seconds,
        p.dynamodb_requests,
        p.dynamodb_read_units,
        p.dynamodb_write_units,
        p.sqs_requests,
        p.eventbridge_events,
        p.http_api_requests,
        p.other_aws_requests,
        p.log_bytes,
        p.metric_datapoints,
        f.metric_series
    );
    println!(
        "    cost per million orders at us-east-1 list prices of {}: ${:.2}\n      \
         Lambda ${:.2}  DynamoDB ${:.2}  SQS ${:.2}  EventBridge ${:.2}  HTTP API ${:.2}  Logs ${:.2}  \
         custom metrics ${:.2} (a month's fee, at a million orders a month)  other ${:.2}",
        f.prices.as_of, c.total, c.lambda, c.dynamodb, c.sqs, c.eventbridge, c.http_api, c.logs, c.metrics, c.other
    );
    for (id, w) in &counted.functions {
        if w.invocations > 0 {
            println!(
                "      {id:<28} {:>6} invocations {:>8} billed ms {:>6} AWS calls {:>8} log bytes",
                w.invocations,
                w.billed_ms,
                w.aws.requests(),
                w.log_bytes
            );
        }
    }
}
