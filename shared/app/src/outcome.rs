//! Every failure, classified once: what the webhook answers, and whether a queue consumer retries it
//! (transient: SQS redelivers with backoff, then the DLQ) or quarantines it (permanent: retrying the
//! same input cannot help).

use manifold_aws::StoreError;

/// A failure of any service, with its class.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The input can never be processed as is: quarantine it with this reason.
    #[error("permanent: {reason}")]
    Permanent { stage: &'static str, reason: String },
    /// A dependency failed: retry later.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    pub fn permanent(stage: &'static str, reason: impl Into<String>) -> Self {
        Self::Permanent { stage, reason: reason.into() }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }

    /// The error class used in logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Permanent { .. } => "permanent",
            Failure::Transient(_) => "transient",
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() { Failure::Transient(Box::new(e)) } else { Failure::permanent("store", e.to_string()) }
    }
}

impl From<manifold_connectors::ConnectorError> for Failure {
    /// A channel's or CRM's answer: retried when its class says so, else permanent.
    fn from(e: manifold_connectors::ConnectorError) -> Self {
        if e.is_retryable() { Failure::Transient(Box::new(e)) } else { Failure::permanent("connector", e.to_string()) }
    }
}
