//! OTTO Market Orders API v4 (polled, never pushed).
//!
//! Input: one `PartnerOrder` as `GET /v4/orders/{salesOrderId}` returns it (the order list's
//! `resources[]` hold the same shape): `salesOrderId`, `orderNumber`, `orderDate`, `lastModifiedDate`,
//! `orderLifecycleInformation.lifecycleChangeDate`, `positionItems[]`, `deliveryAddress`,
//! `invoiceAddress`, `initialDeliveryFees[]`, `initialDiscounts[]`, `payment`. Field names and types
//! follow OTTO's OpenAPI (as generated into public clients, 2025); they were not checked against the
//! live API.
//!
//! Traps, each handled here:
//! - A position item is ONE unit; there is no quantity field. Units of one SKU at one gross price are
//!   grouped into a canonical line whose quantity is the unit count (units of one SKU at different prices
//!   stay separate lines, so no money is lost). The line id keeps every `positionItemId` of the group,
//!   comma-separated in document order, cancelled units included, so it stays stable while units are
//!   cancelled and a shipment can name exactly the units it carries.
//! - A cancelled unit (`CANCELLED_BY_PARTNER`, `CANCELLED_BY_MARKETPLACE`) of an order that still has
//!   live units is not counted in its line's quantity (it must not stay reserved, nor ship when the
//!   order does); an order whose units are all cancelled keeps them all (its status releases the stock).
//! - Money is `{amount, currency}` with the amount a JSON number in euros, read through its shortest
//!   decimal form into an exact decimal (never float arithmetic).
//! - Countries are ISO 3166-1 alpha-3 (`DEU`); the canonical record takes alpha-2, through [`COUNTRIES`]
//!   (the EU, EEA, Switzerland, the UK and the European microstates). Any other code is an error naming
//!   the field, as an invalid country is on every channel. A two-letter code is taken as alpha-2.
//! - `invoiceAddress.email` is a pseudonymized relay address: it never becomes the buyer's email. The
//!   buyer's email is `deliveryAddress.email` (plain text), absent until the order is PROCESSABLE.
//! - An ANNOUNCED order has no address yet and may still be cancelled by the buyer or OTTO: it reserves
//!   stock but is not ready to ship.
//!
//! Status: each unit's `fulfillmentStatus`, rolled up to the order as OTTO documents its order-level
//! filter (ANNOUNCED if any unit is; else PROCESSABLE if any is; else SENT if any is; else RETURNED if
//! any is; else cancelled), then:
//! | OTTO (order level)                                 | canonical |
//! |----------------------------------------------------|-----------|
//! | ANNOUNCED                                          | pending (reserves stock, must not ship) |
//! | PROCESSABLE                                        | paid (ready to ship) |
//! | SENT                                               | fulfilled |
//! | RETURNED                                           | refunded  |
//! | CANCELLED_BY_PARTNER, CANCELLED_BY_MARKETPLACE     | cancelled |
//!
//! Totals (prices are gross, VAT included; tax is not split out, as for Zalando): line unit price =
//! `itemValueGrossPrice`; line discount = the units' `itemValueDiscount` (else gross minus
//! `itemValueReducedGrossPrice`); subtotal = the lines' totals; shipping = the `initialDeliveryFees`;
//! discount = the lines' discounts (`initialDiscounts` are the same reductions at checkout level and are
//! not added again: unverified reading of the model); total = subtotal + shipping - discount.
//! `source_version` comes from `lastModifiedDate`, else `orderLifecycleInformation.lifecycleChangeDate`,
//! else `orderDate`.

use manifold_domain::{Address, Amount, Channel, Currency, Order, OrderCustomer, OrderStatus, Record, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, LineDraft, OrderDraft, full_name},
    channels::{ReturnedUnit, unsupported, with_unit_returns},
    json::{self, MoneyShape, Node, zero},
};

const CHANNEL: Channel = Channel::Otto;

const MONEY: MoneyShape = MoneyShape { amount: "amount", currency: "currency" };

/// The fulfilment states of a position item, from the most open to the most closed: the order-level
/// status is the first one any unit is in.
const ROLL_UP: &[(&str, OrderStatus)] = &[
    ("ANNOUNCED", OrderStatus::Pending),
    ("PROCESSABLE", OrderStatus::Paid),
    ("SENT", OrderStatus::Fulfilled),
    ("RETURNED", OrderStatus::Refunded),
    ("CANCELLED_BY_PARTNER", OrderStatus::Cancelled),
    ("CANCELLED_BY_MARKETPLACE", OrderStatus::Cancelled),
];

/// ISO 3166-1 alpha-3 to alpha-2 for the countries OTTO's partners ship from and to: the EU, the EEA,
/// Switzerland, the United Kingdom and the European microstates.
pub(crate) const COUNTRIES: &[(&str, &str)] = &[
    ("AND", "AD"),
    ("AUT", "AT"),
    ("BEL", "BE"),
    ("BGR", "BG"),
    ("CHE", "CH"),
    ("CYP", "CY"),
    ("CZE", "CZ"),
    ("DEU", "DE"),
    ("DNK", "DK"),
    ("ESP", "ES"),
    ("EST", "EE"),
    ("FIN", "FI"),
    ("FRA", "FR"),
    ("GBR", "GB"),
    ("GRC", "GR"),
    ("HRV", "HR"),
    ("HUN", "HU"),
    ("IRL", "IE"),
    ("ISL", "IS"),
    ("ITA", "IT"),
    ("LIE", "LI"),
    ("LTU", "LT"),
    ("LUX", "LU"),
    ("LVA", "LV"),
    ("MCO", "MC"),
    ("MLT", "MT"),
    ("NLD", "NL"),
    ("NOR", "NO"),
    ("POL", "PL"),
    ("PRT", "PT"),
    ("ROU", "RO"),
    ("SMR", "SM"),
    ("SVK", "SK"),
    ("SVN", "SI"),
    ("SWE", "SE"),
    ("VAT", "VA"),
];

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/otto/order-processable-written-from-docs.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => {
            let (order, returned) = order(doc, ctx)?;
            Ok(with_unit_returns(order, returned))
        }
        DocKind::Refund | DocKind::Return | DocKind::Shipment | DocKind::InventoryLevel | DocKind::Product => {
            Err(unsupported(CHANNEL, kind))
        }
    }
}

/// Whether a fulfilment status is one of the two cancelled ones.
fn cancelled(status: &str) -> bool {
    status.starts_with("CANCELLED_")
}

/// A unit's fulfilment status, checked against OTTO's set.
fn unit_status(unit: &Node<'_>) -> Result<String, NormalizeError> {
    let node = unit.field("fulfillmentStatus");
    let raw = node.text()?.to_ascii_uppercase();
    if ROLL_UP.iter().any(|(name, _)| *name == raw) {
        Ok(raw)
    } else {
        let known: Vec<&str> = ROLL_UP.iter().map(|(n, _)| *n).collect();
        Err(node.error(format!("unknown fulfillment status {raw:?} (mapped: {})", known.join(", "))))
    }
}

/// The order-level status: the first of [`ROLL_UP`] any unit is in.
fn rolled_up(statuses: &[String], items: &Node<'_>) -> Result<OrderStatus, NormalizeError> {
    ROLL_UP
        .iter()
        .find(|(name, _)| statuses.iter().any(|s| s == name))
        .map(|(_, status)| *status)
        .ok_or_else(|| items.error("an order needs at least one position item"))
}

/// An alpha-3 (or alpha-2) country code as ISO 3166-1 alpha-2.
pub(crate) fn alpha2(node: &Node<'_>) -> Result<Option<String>, NormalizeError> {
    let Some(code) = node.opt_text()? else { return Ok(None) };
    let upper = code.to_ascii_uppercase();
    if let Some((_, two)) = COUNTRIES.iter().find(|(three, _)| *three == upper) {
        return Ok(Some((*two).to_owned()));
    }
    if upper.len() == 2 {
        return Address::country(&upper).map(Some).map_err(|e| NormalizeError::domain(node.path(), &e));
    }
    Err(node.error(format!(
        "unknown ISO 3166-1 alpha-3 country code {code:?} (known: {})",
        COUNTRIES.iter().map(|(three, _)| *three).collect::<Vec<_>>().join(", ")
    )))
}

/// An OTTO address (`street` and `houseNumber` apart, alpha-3 country); `None` when absent or blank.
fn address(node: &Node<'_>) -> Result<Option<Address>, NormalizeError> {
    if node.value().is_null() {
        return Ok(None);
    }
    node.object()?;
    let part = |key: &str| node.field(key).opt_text();
    let line1 = match (part("street")?, part("houseNumber")?) {
        (Some(street), Some(number)) => Some(format!("{street} {number}")),
        (street, number) => street.or(number),
    };
    let address = Address {
        name: full_name(part("firstName")?, part("lastName")?),
        line1,
        line2: part("addition")?,
        city: part("city")?,
        region: None,
        postal_code: part("zipCode")?,
        country_code: alpha2(&node.field("countryCode"))?,
    };
    Ok((!address.is_empty()).then_some(address))
}

/// One unit's discount: `itemValueDiscount`, else gross minus the reduced gross price, else zero.
fn unit_discount(unit: &Node<'_>, gross: Amount, currency: Currency) -> Result<Amount, NormalizeError> {
    if let Some(d) = unit.field("itemValueDiscount").opt_money(MONEY, currency)? {
        return Ok(json::abs(d, currency));
    }
    let reduced = unit.field("itemValueReducedGrossPrice");
    match reduced.opt_money(MONEY, currency)? {
        Some(r) => Ok(json::abs(json::sub(gross, r, currency, reduced.path())?, currency)),
        None => Ok(zero(currency)),
    }
}

/// The order's currency: the first unit's gross price's.
fn currency_of(units: &[Node<'_>], items: &Node<'_>) -> Result<Currency, NormalizeError> {
    let first = units.first().ok_or_else(|| items.error("an order needs at least one position item"))?;
    first.at("itemValueGrossPrice.currency").currency()
}

/// Units grouped by (SKU, gross price), in document order: each group becomes one line.
struct Group<'a> {
    sku: Option<String>,
    price: Amount,
    units: Vec<(Node<'a>, bool)>,
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<(Order, Vec<ReturnedUnit>), NormalizeError> {
    doc.object()?;
    let items = doc.field("positionItems");
    let units = items.required_items()?;
    let currency = currency_of(&units, &items)?;
    let statuses = units.iter().map(unit_status).collect::<Result<Vec<_>, _>>()?;
    let status = rolled_up(&statuses, &items)?;
    // Cancelled units count only when nothing else is left (the whole order is cancelled).
    let all_cancelled = statuses.iter().all(|s| cancelled(s));
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (unit, unit_status) in units.into_iter().zip(&statuses) {
        let sku = unit.at("product.sku").opt_text()?;
        let price = unit
            .field("itemValueGrossPrice")
            .opt_money(MONEY, currency)?
            .ok_or_else(|| unit.field("itemValueGrossPrice").error("required gross price is missing"))?;
        let counted = all_cancelled || !cancelled(unit_status);
        match groups.iter_mut().find(|g| g.sku == sku && g.price == price) {
            Some(g) => g.units.push((unit, counted)),
            None => groups.push(Group { sku, price, units: vec![(unit, counted)] }),
        }
    }
    let mut lines = Vec::with_capacity(groups.len());
    let mut returned = Vec::new();
    let mut discount = zero(currency);
    for group in &groups {
        let (first, _) = &group.units[0];
        let mut ids = Vec::with_capacity(group.units.len());
        let mut quantity = 0u32;
        let mut line_discount = zero(currency);
        for (unit, counted) in &group.units {
            ids.push(unit.field("positionItemId").text()?);
            if *counted {
                quantity = quantity.checked_add(1).ok_or_else(|| unit.error("too many units of one SKU"))?;
                let d = unit_discount(unit, group.price, currency)?;
                line_discount = json::add(line_discount, d, currency, unit.path())?;
            }
        }
        discount = json::add(discount, line_discount, currency, items.path())?;
        let line_id = ids.join(",");
        for ((unit, _), id) in group.units.iter().zip(&ids) {
            // RETURNED: the item came back to the partner (OTTO's returns are received, then refunded).
            if unit_status(unit)? == "RETURNED" {
                let at = unit.field("returnedDate").opt_datetime()?;
                returned.push(ReturnedUnit {
                    unit_id: id.clone(),
                    line_id: line_id.clone(),
                    state: ReturnState::Received,
                    at,
                });
            }
        }
        lines.push(LineDraft {
            line_id,
            sku_path: first.at("product.sku").path().to_owned(),
            channel_sku: group.sku.clone(),
            title: first.at("product.productTitle").text_or_empty()?,
            quantity,
            unit_price: group.price,
            tax: zero(currency),
            discount: line_discount,
        });
    }
    let subtotal = build::line_subtotal(currency, &lines, items.path())?;
    let fees = doc.field("initialDeliveryFees");
    let shipping = json::sum(
        currency,
        fees.items()?
            .iter()
            .map(|f| f.field("deliveryFeeAmount").money_or_zero(MONEY, currency))
            .collect::<Result<Vec<_>, _>>()?,
        fees.path(),
    )?;
    let delivery = doc.field("deliveryAddress");
    let shipping_address = address(&delivery)?;
    let billing_address = address(&doc.field("invoiceAddress"))?;
    let created_at = doc.field("orderDate").datetime()?;
    let updated_at = match doc.field("lastModifiedDate").opt_datetime()? {
        Some(t) => t,
        None => doc.at("orderLifecycleInformation.lifecycleChangeDate").opt_datetime()?.unwrap_or(created_at),
    };
    OrderDraft {
        channel_order_id: doc.field("salesOrderId").text()?,
        order_number: doc.field("orderNumber").text()?,
        status,
        created_at,
        updated_at,
        currency,
        lines,
        totals: build::totals(currency, subtotal, shipping, zero(currency), discount, None)?,
        customer: OrderCustomer {
            // The delivery address's email is the buyer's; the invoice address's is a relay.
            email: delivery.field("email").opt_text()?,
            name: shipping_address.as_ref().or(billing_address.as_ref()).and_then(|a| a.name.clone()),
            phone: delivery.field("phoneNumber").opt_text()?,
            // A PartnerOrder names no buyer: no customer id or number.
            channel_customer_id: None,
        },
        shipping_address,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
    .map(|order| (order, returned))
}

/// OTTO pushes nothing: any body claiming to be an OTTO notification is refused.
pub(crate) fn classify(_topic: Option<&str>, _body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    Err(NormalizeError::new("", "otto sends no notifications; its orders are polled by the orders tier"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn country(code: &str) -> Result<Option<String>, NormalizeError> {
        let doc = if code.is_empty() { json!({}) } else { json!({ "countryCode": code }) };
        alpha2(&Node::root(&doc).field("countryCode"))
    }

    #[test]
    fn alpha3_codes_map_to_alpha2_and_unknown_ones_are_errors_naming_the_field() {
        assert_eq!(country("DEU").unwrap().as_deref(), Some("DE"));
        assert_eq!(country("aut").unwrap().as_deref(), Some("AT"));
        assert_eq!(country("CH").unwrap().as_deref(), Some("CH"), "alpha-2 is taken as is");
        assert_eq!(country("").unwrap(), None);
        let err = country("XKX").unwrap_err();
        assert_eq!(err.path, "countryCode");
        assert!(err.message.contains("XKX") && err.message.contains("DEU"), "{err}");
    }

    #[test]
    fn every_country_pair_is_well_formed_and_listed_once() {
        let upper = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_uppercase());
        let mut threes = std::collections::BTreeSet::new();
        let mut twos = std::collections::BTreeSet::new();
        for (three, two) in COUNTRIES {
            assert!(upper(three, 3) && upper(two, 2), "{three} {two}");
            assert!(threes.insert(*three) && twos.insert(*two), "{three} or {two} listed twice");
        }
    }

    #[test]
    fn the_order_status_is_the_most_open_units() {
        let items = Value::Null;
        let node = Node::root(&items);
        let roll = |s: &[&str]| rolled_up(&s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>(), &node).unwrap();
        assert_eq!(roll(&["SENT", "ANNOUNCED"]), OrderStatus::Pending);
        assert_eq!(roll(&["SENT", "PROCESSABLE", "CANCELLED_BY_PARTNER"]), OrderStatus::Paid);
        assert_eq!(roll(&["RETURNED", "SENT"]), OrderStatus::Fulfilled);
        assert_eq!(roll(&["RETURNED", "CANCELLED_BY_MARKETPLACE"]), OrderStatus::Refunded);
        assert_eq!(roll(&["CANCELLED_BY_MARKETPLACE", "CANCELLED_BY_PARTNER"]), OrderStatus::Cancelled);
        assert!(rolled_up(&[], &node).is_err());
    }
}
