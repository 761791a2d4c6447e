//! Webhook deliveries Lambda (SQS FIFO `DeliveriesQueue`, fed by the changes function's fan-out): sends
//! each delivery to its subscription's endpoint, signed as Standard Webhooks asks; a refused one waits
//! its backoff and holds back the later events of its order.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("deliveries");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.deliveries_batch(event.payload)).await)
        }
    }))
    .await
}
