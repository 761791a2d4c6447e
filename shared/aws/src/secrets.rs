//! Channel credentials from Secrets Manager, fetched once and cached with a TTL (secrets rotate, so not
//! forever). Values never reach a log: errors name the secret, never its content.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use tokio::{sync::RwLock, time::Instant};

use crate::StoreError;

/// The secret port: the secret string by name.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret(&self, name: &str) -> Result<Arc<str>, StoreError>;
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
        let v = self.inner.secret(name).await?;
        self.cache.write().await.insert(name.to_owned(), (v.clone(), Instant::now()));
        Ok(v)
    }
}

/// Fixed secrets, for unit tests and the local pipeline's simulators.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub HashMap<String, String>);

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
}
