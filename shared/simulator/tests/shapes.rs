//! The simulator answers bodies it cannot parse with each channel's own error shape, and refuses
//! beyond its limits the way the channel documents (429, Retry-After, allowance headers).

use manifold_domain::Channel;
use manifold_simulator::{SimConfig, SimLimit, Simulator};
use serde_json::Value;

/// Kaufland's request signature: hex HMAC-SHA256 of `METHOD\nURL\nBODY\nTIMESTAMP`.
fn kaufland_headers(method: &str, url: &str, body: &str, secret: &str) -> Vec<(&'static str, String)> {
    use hmac::{Hmac, Mac};
    let timestamp = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}\n{url}\n{body}\n{timestamp}").as_bytes());
    vec![
        ("shop-client-key", manifold_simulator::KAUFLAND_KEYS.0.to_owned()),
        ("shop-timestamp", timestamp.to_string()),
        ("shop-signature", hex::encode(mac.finalize().into_bytes())),
    ]
}

/// Path, method and credential headers of one write endpoint per channel (`base`: the channel's URL,
/// `body`: what is sent, for channels that sign it).
fn endpoint(channel: Channel, base: &str, body: &str) -> (&'static str, reqwest::Method, Vec<(&'static str, String)>) {
    let (path, method, headers) = static_endpoint(channel);
    let headers = match channel {
        Channel::Kaufland => {
            kaufland_headers("POST", &format!("{base}{path}"), body, manifold_simulator::KAUFLAND_KEYS.1)
        }
        _ => headers.into_iter().map(|(k, v)| (k, v.to_owned())).collect(),
    };
    (path, method, headers)
}

fn static_endpoint(channel: Channel) -> (&'static str, reqwest::Method, Vec<(&'static str, &'static str)>) {
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
        // Signed per request: see `endpoint`.
        Channel::Kaufland => ("/v2/units/bulk?storefront=de", Method::POST, Vec::new()),
        Channel::Otto => ("/v1/availability/quantities", Method::POST, bearer),
    }
}

#[tokio::test]
async fn unparseable_bodies_get_the_channels_error_shape() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    for channel in Channel::ALL {
        let (path, method, headers) = endpoint(channel, &sim.base_url(channel), "{not json");
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
            Channel::Kaufland => status == 400 && body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")),
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

#[tokio::test]
async fn kaufland_refuses_a_request_not_signed_over_its_exact_url_body_and_time() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url(Channel::Kaufland);
    let url = format!("{base}/v2/units?storefront=de&limit=10");
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = http.get(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let (key, secret) = manifold_simulator::KAUFLAND_KEYS;
    let ok = send(kaufland_headers("GET", &url, "", secret)).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let page: Value = ok.json().await.unwrap();
    assert!(page["data"].is_array() && page["pagination"]["total"].is_number(), "{page}");
    for (why, headers) in [
        ("another URL", kaufland_headers("GET", &format!("{base}/v2/units?storefront=cz&limit=10"), "", secret)),
        ("another method", kaufland_headers("POST", &url, "", secret)),
        ("another secret", kaufland_headers("GET", &url, "", "not-the-secret")),
    ] {
        let resp = send(headers).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{why}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "/problems/corrupted-signature", "{why}");
    }
    let mut stale = kaufland_headers("GET", &url, "", secret);
    stale[1].1 = (chrono::Utc::now().timestamp() - 3600).to_string();
    assert_eq!(send(stale).await.unwrap().status().as_u16(), 401, "an hour-old timestamp");
    let mut stranger = kaufland_headers("GET", &url, "", secret);
    stranger[0].1 = format!("{key}-other");
    assert_eq!(send(stranger).await.unwrap().status().as_u16(), 401, "an unknown client key");
}

#[tokio::test]
async fn otto_refuses_beyond_20_a_second_and_wrong_shapes_with_its_error_body() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/availability/quantities/SKU-1", sim.base_url(Channel::Otto));
    // The documented 20 requests/s token bucket starts full: twenty pass, then a burst runs it dry.
    for _ in 0..20 {
        let resp = http.get(&url).header("authorization", "Bearer t").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "allowed (no stock for SKU-1)");
    }
    let burst: Vec<_> =
        (0..60).map(|_| tokio::spawn(http.get(&url).header("authorization", "Bearer t").send())).collect();
    let mut refused = None;
    for task in burst {
        let resp = task.await.unwrap().unwrap();
        if resp.status().as_u16() == 429 {
            refused = Some(resp);
        }
    }
    let refused = refused.expect("a burst beyond the bucket is refused");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "429", "{body}");
    assert!(body["errors"][0]["title"].is_string() && body["errors"][0]["detail"].is_string(), "{body}");

    let sim = Simulator::start(SimConfig::default().unlimited(Channel::Otto)).await.unwrap();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", sim.base_url(Channel::Otto)))
            .header("authorization", "Bearer t")
            .json(&body)
            .send()
    };
    let refused = |status: u16, detail: &'static str| {
        move |(got, body): (u16, Value)| {
            assert_eq!(got, status, "{body}");
            let text = body["errors"][0]["detail"].as_str().unwrap_or_default().to_owned();
            assert!(text.contains(detail), "{text}");
        }
    };
    let answer = |r: reqwest::Response| async move { (r.status().as_u16(), r.json::<Value>().await.unwrap()) };

    let prices = serde_json::json!([{ "sku": "A", "standardPrice": { "amount": 9.99, "currency": "CHF" } }]);
    refused(400, "only EUR")(answer(post("/v4/products/prices", prices).await.unwrap()).await);
    let prices = serde_json::json!([{ "sku": "A", "standardPrice": { "amount": 9.999, "currency": "EUR" } }]);
    refused(400, "at most 2 decimals")(answer(post("/v4/products/prices", prices).await.unwrap()).await);
    let too_many: Vec<Value> = (0..201).map(|i| serde_json::json!({ "sku": format!("S{i}"), "quantity": 1 })).collect();
    refused(413, "at most 200")(
        answer(post("/v1/availability/quantities", Value::Array(too_many)).await.unwrap()).await,
    );
    let shipment = serde_json::json!({
        "trackingKey": { "carrier": "POSTKUTSCHE", "trackingNumber": "1" },
        "shipDate": "2026-03-03T14:30:00Z",
        "shipFromAddress": { "city": "Hamburg", "countryCode": "DEU", "zipCode": "22179" },
        "positionItems": [{ "positionItemId": "p", "salesOrderId": "s" }],
    });
    refused(400, "carrier \"POSTKUTSCHE\"")(answer(post("/v1/shipments", shipment).await.unwrap()).await);
    let list = http
        .get(format!("{}/v4/orders?nextcursor=abc&fromDate=2026-01-01T00:00:00Z", sim.base_url(Channel::Otto)))
        .header("authorization", "Bearer t")
        .send()
        .await
        .unwrap();
    refused(400, "only limit")(answer(list).await);
}

#[tokio::test]
async fn otto_issues_30_minute_client_credentials_tokens_for_the_scopes_asked() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let endpoint = sim.token_endpoint(Channel::Otto).unwrap();
    assert!(endpoint.ends_with("/otto/v1/token"), "{endpoint}");
    let http = reqwest::Client::new();
    let token = |form: &'static str| {
        http.post(&endpoint).header("content-type", "application/x-www-form-urlencoded").body(form).send()
    };

    let ok =
        token("client_id=app&client_secret=s&grant_type=client_credentials&scope=orders%20availability").await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["scope"], "orders availability");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let no_scope = token("client_id=app&client_secret=s&grant_type=client_credentials").await.unwrap();
    assert_eq!(no_scope.status().as_u16(), 400);
    let no_secret = token("client_id=app&grant_type=client_credentials&scope=orders").await.unwrap();
    assert_eq!(no_secret.status().as_u16(), 401);
    let password = token("client_id=app&client_secret=s&grant_type=password&scope=orders").await.unwrap();
    assert_eq!(password.status().as_u16(), 400, "the legacy password grant is not simulated");
    assert_eq!(sim.snapshot().token_requests[&Channel::Otto], 1);
}
