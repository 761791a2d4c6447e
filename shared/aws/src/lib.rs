//! AWS adapters behind narrow ports: the canonical record store and idempotency keys (DynamoDB), the
//! quarantine, queues (SQS), the event bus (EventBridge), secrets (Secrets Manager) and the channel configuration
//! object (S3).
//!
//! Services in `manifold-app` depend on the traits; production wires the SDK implementations here, and
//! unit tests use the in-memory fakes next to them. The integration tests run the SDK implementations
//! against moto: the same code path as production, only `AWS_ENDPOINT_URL` differs.

pub mod batch;
mod book;
pub mod breaker;
pub mod changes;
pub mod config_store;
pub mod content;
pub mod customers;
pub mod env;
pub mod error;
pub mod events;
pub mod files;
pub mod health;
pub mod idempotency;
pub mod prices;
pub mod quarantine;
pub mod queue;
pub mod records;
pub mod secrets;
pub mod state;
pub mod usage;
pub mod watch;

pub use env::AwsEnv;
pub use error::StoreError;

/// Loads the SDK configuration once per cold start. `AWS_ENDPOINT_URL` (moto locally) is honoured by
/// the SDK itself.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// Current time as epoch seconds, for TTL attributes.
pub(crate) fn epoch_seconds(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}
