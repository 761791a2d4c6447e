//! CRM consumer Lambda (SQS `CrmQueue`, fed by the scheduler's CRM runs and by `forget`): sends the
//! changed customers to each CRM account in its batch size within its rate limit, behind a breaker
//! per CRM account, and asks it to erase the people who asked to be forgotten.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("crm");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<SqsBatchResponse, Error>(manifold_app::usage::invocation(app.crm_batch(event.payload)).await) }
    }))
    .await
}
