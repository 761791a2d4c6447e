//! The operator CLI as a library: every command's core is a plain async function returning a typed
//! report, so the integration tests drive exactly what `manifold` runs; the binary only parses
//! arguments and prints.
//!
//! Every report prints as aligned text for people, or as JSON with `--json` for scripts. Resource
//! names come from the same environment variables the Lambdas read (`AwsEnv`, plus the queue and DLQ
//! URLs `infra/local/stack.py` writes to `.local/stack.env`).

pub mod aws;
pub mod bench;
pub mod commands;
pub mod console;
pub mod demo;
pub mod error;
pub mod output;
pub mod seed;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// Operate a Manifold deployment: dead letters, quarantine, traces, stock and usage.
#[derive(Debug, Parser)]
#[command(name = "manifold", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What every channel does for each job (the capability matrix); `--readme` writes it into README.md.
    Channels(commands::channels::ChannelsArgs),
    /// Validate, diff, push, list and roll back the channel configuration the functions load.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Normalize one channel document into its canonical record (no AWS needed).
    Normalize(commands::normalize::NormalizeArgs),
    /// Every channel account at a glance: breaker, last push, failures, DLQ, sync runs, token expiry.
    Health,
    /// Inspect and redrive the dead-letter queues.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Inspect and replay quarantined payloads.
    #[command(subcommand)]
    Quarantine(commands::quarantine::QuarantineCommand),
    /// Everything stored for one trace id: records, quarantine and ledger entries.
    Trace(commands::trace::TraceArgs),
    /// Orders that missed their ship-by deadline and tracking the channel never showed; release an
    /// order held for review.
    #[command(subcommand)]
    Orders(commands::orders::OrdersCommand),
    /// Which business rules fire for an order or a SKU, and what they give (writes nothing).
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Outbound webhook deliveries: recent attempts per subscription, and replay of a window.
    #[command(subcommand)]
    Webhooks(commands::webhooks::WebhooksCommand),
    /// One person across channels and CRMs: show, merge, split, forget, audit.
    #[command(subcommand)]
    Customers(commands::customers::CustomersCommand),
    /// A SKU's product content and what each channel account was last given of it.
    #[command(subcommand)]
    Products(commands::products::ProductsCommand),
    /// What the channels list against what the ledger knows (`unlisted`, `unknown`).
    #[command(subcommand)]
    Listings(commands::listings::ListingsCommand),
    /// A SKU's ledger position and the last quantity handed to each channel.
    Stock(commands::stock::StockArgs),
    /// Start a sync run for one account and follow it (`sync runs`: every run and what it did).
    Sync(commands::sync::SyncArgs),
    /// API calls, AWS requests, orders and counted cost per channel and day.
    Usage(commands::usage::UsageArgs),
    /// Print the headers a channel sends with a webhook body, signed (for curl against the local API).
    Sign(commands::sign::SignArgs),
    /// Write template.yaml from infra/template.src.yaml for every channel (`--check`: fail if stale).
    Template(commands::template::TemplateArgs),
    /// Serve the operations console on loopback: channel health, failures to fix, stock, orders, usage.
    Console(console::ConsoleArgs),
    /// Run the local end-to-end demo: every function's real binary under the local Lambda runtime.
    Demo(demo::DemoArgs),
    /// Measure the product end to end: oversell window, work and cost per order, cold starts,
    /// normalization, AWS calls per hot path (`infra/local/bench.sh` runs it on release binaries).
    Bench(bench::BenchArgs),
}

/// Runs one command and prints its report.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::Channels(args) => output::print(&commands::channels::run(&args)?, json),
        Command::Config(cmd) => commands::config::run(cmd, json).await,
        Command::Normalize(args) => output::print(&commands::normalize::run(&args)?, json),
        Command::Health => commands::health::run(json).await,
        Command::Dlq(cmd) => commands::dlq::run(cmd, json).await,
        Command::Quarantine(cmd) => commands::quarantine::run(cmd, json).await,
        Command::Trace(args) => output::print(&commands::trace::run(&args).await?, json),
        Command::Orders(cmd) => commands::orders::run(&cmd, json).await,
        Command::Rules(cmd) => commands::rules::run(cmd, json).await,
        Command::Webhooks(cmd) => commands::webhooks::run(cmd, json).await,
        Command::Listings(cmd) => commands::listings::run(cmd, json).await,
        Command::Products(cmd) => commands::products::run(cmd, json).await,
        Command::Customers(cmd) => commands::customers::run(cmd, json).await,
        Command::Stock(args) => output::print(&commands::stock::run(&args).await?, json),
        Command::Sync(args) => commands::sync::run(args, json).await,
        Command::Usage(args) => output::print(&commands::usage::run(&args).await?, json),
        Command::Sign(args) => {
            commands::sign::print(&commands::sign::run(&args)?, json);
            Ok(())
        }
        Command::Template(args) => output::print(&commands::template::run(&args)?, json),
        Command::Console(args) => console::run(&args).await,
        Command::Demo(args) => Box::pin(demo::run(args)).await,
        Command::Bench(args) => Box::pin(bench::run(args)).await,
    }
}
