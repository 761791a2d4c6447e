//! The merchant's channel configuration: which accounts exist on which channels, how to reach them,
//! how fast we may call them, how often each kind of data syncs, what stock each channel may show and
//! how channel SKUs map to master SKUs.
//!
//! Mapping and business rules live here, in a validated TOML file (see `infra/channels.example.toml`),
//! not in code. It is parsed and validated once per cold start; every error names the file, the path
//! inside it and what is wrong. Secrets are never in this file, only the Secrets Manager names.

use std::{collections::BTreeMap, fmt, path::Path, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{AccountId, Channel, ChannelSku, OversellAction, Sku};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: at `{path}`: {message}")]
    Invalid { file: String, path: String, message: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Configuration format version; only `1` exists.
    pub version: u32,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Bundles and kits: selling one bundle reserves its components.
    #[serde(default)]
    pub bundles: Vec<Bundle>,
    /// SKUs sold faster than one ledger position can take (a flash sale, a live-shopping drop): their
    /// position is split into shards (see `manifold_ledger::shard`).
    #[serde(default)]
    pub hot_skus: Vec<HotSku>,
    /// CSV drops for legacy ERPs (see [`crate::export`]).
    #[serde(default)]
    pub exports: Vec<crate::export::ExportConfig>,
    /// Signed outbound webhooks (see [`crate::webhooks`]).
    #[serde(default)]
    pub webhooks: Vec<crate::webhooks::Subscription>,
    /// Routing, shipping and price rules (see [`crate::rules`]).
    #[serde(default)]
    pub rules: crate::rules::Rules,
    /// How orders are joined into customers (see [`crate::customers`]).
    #[serde(default)]
    pub customers: crate::customers::CustomerRules,
    /// CRM accounts kept in step with the customers (see [`crate::customers`]).
    #[serde(default)]
    pub crms: Vec<crate::customers::CrmAccount>,
}

/// A SKU whose ledger position is split into `shards` positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotSku {
    pub sku: Sku,
    /// 2 to 64. Only ever raised: stock in a shard above a lowered count would not be seen.
    pub shards: u32,
}

/// One merchant account on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub channel: Channel,
    pub account: AccountId,
    /// The channel API version this account is pinned to (`2026-07`, `v3`, `202309`, ...).
    pub api_version: String,
    /// Secrets Manager name of the credentials; never the secret itself.
    pub secret: String,
    /// Base URL of the channel API. Overridable so tests and the local pipeline use simulators.
    pub endpoint: String,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    pub rate_limit: RateLimit,
    /// Upper bound on concurrent consumers of this account's push queue.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub sync: SyncCadences,
    #[serde(default)]
    pub stock: StockRules,
    /// When an order counts as late, and how long a pushed tracking may stay unconfirmed.
    #[serde(default)]
    pub shipping: ShippingRules,
    /// Channel SKU -> master SKU. SKUs absent here are kept as they are, and flagged.
    #[serde(default)]
    pub sku_map: BTreeMap<ChannelSku, Sku>,
    /// Channel SKU -> the channel's own item id, for channels whose stock and price writes key by id
    /// rather than SKU: WooCommerce product id (or `product_id/variation_id`), Etsy listing id, TikTok
    /// `product_id/sku_id`, Shopify inventory item gid. Overrides only: the listing sync reads these ids
    /// from the channel itself; an id here wins over the listing's.
    #[serde(default)]
    pub item_ids: BTreeMap<String, String>,
    /// Channel-specific identifiers the connector needs (location id, sales channel id, shop id,
    /// marketplace id, warehouse id...). Free-form on purpose: each connector validates its own keys.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The currency the account sells in and the rate from the base prices' currency; without it the
    /// account sells in the base prices' own currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::rules::AccountPricing>,
}

fn default_enabled() -> bool {
    true
}

fn default_concurrency() -> u32 {
    2
}

/// Shipping deadlines of an account (the late-order and tracking watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingRules {
    /// Hours after the order was placed by which it must ship, when the channel gives no ship-by
    /// time of its own (Amazon does: its `LatestShipDate` wins).
    #[serde(default = "default_ship_within_hours")]
    pub ship_within_hours: u32,
    /// Hours a pushed tracking number may stay unconfirmed on the channel before it is pushed again;
    /// still unconfirmed after as long again, it is reported.
    #[serde(default = "default_confirm_within_hours")]
    pub confirm_within_hours: u32,
}

fn default_ship_within_hours() -> u32 {
    48
}

fn default_confirm_within_hours() -> u32 {
    6
}

impl Default for ShippingRules {
    fn default() -> Self {
        Self { ship_within_hours: default_ship_within_hours(), confirm_within_hours: default_confirm_within_hours() }
    }
}

/// A channel's documented request allowance, enforced before sending.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RateLimit {
    /// Shopify-style: a bucket of `capacity` that drains `leak_per_second`.
    LeakyBucket { capacity: f64, leak_per_second: f64 },
    /// Amazon/TikTok/Etsy-style: `rate_per_second` sustained, `burst` at once.
    TokenBucket { rate_per_second: f64, burst: u32 },
    /// BigCommerce/Zalando-style: `requests` per `window_seconds`.
    FixedWindow { requests: u32, window_seconds: u32 },
    /// No platform limit (WooCommerce: host dependent).
    Unlimited,
}

/// How often each kind of data is synchronised for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCadences {
    pub orders: Cadence,
    pub stock: Cadence,
    pub prices: Cadence,
    pub images: Cadence,
    /// Reconciliation by polling, to catch lost webhooks.
    pub reconcile: Cadence,
    /// The account's listings read back from the channel: which SKUs it sells, under which of the
    /// channel's ids (daily by default; a period of at least an hour, or `on_demand`).
    #[serde(default = "default_listings")]
    pub listings: Cadence,
    /// The stock tier reads what the channel shows for every SKU at least this often (24h by
    /// default): each scheduled stock run checks the positions changed since the last one plus a
    /// slice of the catalog, the slices of one period covering all of it.
    #[serde(default = "default_verify_within")]
    pub verify_within: Cadence,
}

fn default_verify_within() -> Cadence {
    Cadence::Every(Duration::from_hours(24))
}

fn default_listings() -> Cadence {
    Cadence::Every(Duration::from_hours(24))
}

/// A listing sync walks the whole catalog: not more often than this.
pub const MIN_LISTINGS_PERIOD: Duration = Duration::from_hours(1);

impl Default for SyncCadences {
    fn default() -> Self {
        Self {
            orders: Cadence::Realtime,
            stock: Cadence::Every(Duration::from_mins(5)),
            prices: Cadence::Every(Duration::from_hours(1)),
            images: Cadence::Every(Duration::from_hours(24)),
            reconcile: Cadence::Every(Duration::from_mins(15)),
            listings: default_listings(),
            verify_within: default_verify_within(),
        }
    }
}

/// `realtime`, `on_demand`, or a period such as `30s`, `5m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Realtime,
    OnDemand,
    Every(Duration),
}

impl FromStr for Cadence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "realtime" => return Ok(Cadence::Realtime),
            "on_demand" => return Ok(Cadence::OnDemand),
            _ => {}
        }
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 =
            num.parse().map_err(|_| format!("invalid cadence {s:?}: expected realtime, on_demand or e.g. 5m"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("invalid cadence {s:?}: unit must be s, m, h or d")),
        };
        if secs == 0 {
            return Err(format!("invalid cadence {s:?}: must be positive"));
        }
        Ok(Cadence::Every(Duration::from_secs(secs)))
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Realtime => f.write_str("realtime"),
            Cadence::OnDemand => f.write_str("on_demand"),
            Cadence::Every(d) => {
                let s = d.as_secs();
                if s % 86_400 == 0 {
                    write!(f, "{}d", s / 86_400)
                } else if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

impl Serialize for Cadence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cadence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What stock a channel may show, derived from the ledger's `available`, and where it comes from.
///
/// One location model: each account sells from exactly one ledger location (`location`, default
/// `default`). Its orders reserve there, and it is published only the positions at that location, so
/// stock at two locations never overwrites itself on a channel. Two accounts may share a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRules {
    /// The ledger location this account sells from (letters, digits, `-`, `_`, `.`; at most 64).
    #[serde(default = "default_location")]
    pub location: String,
    /// Units held back from this channel (safety stock).
    #[serde(default)]
    pub buffer: u32,
    /// Never list more than this many.
    #[serde(default)]
    pub max_listed: Option<u32>,
    /// List only this share of what is available (1..=100), rounded down.
    #[serde(default = "default_percent")]
    pub percent: u8,
    /// Below this many publishable units, list zero (end the listing).
    #[serde(default)]
    pub end_when_below: u32,
    /// What to do with an order that cannot be fully reserved.
    #[serde(default)]
    pub oversell: OversellAction,
    /// When goods a buyer returns count as sellable again.
    #[serde(default)]
    pub restock: RestockPolicy,
    /// Where returned goods go under `restock = "never"` (kept, counted, never published: no account
    /// sells from it unless one names it).
    #[serde(default = "default_damaged_location")]
    pub damaged_location: String,
}

/// When returned goods go back on sale. The ledger applies a return once, whatever the policy and
/// however often the return's notifications arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestockPolicy {
    /// When the goods are back: the return is `received` (or `refunded`, on channels whose returns
    /// skip a receipt step, such as WooCommerce's refunds).
    #[default]
    OnReceipt,
    /// Only once the buyer is refunded for them.
    OnRefund,
    /// Never on sale again: the units go to `damaged_location` when they come back.
    Never,
}

impl RestockPolicy {
    /// Whether a return in `state` brings its units back now, under this policy (to the sellable
    /// location, or to the damaged one under [`RestockPolicy::Never`]).
    pub fn takes_back(self, state: crate::ReturnState) -> bool {
        match self {
            RestockPolicy::OnReceipt | RestockPolicy::Never => state.goods_back(),
            RestockPolicy::OnRefund => state == crate::ReturnState::Refunded,
        }
    }
}

/// Where returned goods go under [`RestockPolicy::Never`] by default.
pub const DAMAGED_LOCATION: &str = "damaged";

fn default_damaged_location() -> String {
    DAMAGED_LOCATION.to_owned()
}

fn default_percent() -> u8 {
    100
}

/// The ledger location used when nothing names one.
pub const DEFAULT_LOCATION: &str = "default";

fn default_location() -> String {
    DEFAULT_LOCATION.to_owned()
}

/// A ledger location name: it is part of DynamoDB keys (`LOC#{location}`), so no `#`, no blanks.
/// A name operators give an export or a subscription: 1 to 40 of `a-z`, `0-9` and `-` (it becomes a
/// key and a path).
/// An https URL (plain http only on loopback: the simulators and local receivers), without whitespace.
pub(crate) fn validate_endpoint(url: &str) -> Result<(), String> {
    let loopback = url.starts_with("http://127.") || url.starts_with("http://localhost");
    if (url.starts_with("https://") || loopback) && !url.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!("{url:?} must be an https URL (plain http only on loopback)"))
    }
}

/// A Secrets Manager secret name: the configuration never holds the secret itself.
pub(crate) fn validate_secret_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        Err("must be a Secrets Manager secret name".into())
    } else {
        Ok(())
    }
}

pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { Err(format!("{name:?}: 1 to 40 of a-z, 0-9 and -")) }
}

pub fn validate_location(location: &str) -> Result<(), String> {
    let ok = !location.is_empty()
        && location.len() <= 64
        && location.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("{location:?} is not a location name (1 to 64 letters, digits, `-`, `_` or `.`)"))
    }
}

impl Default for StockRules {
    fn default() -> Self {
        Self {
            location: default_location(),
            buffer: 0,
            max_listed: None,
            percent: 100,
            end_when_below: 0,
            oversell: OversellAction::Hold,
            restock: RestockPolicy::OnReceipt,
            damaged_location: default_damaged_location(),
        }
    }
}

impl StockRules {
    /// The quantity to publish to the channel for a ledger `available`: minus the buffer, times the
    /// percentage (rounded down), capped by `max_listed`, zero below `end_when_below`, never negative.
    pub fn publishable(&self, available: i64) -> u32 {
        let after_buffer = available.saturating_sub(i64::from(self.buffer)).max(0);
        let share = after_buffer * i64::from(self.percent) / 100;
        let capped = self.max_listed.map_or(share, |m| share.min(i64::from(m)));
        let q = u32::try_from(capped.max(0)).unwrap_or(u32::MAX);
        if q < self.end_when_below { 0 } else { q }
    }
}

/// A bundle (kit) SKU made of component SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub sku: Sku,
    pub components: Vec<BundleComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponent {
    pub sku: Sku,
    pub quantity: u32,
}

impl ChannelConfig {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
            file: file.to_owned(),
            path: String::new(),
            message: e.message().to_owned(),
        })?;
        let config: ChannelConfig = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
            file: file.to_owned(),
            path: e.path().to_string(),
            message: e.inner().message().to_owned(),
        })?;
        config.validate().map_err(|(path, message)| ConfigError::Invalid { file: file.to_owned(), path, message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.version != 1 {
            return Err(("version".into(), format!("unsupported configuration version {}; expected 1", self.version)));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let at = |field: &str| format!("accounts[{i}].{field}");
            if !seen.insert((a.channel, a.account.clone())) {
                return Err((at("account"), format!("duplicate account {}:{}", a.channel, a.account)));
            }
            validate_api_version(a.channel, &a.api_version).map_err(|m| (at("api_version"), m))?;
            validate_secret_name(&a.secret).map_err(|m| (at("secret"), m))?;
            validate_endpoint(&a.endpoint).map_err(|m| (at("endpoint"), m))?;
            validate_rate_limit(&a.rate_limit).map_err(|m| (at("rate_limit"), m))?;
            if a.max_concurrency == 0 || a.max_concurrency > 1000 {
                return Err((at("max_concurrency"), "must be between 1 and 1000".into()));
            }
            validate_location(&a.stock.location).map_err(|m| (at("stock.location"), m))?;
            validate_location(&a.stock.damaged_location).map_err(|m| (at("stock.damaged_location"), m))?;
            if a.stock.restock == RestockPolicy::Never && a.stock.damaged_location == a.stock.location {
                return Err((
                    at("stock.damaged_location"),
                    "is the location the account sells from: returns under restock = \"never\" would be sold again"
                        .into(),
                ));
            }
            for (field, hours) in [
                ("shipping.ship_within_hours", a.shipping.ship_within_hours),
                ("shipping.confirm_within_hours", a.shipping.confirm_within_hours),
            ] {
                if !(1..=24 * 60).contains(&hours) {
                    return Err((at(field), format!("{hours} is not between 1 hour and 60 days")));
                }
            }
            if !(1..=100).contains(&a.stock.percent) {
                return Err((
                    at("stock.percent"),
                    format!("{} is not a percentage between 1 and 100", a.stock.percent),
                ));
            }
            if let Some(sla) = a.channel.spec().stock_sla
                && let Cadence::Every(d) = a.sync.stock
                && d > sla
            {
                return Err((
                    at("sync.stock"),
                    format!("{} exceeds {}'s {} minute stock SLA", a.sync.stock, a.channel.title(), sla.as_secs() / 60),
                ));
            }
            match a.sync.listings {
                Cadence::Realtime => {
                    return Err((at("sync.listings"), "listings cannot be realtime: use a period or on_demand".into()));
                }
                Cadence::Every(d) if d < MIN_LISTINGS_PERIOD => {
                    return Err((
                        at("sync.listings"),
                        format!(
                            "{} is too often: a listing sync walks the whole catalog (at least 1h)",
                            a.sync.listings
                        ),
                    ));
                }
                _ => {}
            }
            match (a.sync.verify_within, a.sync.stock) {
                (Cadence::Every(verify), Cadence::Every(stock)) if verify < stock => {
                    return Err((
                        at("sync.verify_within"),
                        format!("{} is shorter than the stock cadence ({})", a.sync.verify_within, a.sync.stock),
                    ));
                }
                (Cadence::Every(_), _) => {}
                _ => {
                    return Err((
                        at("sync.verify_within"),
                        format!("{} is not a period: use one such as \"24h\"", a.sync.verify_within),
                    ));
                }
            }
            for key in required_settings(a.channel) {
                if !a.settings.contains_key(*key) {
                    return Err((at("settings"), format!("missing `{key}`, required for {}", a.channel)));
                }
            }
        }
        let mut bundles = std::collections::BTreeSet::new();
        for (i, b) in self.bundles.iter().enumerate() {
            if !bundles.insert(b.sku.clone()) {
                return Err((format!("bundles[{i}].sku"), format!("duplicate bundle {}", b.sku)));
            }
            if b.components.is_empty() {
                return Err((format!("bundles[{i}].components"), "a bundle needs at least one component".into()));
            }
            for (j, c) in b.components.iter().enumerate() {
                if c.quantity == 0 {
                    return Err((format!("bundles[{i}].components[{j}].quantity"), "must be at least 1".into()));
                }
                if c.sku == b.sku {
                    return Err((format!("bundles[{i}].components[{j}].sku"), "a bundle cannot contain itself".into()));
                }
            }
        }
        let mut hot = std::collections::BTreeSet::new();
        for (i, h) in self.hot_skus.iter().enumerate() {
            if !hot.insert(h.sku.clone()) {
                return Err((format!("hot_skus[{i}].sku"), format!("duplicate hot SKU {}", h.sku)));
            }
            if !(2..=64).contains(&h.shards) {
                return Err((format!("hot_skus[{i}].shards"), format!("{} shards: between 2 and 64", h.shards)));
            }
            if bundles.contains(&h.sku) {
                return Err((
                    format!("hot_skus[{i}].sku"),
                    format!("{} is a bundle: it has no position of its own; shard its components", h.sku),
                ));
            }
        }
        crate::export::validate(&self.exports)?;
        crate::webhooks::validate(&self.webhooks)?;
        self.customers.validate()?;
        crate::customers::validate_crms(&self.crms)?;
        for (i, a) in self.accounts.iter().enumerate() {
            if let Some(p) = &a.pricing
                && p.from.is_some_and(|from| from != p.currency)
                && p.rate.is_none_or(|r| r <= rust_decimal::Decimal::ZERO)
            {
                return Err((
                    format!("accounts[{i}].pricing.rate"),
                    "a positive rate is needed to convert prices".into(),
                ));
            }
        }
        let locations = self.enabled_accounts().map(|a| a.stock.location.clone()).collect();
        crate::rules::validate(&self.rules, &locations)?;
        for (i, b) in self.bundles.iter().enumerate() {
            for (j, c) in b.components.iter().enumerate() {
                if bundles.contains(&c.sku) {
                    return Err((
                        format!("bundles[{i}].components[{j}].sku"),
                        format!("{} is itself a bundle; nest components directly", c.sku),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A version-1 configuration of these accounts and nothing else.
    pub fn of_accounts(accounts: Vec<AccountConfig>) -> Self {
        Self {
            version: 1,
            accounts,
            bundles: Vec::new(),
            hot_skus: Vec::new(),
            exports: Vec::new(),
            webhooks: Vec::new(),
            rules: crate::rules::Rules::default(),
            customers: crate::customers::CustomerRules::default(),
            crms: Vec::new(),
        }
    }

    /// The account entry for a channel and account id, if configured and enabled.
    pub fn account(&self, channel: Channel, account: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.channel == channel && a.account.as_str() == account && a.enabled)
    }

    /// The subscription with this id, if configured.
    pub fn subscription(&self, id: &str) -> Option<&crate::webhooks::Subscription> {
        self.webhooks.iter().find(|s| s.id == id)
    }

    pub fn bundle(&self, sku: &Sku) -> Option<&Bundle> {
        self.bundles.iter().find(|b| &b.sku == sku)
    }

    /// Enabled accounts, in file order.
    pub fn enabled_accounts(&self) -> impl Iterator<Item = &AccountConfig> {
        self.accounts.iter().filter(|a| a.enabled)
    }
}

impl AccountConfig {
    /// Maps a channel SKU to the master SKU; `None` when unmapped.
    pub fn master_sku(&self, channel_sku: &str) -> Option<&Sku> {
        self.sku_map.iter().find(|(k, _)| k.as_str() == channel_sku).map(|(_, v)| v)
    }

    /// The channel SKU for a master SKU (first mapping wins), or the master SKU itself when unmapped.
    pub fn channel_sku_for(&self, sku: &Sku) -> String {
        self.sku_map.iter().find(|(_, v)| *v == sku).map_or_else(|| sku.to_string(), |(k, _)| k.to_string())
    }

    /// The name of this account's outbound push queue in the template (`Push<Channel>Queue`).
    pub fn queue_key(&self) -> String {
        format!("{}:{}", self.channel, self.account)
    }
}

/// Settings keys each connector cannot work without.
pub fn required_settings(channel: Channel) -> &'static [&'static str] {
    channel.spec().required_settings
}

fn validate_api_version(channel: Channel, v: &str) -> Result<(), String> {
    if (channel.spec().api_version)(v) {
        Ok(())
    } else {
        Err(format!("{v:?} is not a valid pinned {channel} API version"))
    }
}

pub(crate) fn validate_rate_limit(r: &RateLimit) -> Result<(), String> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    match *r {
        RateLimit::LeakyBucket { capacity, leak_per_second } if positive(capacity) && positive(leak_per_second) => {
            Ok(())
        }
        RateLimit::TokenBucket { rate_per_second, burst } if positive(rate_per_second) && burst > 0 => Ok(()),
        RateLimit::FixedWindow { requests, window_seconds } if requests > 0 && window_seconds > 0 => Ok(()),
        RateLimit::Unlimited => Ok(()),
        _ => Err("every rate-limit figure must be positive".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../infra/channels.example.toml");

    #[test]
    fn the_shipped_example_covers_every_channel_and_is_valid() {
        let cfg = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        for c in Channel::ALL {
            assert!(cfg.accounts.iter().any(|a| a.channel == c), "example misses {c}");
        }
    }

    #[test]
    fn unknown_fields_name_file_and_path() {
        let text = EXAMPLE.replacen("api_version", "api_verison", 1);
        let err = ChannelConfig::parse("x.toml", &text).unwrap_err().to_string();
        assert!(err.starts_with("x.toml: at `accounts[0]"), "{err}");
        assert!(err.contains("api_verison"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_path() {
        let text = EXAMPLE.replacen("percent = 100", "percent = 150", 1);
        let err = ChannelConfig::parse("x.toml", &text).unwrap_err().to_string();
        assert!(err.contains("stock.percent") && err.contains("150"), "{err}");
    }

    #[test]
    fn shipping_deadlines_default_and_are_validated() {
        let cfg = ChannelConfig::parse("x.toml", EXAMPLE).unwrap();
        assert!(cfg.accounts.iter().all(|a| a.shipping == ShippingRules::default()));
        let text = EXAMPLE.replacen("stock = {", "shipping = { ship_within_hours = 24 }\nstock = {", 1);
        let cfg = ChannelConfig::parse("x.toml", &text).unwrap();
        assert_eq!(cfg.accounts[0].shipping.ship_within_hours, 24);
        assert_eq!(cfg.accounts[0].shipping.confirm_within_hours, 6);
        let bad = EXAMPLE.replacen("stock = {", "shipping = { ship_within_hours = 0 }\nstock = {", 1);
        let err = ChannelConfig::parse("x.toml", &bad).unwrap_err().to_string();
        assert!(err.contains("shipping.ship_within_hours"), "{err}");
    }

    #[test]
    fn each_account_sells_from_one_validated_location() {
        let cfg = ChannelConfig::parse("x.toml", EXAMPLE).unwrap();
        assert!(cfg.accounts.iter().any(|a| a.stock.location == DEFAULT_LOCATION), "the default when unnamed");
        let text = EXAMPLE.replacen("stock = { buffer = 2,", "stock = { location = \"wh-2\", buffer = 2,", 1);
        let cfg = ChannelConfig::parse("x.toml", &text).unwrap();
        assert_eq!(cfg.accounts[0].stock.location, "wh-2");
        for bad in ["", "wh#2", "wh 2"] {
            let text =
                EXAMPLE.replacen("stock = { buffer = 2,", &format!("stock = {{ location = {bad:?}, buffer = 2,"), 1);
            let err = ChannelConfig::parse("x.toml", &text).unwrap_err().to_string();
            assert!(err.contains("accounts[0].stock.location") && err.contains("not a location name"), "{err}");
        }
    }

    #[test]
    fn zalando_stock_cadence_respects_the_sla() {
        let text = EXAMPLE.replace("orders = \"5m\", stock = \"5m\"", "orders = \"5m\", stock = \"15m\"");
        let err = ChannelConfig::parse("x.toml", &text).unwrap_err().to_string();
        assert!(err.contains("Zalando") && err.contains("sync.stock"), "{err}");
    }

    #[test]
    fn listings_sync_daily_by_default_and_never_realtime_or_too_often() {
        let cfg = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        assert!(cfg.accounts.iter().all(|a| a.sync.listings == Cadence::Every(Duration::from_hours(24))));
        for (cadence, ok) in [("\"on_demand\"", true), ("\"6h\"", true), ("\"realtime\"", false), ("\"10m\"", false)] {
            let text =
                EXAMPLE.replacen("reconcile = \"15m\" }", &format!("reconcile = \"15m\", listings = {cadence} }}"), 1);
            let parsed = ChannelConfig::parse("x.toml", &text);
            assert_eq!(parsed.is_ok(), ok, "{cadence}: {parsed:?}");
            if let Err(e) = parsed {
                assert!(e.to_string().contains("sync.listings"), "{e}");
            }
        }
    }

    #[test]
    fn every_sku_is_verified_daily_by_default_and_never_more_often_than_stock_runs() {
        let cfg = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        assert!(cfg.accounts.iter().all(|a| a.sync.verify_within == Cadence::Every(Duration::from_hours(24))));
        for (cadence, ok) in [("\"6h\"", true), ("\"5m\"", true), ("\"1m\"", false), ("\"on_demand\"", false)] {
            let text = EXAMPLE.replacen(
                "reconcile = \"15m\" }",
                &format!("reconcile = \"15m\", verify_within = {cadence} }}"),
                1,
            );
            let parsed = ChannelConfig::parse("x.toml", &text);
            assert_eq!(parsed.is_ok(), ok, "{cadence}: {parsed:?}");
            if let Err(e) = parsed {
                assert!(e.to_string().contains("sync.verify_within"), "{e}");
            }
        }
    }

    #[test]
    fn cadences_parse_and_print() {
        for s in ["realtime", "on_demand", "30s", "5m", "1h", "1d"] {
            assert_eq!(s.parse::<Cadence>().unwrap().to_string(), s);
        }
        assert!("5 minutes".parse::<Cadence>().is_err());
        assert!("0m".parse::<Cadence>().is_err());
    }

    #[test]
    fn the_restock_policy_says_when_a_return_comes_back_and_never_sends_it_to_the_selling_location() {
        use crate::ReturnState as S;
        let cfg = ChannelConfig::parse("example.toml", EXAMPLE).unwrap();
        assert!(cfg.accounts.iter().all(|a| a.stock.restock == RestockPolicy::OnReceipt), "the default");
        assert!(cfg.accounts.iter().all(|a| a.stock.damaged_location == DAMAGED_LOCATION));
        for (policy, back) in [
            (RestockPolicy::OnReceipt, [false, false, true, true, false]),
            (RestockPolicy::OnRefund, [false, false, false, true, false]),
            (RestockPolicy::Never, [false, false, true, true, false]),
        ] {
            let states = [S::Requested, S::Approved, S::Received, S::Refunded, S::Rejected];
            assert_eq!(states.map(|s| policy.takes_back(s)), back, "{policy:?}");
        }
        let never = EXAMPLE.replacen("stock = { buffer = 2,", "stock = { restock = \"never\", buffer = 2,", 1);
        let parsed = ChannelConfig::parse("example.toml", &never).unwrap();
        assert!(parsed.accounts.iter().any(|a| a.stock.restock == RestockPolicy::Never));
        let onto_sale = EXAMPLE.replacen(
            "stock = { buffer = 2,",
            "stock = { restock = \"never\", damaged_location = \"default\", buffer = 2,",
            1,
        );
        let err = ChannelConfig::parse("example.toml", &onto_sale).unwrap_err().to_string();
        assert!(err.contains("stock.damaged_location") && err.contains("sold again"), "{err}");
        let typo = EXAMPLE.replacen("stock = { buffer = 2,", "stock = { restock = \"sometimes\", buffer = 2,", 1);
        assert!(ChannelConfig::parse("example.toml", &typo).is_err());
    }

    #[test]
    fn publishable_quantity_applies_buffer_percent_cap_and_threshold() {
        let rules = StockRules {
            buffer: 2,
            max_listed: Some(50),
            percent: 50,
            end_when_below: 3,
            oversell: OversellAction::Hold,
            ..StockRules::default()
        };
        assert_eq!(rules.publishable(200), 50, "capped");
        assert_eq!(rules.publishable(22), 10, "(22-2)*50%");
        assert_eq!(rules.publishable(7), 0, "(7-2)*50% = 2 < 3 ends the listing");
        assert_eq!(rules.publishable(1), 0, "never negative");
        assert_eq!(rules.publishable(-5), 0, "backorders never publish negative stock");
        assert_eq!(StockRules::default().publishable(9), 9);
    }
}
