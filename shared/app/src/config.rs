//! The channel configuration a warm function holds, and how it stays current without a deploy.
//!
//! A deployed function loads `s3://CONFIG_BUCKET/CONFIG_KEY` at cold start (it cannot run without a valid
//! one) and then re-checks it at most every `CONFIG_REFRESH_SECONDS` (default 60) with a conditional GET on
//! the ETag it holds, so an edit is live within a minute and an unchanged object costs one 304. A stored
//! object that fails validation never replaces the valid configuration the function holds: it is logged
//! with the file, path and reason, and counted (`ConfigRejected`, alarmed in template.yaml). A failed check
//! (S3 unreachable) keeps the current configuration and tries again at the next interval.
//!
//! `MANIFOLD_CONFIG_FILE` overrides the bucket (local runs and tests): the file is read once.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use manifold_aws::config_store::{ConfigStore, Fetched, S3ConfigStore};
use manifold_domain::config::{ChannelConfig, ConfigError};
use manifold_telemetry::metrics::MetricSet;
use tokio::{sync::Mutex, time::Instant};

/// Default interval between two checks of the stored configuration.
pub const DEFAULT_REFRESH: Duration = Duration::from_mins(1);

/// The configuration could not be loaded at cold start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("cannot read the configuration from {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: manifold_aws::StoreError,
    },
    #[error(
        "no configuration source: set CONFIG_BUCKET (and CONFIG_KEY) as the template does, or MANIFOLD_CONFIG_FILE locally"
    )]
    NoSource,
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A local file, read once (`MANIFOLD_CONFIG_FILE`).
    File(PathBuf),
    /// The configuration object, re-checked every `refresh`.
    Store { store: Arc<dyn ConfigStore>, refresh: Duration },
}

impl ConfigSource {
    /// `MANIFOLD_CONFIG_FILE` if set, else `CONFIG_BUCKET`/`CONFIG_KEY`/`CONFIG_REFRESH_SECONDS`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigLoadError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()), || manifold_aws::usage::s3(sdk))
    }

    fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        s3: impl FnOnce() -> aws_sdk_s3::Client,
    ) -> Result<Self, ConfigLoadError> {
        if let Some(path) = get("MANIFOLD_CONFIG_FILE") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        let bucket = get("CONFIG_BUCKET").ok_or(ConfigLoadError::NoSource)?;
        let key = get("CONFIG_KEY").unwrap_or_else(|| "channels.toml".to_owned());
        let refresh =
            get("CONFIG_REFRESH_SECONDS").and_then(|s| s.parse().ok()).map_or(DEFAULT_REFRESH, Duration::from_secs);
        Ok(Self::Store { store: Arc::new(S3ConfigStore::new(s3(), bucket, key)), refresh })
    }
}

/// What the last check saw.
#[derive(Debug)]
struct CheckState {
    /// ETag of the last object read (valid or rejected), sent as `If-None-Match`.
    etag: Option<String>,
    checked_at: Instant,
}

/// The current configuration, reloaded when its object changes.
#[derive(Debug)]
pub struct LiveConfig {
    current: RwLock<Arc<ChannelConfig>>,
    store: Option<(Arc<dyn ConfigStore>, Duration)>,
    check: Mutex<CheckState>,
}

impl LiveConfig {
    /// A configuration that never changes (tests, and the file override).
    pub fn fixed(config: ChannelConfig) -> Self {
        Self {
            current: RwLock::new(Arc::new(config)),
            store: None,
            check: Mutex::new(CheckState { etag: None, checked_at: Instant::now() }),
        }
    }

    /// Loads the configuration at cold start: an unreadable or invalid one is an init error.
    pub async fn load(source: ConfigSource) -> Result<Self, ConfigLoadError> {
        match source {
            ConfigSource::File(path) => Ok(Self::fixed(ChannelConfig::load(Path::new(&path))?)),
            ConfigSource::Store { store, refresh } => {
                let location = store.location();
                let object = match store.fetch(None).await {
                    Ok(Fetched::Object(o)) => o,
                    Ok(Fetched::NotModified) => unreachable!("an unconditional GET is never answered 304"),
                    Err(source) => return Err(ConfigLoadError::Store { location, source }),
                };
                let config = ChannelConfig::parse(&location, &object.text)?;
                tracing::info!(location, version = %object.version_id, "configuration loaded");
                Ok(Self {
                    current: RwLock::new(Arc::new(config)),
                    check: Mutex::new(CheckState { etag: Some(object.etag), checked_at: Instant::now() }),
                    store: Some((store, refresh)),
                })
            }
        }
    }

    /// The configuration held now, without checking the store.
    pub fn snapshot(&self) -> Arc<ChannelConfig> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The current configuration, re-checking the store first when the refresh interval has passed.
    /// Only one caller checks at a time; the others use what is held.
    pub async fn current(&self) -> Arc<ChannelConfig> {
        if let Some((store, refresh)) = &self.store
            && let Ok(mut check) = self.check.try_lock()
            && check.checked_at.elapsed() >= *refresh
        {
            self.recheck(store.as_ref(), &mut check).await;
        }
        self.snapshot()
    }

    /// Re-checks now, whatever the interval (used by `current` and by tests).
    pub async fn refresh_now(&self) -> Arc<ChannelConfig> {
        if let Some((store, _)) = &self.store {
            let mut check = self.check.lock().await;
            self.recheck(store.as_ref(), &mut check).await;
        }
        self.snapshot()
    }

    async fn recheck(&self, store: &dyn ConfigStore, check: &mut CheckState) {
        let location = store.location();
        match store.fetch(check.etag.as_deref()).await {
            Ok(Fetched::NotModified) => {}
            Ok(Fetched::Object(object)) => {
                // Remember the ETag either way: a rejected object is reported once, not every minute.
                check.etag = Some(object.etag.clone());
                match ChannelConfig::parse(&location, &object.text) {
                    Ok(config) => {
                        tracing::info!(location, version = %object.version_id, "configuration reloaded");
                        MetricSet::new().dim("Operation", "config").count("ConfigReloaded", 1).aggregate().emit();
                        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
                    }
                    Err(error) => {
                        tracing::error!(
                            location, version = %object.version_id, error = %error,
                            "stored configuration is invalid; keeping the configuration this function holds"
                        );
                        MetricSet::new().dim("Operation", "config").count("ConfigRejected", 1).aggregate().emit();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(location, error = %error, "cannot check the configuration; keeping the current one");
            }
        }
        check.checked_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use manifold_aws::config_store::MemoryConfigStore;

    use super::*;

    const VALID: &str = include_str!("../../../infra/channels.example.toml");

    fn store_source(store: &MemoryConfigStore, refresh: Duration) -> ConfigSource {
        ConfigSource::Store { store: Arc::new(store.clone()), refresh }
    }

    #[tokio::test]
    async fn a_valid_edit_replaces_the_configuration_and_an_invalid_one_never_does() {
        let store = MemoryConfigStore::default();
        store.put(VALID).await.unwrap();
        let live = LiveConfig::load(store_source(&store, Duration::ZERO)).await.unwrap();
        let accounts = live.snapshot().accounts.len();
        assert!(accounts > 1);

        // Given an invalid edit (a percentage above 100), the function keeps what it holds.
        let first = live.snapshot().accounts[0].account.to_string();
        let edited = VALID.replacen("percent = 100", "percent = 150", 1);
        assert!(ChannelConfig::parse("edit", &edited).is_err(), "the edit must be invalid for this step");
        store.put(&edited).await.unwrap();
        let after_invalid = live.current().await;
        assert_eq!(after_invalid.accounts.len(), accounts, "an invalid object never replaces a valid configuration");
        assert_eq!(after_invalid.accounts[0].account.to_string(), first);

        let mut smaller: ChannelConfig = ChannelConfig::parse("valid", VALID).unwrap();
        smaller.accounts.pop();
        store.put(&toml::to_string(&smaller).unwrap()).await.unwrap();
        assert_eq!(live.current().await.accounts.len(), accounts - 1, "a valid edit is taken");
    }

    #[tokio::test]
    async fn nothing_is_fetched_again_before_the_interval() {
        let store = MemoryConfigStore::default();
        store.put(VALID).await.unwrap();
        let live = LiveConfig::load(store_source(&store, Duration::from_hours(1))).await.unwrap();
        let mut smaller = ChannelConfig::parse("valid", VALID).unwrap();
        smaller.accounts.truncate(1);
        store.put(&toml::to_string(&smaller).unwrap()).await.unwrap();
        assert!(live.current().await.accounts.len() > 1, "within the interval the held configuration is used");
        assert_eq!(live.refresh_now().await.accounts.len(), 1);
    }

    #[tokio::test]
    async fn cold_start_refuses_an_invalid_or_missing_configuration() {
        let empty = MemoryConfigStore::default();
        assert!(matches!(
            LiveConfig::load(store_source(&empty, DEFAULT_REFRESH)).await,
            Err(ConfigLoadError::Store { .. })
        ));
        let bad = MemoryConfigStore::default();
        bad.put("version = 2\n").await.unwrap();
        let err = LiveConfig::load(store_source(&bad, DEFAULT_REFRESH)).await.unwrap_err().to_string();
        assert!(err.starts_with("memory://channels.toml: at `"), "{err}");
    }

    #[test]
    fn the_file_override_wins_and_the_bucket_is_required_otherwise() {
        let s3 = || aws_sdk_s3::Client::from_conf(aws_sdk_s3::Config::builder().behavior_version_latest().build());
        let source = ConfigSource::from_lookup(
            |k| (k == "MANIFOLD_CONFIG_FILE" || k == "CONFIG_BUCKET").then(|| "x".to_owned()),
            s3,
        )
        .unwrap();
        assert!(matches!(source, ConfigSource::File(_)));
        assert!(matches!(ConfigSource::from_lookup(|_| None, s3), Err(ConfigLoadError::NoSource)));
        let Ok(ConfigSource::Store { store, refresh }) =
            ConfigSource::from_lookup(|k| (k == "CONFIG_BUCKET").then(|| "b".to_owned()), s3)
        else {
            panic!("bucket source")
        };
        assert_eq!((store.location().as_str(), refresh), ("s3://b/channels.toml", DEFAULT_REFRESH));
    }
}
