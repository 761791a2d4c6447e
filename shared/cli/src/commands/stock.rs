//! `manifold stock <sku>`: the ledger's position for a SKU and, per channel account, what the fan-out
//! last handed to the push queue (the push gate's coalescing state in the StateTable,
//! `PUSH#{channel}#{account}` / `SKU#{sku}#LOC#{location}`) next to what the account's stock rules
//! would publish now. A difference between the two means a push is pending or was lost.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use manifold_app::App;
use manifold_domain::{Channel, Sku, config::ChannelConfig};
use manifold_ledger::{
    DEFAULT_LOCATION, DynamoLedger, Ledger, Position, PositionKey,
    fanout::{GateState, PushGate, push_jobs},
};
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Args)]
pub struct StockArgs {
    pub sku: String,
    #[arg(long, default_value = DEFAULT_LOCATION)]
    pub location: String,
    /// Channel configuration (accounts, stock rules, SKU maps).
    #[arg(long, env = "MANIFOLD_CONFIG_FILE", default_value = "infra/channels.example.toml")]
    pub config: PathBuf,
    /// Also read what each channel shows now (one stock read per account, through its connector).
    #[arg(long)]
    pub live: bool,
}

/// One channel account's view of the SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStock {
    pub channel: Channel,
    pub account: String,
    pub channel_sku: String,
    /// What the account's stock rules give for the current position.
    pub publishable_now: u32,
    /// The last quantity handed to the push queue, and the position version it came from.
    pub last_published: Option<u64>,
    pub last_version: Option<u64>,
    /// When it was handed over, by which transaction (trace id), and whether the channel confirmed it.
    pub last_pushed_at: Option<DateTime<Utc>>,
    pub last_trace_id: Option<String>,
    pub confirmed: bool,
    /// What the channel shows now ([`read_channels`]; `None` until read, or when it cannot say).
    pub shows_now: Option<i64>,
    /// Why `shows_now` is missing after a read.
    pub read_note: Option<String>,
}

impl ChannelStock {
    /// The channel shows something other than what the ledger says it should (read, and different).
    pub fn mismatch(&self) -> bool {
        self.shows_now.is_some_and(|q| q != i64::from(self.publishable_now))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockReport {
    pub position: Position,
    pub channels: Vec<ChannelStock>,
}

impl Human for StockReport {
    fn human(&self) -> String {
        let p = &self.position;
        let mut out = format!(
            "{} @ {}\n  on hand    {}\n  reserved   {}\n  available  {}\n  version    {}{}\n\n",
            p.sku,
            p.location,
            p.on_hand,
            p.reserved,
            p.available,
            p.version,
            if p.version == 0 { " (never written)" } else { "" }
        );
        let mut t = Table::new(&[
            "CHANNEL",
            "ACCOUNT",
            "CHANNEL SKU",
            "PUBLISHABLE",
            "LAST PUBLISHED",
            "AT VERSION",
            "CONFIRMED",
            "TRACE",
            "SHOWS NOW",
        ])
        .numeric(&[3, 4, 5]);
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        for c in &self.channels {
            let shows = match (c.shows_now, &c.read_note) {
                (Some(q), _) if c.mismatch() => format!("{q} (MISMATCH)"),
                (Some(q), _) => q.to_string(),
                (None, Some(note)) => format!("- ({note})"),
                (None, None) => "-".to_owned(),
            };
            t.row(vec![
                c.channel.to_string(),
                c.account.clone(),
                c.channel_sku.clone(),
                c.publishable_now.to_string(),
                opt(c.last_published),
                opt(c.last_version),
                if c.confirmed { "yes" } else { "no" }.to_owned(),
                c.last_trace_id.clone().unwrap_or_else(|| "-".to_owned()),
                shows,
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

/// The position of `key` and every enabled account's published state.
pub async fn stock(aws: &Aws, config: &ChannelConfig, key: &PositionKey) -> Result<StockReport, CliError> {
    // A hot SKU's position is the sum of its shards, as the functions read it.
    let ledger = DynamoLedger::sharded(
        manifold_ledger::DynamoStore::new(aws.ddb.clone(), &aws.env.ledger_table),
        manifold_ledger::shard::Shards::from_config(config),
    );
    let position = ledger.position(key).await?;
    let gate = PushGate::new(aws.ddb.clone(), &aws.env.state_table);
    let mut channels = Vec::new();
    for job in push_jobs(config, &position, None) {
        let state = gate.state(&job).await.map_err(|e| CliError::Usage(format!("push gate: {e}")))?;
        channels.push(ChannelStock {
            channel: job.channel,
            account: job.account.to_string(),
            channel_sku: job.channel_sku,
            publishable_now: job.quantity,
            last_published: state.as_ref().map(|s| u64::from(s.quantity)),
            last_version: state.as_ref().map(|s| s.version),
            last_pushed_at: state.as_ref().map(|s| s.offered_at),
            last_trace_id: state.as_ref().and_then(|s| s.offered_by.clone()),
            confirmed: state.as_ref().is_some_and(GateState::confirmed),
            shows_now: None,
            read_note: None,
        });
    }
    Ok(StockReport { position, channels })
}

/// Fills in what each account shows now, read from the channel through its connector (as the
/// reconciliation reads it): a channel without a stock read, or one that cannot be read now, says why.
pub async fn read_channels(app: &App, report: &mut StockReport) {
    let trace_id = manifold_app::trace::mint();
    for c in &mut report.channels {
        let account = match app.account(c.channel, &c.account).await {
            Ok(a) => a,
            Err(e) => {
                c.read_note = Some(e.to_string());
                continue;
            }
        };
        if !c.channel.spec().capabilities.read_stock.is_supported() {
            c.read_note = Some(format!("{} offers no stock read", c.channel));
            continue;
        }
        match app.channel_stock(&account, std::slice::from_ref(&c.channel_sku), &trace_id).await {
            Ok(read) => match read.into_iter().find(|(sku, _)| *sku == c.channel_sku) {
                Some((_, q)) => c.shows_now = Some(q),
                None => c.read_note = Some("the channel does not list this SKU".to_owned()),
            },
            Err(e) => c.read_note = Some(format!("could not read the channel: {e}")),
        }
    }
}

pub async fn run(args: &StockArgs) -> Result<StockReport, CliError> {
    let sku = Sku::new(args.sku.clone()).map_err(|e| CliError::Usage(format!("invalid SKU {:?}: {e}", args.sku)))?;
    let config = ChannelConfig::load(&args.config)?;
    let mut report = stock(&Aws::from_env().await?, &config, &PositionKey::new(sku, args.location.clone())).await?;
    if args.live {
        read_channels(&App::from_env().await?, &mut report).await;
    }
    Ok(report)
}
