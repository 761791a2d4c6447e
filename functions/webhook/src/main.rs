//! Webhook intake Lambda (API Gateway HTTP API): `POST /v1/webhooks/{channel}/{account}`, eBay's
//! endpoint validation `GET /v1/webhooks/ebay/{account}?challenge_code=...`, and the CRMs' signed
//! updates `POST /v1/crm/{crm}`.
//! Wiring only: the services are `App::handle_webhook`, `App::ebay_challenge` and `App::crm_webhook`.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use manifold_app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("webhook");
    let app = Arc::new(App::from_env().await?);
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { manifold_app::usage::invocation(handle(&app, req)).await }
    }))
    .await
}

async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    let params = req.path_parameters();
    if let Some(crm) = params.first("crm") {
        let uri = req.uri().to_string();
        let out = app.crm_webhook(crm, &uri, req.headers(), req.body().as_ref(), chrono::Utc::now()).await;
        return Ok(manifold_app::http::json_response(out.status, &out.message, &out.trace_id)?);
    }
    // The eBay validation route (`GET /v1/webhooks/ebay/{account}`) names its channel in the path, not
    // in a `{channel}` parameter.
    let channel = params
        .first("channel")
        .or_else(|| req.uri().path().contains("/v1/webhooks/ebay/").then_some("ebay"))
        .unwrap_or_default()
        .to_owned();
    let account = params.first("account").unwrap_or_default().to_owned();
    if req.method() == lambda_http::http::Method::GET {
        let code = req.query_string_parameters().first("challenge_code").map(str::to_owned);
        return match (channel.as_str(), code) {
            ("ebay", Some(code)) => match app.ebay_challenge(&account, &code, &req.uri().to_string()).await {
                Ok(body) => Ok(Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))?),
                Err(out) => Ok(manifold_app::http::json_response(out.status, &out.message, &out.trace_id)?),
            },
            _ => Ok(manifold_app::http::json_response(
                405,
                "only eBay's endpoint validation (GET ?challenge_code=) is answered on GET",
                &manifold_app::trace::mint(),
            )?),
        };
    }
    let out = app.handle_webhook(&channel, &account, req.headers(), req.body().as_ref(), chrono::Utc::now()).await;
    Ok(manifold_app::http::json_response(out.status, &out.message, &out.trace_id)?)
}
