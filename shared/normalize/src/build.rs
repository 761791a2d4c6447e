//! What every channel module shares once it has read its fields: SKU mapping, order assembly (ids,
//! line totals, warnings, source version), addresses, customers and status tables.
//!
//! Channel modules only translate their wire shape into [`OrderDraft`] and friends; the rules of the
//! canonical record (see `manifold_domain::records`) live here once.

use chrono::{DateTime, Utc};
use manifold_domain::{
    AccountId, Address, Amount, Channel, ChannelSku, Currency, InventoryLevel, Order, OrderCustomer, OrderId,
    OrderLine, OrderStatus, OrderWarning, Sku, Totals,
};

use crate::{Context, NormalizeError, json, json::Node};

/// A channel SKU resolved through the account's SKU map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedSku {
    /// The master SKU when mapped, else the channel's own value; `None` when the channel sent none.
    pub sku: Option<Sku>,
    pub channel_sku: Option<ChannelSku>,
    pub mapped: bool,
}

/// Maps `raw` (as the channel sent it, blank meaning none) through `AccountConfig::master_sku`.
pub(crate) fn resolve_sku(ctx: &Context<'_>, raw: Option<&str>, path: &str) -> Result<ResolvedSku, NormalizeError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(ResolvedSku { sku: None, channel_sku: None, mapped: false });
    };
    let channel_sku = ChannelSku::new(raw).map_err(|e| NormalizeError::domain(path, &e))?;
    let (sku, mapped) = match ctx.account.master_sku(raw) {
        Some(master) => (master.clone(), true),
        None => (Sku::new(raw).map_err(|e| NormalizeError::domain(path, &e))?, false),
    };
    Ok(ResolvedSku { sku: Some(sku), channel_sku: Some(channel_sku), mapped })
}

/// Reads an optional SKU field and resolves it.
pub(crate) fn sku_at(ctx: &Context<'_>, node: &Node<'_>) -> Result<ResolvedSku, NormalizeError> {
    resolve_sku(ctx, node.opt_text()?.as_deref(), node.path())
}

/// One order line as a channel describes it, before SKU mapping.
#[derive(Debug, Clone)]
pub(crate) struct LineDraft {
    pub line_id: String,
    /// Path of the SKU field, for errors.
    pub sku_path: String,
    pub channel_sku: Option<String>,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Amount,
    pub tax: Amount,
    pub discount: Amount,
}

/// An order as a channel describes it; [`OrderDraft::build`] applies the canonical rules.
#[derive(Debug, Clone)]
pub(crate) struct OrderDraft {
    pub channel_order_id: String,
    pub order_number: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    /// The channel's last-update time; it also becomes `source_version` (epoch millis).
    pub updated_at: DateTime<Utc>,
    pub currency: Currency,
    pub lines: Vec<LineDraft>,
    pub totals: Totals,
    pub customer: OrderCustomer,
    pub shipping_address: Option<Address>,
    pub billing_address: Option<Address>,
    /// The channel's latest ship time, where it gives one.
    pub ship_by: Option<DateTime<Utc>>,
}

impl OrderDraft {
    /// Assigns the deterministic id, maps SKUs (flagging unmapped and missing ones, never dropping a
    /// line), computes `line.total = unit_price * quantity` and stamps `source_version`.
    pub fn build(self, channel: Channel, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
        let account: &AccountId = &ctx.account.account;
        let id = OrderId::for_channel(channel, account, &self.channel_order_id)
            .map_err(|e| NormalizeError::domain("id", &e))?;
        let mut warnings = Vec::new();
        let mut lines = Vec::with_capacity(self.lines.len());
        for draft in self.lines {
            // The line's own path (its SKU field's parent), for an overflowing line total.
            let line_path = draft.sku_path.rsplit_once('.').map_or("", |(line, _)| line);
            let total = json::times(draft.unit_price, draft.quantity, self.currency, line_path)?;
            let resolved = resolve_sku(ctx, draft.channel_sku.as_deref(), &draft.sku_path)?;
            match (&resolved.channel_sku, resolved.mapped) {
                (None, _) => warnings.push(OrderWarning::LineWithoutSku { line_id: draft.line_id.clone() }),
                (Some(raw), false) => warnings
                    .push(OrderWarning::UnmappedSku { line_id: draft.line_id.clone(), channel_sku: raw.to_string() }),
                (Some(_), true) => {}
            }
            lines.push(OrderLine {
                total,
                line_id: draft.line_id,
                sku: resolved.sku,
                channel_sku: resolved.channel_sku,
                sku_mapped: resolved.mapped,
                title: draft.title,
                quantity: draft.quantity,
                unit_price: draft.unit_price,
                tax: draft.tax,
                discount: draft.discount,
            });
        }
        Ok(Order {
            id,
            channel,
            account: account.clone(),
            channel_order_id: self.channel_order_id,
            order_number: self.order_number,
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            currency: self.currency,
            lines,
            totals: self.totals,
            customer: self.customer,
            shipping_address: self.shipping_address,
            billing_address: self.billing_address,
            source_version: self.updated_at.timestamp_millis(),
            warnings,
            ship_by: self.ship_by,
            oversold: None,
            fulfillment: None,
            customer_id: None,
            contact_erased_at: None,
        })
    }
}

/// The canonical order id for a channel order id found at `path`.
pub(crate) fn order_id(
    channel: Channel,
    ctx: &Context<'_>,
    node: &Node<'_>,
) -> Result<(OrderId, String), NormalizeError> {
    let raw = node.text()?;
    let id = OrderId::for_channel(channel, &ctx.account.account, &raw)
        .map_err(|e| NormalizeError::domain(node.path(), &e))?;
    Ok((id, raw))
}

/// Builds an inventory level; the channel's timestamp is also its source version.
pub(crate) fn inventory_level(
    channel: Channel,
    ctx: &Context<'_>,
    sku: ResolvedSku,
    channel_item_id: Option<String>,
    location_id: Option<String>,
    available: i64,
    updated_at: DateTime<Utc>,
) -> InventoryLevel {
    InventoryLevel {
        channel,
        account: ctx.account.account.clone(),
        sku: sku.sku,
        channel_sku: sku.channel_sku,
        channel_item_id,
        location_id,
        available,
        updated_at,
        source_version: updated_at.timestamp_millis(),
    }
}

/// Where one channel keeps each part of a postal address (empty string: the channel has no such key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddressKeys {
    pub name: &'static str,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub line1: &'static str,
    pub line2: &'static str,
    pub city: &'static str,
    pub region: &'static str,
    pub postal_code: &'static str,
    pub country: &'static str,
}

impl AddressKeys {
    /// Reads an address; `None` when the node is absent or every part is blank.
    pub fn read(&self, node: &Node<'_>) -> Result<Option<Address>, NormalizeError> {
        if node.value().is_null() {
            return Ok(None);
        }
        node.object()?;
        let part = |key: &str| if key.is_empty() { Ok(None) } else { node.field(key).opt_text() };
        let name = match part(self.name)? {
            Some(n) => Some(n),
            None => full_name(part(self.first_name)?, part(self.last_name)?),
        };
        let country_code = match part(self.country)? {
            Some(c) => {
                Some(Address::country(&c).map_err(|e| NormalizeError::domain(node.field(self.country).path(), &e))?)
            }
            None => None,
        };
        let address = Address {
            name,
            line1: part(self.line1)?,
            line2: part(self.line2)?,
            city: part(self.city)?,
            region: part(self.region)?,
            postal_code: part(self.postal_code)?,
            country_code,
        };
        Ok((!address.is_empty()).then_some(address))
    }
}

/// "First Last", or whichever part exists.
pub(crate) fn full_name(first: Option<String>, last: Option<String>) -> Option<String> {
    match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    }
}

/// The channel's own id of the buyer (`OrderCustomer::channel_customer_id`), sent as text or as an
/// integer. Absent, blank or `0` is none: `0` is how WooCommerce and BigCommerce mark a guest checkout.
pub(crate) fn customer_id(node: &Node<'_>) -> Result<Option<String>, NormalizeError> {
    Ok(node.opt_text()?.filter(|id| id != "0"))
}

/// A channel's status vocabulary mapped onto a closed canonical set ([`OrderStatus`],
/// `ReturnState`), case-insensitively.
pub(crate) fn map_status<S: Copy>(table: &[(&str, S)], node: &Node<'_>) -> Result<S, NormalizeError> {
    let raw = node.text()?;
    table.iter().find(|(name, _)| name.eq_ignore_ascii_case(&raw)).map(|(_, s)| *s).ok_or_else(|| {
        let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
        node.error(format!("unknown status {raw:?} (mapped: {})", known.join(", ")))
    })
}

/// The sum of `unit_price * quantity` over the lines (`path`: where the lines are, for an overflow).
pub(crate) fn line_subtotal(currency: Currency, lines: &[LineDraft], path: &str) -> Result<Amount, NormalizeError> {
    let totals =
        lines.iter().map(|l| json::times(l.unit_price, l.quantity, currency, path)).collect::<Result<Vec<_>, _>>()?;
    json::sum(currency, totals, path)
}

/// Totals computed from the pieces when a channel sends no grand total (in the order's `currency`).
pub(crate) fn totals(
    currency: Currency,
    subtotal: Amount,
    shipping: Amount,
    tax: Amount,
    discount: Amount,
    total: Option<Amount>,
) -> Result<Totals, NormalizeError> {
    let total = match total {
        Some(t) => t,
        None => json::sub(json::sum(currency, [subtotal, shipping, tax], "")?, discount, currency, "")?,
    };
    Ok(Totals { subtotal, shipping, tax, discount, total })
}

/// A channel's image list (`[{<url_field>, alt}]`, in display order), images without a URL skipped.
pub(crate) fn images(list: &Node<'_>, url_field: &str) -> Result<Vec<manifold_domain::Image>, NormalizeError> {
    let mut out = Vec::new();
    for image in list.items()? {
        if let Some(url) = image.field(url_field).opt_text()?.filter(|u| !u.is_empty()) {
            let alt = image.field("alt").opt_text()?.filter(|a| !a.is_empty());
            out.push(manifold_domain::Image { url, alt, checksum: None });
        }
    }
    Ok(out)
}
