//! The one error a normalizer raises: which field of the channel document is wrong, and how.
//!
//! Normalization is a pure function of its input, so every error is permanent: retrying the same
//! document gives the same error. Callers quarantine the payload instead of retrying it.

use manifold_domain::DomainError;

/// A channel document that cannot become a canonical record.
///
/// `path` names the field in the document as JSON-path-like text (`line_items[2].price`, empty for
/// the document itself), so whoever reads the quarantine knows where to look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct NormalizeError {
    pub path: String,
    pub message: String,
}

impl NormalizeError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// Always false: the same document always fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn domain(path: impl Into<String>, err: &DomainError) -> Self {
        Self::new(path, err.to_string())
    }
}
