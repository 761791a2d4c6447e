//! Fixtures and test secrets the integration tests share: real published payloads (their sources are in
//! each fixtures folder's SOURCES.md) and the webhook secrets every test account is created with.

pub const EXAMPLE: &str = include_str!("../../infra/channels.example.toml");
pub const SHOPIFY_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");
pub const BC_WEBHOOK: &str =
    include_str!("../../shared/normalize/fixtures/bigcommerce/webhook-store-order-created.json");
pub const BC_ORDER: &str = include_str!("../../shared/normalize/fixtures/bigcommerce/v2-order-218-get.json");
pub const BC_PRODUCTS: &str = include_str!("../../shared/normalize/fixtures/bigcommerce/v2-order-products-list.json");
pub const BC_ADDRESSES: &str =
    include_str!("../../shared/normalize/fixtures/bigcommerce/v2-order-shipping-addresses-list.json");
pub const AMAZON_NOTIFICATION: &str =
    include_str!("../../shared/normalize/fixtures/amazon/order-change-notification.json");
pub const AMAZON_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json");
pub const AMAZON_ITEMS: &str =
    include_str!("../../shared/normalize/fixtures/amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json");

/// The webhook secret every test account uses.
pub const SECRET: &str = "test-webhook-secret";
/// Etsy's Standard Webhooks secret (base64 after `whsec_`).
pub const ETSY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The token entered with the eBay notification destination (32 to 80 of `[A-Za-z0-9_-]`).
pub const EBAY_VERIFICATION_TOKEN: &str = "manifold_verification_token_0123456789";

/// The secret every test account of `channel` is created with: its webhook secret and credentials the
/// simulators accept.
pub fn account_secret(channel: manifold_domain::Channel) -> String {
    let webhook_secret = if channel == manifold_domain::Channel::Etsy { ETSY_SECRET } else { SECRET };
    serde_json::json!({
        "webhook_secret": webhook_secret,
        "access_token": "token",
        "client_id": "ck_test",
        "client_secret": "cs_test",
        "api_key": "keystring",
        "verification_token": EBAY_VERIFICATION_TOKEN,
        "client_key": manifold_simulator::KAUFLAND_KEYS.0,
        "secret_key": manifold_simulator::KAUFLAND_KEYS.1
    })
    .to_string()
}

/// The headers Shopify sends with a webhook delivery of `body`, signed with [`SECRET`].
pub fn shopify_headers(body: &[u8], event_id: &str, topic: &str) -> http::HeaderMap {
    use http::HeaderValue;
    let mut h = manifold_connectors::verify::sign(
        manifold_domain::Channel::Shopify,
        SECRET,
        &std::collections::BTreeMap::default(),
        event_id,
        body,
        chrono::Utc::now(),
    )
    .expect("sign a Shopify delivery");
    h.insert("x-shopify-event-id", HeaderValue::from_str(event_id).expect("event id header"));
    h.insert("x-shopify-topic", HeaderValue::from_str(topic).expect("topic header"));
    h
}

/// A Standard Webhooks signing secret (`whsec_` and base64), the one the specification's examples use.
pub const WEBHOOK_SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The client secret of the HubSpot app the test CRM accounts' webhooks are signed with.
pub const HUBSPOT_CLIENT_SECRET: &str = "hubspot-app-client-secret-0123456789";
