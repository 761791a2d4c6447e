//! Zalando order poll (EventBridge schedule): Zalando has no push, so new orders (`exported=false`) are
//! polled into the ingest path and marked exported only after they are stored.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("zalando-poll");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
        let app = app.clone();
        async move { manifold_app::usage::invocation(app.poll_zalando(chrono::Utc::now())).await.map_err(Error::from) }
    }))
    .await
}
