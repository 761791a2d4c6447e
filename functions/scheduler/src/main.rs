//! Scheduler Lambda: the one-minute tick (EventBridge schedule), the `SyncQueue`'s pages (SQS event
//! source mapping), and `{"tier": "stock"}` style events that force one kind for every account.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("scheduler");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = app.clone();
        async move {
            // Type-erased: the handler's future is too deep for the compiler to lay out inline.
            let handled: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(app.scheduler_event(event.payload, chrono::Utc::now()));
            Ok::<_, Error>(manifold_app::usage::invocation(handled).await?)
        }
    }))
    .await
}
