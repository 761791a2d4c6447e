//! An in-process stand-in for Lambda's SQS event source mappings, for the tests that drive the services
//! directly: receive a batch, hand it to the same handler the Lambda runs, delete what the handler did
//! not report as failed. (`manifold demo` runs the real binaries and the template's mappings through
//! `manifold-localrt` instead.)
//! Failed messages stay on the queue and come back after their visibility timeout, exactly as in AWS,
//! and after maxReceiveCount SQS moves them to the DLQ.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::outcome::Failure;

/// Receives up to ten messages from `queue_url`, runs `handler` on them as one Lambda batch, deletes
/// the successes. Returns how many messages were received (0: the queue looked empty).
pub async fn poll_once<F, Fut>(sqs: &aws_sdk_sqs::Client, queue_url: &str, handler: F) -> Result<usize, Failure>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| Failure::Transient(Box::new(e)))?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let event = to_lambda_event(&messages);
    let mut receipts: std::collections::HashMap<String, String> = messages
        .iter()
        .map(|m| (m.message_id.clone().unwrap_or_default(), m.receipt_handle.clone().unwrap_or_default()))
        .collect();
    let response = handler(event).await;
    for failed in &response.batch_item_failures {
        receipts.remove(&failed.item_identifier);
    }
    for receipt in receipts.values() {
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
    }
    Ok(messages.len())
}

/// Converts received messages into the event Lambda's SQS event source mapping would deliver.
pub fn to_lambda_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut msg = SqsMessage::default();
        msg.message_id.clone_from(&m.message_id);
        msg.receipt_handle.clone_from(&m.receipt_handle);
        msg.body.clone_from(&m.body);
        for (k, v) in m.attributes().into_iter().flatten() {
            msg.attributes.insert(k.as_str().to_owned(), v.clone());
        }
        for (k, v) in m.message_attributes().into_iter().flatten() {
            let mut a = SqsMessageAttribute::default();
            a.string_value.clone_from(&v.string_value);
            a.data_type = Some(v.data_type.clone());
            msg.message_attributes.insert(k.clone(), a);
        }
        event.records.push(msg);
    }
    event
}
