//! The smallest `lambda_runtime` function, built with the same profile and runtime crate as the
//! functions: the local pipeline starts it beside them, so each function's cold start and memory are
//! reported against what a hello-world Rust Lambda costs on the same machine.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<Value, Error>(event.payload) })).await
}
