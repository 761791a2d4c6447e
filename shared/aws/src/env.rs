//! Resource names from the environment, read once per cold start. The template sets exactly these
//! variables on every function, and `infra/local/stack.py` writes the same names to `.local/stack.env`,
//! so local runs and Lambda resolve resources the same way.

use std::collections::BTreeMap;

use manifold_domain::Channel;

/// A required variable is missing or empty.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set (the template sets it; locally, source .local/stack.env)")]
pub struct MissingVar(pub String);

/// Every AWS resource a function may use.
#[derive(Debug, Clone)]
pub struct AwsEnv {
    pub records_table: String,
    pub idempotency_table: String,
    pub ledger_table: String,
    pub state_table: String,
    pub quarantine_table: String,
    pub event_bus: String,
    pub ingest_queue_url: String,
    /// Push queue URL per channel (`PUSH_QUEUE_<CHANNEL>`); channels without one are not pushed to.
    pub push_queues: BTreeMap<Channel, String>,
}

impl AwsEnv {
    /// Reads the variables through `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, MissingVar> {
        let need = |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| MissingVar(k.to_owned()));
        let push_queues = Channel::ALL
            .iter()
            .filter_map(|c| {
                get(&format!("PUSH_QUEUE_{}", c.as_str().to_uppercase())).filter(|v| !v.is_empty()).map(|u| (*c, u))
            })
            .collect();
        Ok(Self {
            records_table: need("RECORDS_TABLE")?,
            idempotency_table: need("IDEMPOTENCY_TABLE")?,
            ledger_table: need("LEDGER_TABLE")?,
            state_table: need("STATE_TABLE")?,
            quarantine_table: need("QUARANTINE_TABLE")?,
            event_bus: need("EVENT_BUS_NAME")?,
            ingest_queue_url: need("INGEST_QUEUE_URL")?,
            push_queues,
        })
    }

    pub fn from_env() -> Result<Self, MissingVar> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}
