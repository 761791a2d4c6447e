//! Zalando zDirect Orders API (JSON:API; polled, never pushed).
//!
//! Input: the JSON:API document of one order fetched with `include=order_items,order_lines`:
//! `{"data": {"type": "Order", "id", "attributes": {order_id, order_number, order_date, modified_at,
//! status, shipping_address, billing_address, customer_email?, order_lines_price_currency, ...},
//! "relationships": {"order_items": ...}}, "included": [OrderItem..., OrderLine...]}`.
//!
//! Each OrderItem is one article (`external_id` = the merchant's SKU, else `ean`); each of its
//! OrderLines is ONE unit with its own `price {amount, currency}`. Units of an item are grouped by price
//! into canonical lines (quantity = unit count); canceled units are kept (the order status says whether
//! stock is released). Trap: money is JSON floats (`29.95`), read through their shortest decimal form.
//! `order_number` can repeat across partner orders; `order_id` (`data.id`) is unique and is the id.
//!
//! Status (`attributes.status`), except that an order whose every order line is `canceled` is
//! cancelled: Zalando's order status is only initial, approved or fulfilled, and "fulfilled" means
//! each line was shipped, canceled and/or returned (a failed payment cancels every line and sets the
//! order fulfilled), so the lines say whether it was cancelled:
//! | Zalando   | canonical |
//! |-----------|-----------|
//! | initial   | pending   |
//! | approved  | paid      |
//! | fulfilled | fulfilled |
//! | canceled  | cancelled |
//!
//! Returns: an order line (one unit) whose status is `returned` is a Return of that unit, received
//! (`{channel}:{account}:unit-{order line id}`); the reconciliation tier's poll of orders changed since
//! its last runs brings these changes in for orders already exported.
//!
//! Totals: Zalando prices are gross and it charges the buyer no shipping through the partner: subtotal =
//! total = sum of line totals (or `order_lines_price_amount`), shipping, tax and discount zero.
//! `source_version` comes from `modified_at`, else `order_date`.

use manifold_domain::{Amount, Channel, Currency, Order, OrderCustomer, OrderStatus, Record, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ReturnedUnit, unsupported},
    json::{MoneyShape, Node, zero},
};

const CHANNEL: Channel = Channel::Zalando;

const STATUS: &[(&str, OrderStatus)] = &[
    ("initial", OrderStatus::Pending),
    ("approved", OrderStatus::Paid),
    ("fulfilled", OrderStatus::Fulfilled),
    ("canceled", OrderStatus::Cancelled),
];

const MONEY: MoneyShape = MoneyShape { amount: "amount", currency: "currency" };

const ADDRESS: AddressKeys = AddressKeys {
    name: "",
    first_name: "first_name",
    last_name: "last_name",
    line1: "address_line_1",
    line2: "address_line_2",
    city: "city",
    region: "",
    postal_code: "zip_code",
    country: "country_code",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/zalando/order-jsonapi-written-from-docs.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => {
            let (order, returned) = order(doc, ctx)?;
            Ok(super::with_unit_returns(order, returned))
        }
        DocKind::Refund | DocKind::Return | DocKind::Shipment | DocKind::InventoryLevel | DocKind::Product => {
            Err(unsupported(CHANNEL, kind))
        }
    }
}

/// Included resources of `kind`, by id.
fn included<'a>(doc: &Node<'a>, kind: &str) -> Result<Vec<(String, Node<'a>)>, NormalizeError> {
    let mut out = Vec::new();
    for r in doc.field("included").items()? {
        if r.field("type").opt_text()?.as_deref() == Some(kind) {
            out.push((r.field("id").text()?, r));
        }
    }
    Ok(out)
}

/// Ids listed in a JSON:API relationship.
fn related(resource: &Node<'_>, relation: &str) -> Result<Vec<String>, NormalizeError> {
    resource.at(&format!("relationships.{relation}.data")).items()?.iter().map(|r| r.field("id").text()).collect()
}

fn currency_of(attrs: &Node<'_>, lines: &[(String, Node<'_>)]) -> Result<Currency, NormalizeError> {
    if let Some(c) = attrs.field("order_lines_price_currency").opt_currency()? {
        return Ok(c);
    }
    for (_, l) in lines {
        if let Some(c) = l.at("attributes.price.currency").opt_currency()? {
            return Ok(c);
        }
    }
    Err(attrs.field("order_lines_price_currency").error("no currency on the order or its lines"))
}

/// The order, and its units (order lines) marked `returned`, each with its canonical line.
fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<(Order, Vec<ReturnedUnit>), NormalizeError> {
    let data = doc.field("data");
    data.object()?;
    let attrs = data.field("attributes");
    let items = included(doc, "OrderItem")?;
    let order_lines = included(doc, "OrderLine")?;
    let currency = currency_of(&attrs, &order_lines)?;
    // Items in relationship order when listed, else in `included` order.
    let item_ids = related(&data, "order_items")?;
    let ordered: Vec<&(String, Node<'_>)> = if item_ids.is_empty() {
        items.iter().collect()
    } else {
        item_ids
            .iter()
            .map(|id| {
                items.iter().find(|(i, _)| i == id).ok_or_else(|| {
                    data.at("relationships.order_items").error(format!("order item {id} is not included"))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut lines = Vec::new();
    let mut returned = Vec::new();
    for (item_id, item) in ordered {
        let a = item.field("attributes");
        let sku_node = if a.field("external_id").is_blank() { a.field("ean") } else { a.field("external_id") };
        let mut by_price: Vec<(Amount, String, u32)> = Vec::new();
        // Returned units of this item, by the index of their price group.
        let mut returned_here: Vec<(String, usize, Option<chrono::DateTime<chrono::Utc>>)> = Vec::new();
        for line_id in related(item, "order_lines")? {
            let (_, line) = order_lines.iter().find(|(i, _)| *i == line_id).ok_or_else(|| {
                item.at("relationships.order_lines").error(format!("order line {line_id} is not included"))
            })?;
            let price = line
                .at("attributes.price")
                .opt_money(MONEY, currency)?
                .ok_or_else(|| line.at("attributes.price").error("required price is missing"))?;
            let group = if let Some(i) = by_price.iter().position(|(p, _, _)| *p == price) {
                by_price[i].2 += 1;
                i
            } else {
                by_price.push((price, line_id.clone(), 1));
                by_price.len() - 1
            };
            if line.at("attributes.status").opt_text()?.as_deref() == Some("returned") {
                returned_here.push((line_id, group, line.at("attributes.modified_at").opt_datetime()?));
            }
        }
        if by_price.is_empty() {
            return Err(item
                .at("relationships.order_lines")
                .error("an order item needs at least one included order line"));
        }
        // One price per item (the usual case) keeps the item id; split prices get item:first-line ids.
        let split = by_price.len() > 1;
        let canonical =
            |first_line_id: &str| if split { format!("{item_id}:{first_line_id}") } else { item_id.clone() };
        for (unit_id, group, at) in returned_here {
            let line_id = canonical(&by_price[group].1);
            returned.push(ReturnedUnit { unit_id, line_id, state: ReturnState::Received, at });
        }
        for (price, first_line_id, quantity) in by_price {
            lines.push(LineDraft {
                line_id: canonical(&first_line_id),
                sku_path: sku_node.path().to_owned(),
                channel_sku: sku_node.opt_text()?,
                title: a.field("description").text_or_empty()?,
                quantity,
                unit_price: price,
                tax: zero(currency),
                discount: zero(currency),
            });
        }
    }
    let total = match attrs.field("order_lines_price_amount").opt_amount(currency)? {
        Some(t) => t,
        None => build::line_subtotal(currency, &lines, doc.field("included").path())?,
    };
    let mut every_line_canceled = !order_lines.is_empty();
    for (_, line) in &order_lines {
        every_line_canceled &= line.at("attributes.status").opt_text()?.as_deref() == Some("canceled");
    }
    let billing_address = ADDRESS.read(&attrs.field("billing_address"))?;
    let created_at = attrs.field("order_date").datetime()?;
    let updated_at = match attrs.field("modified_at").opt_datetime()? {
        Some(d) => d,
        None => created_at,
    };
    let order = OrderDraft {
        channel_order_id: match attrs.field("order_id").opt_text()? {
            Some(id) => id,
            None => data.field("id").text()?,
        },
        order_number: attrs.field("order_number").text()?,
        status: if every_line_canceled {
            OrderStatus::Cancelled
        } else {
            build::map_status(STATUS, &attrs.field("status"))?
        },
        created_at,
        updated_at,
        currency,
        lines,
        totals: build::totals(currency, total, zero(currency), zero(currency), zero(currency), Some(total))?,
        customer: OrderCustomer {
            email: attrs.field("customer_email").opt_text()?,
            name: billing_address.as_ref().and_then(|a| a.name.clone()),
            phone: None,
            // The order's attributes name no buyer (no customer id or number).
            channel_customer_id: None,
        },
        shipping_address: ADDRESS.read(&attrs.field("shipping_address"))?,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)?;
    Ok((order, returned))
}

/// Zalando pushes nothing: any body claiming to be a Zalando notification is refused.
pub(crate) fn classify(_topic: Option<&str>, _body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    Err(NormalizeError::new("", "zalando sends no notifications; its orders are polled"))
}
