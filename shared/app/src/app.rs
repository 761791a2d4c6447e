//! The application context: configuration and every port, built once per cold start and shared by
//! all invocations of a warm Lambda environment.

use std::{collections::HashMap, sync::Arc, time::Duration as StdDuration};

use chrono::Duration;
use manifold_aws::{
    AwsEnv,
    changes::{ChangeIndex, DynamoChangeIndex},
    events::{EventBridgeBus, EventPublisher},
    idempotency::{DynamoIdempotency, IdempotencyStore},
    quarantine::{DynamoQuarantine, Quarantine, Retention},
    queue::{MessageQueue, SqsQueue},
    records::{DynamoRecords, RecordStore},
    secrets::{CachedSecrets, SecretSource, SecretsManager},
    state::StateStore,
    watch::{DynamoWatch, WatchStore},
};
use manifold_connectors::{
    ChannelConnector, ConnectorError, Credentials,
    reauth::{Reauthorizing, Rebuild},
    token::SecretWriter,
    verify::{HttpPublicKeySource, Verifier},
};
use manifold_domain::{
    Channel,
    config::{AccountConfig, ChannelConfig},
};
use manifold_ledger::{
    DynamoLedger, DynamoStore,
    fanout::{PushGate, SqsPushQueue},
};
use tokio::sync::RwLock;

use crate::port::{Port, Registry};

use crate::{
    config::{ConfigSource, LiveConfig},
    outcome::Failure,
    sync::{
        catalog::{Catalog, LedgerCatalog},
        store::{DynamoSyncStore, SyncStore},
    },
};

/// Tunables with production defaults, overridable from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Webhook bodies above this are refused with 413 (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// How long a delivery claim may stay in progress before another attempt may take it over.
    pub claim_lease: Duration,
    /// How long a completed delivery is remembered (longer than any channel's retry window).
    pub claim_retention: Duration,
    /// Push consumers: breaker policy, retry backoff, `MAX_RECEIVE_COUNT`.
    pub push: crate::push::PushSettings,
    /// Serialises ledger transactions in this process, for moto only: moto's transactions are not
    /// isolated under concurrency (see `DynamoStore::emulator_safe`). `MANIFOLD_LOCAL_EMULATOR=1`.
    pub emulator_safe_ledger: bool,
    /// How long quarantined payloads are kept before the table's TTL removes them
    /// (`QUARANTINE_RETENTION_DAYS`, default 30).
    pub quarantine_retention: Retention,
    /// The queue that carries sync runs page by page (`SYNC_QUEUE_URL`; set on the functions that
    /// start or run syncs).
    pub sync_queue_url: Option<String>,
    /// Where the CSV drops write (`EXPORT_BUCKET`; set on the scheduler, which runs them).
    pub export_bucket: Option<String>,
    /// The FIFO queue of outbound webhook deliveries (`DELIVERIES_QUEUE_URL`; set on the functions that
    /// queue or send them).
    pub deliveries_queue_url: Option<String>,
    /// The queue of CRM jobs (`CRM_QUEUE_URL`; set on the functions that queue or send them).
    pub crm_queue_url: Option<String>,
    /// The customers function's queue (`CUSTOMERS_QUEUE_URL`; set on the webhook function, which
    /// hands it verified CRM updates).
    pub customers_queue_url: Option<String>,
    /// The ingest dead-letter queue (`INGEST_DLQ_URL`; set on the customers function, whose erasures
    /// delete the raw deliveries parked there that name the person).
    pub ingest_dlq_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            claim_lease: Duration::seconds(60),
            claim_retention: Duration::days(7),
            push: crate::push::PushSettings::default(),
            emulator_safe_ledger: false,
            quarantine_retention: Retention::default(),
            sync_queue_url: None,
            export_bucket: None,
            deliveries_queue_url: None,
            crm_queue_url: None,
            customers_queue_url: None,
            ingest_dlq_url: None,
        }
    }
}

impl Settings {
    pub fn from_env() -> Self {
        let mut s = Self { push: crate::push::PushSettings::from_env(), ..Self::default() };
        if let Some(n) = std::env::var("MAX_BODY_BYTES").ok().and_then(|v| v.parse().ok()) {
            s.max_body_bytes = n;
        }
        s.sync_queue_url = std::env::var("SYNC_QUEUE_URL").ok().filter(|v| !v.is_empty());
        s.export_bucket = std::env::var("EXPORT_BUCKET").ok().filter(|v| !v.is_empty());
        s.deliveries_queue_url = std::env::var("DELIVERIES_QUEUE_URL").ok().filter(|v| !v.is_empty());
        s.crm_queue_url = std::env::var("CRM_QUEUE_URL").ok().filter(|v| !v.is_empty());
        s.customers_queue_url = std::env::var("CUSTOMERS_QUEUE_URL").ok().filter(|v| !v.is_empty());
        s.ingest_dlq_url = std::env::var("INGEST_DLQ_URL").ok().filter(|v| !v.is_empty());
        s.emulator_safe_ledger = std::env::var("MANIFOLD_LOCAL_EMULATOR").is_ok_and(|v| v == "1");
        match Retention::from_lookup(|k| std::env::var(k).ok()) {
            Ok(retention) => s.quarantine_retention = retention,
            Err(e) => tracing::warn!(error = %e, "keeping the default quarantine retention"),
        }
        s
    }
}

/// A configuration or environment problem at cold start: the function cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] manifold_domain::config::ConfigError),
    #[error(transparent)]
    ConfigLoad(#[from] crate::config::ConfigLoadError),
    #[error(transparent)]
    Env(#[from] manifold_aws::env::MissingVar),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Timeout of every channel call and key lookup.
const HTTP_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// Connectors by channel and account, built on first use with the account's credentials.
type ConnectorCache = HashMap<(Channel, String), Arc<dyn ChannelConnector>>;

/// Everything a handler needs. Every client and store is a [`Port`]: built on its first use, so a
/// function's cold start pays only for the ports its handlers touch (see [`App::built_ports`]).
#[derive(Clone)]
pub struct App {
    /// The channel configuration, reloaded when its object in the ConfigBucket changes.
    pub live_config: Arc<LiveConfig>,
    pub env: AwsEnv,
    pub settings: Settings,
    /// Which ports have been built, and the factory of replacements (tests).
    pub ports: Registry,
    pub records: Port<Arc<dyn RecordStore>>,
    pub idempotency: Port<Arc<dyn IdempotencyStore>>,
    pub quarantine: Port<Arc<dyn Quarantine>>,
    pub queue: Port<Arc<dyn MessageQueue>>,
    pub bus: Port<Arc<dyn EventPublisher>>,
    pub secrets: Arc<dyn SecretSource>,
    pub verifier: Port<Verifier>,
    pub state: Port<StateStore>,
    /// Shipping deadlines (late orders, unconfirmed tracking) in the StateTable.
    pub watch: Port<Arc<dyn WatchStore>>,
    /// The change index the pull API reads (StateTable, see `crate::changes`).
    pub changes: Port<Arc<dyn ChangeIndex>>,
    /// Where the CSV drops write (the export bucket), when this function runs them (`crate::export`).
    pub files: Port<Option<Arc<dyn manifold_aws::files::FileDrop>>>,
    /// Base prices and what each account was last given (RecordsTable, see `crate::prices`).
    pub prices: Port<Arc<dyn manifold_aws::prices::PriceBook>>,
    /// Product content and what each account was last given (RecordsTable, see `crate::content`).
    pub content: Port<Arc<dyn manifold_aws::content::ContentBook>>,
    /// Customers, their identity claims and what each CRM took (RecordsTable, see `crate::customers`).
    pub customers: Port<Arc<dyn manifold_aws::customers::CustomerStore>>,
    /// The inventory ledger (LedgerTable).
    pub ledger: Port<Arc<DynamoLedger>>,
    /// Coalescing state of the availability fan-out (StateTable).
    pub push_gate: Port<PushGate>,
    /// One push queue per channel.
    pub push_queue: Port<SqsPushQueue>,
    /// What each account lists, under which ids (StateTable, see `crate::listings`).
    pub listings: Port<Arc<dyn crate::listings::ListingStore>>,
    /// Sync slots and runs (StateTable).
    pub sync_store: Port<Arc<dyn SyncStore>>,
    /// The ledger's positions, page by page, for stock runs (LedgerTable).
    pub catalog: Port<Arc<dyn Catalog>>,
    pub ddb: Port<aws_sdk_dynamodb::Client>,
    pub sqs: Port<aws_sdk_sqs::Client>,
    pub http: Port<reqwest::Client>,
    connectors: Arc<RwLock<ConnectorCache>>,
    /// CRM connectors by CRM account, built on first use (see `crate::crm`).
    pub(crate) crm_connectors: Arc<RwLock<HashMap<String, Arc<dyn manifold_connectors::crm::CrmConnector>>>>,
    /// The rules of the configuration last asked for, compiled once per configuration.
    pub(crate) rule_book: crate::rules::RuleBookCache,
    /// eBay application tokens (client credentials) for the notification key lookups, per account.
    pub(crate) ebay_key_tokens: Arc<RwLock<HashMap<String, Arc<dyn manifold_connectors::token::TokenProvider>>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("env", &self.env).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl App {
    /// Loads the configuration (the ConfigBucket object, or `MANIFOLD_CONFIG_FILE` locally) and the
    /// resource names, and builds every client. Called once per cold start.
    pub async fn from_env() -> Result<Self, StartupError> {
        let env = AwsEnv::from_env()?;
        let sdk = manifold_aws::sdk_config().await;
        let config = LiveConfig::load(ConfigSource::from_env(&sdk)?).await?;
        let secrets: Arc<dyn SecretSource> = Arc::new(CachedSecrets::new(
            SecretsManager::new(manifold_aws::usage::secrets(&sdk)),
            StdDuration::from_mins(5),
        ));
        Self::build_live(config, env, Settings::from_env(), &sdk, secrets)
    }

    /// Builds the context from parts with a configuration that never changes (the tests and the local
    /// pipeline choose their own configuration and secrets).
    pub fn build(
        config: ChannelConfig,
        env: AwsEnv,
        settings: Settings,
        sdk: &aws_config::SdkConfig,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, StartupError> {
        Self::build_live(LiveConfig::fixed(config), env, settings, sdk, secrets)
    }

    /// Builds the context from parts around a live configuration.
    pub fn build_live(
        config: LiveConfig,
        env: AwsEnv,
        settings: Settings,
        sdk: &aws_config::SdkConfig,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, StartupError> {
        let snapshot = config.snapshot();
        // Checked now, so a bad setting is an init error rather than a panic on first use.
        reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        let ports = Registry::default();
        let ddb = ports.lazy("ddb", {
            let sdk = sdk.clone();
            move || manifold_aws::usage::dynamodb(&sdk)
        });
        let sqs = ports.lazy("sqs", {
            let sdk = sdk.clone();
            move || manifold_aws::usage::sqs(&sdk)
        });
        let http = ports.lazy("http", || {
            reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().expect("the same builder succeeded at startup")
        });
        // eBay's notification keys come from its API host (the simulator locally).
        let ebay_endpoint = snapshot
            .accounts
            .iter()
            .find(|a| a.channel == Channel::Ebay)
            .map_or_else(|| "https://api.ebay.com".to_owned(), |a| a.endpoint.clone());
        let listings: Port<Arc<dyn crate::listings::ListingStore>> = ports.lazy("listings", {
            let (ddb, table) = (ddb.clone(), env.state_table.clone());
            move || -> Arc<dyn crate::listings::ListingStore> {
                Arc::new(crate::listings::DynamoListings::new(ddb.get().clone(), &table))
            }
        });
        let emulator_safe = settings.emulator_safe_ledger;
        let retention = settings.quarantine_retention;
        Ok(Self {
            live_config: Arc::new(config),
            records: ports.lazy("records", {
                let (ddb, env) = (ddb.clone(), env.clone());
                move || -> Arc<dyn RecordStore> {
                    Arc::new(
                        DynamoRecords::new(ddb.get().clone(), &env.records_table, &env.idempotency_table)
                            .emulator_safe(emulator_safe),
                    )
                }
            }),
            idempotency: ports.lazy("idempotency", {
                let (ddb, table) = (ddb.clone(), env.idempotency_table.clone());
                move || -> Arc<dyn IdempotencyStore> { Arc::new(DynamoIdempotency::new(ddb.get().clone(), &table)) }
            }),
            quarantine: ports.lazy("quarantine", {
                let (ddb, table) = (ddb.clone(), env.quarantine_table.clone());
                move || -> Arc<dyn Quarantine> {
                    Arc::new(DynamoQuarantine::new(ddb.get().clone(), &table).with_retention(retention))
                }
            }),
            queue: ports.lazy("queue", {
                let sqs = sqs.clone();
                move || -> Arc<dyn MessageQueue> { Arc::new(SqsQueue::new(sqs.get().clone())) }
            }),
            bus: ports.lazy("bus", {
                let (sdk, bus) = (sdk.clone(), env.event_bus.clone());
                move || -> Arc<dyn EventPublisher> {
                    Arc::new(EventBridgeBus::new(manifold_aws::usage::eventbridge(&sdk), &bus))
                }
            }),
            secrets,
            verifier: ports.lazy("verifier", {
                let http = http.clone();
                move || Verifier::new(Arc::new(HttpPublicKeySource::new(http.get().clone(), ebay_endpoint)))
            }),
            state: ports.lazy("state", {
                let (ddb, table) = (ddb.clone(), env.state_table.clone());
                move || StateStore::new(ddb.get().clone(), &table)
            }),
            watch: ports.lazy("watch", {
                let (ddb, table) = (ddb.clone(), env.state_table.clone());
                move || -> Arc<dyn WatchStore> { Arc::new(DynamoWatch::new(ddb.get().clone(), &table)) }
            }),
            files: ports.lazy("files", {
                let (sdk, bucket) = (sdk.clone(), settings.export_bucket.clone());
                move || -> Option<Arc<dyn manifold_aws::files::FileDrop>> {
                    let bucket = bucket.clone()?;
                    Some(Arc::new(manifold_aws::files::S3Drop::new(manifold_aws::usage::s3(&sdk), bucket)))
                }
            }),
            changes: ports.lazy("changes", {
                let (ddb, table) = (ddb.clone(), env.state_table.clone());
                move || -> Arc<dyn ChangeIndex> { Arc::new(DynamoChangeIndex::new(ddb.get().clone(), &table)) }
            }),
            prices: ports.lazy("prices", {
                let (ddb, table) = (ddb.clone(), env.records_table.clone());
                move || -> Arc<dyn manifold_aws::prices::PriceBook> {
                    Arc::new(manifold_aws::prices::DynamoPriceBook::new(ddb.get().clone(), &table))
                }
            }),
            content: ports.lazy("content", {
                let (ddb, table) = (ddb.clone(), env.records_table.clone());
                move || -> Arc<dyn manifold_aws::content::ContentBook> {
                    Arc::new(manifold_aws::content::DynamoContentBook::new(ddb.get().clone(), &table))
                }
            }),
            customers: ports.lazy("customers", {
                let (ddb, table) = (ddb.clone(), env.records_table.clone());
                move || -> Arc<dyn manifold_aws::customers::CustomerStore> {
                    let store = manifold_aws::customers::DynamoCustomers::new(ddb.get().clone(), &table);
                    Arc::new(store.emulator_safe(emulator_safe))
                }
            }),
            ledger: ports.lazy("ledger", {
                let (ddb, table) = (ddb.clone(), env.ledger_table.clone());
                // Hot SKUs as configured when the function started (shard counts only grow, and the
                // sum includes the whole position, so a process on an older count never oversells).
                let shards = manifold_ledger::shard::Shards::from_config(&snapshot);
                move || {
                    let store = DynamoStore::new(ddb.get().clone(), &table);
                    Arc::new(DynamoLedger::sharded(if emulator_safe { store.emulator_safe() } else { store }, shards))
                }
            }),
            push_gate: ports.lazy("push_gate", {
                let (ddb, table, listings) = (ddb.clone(), env.state_table.clone(), listings.clone());
                move || {
                    let filter = crate::listings::ListingFilter::new(listings);
                    PushGate::new(ddb.get().clone(), &table).with_listings(Arc::new(filter))
                }
            }),
            push_queue: ports.lazy("push_queue", {
                let (sqs, urls) = (sqs.clone(), env.push_queues.clone());
                move || SqsPushQueue::new(sqs.get().clone(), urls)
            }),
            listings,
            sync_store: ports.lazy("sync_store", {
                let (ddb, table) = (ddb.clone(), env.state_table.clone());
                move || -> Arc<dyn SyncStore> { Arc::new(DynamoSyncStore::new(ddb.get().clone(), &table)) }
            }),
            catalog: ports.lazy("catalog", {
                let (ddb, table) = (ddb.clone(), env.ledger_table.clone());
                move || -> Arc<dyn Catalog> { Arc::new(LedgerCatalog::new(ddb.get().clone(), &table)) }
            }),
            ddb,
            sqs,
            http,
            env,
            settings,
            ports,
            connectors: Arc::default(),
            crm_connectors: Arc::default(),
            rule_book: crate::rules::RuleBookCache::default(),
            ebay_key_tokens: Arc::default(),
        })
    }

    /// The ports built so far (a cold start builds none; each handler builds the ones it uses).
    pub fn built_ports(&self) -> std::collections::BTreeSet<&'static str> {
        self.ports.built()
    }

    /// The configuration now: re-checks the stored object when its refresh interval has passed.
    pub async fn config(&self) -> Arc<ChannelConfig> {
        self.live_config.current().await
    }

    /// The account's configuration, or a permanent failure naming it.
    pub async fn account(&self, channel: Channel, account: &str) -> Result<AccountConfig, Failure> {
        self.config()
            .await
            .account(channel, account)
            .cloned()
            .ok_or_else(|| Failure::permanent("config", format!("unknown {channel} account {account:?}")))
    }

    /// The account's connector, built once with its credentials. When the channel refuses them, it is
    /// rebuilt once from a fresh read of the secret and the call retried before it counts as an auth
    /// failure; refresh tokens the channel rotates are written back to the secret.
    pub async fn connector(&self, account: &AccountConfig) -> Result<Arc<dyn ChannelConnector>, Failure> {
        let key = (account.channel, account.account.to_string());
        if let Some(c) = self.connectors.read().await.get(&key) {
            return Ok(c.clone());
        }
        let creds = self.credentials(&account.secret).await?;
        let builder =
            AccountConnector { account: account.clone(), secrets: self.secrets.clone(), http: self.http.get().clone() };
        let connector: Arc<dyn ChannelConnector> = Arc::new(Reauthorizing::new(builder.build(creds), builder));
        self.connectors.write().await.insert(key, connector.clone());
        Ok(connector)
    }
}

/// Builds one account's connector, and rebuilds it from a fresh read of its secret.
struct AccountConnector {
    account: AccountConfig,
    secrets: Arc<dyn SecretSource>,
    http: reqwest::Client,
}

impl std::fmt::Debug for AccountConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConnector").field("secret", &self.account.secret).finish_non_exhaustive()
    }
}

impl AccountConnector {
    fn build(&self, creds: Credentials) -> Arc<dyn ChannelConnector> {
        let writer: Arc<dyn SecretWriter> = self.secrets.clone();
        manifold_connectors::build_writing_back(&self.account, creds, self.http.clone(), writer)
    }
}

#[async_trait::async_trait]
impl Rebuild for AccountConnector {
    async fn rebuild(&self) -> Result<Arc<dyn ChannelConnector>, ConnectorError> {
        let name = &self.account.secret;
        let raw = self.secrets.reload(name).await.map_err(|e| {
            let what = format!("cannot re-read secret {name}");
            if e.is_retryable() { ConnectorError::transient(what) } else { ConnectorError::permanent(what) }
                .with_source(e)
        })?;
        let creds = Credentials::from_secret_string(&raw).map_err(|e| {
            ConnectorError::permanent(format!("secret {name} is not a JSON object of strings")).with_source(e)
        })?;
        Ok(self.build(creds))
    }
}
