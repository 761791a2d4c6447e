//! Ledger consumer Lambda (SQS `LedgerQueue`, fed by the bus rule on order, refund and shipment
//! events): reserves, releases and ships stock, then fans availability out to every channel.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("ledger");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.ledger_batch(event.payload)).await) }
    }))
    .await
}
