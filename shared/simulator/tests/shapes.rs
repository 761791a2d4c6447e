//! The simulator answers bodies it cannot parse with each channel's own error shape, and refuses
//! beyond its limits the way the channel documents (429, Retry-After, allowance headers).

use manifold_domain::Channel;
use manifold_simulator::{SimConfig, SimLimit, Simulator};
use serde_json::Value;

/// Path, method and credential headers of one write endpoint per channel.
fn endpoint(channel: Channel) -> (&'static str, reqwest::Method, Vec<(&'static str, &'static str)>) {
    use reqwest::Method;
    let bearer = vec![("authorization", "Bearer t")];
    match channel {
        Channel::Shopify => ("/admin/api/2026-07/graphql.json", Method::POST, vec![("x-shopify-access-token", "t")]),
        Channel::Woocommerce => ("/wc/v3/products/batch", Method::POST, vec![("authorization", "Basic Y2s6Y3M=")]),
        Channel::Bigcommerce => ("/v3/inventory/adjustments/absolute", Method::PUT, vec![("x-auth-token", "t")]),
        Channel::Amazon => {
            ("/listings/2021-08-01/items/S/SKU?marketplaceIds=M", Method::PATCH, vec![("x-amz-access-token", "t")])
        }
        Channel::Etsy => (
            "/v3/application/listings/1/inventory",
            Method::PUT,
            vec![("x-api-key", "k"), ("authorization", "Bearer t")],
        ),
        Channel::Tiktok => (
            "/product/202309/products/1/inventory/update?app_key=k&sign=s",
            Method::POST,
            vec![("x-tts-access-token", "t")],
        ),
        Channel::Zalando => ("/merchants/m/stocks", Method::POST, bearer),
        Channel::Ebay => ("/sell/inventory/v1/bulk_update_price_quantity", Method::POST, bearer),
        Channel::Otto => ("/v1/availability/quantities", Method::POST, bearer),
    }
}

#[tokio::test]
async fn unparseable_bodies_get_the_channels_error_shape() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    for channel in Channel::ALL {
        let (path, method, headers) = endpoint(channel);
        let mut req = http.request(method, format!("{}{path}", sim.base_url(channel))).body("{not json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        let shaped = match channel {
            Channel::Shopify => status == 400 && body["errors"].is_string(),
            Channel::Woocommerce => {
                status == 400 && body["code"] == "rest_invalid_param" && body["data"]["status"] == 400
            }
            Channel::Bigcommerce => status == 422 && body["status"] == 422 && body["title"].is_string(),
            Channel::Amazon => status == 400 && body["errors"][0]["code"] == "InvalidInput",
            Channel::Etsy => status == 400 && body["error"].is_string(),
            Channel::Tiktok => status == 200 && body["code"].as_i64().is_some_and(|c| c != 0),
            Channel::Zalando => status == 400 && body["status"] == 400 && body["detail"].is_string(),
            Channel::Ebay => status == 400 && body["errors"][0]["errorId"].is_number(),
            Channel::Otto => {
                status == 400 && body["errors"][0]["title"].is_string() && body["errors"][0]["detail"].is_string()
            }
        };
        assert!(shaped, "{channel}: {status} {body}");
    }
}

#[tokio::test]
async fn missing_credentials_are_401_in_the_channels_shape() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/merchants/m/stocks", sim.base_url(Channel::Zalando)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn a_full_window_answers_429_with_retry_after_and_allowance_headers() {
    let config =
        SimConfig::default().with_limit(Channel::Bigcommerce, SimLimit::Window { requests: 2, window_ms: 60_000 });
    let sim = Simulator::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v2/orders", sim.base_url(Channel::Bigcommerce));
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let resp = http.get(&url).header("x-auth-token", "t").send().await.unwrap();
        statuses.push(resp.status().as_u16());
        last = Some(resp);
    }
    assert_eq!(statuses, [204, 204, 429]);
    let last = last.unwrap();
    assert_eq!(last.headers()["x-rate-limit-requests-left"], "0");
    assert!(last.headers().contains_key("retry-after") && last.headers().contains_key("x-rate-limit-time-reset-ms"));
    assert_eq!(sim.snapshot().throttled[&Channel::Bigcommerce], 1);
}
