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
