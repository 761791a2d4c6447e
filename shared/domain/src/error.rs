//! Errors raised while building or validating canonical values.
//!
//! These are always *permanent*: retrying the same input gives the same error, so callers route the
//! payload to quarantine rather than to a retry queue.

/// A value that cannot become part of a canonical record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown channel {0:?} (expected one of: {channels})", channels = crate::Channel::NAMES.join(", "))]
    UnknownChannel(String),
    #[error("unknown order status {0:?}")]
    UnknownStatus(String),
    #[error("invalid currency code {0:?}: expected three upper-case ISO 4217 letters")]
    InvalidCurrency(String),
    #[error("invalid amount {value:?}: {reason}")]
    InvalidAmount { value: String, reason: String },
    #[error("invalid country code {0:?}: expected ISO 3166-1 alpha-2")]
    InvalidCountry(String),
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId { kind: &'static str, value: String, reason: &'static str },
}
