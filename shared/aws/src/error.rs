//! Storage errors that know whether retrying can help, and the one classifier of AWS SDK errors every
//! adapter (records, ledger, push gate, queues, bus) uses to decide it.
//!
//! Throttling, server faults, timeouts and a cancelled transaction whose reasons are throttling or a
//! concurrent transaction are retryable; a failed condition is a conflict the caller handles (re-read
//! and decide again); a request the service refuses as malformed (`ValidationException`, a missing
//! resource, access denied) is permanent: retrying the same request can never succeed.

use std::any::Any;

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
};

/// What retrying an AWS call that failed this way can achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorClass {
    /// The same call may succeed later (throttled, unavailable, timed out, lost a transaction race).
    Retryable,
    /// A condition of the request no longer holds: the caller re-reads and decides again.
    Conflict,
    /// The request itself is wrong (or not allowed): it never succeeds as is.
    Permanent,
}

/// Error codes (top-level or transaction cancellation reasons) worth retrying, across services.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottlingError",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionConflict",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalServerErrorException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSThrottlingException",
];

const CONFLICT_CODES: &[&str] = &["ConditionalCheckFailedException", "ConditionalCheckFailed"];

/// Classifies a service error code. `None` (no answer from the service: timeout, connection) and
/// unknown codes are retryable, so a new throttling code never loses a message; codes naming a
/// malformed or forbidden request are permanent.
pub fn classify_code(code: Option<&str>) -> AwsErrorClass {
    let Some(code) = code else { return AwsErrorClass::Retryable };
    let code = code.rsplit('.').next().unwrap_or(code); // `AWS.SimpleQueueService.NonExistentQueue`
    if RETRYABLE_CODES.contains(&code) {
        AwsErrorClass::Retryable
    } else if CONFLICT_CODES.contains(&code) {
        AwsErrorClass::Conflict
    } else if code.contains("Validation")
        || code.contains("NotFound")
        || code.contains("NonExistent")
        || code.contains("AccessDenied")
        || code.contains("Unauthorized")
        || code.contains("InvalidParameter")
        || code.contains("SerializationException")
        || code.contains("MissingParameter")
        || code == "ItemCollectionSizeLimitExceeded"
        || code == "InvalidAddress"
    {
        AwsErrorClass::Permanent
    } else {
        AwsErrorClass::Retryable
    }
}

/// Classifies a cancelled transaction by its per-item reasons (`None` marks items that did not
/// fail): any failed condition is a conflict for the caller; otherwise any retryable reason
/// (`ThrottlingError`, `TransactionConflict`...) makes it retryable; only permanent reasons
/// (`ValidationError`...) make it permanent. No reason at all: retryable.
pub fn classify_cancellation<'a>(reasons: impl IntoIterator<Item = Option<&'a str>>) -> AwsErrorClass {
    let codes: Vec<&str> = reasons.into_iter().flatten().filter(|c| *c != "None").collect();
    if codes.iter().any(|c| CONFLICT_CODES.contains(c)) {
        AwsErrorClass::Conflict
    } else if codes.is_empty() || codes.iter().any(|c| classify_code(Some(c)) == AwsErrorClass::Retryable) {
        AwsErrorClass::Retryable
    } else {
        AwsErrorClass::Permanent
    }
}

/// The reasons listed in a `TransactionCanceledException` message
/// (`... specific reasons [ThrottlingError, None]`), for when the typed error is not at hand.
fn reasons_in_message(message: &str) -> Vec<&str> {
    let Some(start) = message.rfind('[') else { return Vec::new() };
    let end = message[start..].find(']').map_or(message.len(), |e| start + e);
    message[start + 1..end].split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// Classifies any operation error (typed reasons when it is a DynamoDB transaction cancellation).
pub fn classify_error<E: ProvideErrorMetadata + 'static>(err: &E) -> AwsErrorClass {
    if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
        (err as &dyn Any).downcast_ref::<TransactWriteItemsError>()
    {
        return classify_cancellation(c.cancellation_reasons().iter().map(|r| r.code()));
    }
    match err.code() {
        Some("TransactionCanceledException") => {
            classify_cancellation(reasons_in_message(err.message().unwrap_or_default()).into_iter().map(Some))
        }
        code => classify_code(code),
    }
}

/// Classifies an SDK error: no service answer (timeout, dispatch, response) is retryable, a request
/// that could not even be built is permanent, a service answer by its code.
pub fn classify<E: ProvideErrorMetadata + 'static, R>(err: &SdkError<E, R>) -> AwsErrorClass {
    match err {
        SdkError::ServiceError(e) => classify_error(e.err()),
        SdkError::ConstructionFailure(_) => AwsErrorClass::Permanent,
        _ => AwsErrorClass::Retryable,
    }
}

/// A failed call to an AWS service.
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
    /// The service refused the request as malformed or forbidden: retrying it cannot help.
    #[error("{service} {operation} refused the request: {source}")]
    Refused {
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
    /// An SDK failure, classified once by [`classify_error`] (an unhandled conflict is retryable: the
    /// retry re-reads).
    pub fn service<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
        service: &'static str,
        operation: &'static str,
        e: E,
    ) -> Self {
        match classify_error(&e) {
            AwsErrorClass::Permanent => Self::Refused { service, operation, source: Box::new(e) },
            AwsErrorClass::Retryable | AwsErrorClass::Conflict => {
                Self::Service { service, operation, source: Box::new(e) }
            }
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Service { .. })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::{CancellationReason, error::TransactionCanceledException};

    use super::*;

    fn cancelled(reasons: &[&str]) -> TransactWriteItemsError {
        let mut e = TransactionCanceledException::builder().message("Transaction cancelled");
        for r in reasons {
            e = e.cancellation_reasons(CancellationReason::builder().code(*r).build());
        }
        TransactWriteItemsError::TransactionCanceledException(e.build())
    }

    #[test]
    fn a_transaction_cancelled_by_throttling_or_a_race_is_retried_a_failed_condition_is_the_callers() {
        assert_eq!(classify_error(&cancelled(&["ThrottlingError", "None"])), AwsErrorClass::Retryable);
        assert_eq!(classify_error(&cancelled(&["None", "TransactionConflict"])), AwsErrorClass::Retryable);
        assert_eq!(classify_error(&cancelled(&["ConditionalCheckFailed", "None"])), AwsErrorClass::Conflict);
        assert_eq!(classify_error(&cancelled(&["ValidationError"])), AwsErrorClass::Permanent);
        assert_eq!(classify_error(&cancelled(&[])), AwsErrorClass::Retryable);
    }

    #[test]
    fn codes_are_classified_once_for_every_service() {
        for code in ["ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError", "SlowDown"]
        {
            assert_eq!(classify_code(Some(code)), AwsErrorClass::Retryable, "{code}");
        }
        for code in ["ValidationException", "ResourceNotFoundException", "AccessDeniedException"] {
            assert_eq!(classify_code(Some(code)), AwsErrorClass::Permanent, "{code}");
        }
        assert_eq!(classify_code(Some("AWS.SimpleQueueService.NonExistentQueue")), AwsErrorClass::Permanent);
        assert_eq!(classify_code(Some("ConditionalCheckFailedException")), AwsErrorClass::Conflict);
        assert_eq!(classify_code(None), AwsErrorClass::Retryable, "no answer: timeout or connection");
        assert_eq!(classify_code(Some("SomethingNew")), AwsErrorClass::Retryable, "unknown: never lose it");
    }

    #[test]
    fn reasons_are_read_from_the_message_when_the_typed_error_is_not_at_hand() {
        let msg =
            "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError, None]";
        assert_eq!(reasons_in_message(msg), vec!["ThrottlingError", "None"]);
        assert_eq!(classify_cancellation(reasons_in_message(msg).into_iter().map(Some)), AwsErrorClass::Retryable);
    }

    #[test]
    fn store_errors_carry_the_class() {
        let validation = aws_sdk_dynamodb::operation::put_item::PutItemError::generic(
            aws_sdk_dynamodb::error::ErrorMetadata::builder().code("ValidationException").build(),
        );
        assert!(!StoreError::service("dynamodb", "PutItem", validation).is_retryable());
        assert!(StoreError::service("dynamodb", "TransactWriteItems", cancelled(&["ThrottlingError"])).is_retryable());
    }
}
