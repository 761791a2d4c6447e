//! Inventory API Lambda (HTTP API, IAM-authenticated): the ERP/WMS source of truth.
//! `PUT /v1/inventory/{sku}` sets one absolute on-hand count (`as_of`, an RFC 3339 time, orders counts:
//! one older than the count already applied answers 409 and changes nothing); `POST /v1/inventory/import`
//! takes a JSON array or a CSV file (open reservations are always kept; rows honour `as_of` the same
//! way); `POST /v1/shipments` takes a canonical Shipment from the WMS: stock leaves the warehouse and
//! the tracking goes back to the selling channel.
//! `POST /v1/sync/{channel}/{account}/{kind}` (body `{"full": true}` optional) starts a sync run and
//! answers 202 with its job id (`manifold sync runs` lists it).
//! `GET /v1/{orders|shipments|refunds|returns}?since=&limit=` and `GET /v1/{collection}/{id}`: the pull
//! API, records changed since a cursor (`manifold_app::changes`).
//! `PUT /v1/prices/{sku}` sets a SKU's base price; `POST /v1/prices/import` takes a JSON array or a CSV
//! file of them (`manifold_app::prices`; a price effective before the stored one answers 409).
//! `PUT /v1/products/{sku}` sets a SKU's product content; `POST /v1/products/import` takes a JSON
//! array of them (`manifold_app::content`; content older than the stored one answers 409).

use std::sync::Arc;

use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use manifold_app::{App, http::json_response, ledger::OnHandUpdate, outcome::Failure};

#[tokio::main]
async fn main() -> Result<(), Error> {
    manifold_telemetry::init("inventory-api");
    let app = Arc::new(App::from_env().await?);
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move {
            // Type-erased: the handler's future is too deep for the compiler to lay out inline.
            let handled: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> = Box::pin(handle(&app, req));
            manifold_app::usage::invocation(handled).await
        }
    }))
    .await
}

async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    let trace_id = manifold_app::trace::from_header(
        req.headers().get(manifold_telemetry::TRACE_HEADER).and_then(|v| v.to_str().ok()),
    );
    let now = chrono::Utc::now();
    let body = std::str::from_utf8(req.body().as_ref()).unwrap_or_default().to_owned();
    if req.method() == lambda_http::http::Method::GET {
        let param = |name: &str| req.path_parameters().first(name).map(str::to_owned);
        let collection = param("collection").unwrap_or_default();
        let query: std::collections::HashMap<String, String> =
            req.query_string_parameters().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        return Ok(app.pull_http(&collection, param("id").as_deref(), &query, &trace_id).await?);
    }
    if req.uri().path().starts_with("/v1/sync/") {
        let param = |name: &str| req.path_parameters().first(name).unwrap_or_default().to_owned();
        let (channel, account, kind) = (param("channel"), param("account"), param("kind"));
        return Ok(app.sync_http(&channel, &account, &kind, &body, &trace_id, now).await?);
    }
    let path = req.uri().path().to_owned();
    let csv =
        req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/csv"));
    let import_ref = req.headers().get("x-import-ref").and_then(|v| v.to_str().ok()).unwrap_or(&trace_id).to_owned();
    let result = if path.contains("/v1/prices/") {
        match req.path_parameters().first("sku").map(str::to_owned) {
            Some(sku) => match serde_json::from_str::<manifold_app::prices::PriceInput>(&body) {
                Ok(input) => app.set_price(&sku, &input, &trace_id, now).await.map(|w| serde_json::json!(w)),
                Err(e) => Err(Failure::permanent(
                    "price",
                    format!(
                        "body must be {{\"amount\": \"19.99\", \"currency\": \"EUR\", \"compare_at\"?, \"effective_at\"?, \"source_ref\"?}}: {e}"
                    ),
                )),
            },
            None => app.import_prices(&body, csv, &import_ref, &trace_id, now).await,
        }
    } else if path.contains("/v1/products/") {
        match req.path_parameters().first("sku").map(str::to_owned) {
            Some(sku) => match serde_json::from_str::<manifold_app::content::ContentInput>(&body) {
                Ok(input) => app.set_content(&sku, &input, &trace_id, now).await.map(|w| serde_json::json!(w)),
                Err(e) => Err(Failure::permanent(
                    "content",
                    format!(
                        "body must be {{\"title\": \"...\", \"description\"?, \"attributes\"?, \"images\"?: [{{\"url\", \"alt\"?, \"checksum\"?}}], \"tags\"?, \"updated_at\"?}}: {e}"
                    ),
                )),
            },
            None => app.import_content(&body, &trace_id, now).await,
        }
    } else if path.ends_with("/v1/shipments") {
        match serde_json::from_str::<manifold_domain::Shipment>(&body) {
            Ok(shipment) => app
                .record_shipment(&shipment, &trace_id, now)
                .await
                .map(|o| serde_json::json!({ "outcome": format!("{o:?}") })),
            Err(e) => Err(Failure::permanent("shipment", format!("body must be a canonical Shipment v1: {e}"))),
        }
    } else if let Some(sku) = req.path_parameters().first("sku").map(str::to_owned) {
        match serde_json::from_str::<OnHandUpdate>(&body) {
            Ok(update) => app.set_on_hand(&sku, &update, &trace_id, now).await.map(|p| serde_json::json!(p)),
            Err(e) => Err(Failure::permanent(
                "inventory",
                format!("body must be {{\"on_hand\": n, \"location\"?, \"source_ref\"?, \"as_of\"?}}: {e}"),
            )),
        }
    } else {
        app.import_stock(&body, csv, &import_ref, &trace_id, now).await
    };
    Ok(match result {
        Ok(value) => {
            let mut r = json_response(200, "ok", &trace_id)?;
            *r.body_mut() = Body::from(value.to_string());
            r
        }
        // 409 for a stale count (it lost to a newer one), 400 for other refused input, 503: retry.
        Err(e) => match (manifold_app::content::api_status(&e), e) {
            (status, Failure::Permanent { reason, .. }) => json_response(status, &reason, &trace_id)?,
            (status, e) => json_response(status, &format!("retry later: {e}"), &trace_id)?,
        },
    })
}
