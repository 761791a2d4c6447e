//! SQS: sending messages with the trace id as a message attribute, so every hop can pick it up.

use async_trait::async_trait;
use aws_sdk_sqs::{Client, types::MessageAttributeValue};
use manifold_telemetry::TRACE_ATTRIBUTE;

use crate::StoreError;

/// The queue port: one durable send, and delaying received messages.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        trace_id: &str,
        delay_seconds: Option<i32>,
    ) -> Result<(), StoreError>;

    /// Sets the visibility timeout of received messages `(receipt handle, seconds)`. Returns how many
    /// could not be changed (they come back after the queue's own visibility timeout).
    async fn change_visibility(&self, queue_url: &str, messages: &[(String, i32)]) -> Result<usize, StoreError>;
}

/// SQS implementation.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The `trace_id` message attribute.
pub fn trace_attribute(trace_id: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(trace_id)
        .build()
        .map_err(|e| StoreError::Invalid { what: "message attribute", reason: e.to_string() })
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        trace_id: &str,
        delay_seconds: Option<i32>,
    ) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .message_attributes(TRACE_ATTRIBUTE, trace_attribute(trace_id)?)
            .set_delay_seconds(delay_seconds)
            .send()
            .await
            .map_err(|e| StoreError::service("sqs", "SendMessage", e))?;
        Ok(())
    }

    async fn change_visibility(&self, queue_url: &str, messages: &[(String, i32)]) -> Result<usize, StoreError> {
        let mut failed = 0;
        for (n, chunk) in messages.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (receipt, secs))| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(format!("{n}-{i}"))
                        .receipt_handle(receipt)
                        .visibility_timeout(*secs)
                        .build()
                        .map_err(|e| StoreError::Invalid { what: "visibility change", reason: e.to_string() })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::service("sqs", "ChangeMessageVisibilityBatch", e))?;
            failed += out.failed.len();
        }
        Ok(failed)
    }
}

/// In-memory queue for unit tests: records what was sent (with its delay) and what was delayed.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub sent: std::sync::Mutex<Vec<(String, String, String)>>,
    /// The delay of each send, in the order of `sent`.
    pub delays: std::sync::Mutex<Vec<Option<i32>>>,
    /// `(receipt handle, seconds)` of every visibility change.
    pub visibility: std::sync::Mutex<Vec<(String, i32)>>,
    /// When set, every send fails (retryable), as SQS does when it is unreachable.
    pub fail_sends: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send(&self, queue_url: &str, body: &str, trace_id: &str, delay: Option<i32>) -> Result<(), StoreError> {
        if self.fail_sends.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Service { service: "sqs", operation: "SendMessage", source: "injected".into() });
        }
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
            queue_url.to_owned(),
            body.to_owned(),
            trace_id.to_owned(),
        ));
        self.delays.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(delay);
        Ok(())
    }

    async fn change_visibility(&self, _queue_url: &str, messages: &[(String, i32)]) -> Result<usize, StoreError> {
        self.visibility.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(messages);
        Ok(0)
    }
}
