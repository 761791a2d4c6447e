//! Where the channel configuration lives in a deployment: one object (`channels.toml`) in the versioned
//! `ConfigBucket`. Functions read it at cold start and re-check it with a conditional GET (`If-None-Match`
//! on the ETag they hold), so an edit is live within a minute and an unchanged object costs no transfer.
//! Operators write it through `manifold config push`, list its versions and restore one.
//!
//! The port is narrow (fetch, put, versions, one version) so the reloading logic in `manifold-app` and
//! the CLI are tested against [`MemoryConfigStore`] without S3; [`S3ConfigStore`] is the production
//! adapter, tested against the local emulator.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_s3::{Client, error::ProvideErrorMetadata, primitives::ByteStream};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::StoreError;

/// The answer to a (conditional) read of the configuration object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the ETag the caller holds.
    NotModified,
    /// The object's current content.
    Object(ConfigObject),
}

/// One version of the configuration object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigObject {
    pub text: String,
    pub etag: String,
    /// The S3 version id (`null` on an unversioned bucket).
    pub version_id: String,
}

/// A stored version, newest first in listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigVersion {
    pub version_id: String,
    pub last_modified: Option<DateTime<Utc>>,
    pub size: i64,
    pub is_latest: bool,
}

/// The configuration object's store.
#[async_trait]
pub trait ConfigStore: Send + Sync + std::fmt::Debug {
    /// Reads the current object; with `if_none_match`, answers [`Fetched::NotModified`] while it is unchanged.
    async fn fetch(&self, if_none_match: Option<&str>) -> Result<Fetched, StoreError>;
    /// Writes a new version and returns its version id.
    async fn put(&self, text: &str) -> Result<String, StoreError>;
    /// Every stored version, newest first.
    async fn versions(&self) -> Result<Vec<ConfigVersion>, StoreError>;
    /// The content of one version.
    async fn version(&self, version_id: &str) -> Result<String, StoreError>;
    /// Where the object lives, for messages (`s3://bucket/key`).
    fn location(&self) -> String;
}

/// S3 implementation: `s3://bucket/key`.
#[derive(Debug, Clone)]
pub struct S3ConfigStore {
    client: Client,
    bucket: String,
    key: String,
}

impl S3ConfigStore {
    pub fn new(client: Client, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into(), key: key.into() }
    }
}

fn s3_error<E>(op: &'static str, e: aws_sdk_s3::error::SdkError<E>) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::service("s3", op, e)
}

async fn body_text(body: ByteStream, location: &str) -> Result<String, StoreError> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| StoreError::Invalid { what: "configuration", reason: format!("{location}: cannot read: {e}") })?
        .into_bytes();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Invalid { what: "configuration", reason: format!("{location} is not UTF-8 text") })
}

#[async_trait]
impl ConfigStore for S3ConfigStore {
    async fn fetch(&self, if_none_match: Option<&str>) -> Result<Fetched, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_if_none_match(if_none_match.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(out) => {
                let etag = out.e_tag.clone().unwrap_or_default();
                let version_id = out.version_id.clone().unwrap_or_else(|| "null".to_owned());
                let text = body_text(out.body, &self.location()).await?;
                Ok(Fetched::Object(ConfigObject { text, etag, version_id }))
            }
            // S3 answers a matching If-None-Match with 304, which the SDK reports as an error.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => Ok(Fetched::NotModified),
            Err(e) if e.code() == Some("NotModified") => Ok(Fetched::NotModified),
            Err(e) => Err(s3_error("GetObject", e)),
        }
    }

    async fn put(&self, text: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/toml")
            .body(ByteStream::from(text.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(out.version_id.unwrap_or_else(|| "null".to_owned()))
    }

    async fn versions(&self) -> Result<Vec<ConfigVersion>, StoreError> {
        let mut found = Vec::new();
        let mut key_marker = None;
        let mut version_marker = None;
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&self.key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectVersions", e))?;
            for v in out.versions.unwrap_or_default() {
                if v.key.as_deref() != Some(self.key.as_str()) {
                    continue;
                }
                found.push(ConfigVersion {
                    version_id: v.version_id.unwrap_or_else(|| "null".to_owned()),
                    last_modified: v.last_modified.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                    size: v.size.unwrap_or_default(),
                    is_latest: v.is_latest.unwrap_or_default(),
                });
            }
            if out.is_truncated == Some(true) {
                key_marker = out.next_key_marker;
                version_marker = out.next_version_id_marker;
            } else {
                break;
            }
        }
        found.sort_by(|a, b| b.is_latest.cmp(&a.is_latest).then(b.last_modified.cmp(&a.last_modified)));
        Ok(found)
    }

    async fn version(&self, version_id: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", e))?;
        body_text(out.body, &self.location()).await
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// In-memory store for unit tests: every put is a new version; ETags are content hashes.
#[derive(Debug, Default, Clone)]
pub struct MemoryConfigStore {
    versions: Arc<Mutex<Vec<(String, String)>>>,
}

impl MemoryConfigStore {
    fn etag(text: &str) -> String {
        use sha2::Digest;
        format!("\"{}\"", hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16]))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, String)>> {
        self.versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ConfigStore for MemoryConfigStore {
    async fn fetch(&self, if_none_match: Option<&str>) -> Result<Fetched, StoreError> {
        let versions = self.lock();
        let Some((version_id, text)) = versions.last() else {
            return Err(StoreError::Invalid {
                what: "configuration",
                reason: format!("{} has no version", self.location()),
            });
        };
        let etag = Self::etag(text);
        if if_none_match == Some(etag.as_str()) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Object(ConfigObject { text: text.clone(), etag, version_id: version_id.clone() }))
    }

    async fn put(&self, text: &str) -> Result<String, StoreError> {
        let mut versions = self.lock();
        let id = format!("v{}", versions.len() + 1);
        versions.push((id.clone(), text.to_owned()));
        Ok(id)
    }

    async fn versions(&self) -> Result<Vec<ConfigVersion>, StoreError> {
        let versions = self.lock();
        let n = versions.len();
        Ok(versions
            .iter()
            .enumerate()
            .rev()
            .map(|(i, (id, text))| ConfigVersion {
                version_id: id.clone(),
                last_modified: None,
                size: i64::try_from(text.len()).unwrap_or(i64::MAX),
                is_latest: i + 1 == n,
            })
            .collect())
    }

    async fn version(&self, version_id: &str) -> Result<String, StoreError> {
        self.lock()
            .iter()
            .find(|(id, _)| id == version_id)
            .map(|(_, text)| text.clone())
            .ok_or_else(|| StoreError::Invalid { what: "configuration", reason: format!("no version {version_id}") })
    }

    fn location(&self) -> String {
        "memory://channels.toml".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_answers_not_modified_for_the_etag_it_gave() {
        let store = MemoryConfigStore::default();
        assert!(store.fetch(None).await.is_err(), "an empty store has no configuration");
        store.put("version = 1\n").await.unwrap();
        let Fetched::Object(first) = store.fetch(None).await.unwrap() else { panic!("expected the object") };
        assert_eq!(store.fetch(Some(&first.etag)).await.unwrap(), Fetched::NotModified);
        store.put("version = 1\n# edited\n").await.unwrap();
        let Fetched::Object(second) = store.fetch(Some(&first.etag)).await.unwrap() else { panic!("changed") };
        assert_eq!(second.version_id, "v2");
        let listed = store.versions().await.unwrap();
        assert_eq!(
            listed.iter().map(|v| (v.version_id.as_str(), v.is_latest)).collect::<Vec<_>>(),
            [("v2", true), ("v1", false)]
        );
        assert_eq!(store.version("v1").await.unwrap(), "version = 1\n");
    }
}
