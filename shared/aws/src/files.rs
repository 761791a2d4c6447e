//! Files written once, for importers that read a folder: the CSV drop's files and manifests go to S3
//! with `If-None-Match: *`, so a file a legacy importer may be reading is never replaced, and a run
//! retried after a crash finds its file already there and goes on.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::{Client, error::SdkError, primitives::ByteStream};

use crate::StoreError;

/// Where dropped files go.
#[async_trait]
pub trait FileDrop: Send + Sync {
    /// Writes `key` unless it exists. `false`: it existed, and is left as it was.
    async fn put_once(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<bool, StoreError>;
}

/// The export bucket.
#[derive(Debug, Clone)]
pub struct S3Drop {
    client: Client,
    bucket: String,
}

impl S3Drop {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl FileDrop for S3Drop {
    async fn put_once(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<bool, StoreError> {
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            // 412: the key exists. (409, a concurrent conditional write, is retried as a service error.)
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 412 => Ok(false),
            Err(e) => Err(StoreError::service("s3", "PutObject", e)),
        }
    }
}

/// In-memory drop for unit tests.
#[derive(Debug, Default)]
pub struct MemoryDrop {
    files: std::sync::Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryDrop {
    /// Every file written, by key.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl FileDrop for MemoryDrop {
    async fn put_once(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<bool, StoreError> {
        let mut files = self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if files.contains_key(key) {
            return Ok(false);
        }
        files.insert(key.to_owned(), body);
        Ok(true)
    }
}
