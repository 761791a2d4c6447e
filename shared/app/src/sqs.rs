//! SQS consumer glue: process every message of a batch independently, then settle the batch in ONE
//! place ([`settle`]) from each message's [`Disposition`], so every consumer (ingest, Amazon
//! notifications, ledger, push) treats the same outcome the same way:
//!
//! - `Ack`: done (processed, superseded, or quarantined by the service): SQS deletes it;
//! - `Retry`: a batch item failure (`batchItemFailures`), visible again after its delay; it counts as
//!   a receive, so after maxReceiveCount it goes to the DLQ;
//! - `Park`: waiting on something outside the message (an open breaker, credentials being fixed):
//!   re-sent to its own queue with a delay (up to SQS's 15 minutes) and the original acknowledged, so
//!   waiting never consumes a receive and an outage alone never dead-letters anything. If the re-send
//!   fails it falls back to `Retry`.
//!
//! One bad message never makes SQS redeliver the good ones.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{StreamExt, stream};
use manifold_aws::queue::MessageQueue;
use manifold_telemetry::TRACE_ATTRIBUTE;
use tracing::{info, warn};

use crate::outcome::Failure;

/// SQS refuses a `DelaySeconds` above 15 minutes; a longer park is re-parked when it comes back.
pub const MAX_DELAY: Duration = Duration::from_mins(15);
/// SQS refuses visibility timeouts above 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_hours(12);

/// What becomes of one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Back to the queue, visible again after `delay` (`None`: the queue's visibility timeout).
    Retry {
        delay: Option<Duration>,
    },
    /// Re-sent with `delay` and the original acknowledged: waiting without using up receives.
    Park {
        delay: Duration,
    },
}

impl Failure {
    /// How a queue consumer settles a message that failed this way: a permanent failure reaching the
    /// batch was not quarantined by its service (or must stay visible to a person), so it is retried
    /// towards the DLQ like a transient one.
    pub fn disposition(&self) -> Disposition {
        Disposition::Retry { delay: None }
    }
}

/// One received message, as much of it as settling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub receipt_handle: Option<String>,
    pub body: String,
    pub trace_id: String,
}

impl Received {
    pub fn of(m: &SqsMessage) -> Self {
        Self {
            id: m.message_id.clone().unwrap_or_default(),
            receipt_handle: m.receipt_handle.clone(),
            body: m.body.clone().unwrap_or_default(),
            trace_id: trace_of(m),
        }
    }
}

/// The trace id of a message: its `trace_id` attribute, or a new one.
pub fn trace_of(message: &SqsMessage) -> String {
    crate::trace::from_header(message.message_attributes.get(TRACE_ATTRIBUTE).and_then(|a| a.string_value.as_deref()))
}

/// How many times SQS has delivered this message (1 on the first attempt).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Whole seconds, rounded up, within `cap`.
pub fn whole_seconds(delay: Duration, cap: Duration) -> i32 {
    let delay = delay.min(cap);
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Settles a batch: parks (re-send with a delay, then acknowledge), delays retries (visibility) and
/// builds the partial-failure response. `queue` is the consumer's own queue; without one, parking
/// and retry delays fall back to plain retries.
pub async fn settle(
    queue: Option<(&dyn MessageQueue, &str)>,
    settled: Vec<(Received, Disposition)>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut delays = Vec::new();
    for (message, disposition) in settled {
        let retry_delay = match (disposition, queue) {
            (Disposition::Ack, _) => continue,
            (Disposition::Park { delay }, Some((q, url))) => {
                let secs = whole_seconds(delay.max(Duration::from_secs(1)), MAX_DELAY);
                match q.send(url, &message.body, &message.trace_id, Some(secs)).await {
                    Ok(()) => {
                        info!(message_id = %message.id, delay_s = secs, "parked: re-sent with a delay, original acknowledged");
                        continue;
                    }
                    Err(e) => {
                        warn!(message_id = %message.id, error = %e, "could not park: retrying instead");
                        Some(delay)
                    }
                }
            }
            (Disposition::Park { delay }, None) => Some(delay),
            (Disposition::Retry { delay }, _) => delay,
        };
        if let (Some(delay), Some(receipt)) = (retry_delay, message.receipt_handle.clone()) {
            delays.push((receipt, whole_seconds(delay, MAX_VISIBILITY)));
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message.id;
        response.batch_item_failures.push(failure);
    }
    if let Some((q, url)) = queue
        && !delays.is_empty()
    {
        match q.change_visibility(url, &delays).await {
            Ok(0) => {}
            Ok(failed) => warn!(failed, "some retry delays were not applied"),
            Err(e) => warn!(error = %e, "could not delay retries: they use the queue's visibility timeout"),
        }
    }
    response
}

/// Runs `handle` on every message (up to `concurrency` at a time) and settles the batch: success is
/// acknowledged, a failure is settled by its [`Failure::disposition`].
pub async fn process_batch<F, Fut>(event: SqsEvent, concurrency: usize, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let results: Vec<(Received, Disposition)> = stream::iter(event.records)
        .map(|m| {
            let received = Received::of(&m);
            let fut = handle(m);
            async move {
                let disposition = match fut.await {
                    Ok(()) => Disposition::Ack,
                    Err(e) => {
                        warn!(message_id = %received.id, error_class = e.class(), error = %e, "message will be retried");
                        e.disposition()
                    }
                };
                (received, disposition)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    settle(None, results).await
}

#[cfg(test)]
mod tests {
    use manifold_aws::queue::MemoryQueue;

    use super::*;

    fn received(id: &str) -> Received {
        Received {
            id: id.into(),
            receipt_handle: Some(format!("rh-{id}")),
            body: format!("body-{id}"),
            trace_id: "t".into(),
        }
    }

    #[tokio::test]
    async fn each_disposition_is_settled_the_same_way_for_every_consumer() {
        let queue = MemoryQueue::default();
        let response = settle(
            Some((&queue, "url")),
            vec![
                (received("ack"), Disposition::Ack),
                (received("retry"), Disposition::Retry { delay: Some(Duration::from_millis(1500)) }),
                (received("plain"), Disposition::Retry { delay: None }),
                (received("park"), Disposition::Park { delay: Duration::from_hours(2) }),
            ],
        )
        .await;
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["retry", "plain"], "only retries count as receives");
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent, [("url".to_owned(), "body-park".to_owned(), "t".to_owned())], "parked: re-sent as is");
        assert_eq!(queue.delays.lock().unwrap().clone(), [Some(900)], "within SQS's 15-minute delay");
        assert_eq!(queue.visibility.lock().unwrap().clone(), [("rh-retry".to_owned(), 2)]);
    }

    #[tokio::test]
    async fn a_park_that_cannot_be_sent_is_retried_instead_of_lost() {
        let queue = MemoryQueue::default();
        queue.fail_sends.store(true, std::sync::atomic::Ordering::SeqCst);
        let response = settle(
            Some((&queue, "url")),
            vec![(received("park"), Disposition::Park { delay: Duration::from_secs(30) })],
        )
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(queue.visibility.lock().unwrap().clone(), [("rh-park".to_owned(), 30)]);
    }

    #[test]
    fn delays_are_whole_seconds_rounded_up_within_the_limit() {
        assert_eq!(whole_seconds(Duration::from_millis(1500), MAX_VISIBILITY), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3), MAX_VISIBILITY), 3);
        assert_eq!(whole_seconds(Duration::from_hours(24), MAX_VISIBILITY), 43_200);
        assert_eq!(whole_seconds(Duration::from_hours(1), MAX_DELAY), 900);
    }
}
