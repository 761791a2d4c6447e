//! SQS consumer glue: process every message of a batch independently and report only the failed ones
//! (`batchItemFailures`), so one bad message never makes SQS redeliver the good ones. Transient
//! failures go back to the queue (and to the DLQ after maxReceiveCount); permanent ones were already
//! quarantined by the service and count as handled.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{StreamExt, stream};
use manifold_telemetry::TRACE_ATTRIBUTE;
use tracing::warn;

use crate::outcome::Failure;

/// The trace id of a message: its `trace_id` attribute, or a new one.
pub fn trace_of(message: &SqsMessage) -> String {
    crate::trace::from_header(message.message_attributes.get(TRACE_ATTRIBUTE).and_then(|a| a.string_value.as_deref()))
}

/// How many times SQS has delivered this message (1 on the first attempt).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Runs `handle` on every message (up to `concurrency` at a time) and builds the partial-failure
/// response.
pub async fn process_batch<F, Fut>(event: SqsEvent, concurrency: usize, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let results: Vec<(Option<String>, Result<(), Failure>)> = stream::iter(event.records)
        .map(|m| {
            let id = m.message_id.clone();
            let fut = handle(m);
            async move { (id, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, result) in results {
        if let Err(e) = result {
            warn!(message_id = id.as_deref().unwrap_or("?"), error_class = e.class(), error = %e, "message will be retried");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}
