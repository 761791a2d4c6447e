//! `manifold normalize`: run a channel document through the very normalizer the ingest Lambda uses
//! (`manifold_normalize::normalize`) and print the canonical record, or the path of the field that
//! stops it. For checking a payload from the quarantine or a new mapping without deploying anything.

use std::{io::Read, path::PathBuf};

use chrono::Utc;
use manifold_domain::{Channel, Record, config::ChannelConfig};
use manifold_normalize::{Context, DocKind};
use serde::Serialize;

use crate::{CliError, commands::parse_channel, output::Human};

#[derive(Debug, Clone, clap::Args)]
pub struct NormalizeArgs {
    #[arg(long, value_parser = parse_channel)]
    pub channel: Channel,
    #[arg(long, value_parser = parse_kind)]
    pub kind: DocKind,
    /// Channel configuration (accounts and SKU maps).
    #[arg(long, env = "MANIFOLD_CONFIG_FILE", default_value = "infra/channels.example.toml")]
    pub config: PathBuf,
    /// The account whose SKU map applies (default: the channel's first configured account).
    #[arg(long)]
    pub account: Option<String>,
    /// The document, or `-` for stdin.
    pub file: PathBuf,
}

const KINDS: [DocKind; 6] = DocKind::ALL;

fn parse_kind(s: &str) -> Result<DocKind, String> {
    KINDS
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown kind {s:?}; one of: {}", KINDS.map(DocKind::as_str).join(", ")))
}

/// The canonical record built from the document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Normalized(pub Record);

impl Human for Normalized {
    fn human(&self) -> String {
        // The record itself is the readable form: pretty JSON either way.
        serde_json::to_string_pretty(&self.0).unwrap_or_else(|e| format!("(cannot print the record: {e})"))
    }
}

/// Reads the configuration and the document named by `args`, then normalizes it.
pub fn run(args: &NormalizeArgs) -> Result<Normalized, CliError> {
    let config = ChannelConfig::load(&args.config)?;
    let (name, text) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::Read { path: "stdin".to_owned(), source })?;
        ("stdin".to_owned(), text)
    } else {
        let name = args.file.display().to_string();
        let text =
            std::fs::read_to_string(&args.file).map_err(|source| CliError::Read { path: name.clone(), source })?;
        (name, text)
    };
    normalize_document(&config, args.channel, args.kind, args.account.as_deref(), &name, &text)
}

/// Normalizes `text` (a document of `kind` from `channel`) for `account`, or the channel's first
/// configured account. `name` only labels errors.
pub fn normalize_document(
    config: &ChannelConfig,
    channel: Channel,
    kind: DocKind,
    account: Option<&str>,
    name: &str,
    text: &str,
) -> Result<Normalized, CliError> {
    let account = match account {
        Some(id) => config
            .account(channel, id)
            .ok_or_else(|| CliError::Usage(format!("no enabled {channel} account {id:?} in the configuration")))?,
        None => config
            .enabled_accounts()
            .find(|a| a.channel == channel)
            .ok_or_else(|| CliError::Usage(format!("no enabled {channel} account in the configuration")))?,
    };
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|source| CliError::Json { path: name.to_owned(), source })?;
    let ctx = Context { account, received_at: Utc::now() };
    manifold_normalize::normalize(channel, kind, &doc, &ctx).map(Normalized).map_err(|error| CliError::Normalize {
        channel: channel.to_string(),
        kind: kind.as_str(),
        error,
    })
}
