//! Shopify Admin API (REST resource shapes; webhook bodies are the same objects).
//!
//! Inputs: an order, refund, fulfillment (shipment), inventory level or product object, either as a
//! webhook body (unwrapped) or as a REST response (wrapped: `{"order": {...}}`, `{"refund": ...}`,
//! `{"fulfillment": ...}`, `{"inventory_level": ...}`, `{"product": ...}`). Both are accepted.
//!
//! Returns: the `returns/*` webhooks are thin (a decline carries no order); `fetch_returns` reads the
//! GraphQL `return(id:)` as `{"return": {id, name, status, order {id}, returnLineItems {nodes [{id,
//! quantity, returnReason, fulfillmentLineItem {lineItem {id, sku}}}]}}}`. Global ids end in the REST
//! ids the order carries. Status: `REQUESTED` requested, `OPEN` approved, `CLOSED` received (Shopify
//! closes a return once its items are processed), `DECLINED` and `CANCELED` rejected. A refund with
//! `restock_type: return` stays a Refund (`refunds/create`); the return is what brings goods back.
//!
//! Money: the order's `currency` is the shop currency and every amount is read from the plain fields
//! (`price`, `total_price`, ...) or `*_set.shop_money`, which are in that currency. Presentment money
//! (`presentment_currency`, `*_set.presentment_money`, what the buyer saw) is never mixed in.
//! Refund amounts come from the refund's successful `refund` transactions and carry their own currency.
//!
//! Order status (first match wins):
//! | Shopify                                   | canonical             |
//! |-------------------------------------------|-----------------------|
//! | `cancelled_at` set, or financial `voided` | cancelled             |
//! | financial `refunded`                      | refunded              |
//! | financial `partially_refunded`            | partially_refunded    |
//! | fulfillment `fulfilled`                   | fulfilled             |
//! | fulfillment `partial`                     | partially_fulfilled   |
//! | financial `paid`, `authorized`            | paid                  |
//! | financial `pending`, `partially_paid`, null | pending             |
//!
//! Totals: subtotal = `total_line_items_price` (before discounts), shipping = sum of
//! `shipping_lines[].price`, tax = `total_tax`, discount = `total_discounts`, total = `total_price`.
//! Line discount = sum of `discount_allocations[].amount` (falling back to `total_discount`), line tax =
//! sum of `tax_lines[].price`. `line_items[].sku` can be null (custom items): the line is kept.

use manifold_domain::{
    Channel, Currency, OrderCustomer, OrderId, OrderStatus, Product, Record, Refund, RefundLine, Return, ReturnLine,
    ReturnState, Shipment, ShipmentLine, Variant,
};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one},
    json::{Node, sum},
};

const CHANNEL: Channel = Channel::Shopify;

const ADDRESS: AddressKeys = AddressKeys {
    name: "name",
    first_name: "first_name",
    last_name: "last_name",
    line1: "address1",
    line2: "address2",
    city: "city",
    region: "province",
    postal_code: "zip",
    country: "country_code",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || {
        super::fixture(include_str!("../../fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json"))["order"]
            .clone()
    },
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(&unwrap(doc, "order")?, ctx)?)))),
        DocKind::Refund => Ok(one(Record::Refund(refund(&unwrap(doc, "refund")?, ctx)?))),
        DocKind::Shipment => Ok(one(Record::Shipment(fulfillment(&unwrap(doc, "fulfillment")?, ctx)?))),
        DocKind::InventoryLevel => {
            Ok(one(Record::InventoryLevel(inventory_level(&unwrap(doc, "inventory_level")?, ctx)?)))
        }
        DocKind::Product => Ok(one(Record::Product(product(&unwrap(doc, "product")?, ctx)?))),
        DocKind::Return => Ok(one(Record::Return(shopify_return(&doc.field("return"), ctx)?))),
    }
}

/// Return status (GraphQL `ReturnStatus`) to the canonical state: a closed return is done, its goods
/// back; a declined or canceled one brings nothing back.
const RETURN_STATUS: &[(&str, ReturnState)] = &[
    ("REQUESTED", ReturnState::Requested),
    ("OPEN", ReturnState::Approved),
    ("CLOSED", ReturnState::Received),
    ("DECLINED", ReturnState::Rejected),
    ("CANCELED", ReturnState::Rejected),
];

/// The numeric id at the end of a GraphQL global id (`gid://shopify/LineItem/123` is `123`), which is
/// the REST id the order's lines carry.
fn gid_tail(node: &Node<'_>) -> Result<String, NormalizeError> {
    let text = node.text()?;
    text.rsplit('/')
        .next()
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| node.error(format!("{text:?} is not a Shopify global id")))
}

/// A GraphQL `Return` as `fetch_returns` reads it (see the module docs).
fn shopify_return(r: &Node<'_>, ctx: &Context<'_>) -> Result<Return, NormalizeError> {
    r.object()?;
    let channel_return_id = gid_tail(&r.field("id"))?;
    let order_node = r.at("order.id");
    let channel_order_id = gid_tail(&order_node)?;
    let order_id = OrderId::for_channel(CHANNEL, &ctx.account.account, &channel_order_id)
        .map_err(|e| NormalizeError::domain(order_node.path(), &e))?;
    let mut lines = Vec::new();
    for l in r.at("returnLineItems.nodes").items()? {
        let quantity = l.field("quantity").quantity()?;
        lines.push(ReturnLine {
            line_id: gid_tail(&l.at("fulfillmentLineItem.lineItem.id"))?,
            sku: build::sku_at(ctx, &l.at("fulfillmentLineItem.lineItem.sku"))?.sku,
            quantity,
            reason: l.field("returnReason").opt_text()?.map(|r| r.to_ascii_lowercase()),
        });
    }
    let state = build::map_status(RETURN_STATUS, &r.field("status"))?;
    let at = ctx.received_at;
    Ok(Return {
        id: format!("{CHANNEL}:{}:{channel_return_id}", ctx.account.account),
        order_id,
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        channel_order_id,
        channel_return_id,
        state,
        reason: None,
        lines,
        created_at: at,
        updated_at: at,
    })
}

/// REST responses wrap the object in its resource name; webhook bodies do not.
fn unwrap<'a>(doc: &Node<'a>, key: &str) -> Result<Node<'a>, NormalizeError> {
    doc.object()?;
    let inner = doc.field(key);
    Ok(if inner.value().is_object() && doc.field("id").value().is_null() { inner } else { doc.clone() })
}

fn status(doc: &Node<'_>) -> Result<OrderStatus, NormalizeError> {
    let financial = doc.field("financial_status").opt_text()?;
    let fulfillment = doc.field("fulfillment_status").opt_text()?;
    let cancelled = doc.field("cancelled_at").opt_datetime()?.is_some();
    Ok(match (financial.as_deref(), fulfillment.as_deref()) {
        _ if cancelled => OrderStatus::Cancelled,
        (Some("voided"), _) => OrderStatus::Cancelled,
        (Some("refunded"), _) => OrderStatus::Refunded,
        (Some("partially_refunded"), _) => OrderStatus::PartiallyRefunded,
        (_, Some("fulfilled")) => OrderStatus::Fulfilled,
        (_, Some("partial")) => OrderStatus::PartiallyFulfilled,
        (Some("paid" | "authorized"), _) => OrderStatus::Paid,
        (Some("pending" | "partially_paid") | None, _) => OrderStatus::Pending,
        (Some(other), _) => {
            return Err(doc.field("financial_status").error(format!("unknown financial_status {other:?}")));
        }
    })
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<manifold_domain::Order, NormalizeError> {
    let currency = doc.field("currency").currency()?;
    let mut lines = Vec::new();
    for line in doc.field("line_items").required_items()? {
        lines.push(order_line(&line, currency)?);
    }
    let shipping_lines = doc.field("shipping_lines");
    let shipping = sum(
        currency,
        shipping_lines
            .items()?
            .iter()
            .map(|l| l.field("price").amount_or_zero(currency))
            .collect::<Result<Vec<_>, _>>()?,
        shipping_lines.path(),
    )?;
    let subtotal = match doc.field("total_line_items_price").opt_amount(currency)? {
        Some(s) => s,
        None => build::line_subtotal(currency, &lines, doc.field("line_items").path())?,
    };
    let totals = build::totals(
        currency,
        subtotal,
        shipping,
        doc.field("total_tax").amount_or_zero(currency)?,
        doc.field("total_discounts").amount_or_zero(currency)?,
        doc.field("total_price").opt_amount(currency)?,
    )?;
    let customer_node = doc.field("customer");
    let email = match doc.field("email").opt_text()? {
        Some(e) => Some(e),
        None => match doc.field("contact_email").opt_text()? {
            Some(e) => Some(e),
            None => customer_node.field("email").opt_text()?,
        },
    };
    let billing_address = ADDRESS.read(&doc.field("billing_address"))?;
    let customer_name =
        build::full_name(customer_node.field("first_name").opt_text()?, customer_node.field("last_name").opt_text()?)
            .or_else(|| billing_address.as_ref().and_then(|a| a.name.clone()));
    let phone = match doc.field("phone").opt_text()? {
        Some(p) => Some(p),
        None => customer_node.field("phone").opt_text()?,
    };
    let created_at = doc.field("created_at").datetime()?;
    OrderDraft {
        channel_order_id: doc.field("id").text()?,
        order_number: doc.field("name").opt_text()?.map_or_else(|| doc.field("order_number").text(), Ok)?,
        status: status(doc)?,
        created_at,
        updated_at: doc.field("updated_at").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals,
        customer: OrderCustomer {
            email,
            name: customer_name,
            phone,
            // `customer` is null on a guest checkout.
            channel_customer_id: build::customer_id(&customer_node.field("id"))?,
        },
        shipping_address: ADDRESS.read(&doc.field("shipping_address"))?,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
}

fn order_line(line: &Node<'_>, currency: Currency) -> Result<LineDraft, NormalizeError> {
    let tax_lines = line.field("tax_lines");
    let tax = sum(
        currency,
        tax_lines.items()?.iter().map(|t| t.field("price").amount_or_zero(currency)).collect::<Result<Vec<_>, _>>()?,
        tax_lines.path(),
    )?;
    let allocations_node = line.field("discount_allocations");
    let allocations = allocations_node.items()?;
    let discount = if allocations.is_empty() {
        line.field("total_discount").amount_or_zero(currency)?
    } else {
        sum(
            currency,
            allocations.iter().map(|a| a.field("amount").amount_or_zero(currency)).collect::<Result<Vec<_>, _>>()?,
            allocations_node.path(),
        )?
    };
    let title = match line.field("name").opt_text()? {
        Some(t) => t,
        None => line.field("title").text_or_empty()?,
    };
    Ok(LineDraft {
        line_id: line.field("id").text()?,
        sku_path: line.field("sku").path().to_owned(),
        channel_sku: line.field("sku").opt_text()?,
        title,
        quantity: line.field("quantity").quantity()?,
        unit_price: line.field("price").amount(currency)?,
        tax,
        discount,
    })
}

fn refund(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Refund, NormalizeError> {
    let (order_id, _) = build::order_id(CHANNEL, ctx, &doc.field("order_id"))?;
    let transactions: Vec<Node<'_>> = doc
        .field("transactions")
        .items()?
        .into_iter()
        .filter(|t| {
            t.field("kind").opt_text().ok().flatten().as_deref() == Some("refund")
                && t.field("status").opt_text().ok().flatten().as_deref() == Some("success")
        })
        .collect();
    let line_items = doc.field("refund_line_items").items()?;
    let currency = match (transactions.first(), line_items.first()) {
        (Some(t), _) => t.field("currency").currency()?,
        (None, Some(l)) => l.at("subtotal_set.shop_money.currency_code").currency()?,
        (None, None) => return Err(doc.field("transactions").error("a refund needs a refund transaction or a line")),
    };
    let mut amounts = Vec::new();
    for t in &transactions {
        let c = t.field("currency");
        if c.currency()? != currency {
            return Err(c.error("refund transactions in different currencies"));
        }
        amounts.push(t.field("amount").amount(currency)?);
    }
    let mut lines = Vec::new();
    for l in line_items {
        let restock_type = l.field("restock_type").opt_text()?;
        lines.push(RefundLine {
            line_id: l.field("line_item_id").text()?,
            sku: build::sku_at(ctx, &l.at("line_item.sku"))?.sku,
            quantity: l.field("quantity").quantity()?,
            restock: matches!(restock_type.as_deref(), Some("return" | "cancel" | "legacy_restock")),
        });
    }
    Ok(Refund {
        id: doc.field("id").text()?,
        order_id,
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        currency,
        amount: sum(currency, amounts, doc.field("transactions").path())?,
        lines,
        created_at: doc.field("created_at").datetime()?,
    })
}

fn fulfillment(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Shipment, NormalizeError> {
    let (order_id, channel_order_id) = build::order_id(CHANNEL, ctx, &doc.field("order_id"))?;
    let mut lines = Vec::new();
    for l in doc.field("line_items").items()? {
        lines.push(ShipmentLine {
            line_id: l.field("id").opt_text()?,
            sku: build::sku_at(ctx, &l.field("sku"))?.sku,
            quantity: l.field("quantity").quantity()?,
        });
    }
    Ok(Shipment {
        id: doc.field("id").text()?,
        order_id,
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        channel_order_id,
        carrier: doc.field("tracking_company").opt_text()?,
        tracking_number: doc.field("tracking_number").opt_text()?,
        tracking_url: doc.field("tracking_url").opt_text()?,
        lines,
        shipped_at: doc.field("created_at").datetime()?,
    })
}

fn inventory_level(doc: &Node<'_>, ctx: &Context<'_>) -> Result<manifold_domain::InventoryLevel, NormalizeError> {
    // Shopify keys stock by inventory item, not SKU: the SKU is resolved later through the product.
    Ok(build::inventory_level(
        CHANNEL,
        ctx,
        build::resolve_sku(ctx, None, "")?,
        Some(doc.field("inventory_item_id").text()?),
        doc.field("location_id").opt_text()?,
        doc.field("available").opt_i64()?.unwrap_or(0),
        doc.field("updated_at").datetime()?,
    ))
}

/// The shop currency is not part of a product payload: prices are kept only when the account's
/// `settings.currency` names it.
pub(crate) fn settings_currency(ctx: &Context<'_>) -> Result<Option<Currency>, NormalizeError> {
    ctx.account
        .settings
        .get("currency")
        .map(|c| Currency::new(c).map_err(|e| NormalizeError::domain("settings.currency", &e)))
        .transpose()
}

fn product(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Product, NormalizeError> {
    let currency = settings_currency(ctx)?;
    let product_id = doc.field("id").text()?;
    let mut variants = Vec::new();
    for v in doc.field("variants").items()? {
        let resolved = build::sku_at(ctx, &v.field("sku"))?;
        variants.push(Variant {
            channel_variant_id: v.field("id").text()?,
            sku: resolved.sku,
            channel_sku: resolved.channel_sku,
            title: v.field("title").text_or_empty()?,
            price: currency.map(|c| v.field("price").opt_amount(c)).transpose()?.flatten(),
            barcode: v.field("barcode").opt_text()?,
            inventory_item_id: v.field("inventory_item_id").opt_text()?,
            inventory_quantity: v.field("inventory_quantity").opt_i64()?,
        });
    }
    let updated_at = doc.field("updated_at").datetime()?;
    Ok(Product {
        id: format!("{CHANNEL}:{}:{product_id}", ctx.account.account),
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        channel_product_id: product_id,
        title: doc.field("title").text_or_empty()?,
        description: doc.field("body_html").opt_text()?.filter(|d| !d.is_empty()),
        attributes: std::collections::BTreeMap::new(),
        images: build::images(&doc.field("images"), "src")?,
        currency,
        variants,
        updated_at,
        source_version: updated_at.timestamp_millis(),
    })
}

/// Shopify topics (X-Shopify-Topic) and what their bodies are.
pub(crate) fn classify(topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let Some(topic) = topic else {
        return Err(NormalizeError::new("topic", "Shopify sends the topic in X-Shopify-Topic; none was given"));
    };
    let full = |kind| Ok(Inbound::Full { kind, doc: body.value().clone() });
    match topic {
        "orders/create"
        | "orders/updated"
        | "orders/paid"
        | "orders/cancelled"
        | "orders/fulfilled"
        | "orders/partially_fulfilled" => full(DocKind::Order),
        // The body is an order_edit summary, not the order: fetch the order.
        "orders/edited" => Ok(Inbound::Thin {
            kind: DocKind::Order,
            resource_id: body.at("order_edit.order_id").text()?,
            event_time: body.at("order_edit.created_at").opt_datetime()?,
        }),
        "refunds/create" => full(DocKind::Refund),
        // Return bodies differ by topic (a decline carries no order): read the return itself.
        "returns/request" | "returns/approve" | "returns/decline" | "returns/cancel" | "returns/close"
        | "returns/reopen" | "returns/process" | "returns/update" => {
            let resource_id = match body.field("admin_graphql_api_id").opt_text()? {
                Some(gid) => gid,
                None => format!("gid://shopify/Return/{}", body.field("id").text()?),
            };
            Ok(Inbound::Thin { kind: DocKind::Return, resource_id, event_time: None })
        }
        "fulfillments/create" | "fulfillments/update" => full(DocKind::Shipment),
        "inventory_levels/update" | "inventory_levels/connect" => full(DocKind::InventoryLevel),
        "products/create" | "products/update" => full(DocKind::Product),
        other => Ok(ignore(format!("shopify topic {other} is not ingested"))),
    }
}
