//! `manifold listings unlisted|unknown`: where the ledger and the channels' catalogs disagree, from the
//! listings the listing syncs stored (`StateTable`, `LISTING#{channel}#{account}`).
//!
//! - `unlisted`: SKUs the ledger holds a position for that no account lists: stock nobody sells.
//! - `unknown`: listings whose SKU (after the account's `sku_map`) the ledger does not know: a channel
//!   selling something the merchant never counted, or a mapping missing from the configuration.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use manifold_app::listings::{DynamoListings, ListingStore, StoredListing};
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    output::{self, Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ListingsCommand {
    /// SKUs the ledger knows that no account lists.
    Unlisted,
    /// Listings whose SKU the ledger does not know.
    Unknown,
}

/// One SKU no account lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnlistedReport {
    /// Accounts whose listings are known (synced at least once); the others are not counted.
    pub accounts_with_listings: usize,
    pub skus: Vec<String>,
}

/// One listing the ledger has no SKU for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownListing {
    pub channel: String,
    pub account: String,
    pub channel_sku: String,
    /// The master SKU it maps to (`None`: the channel SKU is no valid SKU).
    pub master: Option<String>,
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownReport {
    pub listings: Vec<UnknownListing>,
}

impl Human for UnlistedReport {
    fn human(&self) -> String {
        let mut out = format!(
            "{} SKU(s) in the ledger listed by none of {} account(s) with listings\n",
            self.skus.len(),
            self.accounts_with_listings
        );
        for sku in &self.skus {
            out.push_str("  ");
            out.push_str(sku);
            out.push('\n');
        }
        out
    }
}

impl Human for UnknownReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["CHANNEL", "ACCOUNT", "CHANNEL SKU", "MASTER SKU", "QUANTITY"]).numeric(&[4]);
        for l in &self.listings {
            t.row(vec![
                l.channel.clone(),
                l.account.clone(),
                l.channel_sku.clone(),
                l.master.clone().unwrap_or_else(|| "-".into()),
                l.quantity.map_or_else(|| "-".into(), |q| q.to_string()),
            ]);
        }
        format!("{} listing(s) whose SKU the ledger does not know\n{}", self.listings.len(), t.render())
    }
}

/// The SKUs the ledger holds a position for (`LedgerTable`, `SKU#{sku}` / `LOC#{location}`).
async fn ledger_skus(aws: &Aws) -> Result<BTreeSet<String>, CliError> {
    let items = aws
        .ddb
        .scan()
        .table_name(&aws.env.ledger_table)
        .filter_expression("begins_with(pk, :p) AND begins_with(sk, :l)")
        .expression_attribute_values(":p", AttributeValue::S("SKU#".into()))
        .expression_attribute_values(":l", AttributeValue::S("LOC#".into()))
        .projection_expression("pk")
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| CliError::dynamodb("Scan", e))?;
    Ok(items
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()))
        .filter_map(|pk| pk.strip_prefix("SKU#").map(str::to_owned))
        .collect())
}

/// Listings still shown by their channel.
async fn listed(aws: &Aws) -> Result<Vec<StoredListing>, CliError> {
    let store = DynamoListings::new(aws.ddb.clone(), &aws.env.state_table);
    Ok(store.all_listings().await?.into_iter().filter(StoredListing::is_listed).collect())
}

/// SKUs the ledger knows that no account lists.
pub async fn unlisted(aws: &Aws) -> Result<UnlistedReport, CliError> {
    let listings = listed(aws).await?;
    let accounts: BTreeSet<(String, String)> =
        listings.iter().map(|l| (l.channel.to_string(), l.account.to_string())).collect();
    let sold: BTreeSet<String> = listings.iter().filter_map(|l| l.master.as_ref().map(ToString::to_string)).collect();
    let skus = ledger_skus(aws).await?.into_iter().filter(|s| !sold.contains(s)).collect();
    Ok(UnlistedReport { accounts_with_listings: accounts.len(), skus })
}

/// Listings whose SKU the ledger does not know.
pub async fn unknown(aws: &Aws) -> Result<UnknownReport, CliError> {
    let known = ledger_skus(aws).await?;
    let mut rows: BTreeMap<(String, String, String), UnknownListing> = BTreeMap::new();
    for l in listed(aws).await? {
        let master = l.master.as_ref().map(ToString::to_string);
        if master.as_ref().is_some_and(|m| known.contains(m)) {
            continue;
        }
        let row = UnknownListing {
            channel: l.channel.to_string(),
            account: l.account.to_string(),
            channel_sku: l.listing.sku.clone(),
            master,
            quantity: l.listing.quantity,
        };
        rows.insert((row.channel.clone(), row.account.clone(), row.channel_sku.clone()), row);
    }
    Ok(UnknownReport { listings: rows.into_values().collect() })
}

pub async fn run(cmd: ListingsCommand, json: bool) -> Result<(), CliError> {
    let aws = Aws::from_env().await?;
    match cmd {
        ListingsCommand::Unlisted => output::print(&unlisted(&aws).await?, json),
        ListingsCommand::Unknown => output::print(&unknown(&aws).await?, json),
    }
}
