//! The business services and the Lambda glue.
//!
//! Each service (webhook intake, ingest, ledger consumer, push consumer, scheduled syncs) is a plain
//! struct over the narrow ports of `manifold-aws` and `manifold-connectors`, so the same code runs in
//! Lambda, in the local pipeline (`manifold demo`) and in the tests. Errors are mapped to outcomes in
//! one place ([`outcome`]): an HTTP status for the webhook, a batch item failure (retry, then DLQ) or a
//! quarantine entry (permanent) for queue consumers.

pub mod app;
pub mod changes;
pub mod config;
pub mod content;
pub mod crm;
pub mod customers;
pub mod envelope;
pub mod export;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod late;
pub mod ledger;
pub mod listings;
pub mod local;
pub mod outcome;
pub mod port;
pub mod prices;
pub mod push;
pub mod rules;
pub mod scheduler;
pub mod sqs;
pub mod sync;
pub mod trace;
pub mod webhook;
pub mod webhooks_out;

pub use app::App;
pub use envelope::{IngestEnvelope, Source};
/// Counting of every AWS call (the functions wrap each invocation in `usage::invocation`).
pub use manifold_aws::usage;
