//! Shared test setup: the shipped example configuration (accounts and SKU maps) and fixture loading.

use chrono::{DateTime, TimeZone, Utc};
use manifold_domain::{
    Amount, Channel, Currency, Order, OrderLine,
    config::{AccountConfig, ChannelConfig},
};
use manifold_normalize::Context;
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../../../infra/channels.example.toml");

pub fn account(channel: Channel) -> AccountConfig {
    let cfg = ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example config is valid");
    cfg.accounts.into_iter().find(|a| a.channel == channel).expect("example has every channel")
}

pub fn ctx(account: &AccountConfig) -> Context<'_> {
    Context { account, received_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

pub fn money(value: &str, currency: &str) -> Amount {
    Amount::parse(value, Currency::new(currency).unwrap()).unwrap()
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// Asserts one line's SKU (as stored), mapping flag, quantity and unit price, and `total = unit * qty`.
pub fn assert_line(line: &OrderLine, sku: Option<&str>, mapped: bool, quantity: u32, unit: &str, currency: &str) {
    assert_eq!(line.sku.as_ref().map(manifold_domain::Sku::as_str), sku, "sku of line {}", line.line_id);
    assert_eq!(line.sku_mapped, mapped, "sku_mapped of line {}", line.line_id);
    assert_eq!(line.quantity, quantity, "quantity of line {}", line.line_id);
    assert_eq!(line.unit_price, money(unit, currency), "unit price of line {}", line.line_id);
    assert_eq!(line.total, line.unit_price.times(quantity), "total of line {}", line.line_id);
}

/// Asserts the order totals: subtotal, shipping, tax, discount, total.
pub fn assert_totals(order: &Order, [subtotal, shipping, tax, discount, total]: [&str; 5]) {
    let c = order.currency.as_str();
    assert_eq!(order.totals.subtotal, money(subtotal, c), "subtotal");
    assert_eq!(order.totals.shipping, money(shipping, c), "shipping");
    assert_eq!(order.totals.tax, money(tax, c), "tax");
    assert_eq!(order.totals.discount, money(discount, c), "discount");
    assert_eq!(order.totals.total, money(total, c), "total");
}

pub fn country(order: &Order) -> Option<&str> {
    order.shipping_address.as_ref().or(order.billing_address.as_ref()).and_then(|a| a.country_code.as_deref())
}
