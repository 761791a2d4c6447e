//! Scheduled syncs Lambda (EventBridge schedules whose input names the tier: `{"tier":"stock"}`,
//! `reconcile`, `prices`, `images`).

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
            let tier = event.payload.get("tier").and_then(|t| t.as_str()).unwrap_or("unknown").to_owned();
            let report = app.run_tier(&tier, chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
