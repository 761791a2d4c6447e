//! The console's action log: who redrove or replayed what, when, and what came of it, in the
//! StateTable (`AUDIT#console` / `{time}#{uuid}`, kept [`AUDIT_TTL_DAYS`] days) and in the log.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::warn;

use super::ConsoleContext;
use crate::CliError;

const PK: &str = "AUDIT#console";
/// How long an action stays in the log.
pub const AUDIT_TTL_DAYS: i64 = 400;

/// One action taken in the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The operator's IAM identity.
    pub operator: String,
    /// `redrive`, `replay`.
    pub action: String,
    pub target: String,
    pub outcome: String,
}

impl AuditEntry {
    pub fn new(operator: &str, action: &str, target: &str, outcome: &str) -> Self {
        Self {
            at: Utc::now(),
            operator: operator.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
        }
    }
}

/// Writes `entry`. A failure is logged and returned: the action itself has happened by then, and
/// the operator must be told that it is not on the record.
pub async fn record(ctx: &ConsoleContext, entry: &AuditEntry) -> Result<(), CliError> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let written = ctx
        .aws
        .ddb
        .put_item()
        .table_name(&ctx.aws.env.state_table)
        .item("pk", s(PK))
        .item("sk", s(&format!("{}#{}", entry.at.to_rfc3339(), uuid::Uuid::new_v4())))
        .item("at", s(&entry.at.to_rfc3339()))
        .item("operator", s(&entry.operator))
        .item("action", s(&entry.action))
        .item("target", s(&entry.target))
        .item("outcome", s(&entry.outcome))
        .item("expires_at", AttributeValue::N((entry.at.timestamp() + AUDIT_TTL_DAYS * 86_400).to_string()))
        .send()
        .await;
    written.map(drop).map_err(|e| {
        warn!(error = %e, operator = %entry.operator, action = %entry.action, target = %entry.target, "could not write the console's audit log");
        CliError::dynamodb("PutItem", e)
    })
}

/// The latest `limit` actions, newest first.
pub async fn recent(ctx: &ConsoleContext, limit: i32) -> Result<Vec<AuditEntry>, CliError> {
    let out = ctx
        .aws
        .ddb
        .query()
        .table_name(&ctx.aws.env.state_table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", AttributeValue::S(PK.to_owned()))
        .scan_index_forward(false)
        .limit(limit)
        .send()
        .await
        .map_err(|e| CliError::dynamodb("Query", e))?;
    Ok(out
        .items
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            AuditEntry {
                at: DateTime::parse_from_rfc3339(&s("at")).map(|t| t.to_utc()).unwrap_or_default(),
                operator: s("operator"),
                action: s("action"),
                target: s("target"),
                outcome: s("outcome"),
            }
        })
        .collect())
}
