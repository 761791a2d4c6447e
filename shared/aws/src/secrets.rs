//! Channel credentials from Secrets Manager, fetched once and cached with a TTL (secrets rotate, so not
//! forever), re-read past the cache when a channel refuses what was cached, and written back when a
//! channel rotates a refresh token (the connectors' `SecretWriter` port: every source is also where
//! the account's rotated credentials go). Values never reach a log: errors name the secret, never its
//! content.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
pub use manifold_connectors::token::{SecretWriteError, SecretWriter};
use tokio::{sync::RwLock, time::Instant};

use crate::StoreError;

/// The secret port: the secret string by name (and, as a [`SecretWriter`], rotated values back).
#[async_trait]
pub trait SecretSource: SecretWriter + Send + Sync {
    async fn secret(&self, name: &str) -> Result<Arc<str>, StoreError>;
    /// The secret as stored now, past any cache: after a channel refused the cached credentials.
    async fn reload(&self, name: &str) -> Result<Arc<str>, StoreError> {
        self.secret(name).await
    }
}

/// `changes` merged into the secret's JSON object.
fn merged(name: &str, current: &str, changes: &[(&str, &str)]) -> Result<String, SecretWriteError> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(current)
        .map_err(|e| SecretWriteError { secret: name.to_owned(), retryable: false, source: Box::new(e) })?;
    for (k, v) in changes {
        object.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
    }
    Ok(serde_json::Value::Object(object).to_string())
}

fn write_error(name: &str, e: StoreError) -> SecretWriteError {
    SecretWriteError { secret: name.to_owned(), retryable: e.is_retryable(), source: Box::new(e) }
}

/// Secrets Manager implementation.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn secret(&self, name: &str) -> Result<Arc<str>, StoreError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| StoreError::service("secretsmanager", "GetSecretValue", e))?;
        out.secret_string
            .map(Arc::from)
            .ok_or_else(|| StoreError::Invalid { what: "secret", reason: format!("{name} has no string value") })
    }
}

/// GetSecretValue, merge, PutSecretValue (a new version; the previous one stays as `AWSPREVIOUS`).
#[async_trait]
impl SecretWriter for SecretsManager {
    async fn write_back(&self, name: &str, changes: &[(&str, &str)]) -> Result<(), SecretWriteError> {
        let current = self.secret(name).await.map_err(|e| write_error(name, e))?;
        let value = merged(name, &current, changes)?;
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| write_error(name, StoreError::service("secretsmanager", "PutSecretValue", e)))?;
        Ok(())
    }
}

/// Caches another source's answers for `ttl`.
#[derive(Debug)]
pub struct CachedSecrets<S> {
    inner: S,
    ttl: Duration,
    cache: RwLock<HashMap<String, (Arc<str>, Instant)>>,
}

impl<S> CachedSecrets<S> {
    pub fn new(inner: S, ttl: Duration) -> Self {
        Self { inner, ttl, cache: RwLock::new(HashMap::new()) }
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn secret(&self, name: &str) -> Result<Arc<str>, StoreError> {
        if let Some((v, at)) = self.cache.read().await.get(name)
            && at.elapsed() < self.ttl
        {
            return Ok(v.clone());
        }
        self.reload(name).await
    }

    async fn reload(&self, name: &str) -> Result<Arc<str>, StoreError> {
        let v = self.inner.reload(name).await?;
        self.cache.write().await.insert(name.to_owned(), (v.clone(), Instant::now()));
        Ok(v)
    }
}

/// Writes through, and forgets the cached value so the next read sees the new version.
#[async_trait]
impl<S: SecretSource> SecretWriter for CachedSecrets<S> {
    async fn write_back(&self, name: &str, changes: &[(&str, &str)]) -> Result<(), SecretWriteError> {
        let written = self.inner.write_back(name, changes).await;
        self.cache.write().await.remove(name);
        written
    }
}

/// Fixed secrets, for unit tests and the local pipeline's simulators. Read-only: a write-back fails
/// (retryably), so a rotated token stays in the connector's memory only.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub HashMap<String, String>);

#[async_trait]
impl SecretWriter for StaticSecrets {
    async fn write_back(&self, name: &str, _changes: &[(&str, &str)]) -> Result<(), SecretWriteError> {
        Err(write_error(name, StoreError::Invalid { what: "secret", reason: "static secrets are read-only".into() }))
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn secret(&self, name: &str) -> Result<Arc<str>, StoreError> {
        self.0
            .get(name)
            .map(|s| Arc::from(s.as_str()))
            .ok_or_else(|| StoreError::Invalid { what: "secret", reason: format!("{name} is not configured") })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);
    #[async_trait]
    impl SecretWriter for Counting {
        async fn write_back(&self, _: &str, _: &[(&str, &str)]) -> Result<(), SecretWriteError> {
            Ok(())
        }
    }
    #[async_trait]
    impl SecretSource for Counting {
        async fn secret(&self, _: &str) -> Result<Arc<str>, StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::from("{}"))
        }
    }

    #[tokio::test]
    async fn cached_secrets_are_fetched_once_within_the_ttl() {
        let cached = CachedSecrets::new(Counting::default(), Duration::from_mins(5));
        for _ in 0..5 {
            cached.secret("manifold/shopify/a").await.unwrap();
        }
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 1);
        let expired = CachedSecrets::new(Counting::default(), Duration::ZERO);
        expired.secret("x").await.unwrap();
        expired.secret("x").await.unwrap();
        assert_eq!(expired.inner.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn reload_and_write_back_bypass_the_cache() {
        let cached = CachedSecrets::new(Counting::default(), Duration::from_mins(5));
        cached.secret("s").await.unwrap();
        cached.reload("s").await.unwrap();
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2, "reload reads the source");
        cached.write_back("s", &[("refresh_token", "r2")]).await.unwrap();
        cached.secret("s").await.unwrap();
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 3, "a write forgets the cached value");
    }

    #[test]
    fn changes_are_merged_into_the_secret_object() {
        let merged = merged("s", r#"{"client_id":"a","refresh_token":"r1"}"#, &[("refresh_token", "r2")]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v, serde_json::json!({ "client_id": "a", "refresh_token": "r2" }));
        assert!(!merged_is_retryable());
    }

    fn merged_is_retryable() -> bool {
        merged("s", "not json", &[]).unwrap_err().is_retryable()
    }
}
