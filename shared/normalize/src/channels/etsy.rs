//! Etsy Open API v3.
//!
//! Inputs: the ShopReceipt object (`GET /v3/application/shops/{shop_id}/receipts/{receipt_id}`) with its
//! `transactions` and `shipments` embedded, per the v3 schema, for both orders and shipments. A receipt
//! can hold several shipments: [`crate::normalize_all`] returns each, [`crate::normalize`] the latest.
//!
//! Money: `{amount, divisor, currency_code}` in minor units (`{"amount": 1999, "divisor": 100}` is 19.99).
//! Dates: unix seconds. `transactions[].price` is the unit price; `sku` can be empty.
//!
//! Status (`status`, compared case-insensitively):
//! | Etsy                 | canonical          |
//! |----------------------|--------------------|
//! | open                 | pending            |
//! | payment processing   | pending            |
//! | paid                 | paid (fulfilled when `is_shipped`) |
//! | completed            | fulfilled          |
//! | canceled             | cancelled          |
//! | fully refunded       | refunded           |
//! | partially refunded   | partially_refunded |
//!
//! Refunds: the receipt's `refunds[]` (ShopRefund: `amount` Money, `created_timestamp`, `reason`,
//! `note_from_issuer`, `status`) become Refunds after the order, one each, with the id
//! `{receipt_id}-{created_timestamp}` (a ShopRefund has no id of its own). Etsy reports neither
//! refunded transactions nor returns, so a Refund has no lines and restocks nothing; receiving goods back
//! is the merchant's stock count's business.
//!
//! Totals: subtotal = `total_price` (before coupons), shipping = `total_shipping_cost`, tax =
//! `total_tax_cost + total_vat_cost`, discount = `discount_amt`, total = `grandtotal`. Etsy reports no
//! per-transaction tax or discount: line tax and discount are zero. Shipments are receipt-level, so each
//! shipment lists every transaction of the receipt.

use manifold_domain::{
    Amount, Channel, Currency, Order, OrderCustomer, OrderStatus, Record, Refund, Shipment, ShipmentLine,
};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, unsupported},
    json::{self, Node, zero},
};

const CHANNEL: Channel = Channel::Etsy;

const STATUS: &[(&str, OrderStatus)] = &[
    ("open", OrderStatus::Pending),
    ("payment processing", OrderStatus::Pending),
    ("paid", OrderStatus::Paid),
    ("completed", OrderStatus::Fulfilled),
    ("canceled", OrderStatus::Cancelled),
    ("fully refunded", OrderStatus::Refunded),
    ("partially refunded", OrderStatus::PartiallyRefunded),
];

const ADDRESS: AddressKeys = AddressKeys {
    name: "name",
    first_name: "",
    last_name: "",
    line1: "first_line",
    line2: "second_line",
    city: "city",
    region: "state",
    postal_code: "zip",
    country: "country_iso",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/etsy/receipt-written-from-v3-schema.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => {
            let order = order(doc, ctx)?;
            let refunds = refunds(doc, &order)?;
            let mut records = one(Record::Order(Box::new(order)));
            records.extend(refunds.into_iter().map(Record::Refund));
            Ok(records)
        }
        DocKind::Shipment => Ok(shipments(doc, ctx)?.into_iter().map(Record::Shipment).collect()),
        DocKind::Refund | DocKind::Return => {
            let order = order(doc, ctx)?;
            Ok(refunds(doc, &order)?.into_iter().map(Record::Refund).collect())
        }
        DocKind::InventoryLevel | DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
}

/// Etsy Money: `{amount: minor units, divisor, currency_code}`, in the receipt's currency.
fn money(node: &Node<'_>, currency: Currency) -> Result<Amount, NormalizeError> {
    if node.value().is_null() {
        return Ok(zero(currency));
    }
    node.object()?;
    let code = node.field("currency_code");
    if let Some(found) = code.opt_currency()?
        && found != currency
    {
        return Err(code.error(format!("currency {found} differs from the receipt currency {currency}")));
    }
    let divisor_node = node.field("divisor");
    let divisor = u32::try_from(divisor_node.i64()?).map_err(|_| divisor_node.error("divisor out of range"))?;
    let amount = Amount::from_minor_units(node.field("amount").i64()?, divisor, currency)
        .map_err(|e| NormalizeError::domain(node.path(), &e))?;
    json::bounded(amount, node.path())
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    doc.object()?;
    let currency = doc.at("grandtotal.currency_code").currency()?;
    let mut lines = Vec::new();
    for t in doc.field("transactions").required_items()? {
        lines.push(LineDraft {
            line_id: t.field("transaction_id").text()?,
            sku_path: t.field("sku").path().to_owned(),
            channel_sku: t.field("sku").opt_text()?,
            title: t.field("title").text_or_empty()?,
            quantity: t.field("quantity").quantity()?,
            unit_price: money(&t.field("price"), currency)?,
            tax: zero(currency),
            discount: zero(currency),
        });
    }
    let mut status = build::map_status(STATUS, &doc.field("status"))?;
    if status == OrderStatus::Paid && doc.field("is_shipped").opt_bool()? == Some(true) {
        status = OrderStatus::Fulfilled;
    }
    let created_at = doc.field("create_timestamp").datetime()?;
    let updated_at = match doc.field("update_timestamp").opt_datetime()? {
        Some(d) => d,
        None => doc.field("updated_timestamp").opt_datetime()?.unwrap_or(created_at),
    };
    let shipping_address = ADDRESS.read(doc)?;
    let id = doc.field("receipt_id").text()?;
    OrderDraft {
        order_number: id.clone(),
        channel_order_id: id,
        status,
        created_at,
        updated_at,
        currency,
        lines,
        totals: build::totals(
            currency,
            money(&doc.field("total_price"), currency)?,
            money(&doc.field("total_shipping_cost"), currency)?,
            json::add(
                money(&doc.field("total_tax_cost"), currency)?,
                money(&doc.field("total_vat_cost"), currency)?,
                currency,
                doc.field("total_vat_cost").path(),
            )?,
            money(&doc.field("discount_amt"), currency)?,
            Some(money(&doc.field("grandtotal"), currency)?),
        )?,
        customer: OrderCustomer {
            email: doc.field("buyer_email").opt_text()?,
            name: shipping_address.as_ref().and_then(|a| a.name.clone()),
            phone: None,
            channel_customer_id: build::customer_id(&doc.field("buyer_user_id"))?,
        },
        shipping_address,
        billing_address: None,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
}

/// The receipt's refunds, oldest first (see the module docs).
fn refunds(doc: &Node<'_>, order: &Order) -> Result<Vec<Refund>, NormalizeError> {
    let mut out = Vec::new();
    for r in doc.field("refunds").items()? {
        let created_at = r.field("created_timestamp").datetime()?;
        out.push(Refund {
            id: format!("{}-{}", order.channel_order_id, created_at.timestamp()),
            order_id: order.id.clone(),
            channel: CHANNEL,
            account: order.account.clone(),
            currency: order.currency,
            amount: money(&r.field("amount"), order.currency)?,
            lines: Vec::new(),
            created_at,
        });
    }
    out.sort_by_key(|r| r.created_at);
    Ok(out)
}

/// Each receipt shipment, oldest first (so the last is the latest).
fn shipments(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Shipment>, NormalizeError> {
    doc.object()?;
    let (order_id, channel_order_id) = build::order_id(CHANNEL, ctx, &doc.field("receipt_id"))?;
    let mut lines = Vec::new();
    for t in doc.field("transactions").items()? {
        lines.push(ShipmentLine {
            line_id: t.field("transaction_id").opt_text()?,
            sku: build::sku_at(ctx, &t.field("sku"))?.sku,
            quantity: t.field("quantity").quantity()?,
        });
    }
    let mut out = Vec::new();
    for s in doc.field("shipments").items()? {
        out.push(Shipment {
            id: s.field("receipt_shipping_id").text()?,
            order_id: order_id.clone(),
            channel: CHANNEL,
            account: ctx.account.account.clone(),
            channel_order_id: channel_order_id.clone(),
            carrier: s.field("carrier_name").opt_text()?,
            tracking_number: s.field("tracking_code").opt_text()?,
            tracking_url: None,
            lines: lines.clone(),
            shipped_at: s.field("shipment_notification_timestamp").datetime()?,
        });
    }
    out.sort_by_key(|s| s.shipped_at);
    Ok(out)
}

/// Etsy webhooks are thin: `{event_type, resource_url, shop_id}`; the receipt id ends `resource_url`.
pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let event = body.field("event_type").text()?;
    if !event.starts_with("order.") {
        return Ok(ignore(format!("etsy event {event} is not ingested")));
    }
    let url = body.field("resource_url");
    let text = url.text()?;
    let receipt_id = text
        .trim_end_matches('/')
        .rsplit_once("/receipts/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| url.error(format!("no numeric receipt id at the end of {text:?}")))?;
    Ok(Inbound::Thin { kind: DocKind::Order, resource_id: receipt_id.to_owned(), event_time: None })
}
