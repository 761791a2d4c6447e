//! Customers Lambda: joins every stored order to one customer (SQS `CustomersQueue`, fed by the bus
//! rule on order events, and by the webhook function with verified CRM updates), and erases a person
//! on request (`DELETE /v1/customers/{id}`, HTTP API behind IAM authorization: the caller's IAM
//! identity is written to the audit).

use std::sync::Arc;

use aws_lambda_events::event::{
    apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse},
    sqs::SqsEvent,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manifold_app::App;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("customers");
    let app = Arc::new(App::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            let handled: std::pin::Pin<Box<dyn Future<Output = Result<Value, Error>> + Send>> =
                Box::pin(handle(app, event.payload));
            manifold_app::usage::invocation(handled).await
        }
    }))
    .await
}

async fn handle(app: Arc<App>, payload: Value) -> Result<Value, Error> {
    if payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(app.customers_batch(batch).await)?);
    }
    let request: ApiGatewayV2httpRequest = serde_json::from_value(payload)?;
    let response: ApiGatewayV2httpResponse = app.customers_http(&request, chrono::Utc::now()).await;
    Ok(serde_json::to_value(response)?)
}
