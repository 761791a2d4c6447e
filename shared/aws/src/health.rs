//! Each channel account's push health, kept where an operator can read it per account.
//!
//! The metrics (`SyncSucceeded`, `SyncFailed`, `Throttled`) go to CloudWatch per channel, which is
//! what the alarms need but not what an ops person asks: "is *this* shop's stock getting through, and
//! since when not?". So the push consumer also tallies each batch's outcomes per account, once per
//! account and batch (not per message), in the `StateTable`:
//!
//! - `HEALTH#{channel}#{account}` / `last`: `last_success_at` (epoch seconds), set when a batch
//!   delivered anything;
//! - `HEALTH#{channel}#{account}` / `M#{yyyymmddTHHMM}`: the minute's `failed` and `throttled`
//!   counts, added atomically, expiring after [`BUCKET_TTL_HOURS`].
//!
//! The console reads the last hour of buckets and applies the failed-sync alarm's own rule to the
//! last [`SYNC_FAILED_WINDOW_MINUTES`] of them ([`SYNC_FAILED_THRESHOLD`]: the template's
//! `SyncFailed{{Name}}Alarm` uses the same numbers, and a test holds the two together).
//!
//! Recording is best effort: a push that reached the channel is never retried because its tally
//! could not be written.

use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::StoreError;

/// The failed-sync alarm: this many failed pushes ...
pub const SYNC_FAILED_THRESHOLD: u64 = 5;
/// ... within this many minutes.
pub const SYNC_FAILED_WINDOW_MINUTES: i64 = 10;
/// How long a minute's counts are kept.
pub const BUCKET_TTL_HOURS: i64 = 48;

/// One batch's outcomes for one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u64,
    pub failed: u64,
    pub throttled: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.succeeded == 0 && self.failed == 0 && self.throttled == 0
    }
}

/// What the `StateTable` holds of an account's health over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountHealth {
    pub last_success_at: Option<DateTime<Utc>>,
    /// Failed pushes and throttled calls in the whole window asked for.
    pub failed: u64,
    pub throttled: u64,
    /// Failed pushes in the alarm's window (the last [`SYNC_FAILED_WINDOW_MINUTES`]).
    pub failed_in_alarm_window: u64,
}

impl AccountHealth {
    /// Whether the failed-sync alarm's rule holds for this account now.
    pub fn failing(&self) -> bool {
        self.failed_in_alarm_window >= SYNC_FAILED_THRESHOLD
    }
}

fn pk(channel: &str, account: &str) -> String {
    format!("HEALTH#{channel}#{account}")
}

fn bucket(at: DateTime<Utc>) -> String {
    format!("M#{}", at.format("%Y%m%dT%H%M"))
}

/// Writes one batch's `tally` for `channel`/`account` at `now`: at most two updates (the success time,
/// the minute's failures), none for an empty tally.
pub async fn record(
    client: &Client,
    table: &str,
    channel: &str,
    account: &str,
    tally: Tally,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if tally.succeeded > 0 {
        let written = client
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk(channel, account)))
            .key("sk", AttributeValue::S("last".into()))
            // Concurrent batches may finish out of order: the latest time wins.
            .update_expression("SET last_success_at = :t")
            .condition_expression("attribute_not_exists(last_success_at) OR last_success_at < :t")
            .expression_attribute_values(":t", AttributeValue::N(now.timestamp().to_string()))
            .send()
            .await;
        match written {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::is_conditional_check_failed_exception,
                ) => {}
            Err(e) => return Err(StoreError::service("dynamodb", "UpdateItem", e)),
        }
    }
    if tally.failed > 0 || tally.throttled > 0 {
        client
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk(channel, account)))
            .key("sk", AttributeValue::S(bucket(now)))
            .update_expression("ADD failed :f, throttled :r SET expires_at = :x")
            .expression_attribute_values(":f", AttributeValue::N(tally.failed.to_string()))
            .expression_attribute_values(":r", AttributeValue::N(tally.throttled.to_string()))
            .expression_attribute_values(
                ":x",
                AttributeValue::N((now + TimeDelta::hours(BUCKET_TTL_HOURS)).timestamp().to_string()),
            )
            .send()
            .await
            .map_err(|e| StoreError::service("dynamodb", "UpdateItem", e))?;
    }
    Ok(())
}

/// An account's health over the `window` ending `now` (the console asks for the last hour): the
/// window's minute buckets, the current one included (an hour is 60 buckets). The alarm window is the
/// last [`SYNC_FAILED_WINDOW_MINUTES`] buckets the same way: a rolling count, where CloudWatch sums
/// its own 10-minute periods, so the two can differ by what fell in the minute at either edge.
pub async fn read(
    client: &Client,
    table: &str,
    channel: &str,
    account: &str,
    window: TimeDelta,
    now: DateTime<Utc>,
) -> Result<AccountHealth, StoreError> {
    let items = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :p AND sk BETWEEN :a AND :b")
        .expression_attribute_values(":p", AttributeValue::S(pk(channel, account)))
        .expression_attribute_values(":a", AttributeValue::S(bucket(now - window + TimeDelta::minutes(1))))
        .expression_attribute_values(":b", AttributeValue::S(bucket(now)))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| StoreError::service("dynamodb", "Query", e))?;
    let alarm_from = bucket(now - TimeDelta::minutes(SYNC_FAILED_WINDOW_MINUTES - 1));
    let mut health = AccountHealth::default();
    for item in &items {
        let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        health.failed += n("failed");
        health.throttled += n("throttled");
        if item.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| *sk >= alarm_from) {
            health.failed_in_alarm_window += n("failed");
        }
    }
    let last = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk(channel, account)))
        .key("sk", AttributeValue::S("last".into()))
        .send()
        .await
        .map_err(|e| StoreError::service("dynamodb", "GetItem", e))?;
    health.last_success_at = last
        .item
        .and_then(|i| i.get("last_success_at").and_then(|v| v.as_n().ok()).and_then(|s| s.parse::<i64>().ok()))
        .and_then(|t| DateTime::from_timestamp(t, 0));
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_buckets_sort_as_time_does() {
        let a = DateTime::parse_from_rfc3339("2026-12-01T09:59:59Z").unwrap().with_timezone(&Utc);
        let b = a + TimeDelta::seconds(1);
        assert_eq!(bucket(a), "M#20261201T0959");
        assert_eq!(bucket(b), "M#20261201T1000");
        assert!(bucket(a) < bucket(b));
    }

    #[test]
    fn the_alarm_rule_is_five_failures() {
        let h = AccountHealth { failed_in_alarm_window: SYNC_FAILED_THRESHOLD - 1, ..AccountHealth::default() };
        assert!(!h.failing());
        assert!(AccountHealth { failed_in_alarm_window: SYNC_FAILED_THRESHOLD, ..h }.failing());
    }
}
