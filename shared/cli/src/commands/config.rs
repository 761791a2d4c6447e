//! `manifold config`: the channel configuration as operators change it, without a deploy.
//!
//! The deployed functions read one object, `s3://CONFIG_BUCKET/CONFIG_KEY` (versioned), and pick up a new
//! version within a minute. So a change goes through here: `validate` a file, `diff` it against the live
//! object account by account, `push` it (validated first: an invalid file is refused with its path and
//! reason and nothing is written), list the `history` of versions, `rollback` to one (validated too, since
//! the code may have moved on since it was written). Every command works on the [`ConfigStore`] port, so
//! the tests run them against the emulator's S3 and the in-memory store alike.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use manifold_aws::config_store::{ConfigStore, ConfigVersion, Fetched, S3ConfigStore};
use manifold_domain::config::ChannelConfig;
use serde::Serialize;
use serde_json::Value;

use crate::{
    CliError,
    output::{Human, Table},
};

/// Where the live configuration is (the stack's ConfigBucket).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The stack's ConfigBucket (output `ConfigBucketName`).
    #[arg(long, env = "CONFIG_BUCKET")]
    pub bucket: Option<String>,
    #[arg(long, env = "CONFIG_KEY", default_value = "channels.toml")]
    pub key: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a configuration file; no AWS needed.
    Validate { file: PathBuf },
    /// What pushing FILE would change, account by account, against the live object.
    Diff {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Validate FILE and write it as the new live version.
    Push {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The stored versions, newest first.
    History {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make an earlier version live again (written as a new version).
    Rollback {
        version: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs one `manifold config` command and prints its report.
pub async fn run(cmd: ConfigCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Validate { file } => crate::output::print(&validate(&file)?, json),
        ConfigCommand::Diff { file, store } => {
            crate::output::print(&diff(open(&store).await?.as_ref(), &file).await?, json)
        }
        ConfigCommand::Push { file, store } => {
            crate::output::print(&push(open(&store).await?.as_ref(), &file).await?, json)
        }
        ConfigCommand::History { store } => crate::output::print(&history(open(&store).await?.as_ref()).await?, json),
        ConfigCommand::Rollback { version, store } => {
            crate::output::print(&rollback(open(&store).await?.as_ref(), &version).await?, json)
        }
    }
}

async fn open(args: &StoreArgs) -> Result<Box<dyn ConfigStore>, CliError> {
    let bucket = args.bucket.clone().ok_or_else(|| {
        CliError::Usage(
            "no configuration bucket: pass --bucket or set CONFIG_BUCKET (the stack output ConfigBucketName)".into(),
        )
    })?;
    let sdk = manifold_aws::sdk_config().await;
    Ok(Box::new(S3ConfigStore::new(aws_sdk_s3::Client::new(&sdk), bucket, &args.key)))
}

fn read(file: &PathBuf) -> Result<(String, ChannelConfig), CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| CliError::Read { path: file.display().to_string(), source })?;
    let config = ChannelConfig::parse(&file.display().to_string(), &text)?;
    Ok((text, config))
}

/// A file that validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidateReport {
    pub file: String,
    pub accounts: Vec<String>,
    pub bundles: usize,
    /// CRM accounts as `{id} ({kind})`.
    pub crms: Vec<String>,
}

impl Human for ValidateReport {
    fn human(&self) -> String {
        let crms = if self.crms.is_empty() { String::new() } else { format!("; CRM: {}", self.crms.join(", ")) };
        format!(
            "{}: valid ({} account(s): {}; {} bundle(s){crms})\n",
            self.file,
            self.accounts.len(),
            self.accounts.join(", "),
            self.bundles
        )
    }
}

/// Validates `file` as the functions would.
pub fn validate(file: &PathBuf) -> Result<ValidateReport, CliError> {
    let (_, config) = read(file)?;
    Ok(ValidateReport {
        file: file.display().to_string(),
        accounts: config.accounts.iter().map(|a| format!("{}:{}", a.channel, a.account)).collect(),
        bundles: config.bundles.len(),
        crms: config.crms.iter().map(|c| format!("{} ({})", c.id, c.kind.as_str())).collect(),
    })
}

/// How one account (or the bundles) differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One changed field: its path inside the account, before and after (JSON, `null` when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// One account's change (`bundles` for the top-level bundle list).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountChange {
    pub account: String,
    pub kind: ChangeKind,
    pub fields: Vec<FieldChange>,
}

/// The difference between the live configuration and a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    pub location: String,
    /// The live version compared against (`None`: nothing stored yet).
    pub live_version: Option<String>,
    /// Why the live object does not validate (written around `push`); changes are then shown against
    /// nothing, since no function runs it.
    pub live_invalid: Option<String>,
    pub changes: Vec<AccountChange>,
}

impl Human for DiffReport {
    fn human(&self) -> String {
        let mut out = format!(
            "{} (live version {}) -> file\n",
            self.location,
            self.live_version.as_deref().unwrap_or("none: nothing stored yet")
        );
        if let Some(reason) = &self.live_invalid {
            let _ = writeln!(out, "the live object is invalid (functions keep their previous configuration): {reason}");
        }
        if self.changes.is_empty() {
            out.push_str("no changes\n");
        }
        for c in &self.changes {
            let sign = match c.kind {
                ChangeKind::Added => "+",
                ChangeKind::Removed => "-",
                ChangeKind::Changed => "~",
            };
            let _ = writeln!(out, "{sign} {}", c.account);
            for f in &c.fields {
                let _ = writeln!(out, "    {}: {} -> {}", f.path, f.before, f.after);
            }
        }
        out
    }
}

fn keyed(config: &ChannelConfig) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = config
        .accounts
        .iter()
        .map(|a| (format!("{}:{}", a.channel, a.account), serde_json::to_value(a).unwrap_or_default()))
        .collect();
    if !config.bundles.is_empty() {
        out.insert("bundles".to_owned(), serde_json::to_value(&config.bundles).unwrap_or_default());
    }
    out
}

/// Field-level differences between two JSON values; arrays compare whole.
fn field_changes(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                field_changes(&sub, b.get(k).unwrap_or(&Value::Null), a.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if before != after => {
            out.push(FieldChange { path: path.to_owned(), before: before.clone(), after: after.clone() });
        }
        _ => {}
    }
}

/// The account-by-account difference from `live` (if any) to `next`.
pub fn compare(live: Option<&ChannelConfig>, next: &ChannelConfig) -> Vec<AccountChange> {
    let before = live.map(keyed).unwrap_or_default();
    let after = keyed(next);
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes = Vec::new();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        let kind = match (b, a) {
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        let mut fields = Vec::new();
        field_changes("", b.unwrap_or(&Value::Null), a.unwrap_or(&Value::Null), &mut fields);
        if fields.is_empty() {
            continue;
        }
        if kind != ChangeKind::Changed {
            fields.clear();
        }
        changes.push(AccountChange { account: name.clone(), kind, fields });
    }
    changes
}

/// The live object as the functions see it.
#[derive(Debug, Default)]
struct Live {
    version: Option<String>,
    config: Option<ChannelConfig>,
    invalid: Option<String>,
}

/// Reads and validates the live object (all `None` when nothing is stored yet).
async fn live(store: &dyn ConfigStore) -> Result<Live, CliError> {
    match store.fetch(None).await {
        Ok(Fetched::Object(o)) => match ChannelConfig::parse(&store.location(), &o.text) {
            Ok(config) => Ok(Live { version: Some(o.version_id), config: Some(config), invalid: None }),
            Err(e) => Ok(Live { version: Some(o.version_id), config: None, invalid: Some(e.to_string()) }),
        },
        Ok(Fetched::NotModified) => Ok(Live::default()),
        Err(e) if is_missing(&e) => Ok(Live::default()),
        Err(e) => Err(e.into()),
    }
}

fn is_missing(e: &manifold_aws::StoreError) -> bool {
    let text = format!("{e:?}");
    text.contains("NoSuchKey") || text.contains("has no version")
}

/// What pushing `file` would change.
pub async fn diff(store: &dyn ConfigStore, file: &PathBuf) -> Result<DiffReport, CliError> {
    let (_, next) = read(file)?;
    let live = live(store).await?;
    Ok(DiffReport {
        location: store.location(),
        changes: compare(live.config.as_ref(), &next),
        live_version: live.version,
        live_invalid: live.invalid,
    })
}

/// A written version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushReport {
    pub location: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub previous_invalid: Option<String>,
    pub changes: Vec<AccountChange>,
}

impl Human for PushReport {
    fn human(&self) -> String {
        let diff = DiffReport {
            location: self.location.clone(),
            live_version: self.previous_version.clone(),
            live_invalid: self.previous_invalid.clone(),
            changes: self.changes.clone(),
        };
        format!(
            "{}pushed version {}: live in every function within its refresh interval (60 s by default)\n",
            diff.human(),
            self.version
        )
    }
}

/// Validates `file`, then writes it as the new live version.
pub async fn push(store: &dyn ConfigStore, file: &PathBuf) -> Result<PushReport, CliError> {
    let (text, next) = read(file)?;
    write(store, &text, &next).await
}

async fn write(store: &dyn ConfigStore, text: &str, next: &ChannelConfig) -> Result<PushReport, CliError> {
    let live = live(store).await?;
    let changes = compare(live.config.as_ref(), next);
    let version = store.put(text).await?;
    Ok(PushReport {
        location: store.location(),
        version,
        previous_version: live.version,
        previous_invalid: live.invalid,
        changes,
    })
}

/// The stored versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryReport {
    pub location: String,
    pub versions: Vec<ConfigVersion>,
}

impl Human for HistoryReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["VERSION", "WRITTEN", "BYTES", "LIVE"]).numeric(&[2]);
        for v in &self.versions {
            t.row(vec![
                v.version_id.clone(),
                v.last_modified.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
                v.size.to_string(),
                if v.is_latest { "live".to_owned() } else { String::new() },
            ]);
        }
        format!("{}\n{}", self.location, t.render())
    }
}

pub async fn history(store: &dyn ConfigStore) -> Result<HistoryReport, CliError> {
    Ok(HistoryReport { location: store.location(), versions: store.versions().await? })
}

/// Restores `version` as a new live version, after validating it with today's rules.
pub async fn rollback(store: &dyn ConfigStore, version: &str) -> Result<PushReport, CliError> {
    let text = store.version(version).await?;
    let config = ChannelConfig::parse(&format!("{} version {version}", store.location()), &text)?;
    write(store, &text, &config).await
}

#[cfg(test)]
mod tests {
    use manifold_aws::config_store::MemoryConfigStore;

    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/channels.example.toml");

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("manifold-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("channels.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn push_refuses_an_invalid_file_with_its_path_and_reason_and_writes_nothing() {
        let store = MemoryConfigStore::default();
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let bad = temp_file("bad", &text.replacen("percent = 100", "percent = 150", 1));
        let err = push(&store, &bad).await.unwrap_err().to_string();
        assert!(err.contains("at `accounts[") && err.contains("stock.percent`") && err.contains("150"), "{err}");
        assert!(store.versions().await.unwrap().is_empty(), "nothing was written");
    }

    #[tokio::test]
    async fn diff_push_history_and_rollback_account_by_account() {
        let store = MemoryConfigStore::default();
        let example = PathBuf::from(EXAMPLE);
        let first = push(&store, &example).await.unwrap();
        assert_eq!(first.previous_version, None);
        assert!(first.changes.iter().all(|c| c.kind == ChangeKind::Added) && !first.changes.is_empty());

        // Given an edit of one account's buffer and the removal of another.
        let mut config = ChannelConfig::parse("x", &std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
        let removed = config.accounts.pop().unwrap();
        config.accounts[0].stock.buffer += 3;
        let edited = temp_file("edited", &toml::to_string(&config).unwrap());
        let report = diff(&store, &edited).await.unwrap();
        let first_account = format!("{}:{}", config.accounts[0].channel, config.accounts[0].account);
        let changed = report.changes.iter().find(|c| c.account == first_account).expect("the edited account");
        assert_eq!(changed.kind, ChangeKind::Changed);
        assert_eq!(changed.fields.len(), 1);
        assert_eq!(changed.fields[0].path, "stock.buffer");
        assert!(
            report
                .changes
                .iter()
                .any(|c| c.kind == ChangeKind::Removed
                    && c.account == format!("{}:{}", removed.channel, removed.account))
        );
        assert_eq!(report.live_version.as_deref(), Some("v1"));

        push(&store, &edited).await.unwrap();
        let back = rollback(&store, "v1").await.unwrap();
        assert_eq!(back.version, "v3");
        let history = history(&store).await.unwrap();
        assert_eq!(history.versions.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(), ["v3", "v2", "v1"]);
        assert!(diff(&store, &example).await.unwrap().changes.is_empty(), "v1 is live again");
    }
}
