//! What the connector tests against the simulator share: an account of each channel as a
//! configuration file gives it, its connector, and catalog items keyed as each channel keys them.
#![allow(dead_code)]

use std::time::Duration;

use manifold_connectors::{ChannelConnector, Credentials, build, http_client};
use manifold_domain::{
    Channel,
    config::{AccountConfig, ChannelConfig},
};
use manifold_simulator::{CatalogItem, SimHandle};

pub fn version(channel: Channel) -> &'static str {
    manifold_simulator::api_version(channel)
}

/// The account as a configuration file would give it (parsed, so fields added later keep their defaults).
pub fn account(sim: &SimHandle, channel: Channel) -> AccountConfig {
    account_limited(sim, channel, r#"{ kind = "unlimited" }"#)
}

pub fn account_limited(sim: &SimHandle, channel: Channel, rate_limit: &str) -> AccountConfig {
    let location = if channel == Channel::Bigcommerce { "1" } else { "gid://shopify/Location/1" };
    let text = format!(
        r#"version = 1
[[accounts]]
channel = "{channel}"
account = "listings-test"
api_version = "{version}"
secret = "manifold/{channel}/listings"
endpoint = "{endpoint}"
rate_limit = {rate_limit}
[accounts.settings]
location_id = "{location}"
seller_id = "A2EUQ1WTGCTBG2"
marketplace_id = "A1PA6795UKMFR9"
shop_id = "12345678"
warehouse_id = "7068517275539793707"
app_key = "sim-app-key"
sales_channel_id = "bf48ba35-149d-4b76-8ac9-d08d126b517f"
storefront = "de"
ship_from_city = "Hamburg"
ship_from_zip_code = "22179"
ship_from_country = "DEU"
"#,
        version = version(channel),
        endpoint = sim.base_url(channel),
        rate_limit = rate_limit,
    );
    ChannelConfig::parse("listings-test.toml", &text).unwrap().accounts.remove(0)
}

pub fn connector(sim: &SimHandle, channel: Channel) -> std::sync::Arc<dyn ChannelConnector> {
    let creds: Credentials = [
        ("access_token", "sim-token"),
        ("client_id", "ck_sim"),
        ("client_secret", "cs_sim"),
        ("api_key", "sim-keystring"),
        ("client_key", manifold_simulator::KAUFLAND_KEYS.0),
        ("secret_key", manifold_simulator::KAUFLAND_KEYS.1),
    ]
    .into_iter()
    .collect();
    build(&account(sim, channel), creds, http_client(Duration::from_secs(5)).unwrap())
}

/// Catalog item `n` of `channel` (see [`CatalogItem::sample`]).
pub fn item(channel: Channel, n: usize) -> (CatalogItem, Option<String>) {
    CatalogItem::sample(channel, n, "LST")
}
