//! WooCommerce REST API v3 (webhook bodies are the same objects as the REST responses).
//!
//! Inputs:
//! * Order: the order object (`GET /wc/v3/orders/{id}`, or an `order.*` webhook body).
//! * Refund: `{"order": <the order, at least {id, currency}>, "refund": <GET /wc/v3/orders/{id}/refunds/{rid}>}`
//!   because a refund object carries neither its order id nor its currency.
//! * Return: `{"order": <the order>, "refunds": <GET /wc/v3/orders/{id}/refunds>}`, what the connector's
//!   `fetch_returns` reads when a `action.woocommerce_order_refunded` webhook names the order.
//!   WooCommerce core has no returns: a refund with line items is how a merchant takes goods back, so
//!   each such refund is a Return in state `refunded` (whose units the default restock policy takes
//!   back) beside its Refund; a refund of money only is a Refund alone. A refund line names the order
//!   line it refunds by `refunded_item_id` (or the `_refunded_item_id` meta), else by product and
//!   variation.
//! * Product: the product object (`GET /wc/v3/products/{id}`); one variant for the product itself.
//!
//! Traps: `line_items[].price` is a JSON number (read through its shortest decimal form, so no cent is
//! lost), every other amount a decimal string; `date_created`/`date_modified` carry no zone and are the
//! store's local time, so the `*_gmt` fields are used and read as UTC.
//!
//! Status (`status`):
//! | WooCommerce                                  | canonical |
//! |----------------------------------------------|-----------|
//! | pending, on-hold, checkout-draft             | pending   |
//! | processing                                   | paid      |
//! | completed                                    | fulfilled |
//! | cancelled, failed, trash                     | cancelled |
//! | refunded                                     | refunded  |
//!
//! Totals: subtotal = sum of line `subtotal` (before coupons), shipping = `shipping_total`, tax =
//! `total_tax`, discount = `discount_total`, total = `total`. Line discount = `subtotal - total`, line tax
//! = `total_tax`. Refund lines: `restock` is false, since the API does not say whether stock came back.

use manifold_domain::{
    Channel, Currency, Order, OrderCustomer, OrderStatus, Product, Record, Refund, RefundLine, Return, ReturnLine,
    ReturnState, Variant,
};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, shopify::settings_currency, unsupported},
    json::{Node, abs, sub, sum, times, zero},
};

const CHANNEL: Channel = Channel::Woocommerce;

const STATUS: &[(&str, OrderStatus)] = &[
    ("pending", OrderStatus::Pending),
    ("on-hold", OrderStatus::Pending),
    ("checkout-draft", OrderStatus::Pending),
    ("processing", OrderStatus::Paid),
    ("completed", OrderStatus::Fulfilled),
    ("cancelled", OrderStatus::Cancelled),
    ("failed", OrderStatus::Cancelled),
    ("trash", OrderStatus::Cancelled),
    ("refunded", OrderStatus::Refunded),
];

const ADDRESS: AddressKeys = AddressKeys {
    name: "",
    first_name: "first_name",
    last_name: "last_name",
    line1: "address_1",
    line2: "address_2",
    city: "city",
    region: "state",
    postal_code: "postcode",
    country: "country",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/woocommerce/order-727-rest-v3-retrieve.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(doc, ctx)?)))),
        DocKind::Refund => Ok(one(Record::Refund(refund(&doc.field("order"), &doc.field("refund"), ctx)?))),
        DocKind::Return => returns(doc, ctx),
        DocKind::Product => Ok(one(Record::Product(product(doc, ctx)?))),
        DocKind::Shipment | DocKind::InventoryLevel => Err(unsupported(CHANNEL, kind)),
    }
}

/// The `*_gmt` timestamp (UTC without a zone), falling back to the local field only when absent.
fn gmt(doc: &Node<'_>, field: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, NormalizeError> {
    match doc.field(&format!("{field}_gmt")).opt_datetime()? {
        Some(d) => Ok(Some(d)),
        None => doc.field(field).opt_datetime(),
    }
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    doc.object()?;
    let currency = doc.field("currency").currency()?;
    let mut lines = Vec::new();
    let mut subtotals = Vec::new();
    for line in doc.field("line_items").required_items()? {
        let (draft, subtotal) = order_line(&line, currency)?;
        lines.push(draft);
        subtotals.push(subtotal);
    }
    let billing = doc.field("billing");
    let billing_address = ADDRESS.read(&billing)?;
    let created_at =
        gmt(doc, "date_created")?.ok_or_else(|| doc.field("date_created_gmt").error("required date is missing"))?;
    OrderDraft {
        channel_order_id: doc.field("id").text()?,
        order_number: doc.field("number").opt_text()?.map_or_else(|| doc.field("id").text(), Ok)?,
        status: build::map_status(STATUS, &doc.field("status"))?,
        created_at,
        updated_at: gmt(doc, "date_modified")?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            sum(currency, subtotals, doc.field("line_items").path())?,
            doc.field("shipping_total").amount_or_zero(currency)?,
            doc.field("total_tax").amount_or_zero(currency)?,
            doc.field("discount_total").amount_or_zero(currency)?,
            doc.field("total").opt_amount(currency)?,
        )?,
        customer: OrderCustomer {
            email: billing.field("email").opt_text()?,
            name: billing_address.as_ref().and_then(|a| a.name.clone()),
            phone: billing.field("phone").opt_text()?,
            // `customer_id` is 0 for a guest.
            channel_customer_id: build::customer_id(&doc.field("customer_id"))?,
        },
        shipping_address: ADDRESS.read(&doc.field("shipping"))?,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
}

fn order_line(line: &Node<'_>, currency: Currency) -> Result<(LineDraft, manifold_domain::Amount), NormalizeError> {
    let quantity = line.field("quantity").quantity()?;
    let unit_price = line.field("price").amount(currency)?;
    let total = line.field("total").opt_amount(currency)?;
    let subtotal = match line.field("subtotal").opt_amount(currency)? {
        Some(s) => s,
        None => times(unit_price, quantity, currency, line.path())?,
    };
    let discount = match total {
        Some(t) => abs(sub(subtotal, t, currency, line.field("total").path())?, currency),
        None => zero(currency),
    };
    Ok((
        LineDraft {
            line_id: line.field("id").text()?,
            sku_path: line.field("sku").path().to_owned(),
            channel_sku: line.field("sku").opt_text()?,
            title: line.field("name").text_or_empty()?,
            quantity,
            unit_price,
            tax: line.field("total_tax").amount_or_zero(currency)?,
            discount,
        },
        subtotal,
    ))
}

fn refund(order: &Node<'_>, refund: &Node<'_>, ctx: &Context<'_>) -> Result<Refund, NormalizeError> {
    order.object()?;
    refund.object()?;
    let currency = order.field("currency").currency()?;
    let (order_id, _) = build::order_id(CHANNEL, ctx, &order.field("id"))?;
    let mut lines = Vec::new();
    for l in refund.field("line_items").items()? {
        let (line_id, quantity) = refunded_line(order, &l)?;
        lines.push(RefundLine { line_id, sku: build::sku_at(ctx, &l.field("sku"))?.sku, quantity, restock: false });
    }
    Ok(Refund {
        id: refund.field("id").text()?,
        order_id,
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        currency,
        amount: abs(refund.field("amount").amount(currency)?, currency),
        lines,
        created_at: gmt(refund, "date_created")?
            .ok_or_else(|| refund.field("date_created_gmt").error("required date is missing"))?,
    })
}

/// The order line a refund line refunds, and how many units (refunded quantities are negative).
fn refunded_line(order: &Node<'_>, line: &Node<'_>) -> Result<(String, u32), NormalizeError> {
    let q = line.field("quantity");
    let quantity = u32::try_from(q.i64()?.unsigned_abs()).map_err(|_| q.error("quantity out of range"))?;
    if let Some(id) = line.field("refunded_item_id").opt_text()? {
        return Ok((id, quantity));
    }
    for meta in line.field("meta_data").items()? {
        if meta.field("key").opt_text()?.as_deref() == Some("_refunded_item_id") {
            return Ok((meta.field("value").text()?, quantity));
        }
    }
    let product = (line.field("product_id").opt_text()?, line.field("variation_id").opt_text()?);
    for candidate in order.field("line_items").items()? {
        if (candidate.field("product_id").opt_text()?, candidate.field("variation_id").opt_text()?) == product {
            return Ok((candidate.field("id").text()?, quantity));
        }
    }
    Err(line.error("names no line of its order (no refunded_item_id, and no line of the same product)"))
}

/// Every refund of the order as a Refund, and each one with line items as a Return as well.
fn returns(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    let order = doc.field("order");
    let channel_order_id = order.field("id").text()?;
    let mut out = Vec::new();
    for r in doc.field("refunds").items()? {
        let refund = refund(&order, &r, ctx)?;
        if !refund.lines.is_empty() {
            let channel_return_id = format!("refund-{}", refund.id);
            out.push(Record::Return(Return {
                id: format!("{CHANNEL}:{}:{channel_return_id}", ctx.account.account),
                order_id: refund.order_id.clone(),
                channel: CHANNEL,
                account: ctx.account.account.clone(),
                channel_order_id: channel_order_id.clone(),
                channel_return_id,
                state: ReturnState::Refunded,
                reason: r.field("reason").opt_text()?.filter(|s| !s.is_empty()),
                lines: refund
                    .lines
                    .iter()
                    .map(|l| ReturnLine {
                        line_id: l.line_id.clone(),
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        reason: None,
                    })
                    .collect(),
                created_at: refund.created_at,
                updated_at: refund.created_at,
            }));
        }
        out.push(Record::Refund(refund));
    }
    Ok(out)
}

fn product(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Product, NormalizeError> {
    doc.object()?;
    let currency = settings_currency(ctx)?;
    let id = doc.field("id").text()?;
    let resolved = build::sku_at(ctx, &doc.field("sku"))?;
    let title = doc.field("name").text_or_empty()?;
    let updated_at = gmt(doc, "date_modified")?.unwrap_or(ctx.received_at);
    let manages_stock = doc.field("manage_stock").opt_bool()?.unwrap_or(false);
    Ok(Product {
        id: format!("{CHANNEL}:{}:{id}", ctx.account.account),
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        channel_product_id: id.clone(),
        title: title.clone(),
        description: doc.field("description").opt_text()?.filter(|d| !d.is_empty()),
        attributes: std::collections::BTreeMap::new(),
        images: build::images(&doc.field("images"), "src")?,
        currency,
        variants: vec![Variant {
            channel_variant_id: id.clone(),
            sku: resolved.sku,
            channel_sku: resolved.channel_sku,
            title,
            price: currency.map(|c| doc.field("price").opt_amount(c)).transpose()?.flatten(),
            barcode: None,
            inventory_item_id: Some(id),
            inventory_quantity: if manages_stock { doc.field("stock_quantity").opt_i64()? } else { None },
        }],
        updated_at,
        source_version: updated_at.timestamp_millis(),
    })
}

/// WooCommerce topics (X-WC-Webhook-Topic). The creation ping (`{"webhook_id": N}`) is acknowledged.
pub(crate) fn classify(topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    if body.value().as_object().is_some_and(|o| o.len() == 1 && o.contains_key("webhook_id")) {
        return Ok(ignore("woocommerce webhook creation ping"));
    }
    let Some(topic) = topic else {
        return Err(NormalizeError::new("topic", "WooCommerce sends the topic in X-WC-Webhook-Topic; none was given"));
    };
    let full = |kind| Ok(Inbound::Full { kind, doc: body.value().clone() });
    match topic {
        "order.created" | "order.updated" | "order.restored" => full(DocKind::Order),
        "product.created" | "product.updated" | "product.restored" => full(DocKind::Product),
        // An action webhook: `{"action": "woocommerce_order_refunded", "arg": <order id>}`.
        "action.woocommerce_order_refunded" => {
            Ok(Inbound::Thin { kind: DocKind::Return, resource_id: body.field("arg").text()?, event_time: None })
        }
        other => Ok(ignore(format!("woocommerce topic {other} is not ingested"))),
    }
}
