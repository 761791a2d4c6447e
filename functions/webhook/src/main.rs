//! Webhook intake Lambda (API Gateway HTTP API): `POST /v1/webhooks/{channel}/{account}`.
//! Wiring only: the service is `App::handle_webhook`.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("webhook");
    let app = Arc::new(App::from_env().await?);
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { handle(&app, req).await }
    }))
    .await
}

async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    let params = req.path_parameters();
    let channel = params.first("channel").unwrap_or_default().to_owned();
    let account = params.first("account").unwrap_or_default().to_owned();
    let out = app.handle_webhook(&channel, &account, req.headers(), req.body().as_ref(), chrono::Utc::now()).await;
    Ok(manifold_app::http::json_response(out.status, &out.message, &out.trace_id)?)
}
