//! Business rules in configuration: how an order is routed and shipped, and what each account's
//! price is, changed by editing the channel configuration rather than code.
//!
//! Three kinds, each a list under `[rules]`, each rule with an `id`, a [`Scope`] (channels,
//! accounts, SKUs by list or prefix), an optional active [`Window`] in the merchant's time zone, and an
//! optional `when` condition in CEL (Google's Common Expression Language):
//!
//! - **routing** (`[[rules.routing]]`): hold an order for review, choose the location that fulfils it,
//!   tag it. Every matching rule applies, in file order; the first hold and the first location win.
//! - **shipping** (`[[rules.shipping]]`): map an order to a carrier and service. The first matching
//!   rule in file order wins.
//! - **price** (`[[rules.price]]`): markup or markdown by percent or amount, a fixed price, rounding,
//!   and a floor and ceiling. Every matching rule applies, in file order, on the running price (a
//!   promotion is a price rule with a window: when the window closes it no longer matches, so the
//!   price returns by itself).
//!
//! The fixed order an order meets them in: routing, then shipping ([`RuleBook::route`]). A price:
//! the base price converted to the account's currency, then the price rules, then the tightest floor
//! and ceiling among the rules that applied ([`RuleBook::price`]); a price outside them, or in a
//! currency the account cannot convert, is refused, never pushed.
//!
//! Conditions see the canonical records: `order` (the canonical order, money as numbers, so
//! `order.totals.total > 100` compares amounts), `channel` and `account`; a price condition sees
//! `sku`, `channel`, `account`, `price` (the running price) and `currency`. Every expression is
//! compiled and run against a complete sample when the configuration is loaded, so a typo, an unknown
//! variable or a non-boolean result is refused with its path then, never at run time. A condition that
//! fails on a real record (a field the order lacks) does not fire, and says so in the log.

use std::collections::{BTreeMap, BTreeSet};

use cel::{Context, Program};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::{Amount, Channel, Currency, Order, Sku};

/// The `[rules]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub routing: Vec<RoutingRule>,
    #[serde(default)]
    pub shipping: Vec<ShippingRule>,
    #[serde(default)]
    pub price: Vec<PriceRule>,
}

/// What a rule covers. Empty lists cover everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Account ids (on any of `channels`).
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub skus: Vec<Sku>,
    #[serde(default)]
    pub sku_prefixes: Vec<String>,
    /// Product tags (the SKU's `ProductContent.tags`, from the PIM).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What the rules know of a product from its content (`ProductContent`): its tags and its weight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFacts {
    pub tags: Vec<String>,
    pub weight_grams: Option<u32>,
}

/// Each SKU's product facts, as far as they are known (a SKU without content has none).
pub type SkuFacts = BTreeMap<Sku, ProductFacts>;

impl Scope {
    /// Whether the scope covers this account (every account when it names no channel or account).
    pub fn covers_account(&self, channel: Channel, account: &str) -> bool {
        (self.channels.is_empty() || self.channels.contains(&channel))
            && (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account))
    }

    fn names_skus(&self) -> bool {
        !self.skus.is_empty() || !self.sku_prefixes.is_empty() || !self.tags.is_empty()
    }

    /// Whether the scope covers this SKU, whose product tags are `tags` (every SKU when it names
    /// none): by its list, a prefix or a tag.
    pub fn covers_sku(&self, sku: &str, tags: &[String]) -> bool {
        !self.names_skus()
            || self.skus.iter().any(|s| s.as_str() == sku)
            || self.sku_prefixes.iter().any(|p| sku.starts_with(p.as_str()))
            || self.tags.iter().any(|t| tags.contains(t))
    }
}

/// When a rule is active: from `start` (inclusive) to `end` (exclusive), local times in `time_zone`
/// (an IANA name, `UTC` by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(deserialize_with = "local_time")]
    pub start: NaiveDateTime,
    #[serde(deserialize_with = "local_time")]
    pub end: NaiveDateTime,
    #[serde(default = "utc")]
    pub time_zone: String,
}

/// A local date and time as a TOML local date-time (`2026-11-27T00:00:00`) or a string of one.
fn local_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Toml(toml::value::Datetime),
        Text(String),
    }
    let text = match Written::deserialize(d)? {
        Written::Toml(t) => t.to_string(),
        Written::Text(t) => t,
    };
    text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?} is not a local date and time: {e}")))
}

fn utc() -> String {
    "UTC".into()
}

impl Window {
    fn zone(&self) -> Result<chrono_tz::Tz, String> {
        self.time_zone.parse().map_err(|_| format!("{:?} is not an IANA time zone", self.time_zone))
    }

    fn instant(&self, local: NaiveDateTime) -> Result<DateTime<Utc>, String> {
        // A local time a clock change skipped or repeated resolves to its earliest instant.
        self.zone()?
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{local} does not exist in {}", self.time_zone))
    }

    /// The window's start and end as instants.
    pub fn edges(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        Ok((self.instant(self.start)?, self.instant(self.end)?))
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.edges().is_ok_and(|(start, end)| start <= at && at < end)
    }
}

/// What every rule has: its id, what it covers, when it is active and its condition. Each kind of
/// rule holds these as its own fields (`deny_unknown_fields` and `flatten` do not mix, and a typo in a
/// rule must be refused); [`Rule::head`] reads them alike.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub id: &'a str,
    pub scope: &'a Scope,
    pub window: Option<&'a Window>,
    /// A CEL condition; the rule fires when it is true.
    pub when: Option<&'a str>,
}

/// A rule of any kind.
pub trait Rule {
    fn head(&self) -> Head<'_>;
}

macro_rules! rule_head {
    ($($kind:ty),*) => {$(
        impl Rule for $kind {
            fn head(&self) -> Head<'_> {
                Head { id: &self.id, scope: &self.scope, window: self.window.as_ref(), when: self.when.as_deref() }
            }
        }
    )*};
}
rule_head!(RoutingRule, ShippingRule, PriceRule);

/// Conditions on an order's destination and value, as structured fields (all must hold; empty lists
/// and absent bounds hold always). `when` adds anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderMatch {
    /// ISO 3166-1 alpha-2 shipping countries.
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub postal_prefixes: Vec<String>,
    /// The order total is at least this (in the order's currency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_total: Option<Decimal>,
    /// The order total is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total: Option<Decimal>,
    /// The order weighs at least this many grams (its lines' quantities times their products'
    /// `weight_grams`; an order with a line of unknown weight matches no weight bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_weight_g: Option<u64>,
    /// The order weighs less than this many grams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight_g: Option<u64>,
}

/// An order's weight in grams from its products' weights (lines without a SKU, such as tips, weigh
/// nothing); `None` when a product's weight is unknown.
pub fn order_weight(order: &Order, facts: &SkuFacts) -> Option<u64> {
    order.lines.iter().try_fold(0_u64, |sum, line| {
        let Some(sku) = &line.sku else { return Some(sum) };
        let grams = facts.get(sku).and_then(|f| f.weight_grams)?;
        Some(sum + u64::from(grams) * u64::from(line.quantity))
    })
}

impl OrderMatch {
    fn weighs(&self) -> bool {
        self.min_weight_g.is_some() || self.max_weight_g.is_some()
    }

    fn holds(&self, order: &Order, weight: Option<u64>) -> bool {
        let address = order.shipping_address.as_ref();
        let field = |f: fn(&crate::Address) -> Option<&String>| address.and_then(f).map(String::as_str);
        let listed = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l.eq_ignore_ascii_case(v)))
        };
        let total = order.totals.total.value();
        listed(&self.countries, field(|a| a.country_code.as_ref()))
            && listed(&self.regions, field(|a| a.region.as_ref()))
            && (self.postal_prefixes.is_empty()
                || field(|a| a.postal_code.as_ref())
                    .is_some_and(|p| self.postal_prefixes.iter().any(|x| p.starts_with(x.as_str()))))
            && self.min_total.is_none_or(|m| total >= m)
            && self.max_total.is_none_or(|m| total < m)
            && (!self.weighs()
                || weight.is_some_and(|w| {
                    self.min_weight_g.is_none_or(|m| w >= m) && self.max_weight_g.is_none_or(|m| w < m)
                }))
    }
}

/// Hold, locate and tag an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Structured conditions on the order's destination and value.
    #[serde(default)]
    pub order: OrderMatch,
    /// Holds the order for review with this reason: it reserves nothing until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The ledger location the order is fulfilled (and reserved) from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Choose the carrier and service of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingRule {
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Structured conditions on the order's destination and value.
    #[serde(default)]
    pub order: OrderMatch,
    pub carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// How a price is rounded after a rule's adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// To the nearest price ending in .99.
    #[serde(rename = ".99")]
    Cents99,
    /// To the nearest price ending in .95.
    #[serde(rename = ".95")]
    Cents95,
    /// To the nearest whole amount (halves away from zero).
    #[serde(rename = "whole")]
    Whole,
}

impl Rounding {
    pub fn apply(self, price: Decimal) -> Decimal {
        let ending = match self {
            Rounding::Whole => return price.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero),
            Rounding::Cents99 => Decimal::new(99, 2),
            Rounding::Cents95 => Decimal::new(95, 2),
        };
        let below = price.floor() - Decimal::ONE + ending;
        let above = price.floor() + ending;
        let nearest = if price - below <= above - price { below } else { above };
        if nearest > Decimal::ZERO { nearest } else { above }
    }
}

/// Change a price. At most one of `percent`, `amount` and `fixed`. Amounts (`amount`, `fixed`,
/// `floor`, `ceiling`) are in the account's selling currency, after conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRule {
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Markup (positive) or markdown (negative) in percent of the running price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Decimal>,
    /// Added to (or, negative, taken from) the running price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// Replaces the running price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<Rounding>,
    /// The lowest price this rule lets through; below it the price is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Decimal>,
    /// The highest price this rule lets through; above it the price is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Decimal>,
}

/// One rule's effect on a record, kept on it so `manifold trace` shows why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedRule {
    pub rule: String,
    /// `routing`, `shipping` or `price`.
    pub kind: String,
    /// What it did, in words (`held: value above 1000`, `carrier DHL Express`, `-20% → 79.99`).
    pub effect: String,
}

/// An order's routing and shipping decision (the canonical order's `fulfillment`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fulfillment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The ledger location that fulfils the order, when a rule chose one (else the account's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Every rule that applied, in the order it applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AppliedRule>,
}

impl Fulfillment {
    /// Held for review and not released: the order reserves nothing.
    pub fn is_held(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| h.released.is_none())
    }
}

/// An order held for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub rule: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Release>,
}

/// Who released a held order, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// Why a price is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceRefused {
    #[error("{price} is below the floor {floor} of rule {rule}")]
    BelowFloor { price: Decimal, floor: Decimal, rule: String },
    #[error("{price} is above the ceiling {ceiling} of rule {rule}")]
    AboveCeiling { price: Decimal, ceiling: Decimal, rule: String },
    #[error("the base price is in {base} and the account sells in {account} with no rate from {base}")]
    CurrencyMismatch { base: Currency, account: Currency },
    #[error("the price is not positive ({0})")]
    NotPositive(Decimal),
}

/// A computed price and the rules that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricedSku {
    pub amount: Amount,
    pub currency: Currency,
    pub rules: Vec<AppliedRule>,
}

/// An account's selling currency and the rate from the base prices' currency
/// (`[accounts.pricing]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPricing {
    pub currency: Currency,
    /// The base currency the rate converts from; prices already in `currency` need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Currency>,
    /// Units of `currency` per unit of `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Decimal>,
}

/// A rule's compiled condition.
#[derive(Debug)]
struct Condition {
    text: String,
    program: Program,
}

impl Condition {
    fn compile(text: &str) -> Result<Self, String> {
        let program = Program::compile(text).map_err(|e| format!("not a CEL expression: {e}"))?;
        Ok(Self { text: text.to_owned(), program })
    }

    /// The condition's verdict; an error (a field the record lacks) is `Err`.
    fn eval(&self, ctx: &Context) -> Result<bool, String> {
        match self.program.execute(ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("{:?} gives {other:?}, not true or false", self.text)),
            Err(e) => Err(format!("{:?}: {e}", self.text)),
        }
    }
}

/// The rules of a configuration, compiled: built once per configuration and asked per record.
#[derive(Debug)]
pub struct RuleBook {
    rules: Rules,
    routing: Vec<Option<Condition>>,
    shipping: Vec<Option<Condition>>,
    price: Vec<Option<Condition>>,
}

fn compile_all<R: Rule>(section: &str, rules: &[R]) -> Result<Vec<Option<Condition>>, (String, String)> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.head().when.map(Condition::compile).transpose().map_err(|m| (format!("rules.{section}[{i}].when"), m))
        })
        .collect()
}

/// The condition of the rule at `index`, evaluated; a failing one does not fire.
fn fires(condition: Option<&Condition>, rule: &str, ctx: &Context) -> bool {
    condition.is_none_or(|c| match c.eval(ctx) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(rule, error = %e, "rule condition failed on this record: the rule does not fire");
            false
        }
    })
}

impl RuleBook {
    /// Compiles every condition; the error names the rule's path and the reason.
    pub fn new(rules: &Rules) -> Result<Self, (String, String)> {
        Ok(Self {
            routing: compile_all("routing", &rules.routing)?,
            shipping: compile_all("shipping", &rules.shipping)?,
            price: compile_all("price", &rules.price)?,
            rules: rules.clone(),
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether a rule needs what the content says of a product (a scope naming tags, a bound on the
    /// order's weight): only then is it worth reading.
    pub fn needs_product_facts(&self) -> bool {
        let (r, s, p) = (&self.rules.routing, &self.rules.shipping, &self.rules.price);
        let tags = r
            .iter()
            .map(Rule::head)
            .chain(s.iter().map(Rule::head))
            .chain(p.iter().map(Rule::head))
            .any(|h| !h.scope.tags.is_empty());
        tags || r.iter().any(|x| x.order.weighs()) || s.iter().any(|x| x.order.weighs())
    }

    /// Routes an order: routing rules, then shipping rules, as of `now`; `facts` are its SKUs'
    /// product facts (needed only when [`needs_product_facts`](Self::needs_product_facts)).
    pub fn route(&self, order: &Order, facts: &SkuFacts, now: DateTime<Utc>) -> Fulfillment {
        with_stdlib(|root| self.route_in(&order_context(root, order), order, facts, now))
    }

    fn route_in(&self, ctx: &Context, order: &Order, facts: &SkuFacts, now: DateTime<Utc>) -> Fulfillment {
        let weight = order_weight(order, facts);
        let covers = |h: Head<'_>| {
            let line_covered =
                |s: &Sku| h.scope.covers_sku(s.as_str(), facts.get(s).map_or(&[], |f| f.tags.as_slice()));
            h.scope.covers_account(order.channel, order.account.as_str())
                && (!h.scope.names_skus() || order.lines.iter().any(|l| l.sku.as_ref().is_some_and(line_covered)))
                && h.window.is_none_or(|w| w.contains(now))
        };
        let mut out = Fulfillment::default();
        for (rule, condition) in self.rules.routing.iter().zip(&self.routing) {
            let id = rule.id.as_str();
            if !(covers(rule.head()) && rule.order.holds(order, weight) && fires(condition.as_ref(), id, ctx)) {
                continue;
            }
            let mut effects = Vec::new();
            if let Some(reason) = &rule.hold
                && out.hold.is_none()
            {
                out.hold = Some(Hold { rule: id.to_owned(), reason: reason.clone(), since: now, released: None });
                effects.push(format!("held: {reason}"));
            }
            if let Some(location) = &rule.location
                && out.location.is_none()
            {
                out.location = Some(location.clone());
                effects.push(format!("fulfilled from {location}"));
            }
            for tag in &rule.tags {
                if !out.tags.contains(tag) {
                    out.tags.push(tag.clone());
                    effects.push(format!("tagged {tag}"));
                }
            }
            if !effects.is_empty() {
                out.rules.push(AppliedRule { rule: id.to_owned(), kind: "routing".into(), effect: effects.join(", ") });
            }
        }
        let shipping = self.rules.shipping.iter().zip(&self.shipping).find(|(rule, condition)| {
            covers(rule.head()) && rule.order.holds(order, weight) && fires(condition.as_ref(), &rule.id, ctx)
        });
        if let Some((rule, _)) = shipping {
            out.carrier = Some(rule.carrier.clone());
            out.service.clone_from(&rule.service);
            let effect = match &rule.service {
                Some(s) => format!("carrier {} {s}", rule.carrier),
                None => format!("carrier {}", rule.carrier),
            };
            out.rules.push(AppliedRule { rule: rule.id.clone(), kind: "shipping".into(), effect });
        }
        out
    }

    /// The price rules active for this account and SKU at `now`, in file order (no condition asked).
    pub fn price_rules_covering<'a>(
        &'a self,
        channel: Channel,
        account: &'a str,
        sku: &'a str,
        tags: &'a [String],
    ) -> impl Iterator<Item = &'a PriceRule> + 'a {
        self.rules
            .price
            .iter()
            .filter(move |r| r.scope.covers_account(channel, account) && r.scope.covers_sku(sku, tags))
    }

    /// Every window edge of a price rule, for the scheduler to re-price at.
    pub fn price_window_edges(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut edges = Vec::new();
        for rule in &self.rules.price {
            if let Some((start, end)) = rule.window.as_ref().and_then(|w| w.edges().ok()) {
                edges.push((rule.id.clone(), start));
                edges.push((rule.id.clone(), end));
            }
        }
        edges
    }

    /// An account's price of a SKU from its base price, as of `now`; `tags` are the SKU's product
    /// tags (needed only when [`needs_product_facts`](Self::needs_product_facts)).
    pub fn price(
        &self,
        account: &crate::config::AccountConfig,
        base: &crate::Price,
        tags: &[String],
        now: DateTime<Utc>,
    ) -> Result<PricedSku, PriceRefused> {
        let (channel, pricing, sku, base_currency) =
            (account.channel, account.pricing.as_ref(), &base.sku, base.currency);
        let account = account.account.as_str();
        let currency = pricing.map_or(base_currency, |p| p.currency);
        let mut running = base.amount.value();
        let mut rules = Vec::new();
        if currency != base_currency {
            let rate = pricing
                .filter(|p| p.from == Some(base_currency))
                .and_then(|p| p.rate)
                .ok_or(PriceRefused::CurrencyMismatch { base: base_currency, account: currency })?;
            running *= rate;
            rules.push(AppliedRule {
                rule: format!("pricing:{channel}:{account}"),
                kind: "currency".into(),
                effect: format!("{base_currency} × {rate} → {currency}"),
            });
        }
        let mut floor: Option<(Decimal, &str)> = None;
        let mut ceiling: Option<(Decimal, &str)> = None;
        for (rule, condition) in self.rules.price.iter().zip(&self.price) {
            let c = rule.head();
            if !(c.scope.covers_account(channel, account)
                && c.scope.covers_sku(sku.as_str(), tags)
                && c.window.is_none_or(|w| w.contains(now)))
            {
                continue;
            }
            if condition.is_some()
                && !with_stdlib(|root| {
                    fires(condition.as_ref(), c.id, &price_context(root, channel, account, sku, running, currency))
                })
            {
                continue;
            }
            let before = running;
            if let Some(fixed) = rule.fixed {
                running = fixed;
            }
            if let Some(percent) = rule.percent {
                running += running * percent / Decimal::ONE_HUNDRED;
            }
            if let Some(amount) = rule.amount {
                running += amount;
            }
            running = Amount::new(running, currency).value();
            if let Some(round) = rule.round {
                running = round.apply(running);
            }
            if let Some(f) = rule.floor
                && floor.is_none_or(|(x, _)| f > x)
            {
                floor = Some((f, c.id));
            }
            if let Some(x) = rule.ceiling
                && ceiling.is_none_or(|(y, _)| x < y)
            {
                ceiling = Some((x, c.id));
            }
            rules.push(AppliedRule {
                rule: c.id.to_owned(),
                kind: "price".into(),
                effect: format!("{before} → {running}"),
            });
        }
        if let Some((floor, rule)) = floor
            && running < floor
        {
            return Err(PriceRefused::BelowFloor { price: running, floor, rule: rule.to_owned() });
        }
        if let Some((ceiling, rule)) = ceiling
            && running > ceiling
        {
            return Err(PriceRefused::AboveCeiling { price: running, ceiling, rule: rule.to_owned() });
        }
        if running <= Decimal::ZERO {
            return Err(PriceRefused::NotPositive(running));
        }
        Ok(PricedSku { amount: Amount::new(running, currency), currency, rules })
    }
}

thread_local! {
    /// CEL's standard library, built once per thread: a context of its own builds it anew, which
    /// costs more than evaluating a condition. Each evaluation adds its variables in a scope of this.
    static STDLIB: Context<'static, 'static> = Context::default();
}

/// Runs `f` with the standard library's context, for scopes of variables on top of it.
fn with_stdlib<R>(f: impl FnOnce(&Context<'static, 'static>) -> R) -> R {
    STDLIB.with(f)
}

/// An order as CEL sees it: the canonical record with its money as numbers.
fn order_context<'a>(root: &'a Context<'static, 'static>, order: &Order) -> Context<'a, 'static> {
    let mut value = serde_json::to_value(order).unwrap_or_default();
    money_as_numbers(&mut value["totals"]);
    if let Some(lines) = value.get_mut("lines").and_then(serde_json::Value::as_array_mut) {
        lines.iter_mut().for_each(money_as_numbers);
    }
    let mut ctx = root.new_inner_scope();
    // Serializing a JSON value into CEL cannot fail.
    let _ = ctx.add_variable("order", value);
    ctx.add_variable_from_value("channel", order.channel.as_str().to_owned());
    ctx.add_variable_from_value("account", order.account.as_str().to_owned());
    ctx
}

/// The money fields of an object (decimal strings) as JSON numbers.
fn money_as_numbers(object: &mut serde_json::Value) {
    let Some(map) = object.as_object_mut() else { return };
    for key in ["subtotal", "shipping", "tax", "discount", "total", "unit_price"] {
        if let Some(v) = map.get_mut(key)
            && let Some(n) = v.as_str().and_then(|s| s.parse::<f64>().ok())
        {
            *v = serde_json::json!(n);
        }
    }
}

fn price_context<'a>(
    root: &'a Context<'static, 'static>,
    channel: Channel,
    account: &str,
    sku: &Sku,
    price: Decimal,
    currency: Currency,
) -> Context<'a, 'static> {
    let mut ctx = root.new_inner_scope();
    ctx.add_variable_from_value("sku", sku.as_str().to_owned());
    ctx.add_variable_from_value("channel", channel.as_str().to_owned());
    ctx.add_variable_from_value("account", account.to_owned());
    ctx.add_variable_from_value("price", price.to_string().parse::<f64>().unwrap_or_default());
    ctx.add_variable_from_value("currency", currency.to_string());
    ctx
}

/// One kind of rule as validation walks it: its section name, its rules' heads, their compiled
/// conditions and the sample record they run against.
type Section<'a> = (&'a str, Vec<Head<'a>>, &'a [Option<Condition>], &'a Context<'a, 'static>);

fn heads<R: Rule>(rules: &[R]) -> Vec<Head<'_>> {
    rules.iter().map(Rule::head).collect()
}

/// Validates the `[rules]` section: ids, scopes, windows, actions, and every condition compiled and
/// run against a complete sample record (so an unknown variable or field, or a non-boolean result, is
/// refused now).
pub fn validate(rules: &Rules, locations: &BTreeSet<String>) -> Result<(), (String, String)> {
    let book = RuleBook::new(rules)?;
    with_stdlib(|root| validate_heads(rules, &book, root))?;
    validate_actions(rules, locations)
}

/// Ids and windows of every rule, and every condition run against its sample record.
fn validate_heads(rules: &Rules, book: &RuleBook, root: &Context<'static, 'static>) -> Result<(), (String, String)> {
    let mut ids = BTreeSet::new();
    let sample = sample_order();
    let order_ctx = order_context(root, &sample);
    let sku = Sku::new("SAMPLE-1").expect("a valid SKU");
    let eur = Currency::new("EUR").expect("EUR");
    let price_ctx = price_context(root, Channel::Shopify, "sample", &sku, Decimal::new(1999, 2), eur);
    let sections: [Section<'_>; 3] = [
        ("routing", heads(&rules.routing), &book.routing, &order_ctx),
        ("shipping", heads(&rules.shipping), &book.shipping, &order_ctx),
        ("price", heads(&rules.price), &book.price, &price_ctx),
    ];
    for (section, heads, conditions, ctx) in sections {
        for (i, (head, condition)) in heads.iter().zip(conditions).enumerate() {
            let at = |field: &str| format!("rules.{section}[{i}].{field}");
            crate::config::validate_name(head.id).map_err(|m| (at("id"), m))?;
            if !ids.insert(head.id.to_owned()) {
                return Err((at("id"), format!("duplicate rule id {:?}", head.id)));
            }
            if let Some(w) = head.window {
                let (start, end) = w.edges().map_err(|m| (at("window"), m))?;
                if end <= start {
                    return Err((at("window"), "ends before it starts".into()));
                }
            }
            if let Some(c) = condition {
                c.eval(ctx).map_err(|m| (at("when"), m))?;
            }
        }
    }
    Ok(())
}

/// What each kind of rule does: something, and something possible.
fn validate_actions(rules: &Rules, locations: &BTreeSet<String>) -> Result<(), (String, String)> {
    for (i, r) in rules.routing.iter().enumerate() {
        let at = |field: &str| format!("rules.routing[{i}].{field}");
        if r.hold.is_none() && r.location.is_none() && r.tags.is_empty() {
            return Err((at("hold"), "the rule does nothing: give it a hold, a location or tags".into()));
        }
        if let Some(l) = &r.location {
            crate::config::validate_location(l).map_err(|m| (at("location"), m))?;
            if !locations.contains(l) {
                return Err((at("location"), format!("{l:?} is no location an account sells from")));
            }
        }
        validate_match(&r.order).map_err(|(f, m)| (at(&format!("order.{f}")), m))?;
    }
    for (i, r) in rules.shipping.iter().enumerate() {
        let at = |field: &str| format!("rules.shipping[{i}].{field}");
        if r.carrier.trim().is_empty() {
            return Err((at("carrier"), "must name a carrier".into()));
        }
        validate_match(&r.order).map_err(|(f, m)| (at(&format!("order.{f}")), m))?;
    }
    for (i, r) in rules.price.iter().enumerate() {
        let at = |field: &str| format!("rules.price[{i}].{field}");
        if [r.percent, r.amount, r.fixed].iter().filter(|x| x.is_some()).count() > 1 {
            return Err((at("percent"), "give one of percent, amount and fixed".into()));
        }
        if r.percent.is_some_and(|p| p <= -Decimal::ONE_HUNDRED) {
            return Err((at("percent"), "a markdown of 100% or more leaves no price".into()));
        }
        if r.fixed.is_some_and(|f| f <= Decimal::ZERO) {
            return Err((at("fixed"), "must be positive".into()));
        }
        if let (Some(f), Some(c)) = (r.floor, r.ceiling)
            && f > c
        {
            return Err((at("floor"), format!("{f} is above the ceiling {c}")));
        }
    }
    Ok(())
}

fn validate_match(m: &OrderMatch) -> Result<(), (&'static str, String)> {
    for c in &m.countries {
        crate::Address::country(c).map_err(|e| ("countries", e.to_string()))?;
    }
    if let (Some(a), Some(b)) = (m.min_total, m.max_total)
        && a >= b
    {
        return Err(("min_total", format!("{a} is not below max_total {b}")));
    }
    Ok(())
}

/// An order with every optional part present, for checking conditions when the configuration loads.
fn sample_order() -> Order {
    let json = serde_json::json!({
        "id": "shopify:sample:1", "channel": "shopify", "account": "sample", "channel_order_id": "1",
        "order_number": "#1", "status": "paid", "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "currency": "EUR",
        "lines": [{"line_id": "1", "sku": "SAMPLE-1", "channel_sku": "SAMPLE-1", "sku_mapped": true,
            "title": "Sample", "quantity": 1, "unit_price": "19.99", "total": "19.99", "tax": "0.00",
            "discount": "0.00"}],
        "totals": {"subtotal": "19.99", "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": "19.99"},
        "customer": {"email": "buyer@example.com", "name": "Sample Buyer", "phone": "+431234567"},
        "shipping_address": {"name": "Sample Buyer", "line1": "Street 1", "line2": "", "city": "Wien",
            "region": "W", "postal_code": "1010", "country_code": "AT"},
        "billing_address": {"name": "Sample Buyer", "line1": "Street 1", "line2": "", "city": "Wien",
            "region": "W", "postal_code": "1010", "country_code": "AT"},
        "source_version": 1,
        "ship_by": "2026-01-03T00:00:00Z"
    });
    serde_json::from_value(json).expect("the sample order is a canonical order")
}

#[cfg(test)]
mod tests;
