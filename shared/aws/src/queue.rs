//! SQS: sending messages with the trace id as a message attribute, so every hop can pick it up.

use async_trait::async_trait;
use aws_sdk_sqs::{Client, types::MessageAttributeValue};
use manifold_telemetry::TRACE_ATTRIBUTE;

use crate::StoreError;

/// The queue port: one durable send.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        trace_id: &str,
        delay_seconds: Option<i32>,
    ) -> Result<(), StoreError>;
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
}

/// In-memory queue for unit tests: records what was sent.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub sent: std::sync::Mutex<Vec<(String, String, String)>>,
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send(&self, queue_url: &str, body: &str, trace_id: &str, _delay: Option<i32>) -> Result<(), StoreError> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
            queue_url.to_owned(),
            body.to_owned(),
            trace_id.to_owned(),
        ));
        Ok(())
    }
}
