//! Kaufland Global Marketplace, Seller API v2 (`https://sellerapi.kaufland.com/v2`).
//!
//! Input: the order as `GET /v2/orders/{id_order}` answers it, `{"data": OrderDetails}`:
//! `{id_order, ts_created_iso, storefront, order_units: [OrderUnit], billing_address, shipping_address,
//! buyer: {id_buyer, email}}`, each unit `{id_order_unit, id_order, status, ts_created_iso,
//! ts_updated_iso, price, shipping_rate, currency, id_offer, product: {id_product, eans, title}}`.
//!
//! Traps (see the channel guide):
//! - One order unit per item: "if the same unit gets ordered several times, several order units are
//!   created". Units are grouped by offer (`id_offer`, the seller's own id, our SKU; else the first
//!   EAN) and price into canonical lines; the line id is the offer id, `offer:first-unit` when one offer
//!   sells at two prices. Status, shipping and cancellation are per unit: the connector re-reads them.
//! - Money is integer minor units of the storefront's currency (EUR, CZK or PLN): that `price` and
//!   `shipping_rate` are cents is consistent with the spec's unit prices but not stated for order
//!   units (unverified).
//! - Timestamps: ISO 8601, though the docs' own examples include `2019-07-19T17:24:05T` and
//!   `2016-05-06 23:07:41`; both are read (a trailing `T` is dropped, zone-less is UTC).
//! - Addresses split `street` and `house_number`; the country's format is unverified (the spec's
//!   example is `USA`), so alpha-2 and alpha-3 codes are both taken.
//! - `buyer.email` may be a relay address (unverified): it is kept as the order's email as given.
//!
//! Status, from the units' `status` (cancelled units count only when every unit is cancelled):
//! | units                                                     | canonical            |
//! |-----------------------------------------------------------|----------------------|
//! | every unit `cancelled`                                    | cancelled            |
//! | every other unit `returned`/`returned_paid`               | refunded             |
//! | some `returned`/`returned_paid`                           | partially_refunded   |
//! | every other unit `sent`/`sent_and_autopaid`/`received`    | fulfilled            |
//! | some of those                                             | partially_fulfilled  |
//! | any `open`                                                | pending              |
//! | otherwise (`need_to_be_sent`)                             | paid                 |
//!
//! Totals: prices are gross; subtotal = the units' prices, shipping = their `shipping_rate`, total =
//! both; tax and discount zero. `source_version` is the latest unit `ts_updated_iso`.
//!
//! Notifications ([`classify`]) carry no order data: the order they name is fetched (thin).

use manifold_domain::{Amount, Channel, Currency, Order, OrderCustomer, OrderStatus, Record, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ReturnedUnit, ignore, unsupported, with_unit_returns},
    json::{self as j, Node, zero},
};

const CHANNEL: Channel = Channel::Kaufland;

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/kaufland/order-two-units-one-offer.json")),
};

const ADDRESS: AddressKeys = AddressKeys {
    name: "",
    first_name: "first_name",
    last_name: "last_name",
    line1: "street",
    line2: "additional_field",
    city: "city",
    region: "",
    postal_code: "postcode",
    country: "country",
};

/// The unit statuses the spec lists (`OrderUnitStatus`).
const UNIT_STATUSES: &[&str] =
    &["open", "need_to_be_sent", "sent", "sent_and_autopaid", "received", "returned", "returned_paid", "cancelled"];

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

/// An amount in the currency's minor units (`1999` is 19.99 EUR).
fn minor(node: &Node<'_>, currency: Currency) -> Result<Option<Amount>, NormalizeError> {
    let Some(cents) = node.opt_i64()? else { return Ok(None) };
    let amount = Amount::from_minor_units(cents, 100, currency).map_err(|e| NormalizeError::domain(node.path(), &e))?;
    j::bounded(amount, node.path()).map(Some)
}

/// The offer a unit sells: the seller's `id_offer`, else the product's first EAN.
fn offer_of(unit: &Node<'_>) -> Result<(Option<String>, String), NormalizeError> {
    if let Some(offer) = unit.field("id_offer").opt_text()? {
        return Ok((Some(offer), unit.field("id_offer").path().to_owned()));
    }
    let eans = unit.at("product.eans");
    let first = eans.items()?.into_iter().next();
    match first {
        Some(ean) => Ok((ean.opt_text()?, ean.path().to_owned())),
        None => Ok((None, unit.field("id_offer").path().to_owned())),
    }
}

fn status(units: &[Node<'_>]) -> Result<OrderStatus, NormalizeError> {
    let mut statuses = Vec::with_capacity(units.len());
    for u in units {
        let node = u.field("status");
        let s = node.text()?;
        if !UNIT_STATUSES.contains(&s.as_str()) {
            return Err(node.error(format!("unknown order unit status {s:?} (one of {})", UNIT_STATUSES.join(", "))));
        }
        statuses.push(s);
    }
    let active: Vec<&str> = statuses.iter().map(String::as_str).filter(|s| *s != "cancelled").collect();
    let count = |set: &[&str]| active.iter().filter(|s| set.contains(s)).count();
    let returned = count(&["returned", "returned_paid"]);
    let shipped = count(&["sent", "sent_and_autopaid", "received"]);
    Ok(if active.is_empty() {
        OrderStatus::Cancelled
    } else if returned == active.len() {
        OrderStatus::Refunded
    } else if returned > 0 {
        OrderStatus::PartiallyRefunded
    } else if shipped == active.len() {
        OrderStatus::Fulfilled
    } else if shipped > 0 {
        OrderStatus::PartiallyFulfilled
    } else if active.contains(&"open") {
        OrderStatus::Pending
    } else {
        OrderStatus::Paid
    })
}

fn address(node: &Node<'_>) -> Result<Option<manifold_domain::Address>, NormalizeError> {
    let Some(mut address) = ADDRESS.read(node)? else { return Ok(None) };
    if let Some(number) = node.field("house_number").opt_text()? {
        address.line1 = Some(match address.line1 {
            Some(street) => format!("{street} {number}"),
            None => number,
        });
    }
    if address.name.is_none() {
        address.name = node.field("company_name").opt_text()?;
    }
    Ok(Some(address))
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<(Order, Vec<ReturnedUnit>), NormalizeError> {
    let data = doc.field("data");
    data.object()?;
    let units = data.field("order_units").required_items()?;
    let Some(first) = units.first() else {
        return Err(data.field("order_units").error("an order needs at least one order unit"));
    };
    let currency = first.field("currency").currency()?;
    let mut lines: Vec<LineDraft> = Vec::new();
    let mut returned = Vec::new();
    let mut subtotal = zero(currency);
    let mut shipping = zero(currency);
    let mut updated_at = None;
    for unit in &units {
        let c = unit.field("currency").currency()?;
        if c != currency {
            return Err(unit
                .field("currency")
                .error(format!("currency {c} differs from the order currency {currency}")));
        }
        let price = minor(&unit.field("price"), currency)?
            .ok_or_else(|| unit.field("price").error("required price is missing"))?;
        subtotal = j::add(subtotal, price, currency, unit.path())?;
        if let Some(rate) = minor(&unit.field("shipping_rate"), currency)? {
            shipping = j::add(shipping, rate, currency, unit.path())?;
        }
        if let Some(t) = unit.field("ts_updated_iso").opt_datetime()? {
            updated_at = Some(updated_at.map_or(t, |u: chrono::DateTime<chrono::Utc>| u.max(t)));
        }
        let unit_id = unit.field("id_order_unit").text()?;
        let (offer, sku_path) = offer_of(unit)?;
        let key = offer.clone().unwrap_or_else(|| format!("unit-{unit_id}"));
        let state = match unit.field("status").opt_text()?.as_deref() {
            Some("returned") => Some(ReturnState::Received),
            Some("returned_paid") => Some(ReturnState::Refunded),
            _ => None,
        };
        let mut returned_on = |line_id: &str| {
            if let Some(state) = state {
                let at = unit.field("ts_updated_iso").opt_datetime().ok().flatten();
                returned.push(ReturnedUnit { unit_id: unit_id.clone(), line_id: line_id.to_owned(), state, at });
            }
        };
        let same = |l: &&mut LineDraft| l.channel_sku == offer && l.unit_price == price && l.line_id.starts_with(&key);
        if let Some(line) = lines.iter_mut().find(same) {
            line.quantity += 1;
            returned_on(&line.line_id);
            continue;
        }
        let split = lines.iter().any(|l| l.channel_sku == offer);
        let line_id = if split { format!("{key}:{unit_id}") } else { key };
        returned_on(&line_id);
        lines.push(LineDraft {
            line_id,
            sku_path,
            channel_sku: offer,
            title: unit.at("product.title").text_or_empty()?,
            quantity: 1,
            unit_price: price,
            tax: zero(currency),
            discount: zero(currency),
        });
    }
    let created_at = data.field("ts_created_iso").datetime()?;
    let total = j::add(subtotal, shipping, currency, data.path())?;
    let billing_address = address(&data.field("billing_address"))?;
    let shipping_address = address(&data.field("shipping_address"))?;
    let phone = match data.at("shipping_address.phone").opt_text()? {
        Some(p) => Some(p),
        None => data.at("billing_address.phone").opt_text()?,
    };
    let id = data.field("id_order").text()?;
    OrderDraft {
        channel_order_id: id.clone(),
        order_number: id,
        status: status(&units)?,
        created_at,
        updated_at: updated_at.unwrap_or(created_at).max(created_at),
        currency,
        lines,
        totals: build::totals(currency, subtotal, shipping, zero(currency), zero(currency), Some(total))?,
        customer: OrderCustomer {
            email: data.at("buyer.email").opt_text()?,
            name: billing_address.as_ref().and_then(|a| a.name.clone()),
            phone,
            channel_customer_id: build::customer_id(&data.at("buyer.id_buyer"))?,
        },
        shipping_address,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
    .map(|order| (order, returned))
}

/// The events that change an order (`SubscriptionEventName`); item and catalogue events are
/// acknowledged and left to the listing sync.
const ORDER_EVENTS: &[&str] = &["order_new", "order_unit_new", "order_unit_status_changed"];

/// Return events: a returned unit shows on its order (`returned`, `returned_paid`), which the
/// normalizer turns into Returns, so a return event naming its order or unit re-reads the order.
const RETURN_EVENTS: &[&str] = &["return_new", "return_status_changed", "return_unit_status_changed"];

/// A push notification names an event and the resource it concerns, nothing else ("the notification
/// does not contain the changed data"). Its exact body is unverified: the event is read from
/// `event_name`, the order from `id_order` (top level or under `resource`/`data`), else the unit from
/// `id_order_unit`, which the connector resolves to its order (`unit:{id}`).
pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let event = body.field("event_name").text()?;
    let returns = RETURN_EVENTS.contains(&event.as_str());
    if !returns && !ORDER_EVENTS.contains(&event.as_str()) {
        return Ok(ignore(format!("{event} changes no order; listings are synced by the scheduler")));
    }
    let event_time = body.field("ts_created_iso").opt_datetime()?;
    for scope in [None, Some("resource"), Some("data")] {
        let node = |key: &str| match scope {
            Some(s) => body.field(s).field(key),
            None => body.field(key),
        };
        if let Some(order) = node("id_order").opt_text()? {
            return Ok(Inbound::Thin { kind: DocKind::Order, resource_id: order, event_time });
        }
        if let Some(unit) = node("id_order_unit").opt_text()? {
            return Ok(Inbound::Thin { kind: DocKind::Order, resource_id: format!("unit:{unit}"), event_time });
        }
    }
    if returns {
        // A return named by its own id only: its units' new statuses reach the order, which the
        // orders sweep (`ts_units_updated_iso`) reads again.
        return Ok(ignore(format!("{event} names no order or unit; the orders sweep reads the returned units")));
    }
    Err(body.field("id_order").error(format!("the {event} notification names no order (id_order or id_order_unit)")))
}
