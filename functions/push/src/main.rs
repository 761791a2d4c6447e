//! Push consumer Lambda, one deployment per channel (SQS `Push{Channel}Queue`, partial batch
//! failures): stock, price and tracking jobs -> the channel's API, within its limits and behind its
//! circuit breaker. Wiring only: the service is `App::push_batch`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;
use manifold_domain::Channel;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("push");
    let channel: Channel = std::env::var("CHANNEL")
        .map_err(|_| "CHANNEL is not set (the template sets it per push function)")?
        .parse()
        .map_err(|e| format!("CHANNEL: {e}"))?;
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(
                manifold_app::usage::invocation(Box::pin(app.push_batch(channel, event.payload))).await,
            )
        }
    }))
    .await
}
