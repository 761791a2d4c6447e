//! One customer per person across channels and CRMs: the identity rules that decide when two orders
//! are the same person, the canonical [`Customer`] they build, and the CRM accounts it is kept in
//! step with. Pure: the unification itself runs in `manifold_app::customers`.
//!
//! ```toml
//! [customers]
//! match_on = ["email", "channel_id"]      # add "phone" to join people by phone number too
//! fold_plus_tags = false                   # ann+shop@x.com is ann@x.com
//! fold_gmail_dots = false                  # a.n.n@gmail.com is ann@gmail.com
//! default_region = "DE"                    # for phone numbers written without +country
//! relay_domains = ["marketplace.amazon.de"] # added to the built-in marketplace relays
//!
//! [[crms]]
//! id = "hubspot"                           # a-z, 0-9, -; 1 to 40
//! kind = "hubspot"                         # hubspot | webhook
//! endpoint = "https://api.hubapi.com"
//! secret = "manifold/crm/hubspot"          # Secrets Manager: the private app token (webhook: whsec_...)
//! cadence = "15m"
//! fields = { email = "email", firstname = "first_name", lastname = "last_name", phone = "phone",
//!            manifold_orders = "order_count", manifold_last_order = "last_order_date" }
//! owns = { marketing_consent = "hs_marketing_consent" }  # what the CRM may change, and its property
//! ```
//!
//! Marketplace relay addresses (Amazon's anonymized buyer mail, TikTok's and Zalando's placeholders)
//! identify one buyer on one channel only: they become a channel identity and never join two people
//! on their own. Every automatic join names its rule in the customer's history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AccountId, Address, Amount, Channel, Order, config::Cadence, config::RateLimit};

/// The `[customers]` section: how orders are joined into people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRules {
    /// The identity rules that join two orders into one customer, strongest first.
    #[serde(default = "default_match_on")]
    pub match_on: Vec<IdentityKind>,
    /// `ann+shop@example.com` is `ann@example.com`.
    #[serde(default)]
    pub fold_plus_tags: bool,
    /// `a.n.n@gmail.com` is `ann@gmail.com` (Gmail ignores dots; other providers do not).
    #[serde(default)]
    pub fold_gmail_dots: bool,
    /// ISO 3166-1 alpha-2 region of phone numbers written without a country code.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Mail domains (or their suffixes) of relay addresses, beside [`BUILTIN_RELAY_DOMAINS`].
    #[serde(default)]
    pub relay_domains: Vec<String>,
}

/// Marketplace relay and placeholder domains: a buyer's address on one channel, not a person's.
pub const BUILTIN_RELAY_DOMAINS: &[&str] = &[
    // Amazon's buyer-seller messaging relay, one address per buyer per seller (every marketplace).
    "marketplace.amazon.com",
    "marketplace.amazon.de",
    "marketplace.amazon.co.uk",
    "marketplace.amazon.fr",
    "marketplace.amazon.it",
    "marketplace.amazon.es",
    "marketplace.amazon.nl",
    "marketplace.amazon.pl",
    "marketplace.amazon.se",
    "marketplace.amazon.ca",
    "marketplace.amazon.com.mx",
    // TikTok Shop's masked buyer addresses.
    "scs.tiktokw.us",
    "scs.tiktokw.eu",
    // Zalando's and eBay's placeholders for the buyer.
    "zalando-partner.com",
    "members.ebay.com",
];

fn default_match_on() -> Vec<IdentityKind> {
    vec![IdentityKind::Email, IdentityKind::ChannelId]
}

fn default_region() -> String {
    "US".into()
}

impl Default for CustomerRules {
    fn default() -> Self {
        Self {
            match_on: default_match_on(),
            fold_plus_tags: false,
            fold_gmail_dots: false,
            default_region: default_region(),
            relay_domains: Vec::new(),
        }
    }
}

/// What kind of identity joins orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A normalized email address (not a relay address).
    Email,
    /// A phone number in E.164.
    Phone,
    /// The channel's own customer id, or a relay address: one buyer on one channel account.
    ChannelId,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::ChannelId => "channel_id",
        }
    }
}

/// One way of recognising a customer. Personal data: never logged, never in events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub kind: IdentityKind,
    /// Normalized: the lowercase address, the E.164 number, or `{channel}:{account}:{id}`.
    pub value: String,
}

impl Identity {
    /// The identity's claim key: what makes it belong to one customer.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.value)
    }

    /// Parses `kind:value` (as [`Identity::key`] writes it and `manifold customers split` takes it).
    pub fn parse(key: &str) -> Option<Identity> {
        let (kind, value) = key.split_once(':')?;
        let kind = match kind {
            "email" => IdentityKind::Email,
            "phone" => IdentityKind::Phone,
            "channel_id" => IdentityKind::ChannelId,
            _ => return None,
        };
        (!value.is_empty()).then(|| Identity { kind, value: value.to_owned() })
    }
}

impl CustomerRules {
    /// Checks the section: `(path, reason)` of the first problem.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.match_on.is_empty() {
            return Err(("customers.match_on".into(), "name at least one identity rule".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for kind in &self.match_on {
            if !seen.insert(kind) {
                return Err(("customers.match_on".into(), format!("{} is named twice", kind.as_str())));
            }
        }
        let region = self.default_region.as_str();
        if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(("customers.default_region".into(), format!("{region:?} is not an ISO 3166-1 alpha-2 code")));
        }
        for (i, d) in self.relay_domains.iter().enumerate() {
            if d.is_empty() || d.contains(['@', ' ']) || !d.contains('.') {
                return Err((format!("customers.relay_domains[{i}]"), format!("{d:?} is not a mail domain")));
            }
        }
        Ok(())
    }

    /// Whether `email` (already lowercase) is a marketplace relay or placeholder address.
    pub fn is_relay(&self, email: &str) -> bool {
        let Some((_, domain)) = email.rsplit_once('@') else { return false };
        let matches = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
        BUILTIN_RELAY_DOMAINS.iter().any(|d| matches(d)) || self.relay_domains.iter().any(|d| matches(d))
    }

    /// The address as one person's key: trimmed and lowercase, plus-tags and Gmail dots folded where
    /// configured. `None` for anything that is not an address.
    pub fn normalize_email(&self, raw: &str) -> Option<String> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@')?;
        if local.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
            return None;
        }
        let mut local = local.to_owned();
        if self.fold_plus_tags
            && let Some((base, _)) = local.split_once('+')
            && !base.is_empty()
        {
            local = base.to_owned();
        }
        let domain = if domain == "googlemail.com" { "gmail.com" } else { domain };
        if self.fold_gmail_dots && domain == "gmail.com" {
            local.retain(|c| c != '.');
        }
        Some(format!("{local}@{domain}"))
    }

    /// The number in E.164, read in `default_region` when written without a country code; `None`
    /// for anything that is not a valid number.
    pub fn normalize_phone(&self, raw: &str) -> Option<String> {
        let region = self.default_region.parse::<phonenumber::country::Id>().ok();
        let number = phonenumber::parse(region, raw.trim()).ok()?;
        phonenumber::is_valid(&number).then(|| number.format().mode(phonenumber::Mode::E164).to_string())
    }

    /// The identities an order names, each with whether the rules let it join people. A relay
    /// address becomes the channel identity when the channel gives no customer id.
    pub fn identities_of(&self, order: &Order) -> Vec<(Identity, bool)> {
        let joins = |kind| self.match_on.contains(&kind);
        let mut out = Vec::new();
        let c = &order.customer;
        let channel_id = |v: &str| Identity {
            kind: IdentityKind::ChannelId,
            value: format!("{}:{}:{}", order.channel, order.account, v.trim()),
        };
        if let Some(id) = c.channel_customer_id.as_deref().filter(|v| !v.trim().is_empty()) {
            out.push((channel_id(id), joins(IdentityKind::ChannelId)));
        }
        if let Some(email) = c.email.as_deref().and_then(|e| self.normalize_email(e)) {
            if self.is_relay(&email) {
                if c.channel_customer_id.is_none() {
                    out.push((channel_id(&email), joins(IdentityKind::ChannelId)));
                }
            } else {
                out.push((Identity { kind: IdentityKind::Email, value: email }, joins(IdentityKind::Email)));
            }
        }
        if let Some(phone) = c.phone.as_deref().and_then(|p| self.normalize_phone(p)) {
            out.push((Identity { kind: IdentityKind::Phone, value: phone }, joins(IdentityKind::Phone)));
        }
        out
    }
}

/// A person, as every channel and CRM knows them (`customer.v2`). Personal data: never logged, never
/// in events; erased by `forget`, which keeps the business facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// `cus_` and 20 hex digits, derived from the identity that first named the person.
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    /// The shipping address of the latest order.
    pub address: Option<Address>,
    /// Every identity that belongs to this customer, with where it was first seen.
    pub identities: Vec<KnownIdentity>,
    pub first_order_at: Option<DateTime<Utc>>,
    pub last_order_at: Option<DateTime<Utc>>,
    /// Orders not cancelled, across channels.
    pub order_count: u32,
    /// Order totals (not cancelled) per currency.
    pub totals: BTreeMap<String, Amount>,
    /// Fields a CRM owns (e.g. `marketing_consent`), as the CRM last set them.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The record id of this person in each CRM account (HubSpot's contact id).
    #[serde(default)]
    pub crm_ids: BTreeMap<String, String>,
    /// Merges, splits and erasures, oldest first.
    #[serde(default)]
    pub history: Vec<CustomerChange>,
    /// Customers an operator split from this one: never joined to it again automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_apart: Vec<String>,
    /// Set when merged into another customer: this id redirects there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Set when the person asked to be forgotten: contact data is gone for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic lock: every write is conditional on the version it read.
    pub version: u64,
}

/// An identity of a customer, with its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownIdentity {
    #[serde(flatten)]
    pub identity: Identity,
    pub channel: Option<Channel>,
    pub account: Option<AccountId>,
    pub first_seen: DateTime<Utc>,
}

/// One entry of a customer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerChange {
    pub at: DateTime<Utc>,
    pub action: ChangeAction,
    /// The other customer of a merge or split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
    /// The identity rule that joined the two (`email`, `phone`, `channel_id`), or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, as the operator said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who did it (the operator's IAM identity), for manual changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Another customer was merged into this one.
    Merged,
    /// This customer was merged into `other`.
    MergedInto,
    /// An identity was split off into `other`.
    SplitOff,
    /// Created by splitting an identity off `other`.
    SplitFrom,
    /// Contact data erased on request.
    Forgotten,
}

impl Customer {
    pub fn has(&self, identity: &Identity) -> bool {
        self.identities.iter().any(|k| &k.identity == identity)
    }
}

/// What a CRM account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmKind {
    /// HubSpot CRM v3 contacts, batch upsert by email.
    Hubspot,
    /// Any other CRM: signed JSON (Standard Webhooks) POSTed to its endpoint.
    Webhook,
}

impl CrmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::Hubspot => "hubspot",
            CrmKind::Webhook => "webhook",
        }
    }
}

/// A canonical customer field a CRM can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerField {
    CustomerId,
    Email,
    Name,
    FirstName,
    LastName,
    Phone,
    Country,
    City,
    PostalCode,
    OrderCount,
    FirstOrderDate,
    LastOrderDate,
    /// The totals per currency, as `EUR 12.00; USD 3.50`.
    Totals,
}

/// One CRM account (`[[crms]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmAccount {
    pub id: String,
    pub kind: CrmKind,
    /// The API base URL (HubSpot) or the webhook URL.
    pub endpoint: String,
    /// Secrets Manager name of the credential: HubSpot's private app token (and its app's client
    /// secret for inbound webhooks, as `{"token", "client_secret"}`), or a webhook's `whsec_` key.
    pub secret: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// How often changed customers are sent.
    #[serde(default = "default_crm_cadence")]
    pub cadence: Cadence,
    /// The request allowance; each kind's documented limit when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// CRM property or JSON field -> the canonical field it is given.
    pub fields: BTreeMap<String, CustomerField>,
    /// Customer attributes this CRM owns -> the CRM property that carries each. Only these change
    /// when the CRM reports an update; order history never does.
    #[serde(default)]
    pub owns: BTreeMap<String, String>,
}

fn enabled() -> bool {
    true
}

fn default_crm_cadence() -> Cadence {
    Cadence::Every(std::time::Duration::from_mins(15))
}

impl CrmAccount {
    /// HubSpot: 100 contacts per batch request; a webhook: one customer per POST.
    pub fn batch_limit(&self) -> usize {
        match self.kind {
            CrmKind::Hubspot => 100,
            CrmKind::Webhook => 1,
        }
    }

    /// The documented allowance: HubSpot private apps 100 requests per 10 s (the lowest tier's
    /// burst limit); a webhook receiver 10 per second unless configured.
    pub fn effective_rate_limit(&self) -> RateLimit {
        self.rate_limit.unwrap_or(match self.kind {
            CrmKind::Hubspot => RateLimit::FixedWindow { requests: 100, window_seconds: 10 },
            CrmKind::Webhook => RateLimit::TokenBucket { rate_per_second: 10.0, burst: 10 },
        })
    }

    /// The CRM's view of `customer`: property -> value, for the configured fields that have one.
    pub fn properties(&self, customer: &Customer) -> BTreeMap<String, String> {
        let (first, last) = split_name(customer.name.as_deref());
        let address = customer.address.as_ref();
        let date = |d: Option<DateTime<Utc>>| d.map(|d| d.format("%Y-%m-%d").to_string());
        let mut out = BTreeMap::new();
        for (property, field) in &self.fields {
            let value = match field {
                CustomerField::CustomerId => Some(customer.id.clone()),
                CustomerField::Email => customer.email.clone(),
                CustomerField::Name => customer.name.clone(),
                CustomerField::FirstName => first.clone(),
                CustomerField::LastName => last.clone(),
                CustomerField::Phone => customer.phone.clone(),
                CustomerField::Country => address.and_then(|a| a.country_code.clone()),
                CustomerField::City => address.and_then(|a| a.city.clone()),
                CustomerField::PostalCode => address.and_then(|a| a.postal_code.clone()),
                CustomerField::OrderCount => Some(customer.order_count.to_string()),
                CustomerField::FirstOrderDate => date(customer.first_order_at),
                CustomerField::LastOrderDate => date(customer.last_order_at),
                CustomerField::Totals => {
                    Some(customer.totals.iter().map(|(c, a)| format!("{c} {a}")).collect::<Vec<_>>().join("; "))
                }
            };
            if let Some(v) = value {
                out.insert(property.clone(), v);
            }
        }
        out
    }
}

fn split_name(name: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else { return (None, None) };
    match name.rsplit_once(' ') {
        Some((first, last)) => (Some(first.trim().to_owned()), Some(last.to_owned())),
        None => (Some(name.to_owned()), None),
    }
}

/// Checks every CRM account: `(path, reason)` of the first problem.
pub(crate) fn validate_crms(crms: &[CrmAccount]) -> Result<(), (String, String)> {
    let mut ids = std::collections::BTreeSet::new();
    for (i, c) in crms.iter().enumerate() {
        let at = |field: &str| format!("crms[{i}].{field}");
        crate::config::validate_name(&c.id).map_err(|m| (at("id"), m))?;
        if !ids.insert(c.id.as_str()) {
            return Err((at("id"), format!("duplicate CRM account {}", c.id)));
        }
        crate::config::validate_endpoint(&c.endpoint).map_err(|m| (at("endpoint"), m))?;
        crate::config::validate_secret_name(&c.secret).map_err(|m| (at("secret"), m))?;
        if !matches!(c.cadence, Cadence::Every(_)) {
            return Err((at("cadence"), "must be a period such as 15m".into()));
        }
        if c.fields.is_empty() {
            return Err((at("fields"), "map at least one canonical field".into()));
        }
        if c.kind == CrmKind::Hubspot && !c.fields.iter().any(|(p, f)| p == "email" && *f == CustomerField::Email) {
            return Err((at("fields"), "HubSpot upserts contacts by email: map `email = \"email\"`".into()));
        }
        for (attribute, property) in &c.owns {
            if attribute.is_empty() || property.is_empty() {
                return Err((at("owns"), "attribute and property names must not be empty".into()));
            }
            if c.fields.contains_key(property) {
                return Err((at("owns"), format!("{property:?} is both sent to the CRM and owned by it")));
            }
        }
        if let Some(limit) = &c.rate_limit {
            crate::config::validate_rate_limit(limit).map_err(|m| (at("rate_limit"), m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_fold_only_where_configured_and_relays_are_recognised() {
        let plain = CustomerRules::default();
        assert_eq!(plain.normalize_email(" Ann+Shop@Example.COM ").unwrap(), "ann+shop@example.com");
        assert_eq!(plain.normalize_email("a.n.n@gmail.com").unwrap(), "a.n.n@gmail.com");
        assert!(plain.normalize_email("not an address").is_none());
        let folding = CustomerRules { fold_plus_tags: true, fold_gmail_dots: true, ..CustomerRules::default() };
        assert_eq!(folding.normalize_email("Ann+Shop@Example.com").unwrap(), "ann@example.com");
        assert_eq!(folding.normalize_email("a.n.n+x@googlemail.com").unwrap(), "ann@gmail.com");
        assert_eq!(folding.normalize_email("a.n.n@example.com").unwrap(), "a.n.n@example.com");
        assert!(plain.is_relay("0x9fk2@marketplace.amazon.de"));
        assert!(!plain.is_relay("ann@amazon.de"));
        let custom = CustomerRules { relay_domains: vec!["relay.example".into()], ..CustomerRules::default() };
        assert!(custom.is_relay("x@eu.relay.example"));
    }

    #[test]
    fn phones_become_e164_in_the_default_region() {
        let de = CustomerRules { default_region: "DE".into(), ..CustomerRules::default() };
        assert_eq!(de.normalize_phone("030 901820").unwrap(), "+4930901820");
        assert_eq!(de.normalize_phone("+49 (30) 901820").unwrap(), "+4930901820");
        assert_eq!(de.normalize_phone("+1 415-555-2671").unwrap(), "+14155552671");
        assert!(de.normalize_phone("12").is_none());
    }

    #[test]
    fn identity_keys_round_trip() {
        let id = Identity { kind: IdentityKind::ChannelId, value: "shopify:main:42".into() };
        assert_eq!(Identity::parse(&id.key()).unwrap(), id);
        assert!(Identity::parse("nickname:x").is_none());
    }
}
