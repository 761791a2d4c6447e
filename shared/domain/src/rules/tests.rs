use std::str::FromStr;

use super::*;
use crate::config::{ChannelConfig, ConfigError};

const ACCOUNT: &str = r#"
version = 1
[[accounts]]
channel = "shopify"
account = "eu"
api_version = "2026-07"
secret = "manifold/shopify/eu"
endpoint = "https://eu.myshopify.com"
rate_limit = { kind = "leaky_bucket", capacity = 40, leak_per_second = 2.0 }
settings = { location_id = "gid://shopify/Location/1" }
"#;

fn config(rules: &str) -> Result<ChannelConfig, ConfigError> {
    ChannelConfig::parse("channels.toml", &format!("{ACCOUNT}\n{rules}"))
}

fn refusal(rules: &str) -> (String, String) {
    match config(rules).expect_err("refused") {
        ConfigError::Invalid { file, path, message } => {
            assert_eq!(file, "channels.toml");
            (path, message)
        }
        ConfigError::Read { .. } => panic!("not a read error"),
    }
}

fn order(country: &str, total: &str) -> Order {
    let mut order = sample_order();
    order.shipping_address.as_mut().unwrap().country_code = Some(country.into());
    order.totals.total = Amount::parse(total, order.currency).unwrap();
    order
}

/// `sku` at base price `base` (EUR) for the configured account, with `pricing`, at `now`.
fn priced(
    book: &RuleBook,
    config: &ChannelConfig,
    pricing: Option<AccountPricing>,
    sku: &str,
    base: &str,
    now: DateTime<Utc>,
) -> Result<PricedSku, PriceRefused> {
    let account = crate::config::AccountConfig { pricing, ..config.accounts[0].clone() };
    let base = crate::Price {
        sku: Sku::new(sku).unwrap(),
        channel: None,
        currency: eur(),
        amount: Amount::parse(base, eur()).unwrap(),
        compare_at: None,
        effective_at: now,
    };
    book.price(&account, &base, &[], now)
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn eur() -> Currency {
    Currency::new("EUR").unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const ROUTING: &str = r#"
[[rules.routing]]
id = "review-large"
order = { min_total = 1000 }
hold = "value above 1000"

[[rules.routing]]
id = "alpine"
when = 'order.shipping_address.country_code in ["AT", "CH"]'
tags = ["alpine"]

[[rules.shipping]]
id = "at-ch-express"
when = 'order.shipping_address.country_code in ["AT", "CH"] && order.totals.total > 100'
carrier = "DHL"
service = "Express"

[[rules.shipping]]
id = "default"
carrier = "DPD"
"#;

#[test]
fn an_austrian_order_over_100_gets_the_express_carrier_and_the_rules_that_decided() {
    let config = config(ROUTING).unwrap();
    let book = RuleBook::new(&config.rules).unwrap();
    let f = book.route(&order("AT", "120.00"), &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    assert_eq!((f.carrier.as_deref(), f.service.as_deref()), (Some("DHL"), Some("Express")));
    assert!(!f.is_held());
    assert_eq!(f.tags, ["alpine"]);
    let ids: Vec<_> = f.rules.iter().map(|r| (r.rule.as_str(), r.kind.as_str())).collect();
    assert_eq!(ids, [("alpine", "routing"), ("at-ch-express", "shipping")]);

    let cheap = book.route(&order("AT", "80.00"), &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    assert_eq!(cheap.carrier.as_deref(), Some("DPD"), "the first matching shipping rule wins");
    let german = book.route(&order("DE", "120.00"), &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    assert_eq!(german.carrier.as_deref(), Some("DPD"));
    assert!(german.tags.is_empty());
}

#[test]
fn an_order_above_the_review_threshold_is_held_with_its_rule_and_reason() {
    let book = RuleBook::new(&config(ROUTING).unwrap().rules).unwrap();
    let f = book.route(&order("DE", "1500.00"), &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    let hold = f.hold.as_ref().expect("held");
    assert_eq!((hold.rule.as_str(), hold.reason.as_str()), ("review-large", "value above 1000"));
    assert!(f.is_held());
    assert_eq!(f.rules[0].effect, "held: value above 1000");
}

#[test]
fn a_condition_on_a_field_the_order_lacks_does_not_fire() {
    let book = RuleBook::new(&config(ROUTING).unwrap().rules).unwrap();
    let mut o = order("AT", "120.00");
    o.shipping_address = None;
    let f = book.route(&o, &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    assert_eq!(f.carrier.as_deref(), Some("DPD"), "the alpine rules cannot tell, so the default applies");
}

#[test]
fn a_bad_expression_is_refused_with_its_path_and_reason_when_the_configuration_loads() {
    let (path, message) =
        refusal("[[rules.shipping]]\nid = \"x\"\ncarrier = \"DHL\"\nwhen = \"order.totals.total >\"\n");
    assert_eq!(path, "rules.shipping[0].when");
    assert!(message.contains("not a CEL expression"), "{message}");

    let (path, message) = refusal("[[rules.routing]]\nid = \"x\"\nhold = \"h\"\nwhen = \"ordr.totals.total > 1\"\n");
    assert_eq!(path, "rules.routing[0].when");
    assert!(message.contains("ordr"), "an unknown variable is named: {message}");

    let (path, message) = refusal("[[rules.routing]]\nid = \"x\"\nhold = \"h\"\nwhen = \"order.totals.nope > 1\"\n");
    assert_eq!(path, "rules.routing[0].when");
    assert!(message.contains("nope"), "an unknown field is named: {message}");

    let (path, message) = refusal("[[rules.price]]\nid = \"x\"\npercent = 5\nwhen = \"price + 1.0\"\n");
    assert_eq!(path, "rules.price[0].when");
    assert!(message.contains("not true or false"), "{message}");

    let (path, _) = refusal("[[rules.price]]\nid = \"x\"\npercent = 5\nwhen = \"order.totals.total > 1\"\n");
    assert_eq!(path, "rules.price[0].when", "a price condition sees no order");
}

#[test]
fn rules_that_cannot_work_are_refused() {
    for (rules, path) in [
        ("[[rules.routing]]\nid = \"x\"\n", "rules.routing[0].hold"),
        ("[[rules.routing]]\nid = \"x\"\nlocation = \"elsewhere\"\n", "rules.routing[0].location"),
        ("[[rules.price]]\nid = \"x\"\npercent = 5\namount = 1\n", "rules.price[0].percent"),
        ("[[rules.price]]\nid = \"x\"\nfloor = 10\nceiling = 5\n", "rules.price[0].floor"),
        (
            "[[rules.price]]\nid = \"x\"\npercent = 5\nwindow = { start = 2026-12-02T00:00:00, end = 2026-12-01T00:00:00 }\n",
            "rules.price[0].window",
        ),
        (
            "[[rules.price]]\nid = \"x\"\npercent = 5\nwindow = { start = 2026-12-01T00:00:00, end = 2026-12-02T00:00:00, time_zone = \"Mars/Olympus\" }\n",
            "rules.price[0].window",
        ),
        ("[[rules.price]]\nid = \"x\"\npercent = 5\n[[rules.price]]\nid = \"x\"\npercent = 6\n", "rules.price[1].id"),
        (
            "[[rules.shipping]]\nid = \"x\"\ncarrier = \"DHL\"\norder = { countries = [\"Austria\"] }\n",
            "rules.shipping[0].order.countries",
        ),
    ] {
        assert_eq!(refusal(rules).0, path, "{rules}");
    }
}

const PROMOTION: &str = r#"
[[rules.price]]
id = "markup"
percent = 10
round = ".99"
floor = 5

[[rules.price]]
id = "black-friday"
scope = { sku_prefixes = ["TEE-"] }
percent = -20
round = ".99"
window = { start = 2026-11-27T00:00:00, end = 2026-11-30T00:00:00, time_zone = "Europe/Vienna" }
"#;

#[test]
fn a_promotion_applies_inside_its_window_in_the_merchants_time_zone_and_the_price_returns_after() {
    let config = config(PROMOTION).unwrap();
    let book = RuleBook::new(&config.rules).unwrap();
    let price = |now| priced(&book, &config, None, "TEE-1", "25.00", at(now)).unwrap();
    // Vienna is UTC+1 in November: the window opens at 23:00 UTC the day before.
    let before = price("2026-11-26T22:59:59Z");
    assert_eq!(before.amount.to_string(), "27.99", "25 + 10% = 27.50, nearest .99");
    let during = price("2026-11-26T23:00:00Z");
    assert_eq!(during.amount.to_string(), "21.99", "27.99 - 20% = 22.39, nearest .99");
    assert_eq!(during.rules.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(), ["markup", "black-friday"]);
    assert_eq!(price("2026-11-29T23:00:00Z").amount, before.amount, "the price returns when the window closes");
    let other = priced(&book, &config, None, "MUG-1", "25.00", at("2026-11-28T00:00:00Z"));
    assert_eq!(other.unwrap().amount.to_string(), "27.99", "outside the scope");
    assert_eq!(book.price_window_edges().len(), 2);
}

#[test]
fn a_price_below_the_floor_or_in_a_currency_the_account_cannot_convert_is_refused() {
    let config = config(PROMOTION).unwrap();
    let book = RuleBook::new(&config.rules).unwrap();
    let when = at("2026-12-05T00:00:00Z");
    let refused = priced(&book, &config, None, "TEE-1", "3.00", when);
    assert!(matches!(refused, Err(PriceRefused::BelowFloor { ref rule, .. }) if rule == "markup"), "{refused:?}");

    let gbp = Currency::new("GBP").unwrap();
    let no_rate = AccountPricing { currency: gbp, from: None, rate: None };
    let refused = priced(&book, &config, Some(no_rate), "TEE-1", "25.00", when);
    assert_eq!(refused, Err(PriceRefused::CurrencyMismatch { base: eur(), account: gbp }));

    let rate = AccountPricing { currency: gbp, from: Some(eur()), rate: Some(d("0.86")) };
    let converted = priced(&book, &config, Some(rate), "TEE-1", "25.00", when).unwrap();
    assert_eq!((converted.amount.to_string().as_str(), converted.currency), ("23.99", gbp), "21.50 + 10% = 23.65");
    assert_eq!(converted.rules[0].kind, "currency");
}

#[test]
fn rounding_goes_to_the_nearest_ending() {
    for (price, round, want) in [
        ("23.40", Rounding::Cents99, "22.99"),
        ("23.60", Rounding::Cents99, "23.99"),
        ("0.40", Rounding::Cents99, "0.99"),
        ("23.40", Rounding::Cents95, "22.95"),
        ("23.50", Rounding::Whole, "24"),
        ("23.49", Rounding::Whole, "23"),
    ] {
        assert_eq!(round.apply(d(price)).to_string(), want, "{price} {round:?}");
    }
}

#[test]
fn a_price_condition_sees_the_sku_and_the_running_price() {
    let rules = "[[rules.price]]\nid = \"premium\"\nwhen = \"price > 50.0 && sku.startsWith('LUX')\"\namount = 10\n";
    let config = config(rules).unwrap();
    let book = RuleBook::new(&config.rules).unwrap();
    let now = at("2026-12-05T00:00:00Z");
    let p = |sku: &str, base: &str| priced(&book, &config, None, sku, base, now).unwrap().amount.to_string();
    assert_eq!(p("LUX-1", "60.00"), "70.00");
    assert_eq!(p("LUX-1", "40.00"), "40.00");
    assert_eq!(p("STD-1", "60.00"), "60.00");
}

/// The rules the example configuration shows (commented out), as a merchant would uncomment them.
#[test]
fn the_example_configurations_rules_load_once_uncommented() {
    let example = include_str!("../../../../infra/channels.example.toml");
    let block =
        example.split_once("# [[rules.routing]]").map(|(_, rest)| format!("# [[rules.routing]]{rest}")).unwrap();
    let rules: String = block.lines().map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l)).fold(
        String::new(),
        |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        },
    );
    let config = ChannelConfig::parse("channels.example.toml", &format!("{example}\n{rules}")).expect("valid");
    assert_eq!((config.rules.routing.len(), config.rules.shipping.len(), config.rules.price.len()), (1, 1, 1));
    let book = RuleBook::new(&config.rules).unwrap();
    let f = book.route(&order("CH", "150.00"), &SkuFacts::new(), at("2026-11-30T12:00:00Z"));
    assert_eq!(f.carrier.as_deref(), Some("DHL"));
}

const TAGGED: &str = r#"
[[rules.price]]
id = "clearance"
scope = { tags = ["clearance"] }
percent = -50

[[rules.routing]]
id = "fragile-review"
scope = { tags = ["fragile"] }
hold = "fragile goods are checked by hand"
"#;

#[test]
fn rules_scoped_by_product_tag_cover_the_skus_with_that_tag() {
    let tagged_config = config(TAGGED).unwrap();
    let book = RuleBook::new(&tagged_config.rules).unwrap();
    assert!(book.needs_product_facts());
    assert!(!RuleBook::new(&config(ROUTING).unwrap().rules).unwrap().needs_product_facts(), "no read without one");
    let now = at("2026-11-30T12:00:00Z");
    let base = crate::Price {
        sku: Sku::new("TEE-1").unwrap(),
        channel: None,
        currency: eur(),
        amount: Amount::parse("20.00", eur()).unwrap(),
        compare_at: None,
        effective_at: now,
    };
    let account = &tagged_config.accounts[0];
    let tagged = book.price(account, &base, &["clearance".to_owned()], now).unwrap();
    assert_eq!((tagged.amount.to_string().as_str(), tagged.rules[0].rule.as_str()), ("10.00", "clearance"));
    assert_eq!(book.price(account, &base, &["summer".to_owned()], now).unwrap().amount.to_string(), "20.00");

    let o = order("DE", "50.00");
    let line = o.lines.iter().find_map(|l| l.sku.clone()).expect("a line with a SKU");
    let fragile = SkuFacts::from([(line, ProductFacts { tags: vec!["fragile".to_owned()], weight_grams: None })]);
    let f = book.route(&o, &fragile, now);
    assert_eq!(f.hold.as_ref().map(|h| h.rule.as_str()), Some("fragile-review"));
    assert!(!book.route(&o, &SkuFacts::new(), now).is_held());
}

const HEAVY: &str = r#"
[[rules.shipping]]
id = "heavy-freight"
order = { min_weight_g = 20000 }
carrier = "DB Schenker"

[[rules.shipping]]
id = "parcel"
carrier = "DHL"
"#;

#[test]
fn shipping_rules_match_on_the_order_weight_from_its_products() {
    let book = RuleBook::new(&config(HEAVY).unwrap().rules).unwrap();
    assert!(book.needs_product_facts());
    let now = at("2026-11-30T12:00:00Z");
    let o = order("DE", "80.00");
    let weigh = |grams: Option<u32>| -> SkuFacts {
        o.lines
            .iter()
            .filter_map(|l| l.sku.clone())
            .map(|s| (s, ProductFacts { tags: Vec::new(), weight_grams: grams }))
            .collect()
    };
    let units: u64 = o.lines.iter().filter(|l| l.sku.is_some()).map(|l| u64::from(l.quantity)).sum();
    assert_eq!(order_weight(&o, &weigh(Some(500))), Some(500 * units));
    assert_eq!(book.route(&o, &weigh(Some(500)), now).carrier.as_deref(), Some("DHL"));
    let heavy = book.route(&o, &weigh(Some(25_000)), now);
    assert_eq!((heavy.carrier.as_deref(), heavy.rules[0].rule.as_str()), (Some("DB Schenker"), "heavy-freight"));
    // A product of unknown weight: no weight bound matches, the default applies.
    assert_eq!(order_weight(&o, &weigh(None)), None);
    assert_eq!(book.route(&o, &weigh(None), now).carrier.as_deref(), Some("DHL"));
}
