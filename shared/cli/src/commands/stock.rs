//! `manifold stock <sku>`: the ledger's position for a SKU and, per channel account, what the fan-out
//! last handed to the push queue (the push gate's coalescing state in the StateTable,
//! `PUSH#{channel}#{account}` / `SKU#{sku}#LOC#{location}`) next to what the account's stock rules
//! would publish now. A difference between the two means a push is pending or was lost.

use std::{collections::HashMap, path::PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use manifold_domain::{Channel, Sku, config::ChannelConfig};
use manifold_ledger::{DEFAULT_LOCATION, DynamoLedger, Ledger, Position, PositionKey, fanout::push_jobs};
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
        let mut t = Table::new(&["CHANNEL", "ACCOUNT", "CHANNEL SKU", "PUBLISHABLE", "LAST PUBLISHED", "AT VERSION"])
            .numeric(&[3, 4, 5]);
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        for c in &self.channels {
            t.row(vec![
                c.channel.to_string(),
                c.account.clone(),
                c.channel_sku.clone(),
                c.publishable_now.to_string(),
                opt(c.last_published),
                opt(c.last_version),
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
    let mut channels = Vec::new();
    for job in push_jobs(config, &position, None) {
        let item = aws
            .ddb
            .get_item()
            .table_name(&aws.env.state_table)
            .key("pk", AttributeValue::S(format!("PUSH#{}#{}", job.channel, job.account)))
            .key("sk", AttributeValue::S(format!("SKU#{}#LOC#{}", job.sku, job.location)))
            .send()
            .await
            .map_err(|e| CliError::dynamodb("GetItem", e))?
            .item
            .unwrap_or_default();
        channels.push(ChannelStock {
            channel: job.channel,
            account: job.account.to_string(),
            channel_sku: job.channel_sku,
            publishable_now: job.quantity,
            last_published: number(&item, "quantity"),
            last_version: number(&item, "version"),
        });
    }
    Ok(StockReport { position, channels })
}

fn number(item: &HashMap<String, AttributeValue>, key: &str) -> Option<u64> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

pub async fn run(args: &StockArgs) -> Result<StockReport, CliError> {
    let sku = Sku::new(args.sku.clone()).map_err(|e| CliError::Usage(format!("invalid SKU {:?}: {e}", args.sku)))?;
    let config = ChannelConfig::load(&args.config)?;
    stock(&Aws::from_env().await?, &config, &PositionKey::new(sku, args.location.clone())).await
}
