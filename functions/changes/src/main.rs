//! Changes consumer Lambda (SQS FIFO `ChangesQueue`, fed by the bus rule on order, shipment, refund
//! and return events, one message group): numbers each change in the change index the pull API
//! (`GET /v1/orders?since=`) pages through. One batch at a time, all or nothing.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("changes");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.changes_batch(event.payload)).await)
        }
    }))
    .await
}
