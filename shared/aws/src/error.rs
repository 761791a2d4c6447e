//! Storage errors that know whether retrying can help.

/// A failed call to an AWS service. Transient unless the request itself was wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The service could not be reached or answered with a server-side or throttling error: retry.
    #[error("{service} {operation} failed: {source}")]
    Service {
        service: &'static str,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored item could not be read back into its type: a bug or a schema drift, not retryable.
    #[error("stored item {key} is not a valid {what}: {source}")]
    Corrupt {
        key: String,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something we were asked to store cannot be stored (too large, not serializable).
    #[error("cannot store {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl StoreError {
    pub fn service<E: std::error::Error + Send + Sync + 'static>(
        service: &'static str,
        operation: &'static str,
        e: E,
    ) -> Self {
        Self::Service { service, operation, source: Box::new(e) }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Service { .. })
    }
}
