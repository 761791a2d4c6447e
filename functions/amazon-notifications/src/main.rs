//! Amazon SP-API notifications consumer (SQS `AmazonNotificationsQueue`): Amazon sends no webhooks, so
//! its `ORDER_CHANGE` and other notifications arrive here and join the same ingest path.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("amazon-notifications");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.amazon_batch(event.payload)).await) }
    }))
    .await
}
