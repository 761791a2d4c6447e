//! Ingest consumer Lambda (SQS `IngestQueue`, partial batch failures): envelope -> canonical record
//! -> DynamoDB + domain event. Wiring only: the service is `App::ingest`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("ingest");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.ingest_batch(event.payload)).await) }
    }))
    .await
}
