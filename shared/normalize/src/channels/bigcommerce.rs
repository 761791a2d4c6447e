//! BigCommerce (V2 orders API; webhooks are thin).
//!
//! Inputs:
//! * Order: the combination the connector builds from three calls,
//!   `{"order": <GET /v2/orders/{id}>, "products": [<GET /v2/orders/{id}/products>],
//!   "shipping_addresses": [<GET /v2/orders/{id}/shipping_addresses>]}`.
//! * Shipment: `GET /v2/orders/{order_id}/shipments/{shipment_id}` (what completes a `store/shipment/*`
//!   notification), which is one element of `GET /v2/orders/{id}/shipments`, or that whole list
//!   ([`crate::normalize_all`]).
//! * Refund / Return: what the connector's `fetch_returns` builds for a `store/order/refund/created`
//!   notification: the order document above plus `"refunds"`, the `data` of
//!   `GET /v3/orders/{id}/payment_actions/refunds`. Each refund (`id`, `created` RFC 3339, `reason`,
//!   `total_amount`, `items[]` of `{item_type, item_id, quantity}`) becomes a Refund; its `PRODUCT`
//!   items name the order's products by id (other item types are money only). BigCommerce has no
//!   returns API, so a refund says nothing about goods coming back: its lines never restock.
//! * InventoryLevel: a `store/product/inventory/*` or `store/sku/inventory/updated` webhook body whose
//!   `data.inventory.method` is `absolute` (its `value` is the new level).
//!
//! Traps: money is 4-decimal strings (`"62.6793"`, rounded half away from zero to the currency's
//! exponent); dates are RFC 2822. Amounts are in the transactional currency, `default_currency_code`
//! (`currency_code` is the display currency), falling back to `currency_code` when absent.
//!
//! Status (`status_id`; the `status` text can be renamed by merchants, the id cannot):
//! | id | BigCommerce                      | canonical            |
//! |----|----------------------------------|----------------------|
//! | 0  | Incomplete                       | pending              |
//! | 1  | Pending                          | pending              |
//! | 2  | Shipped                          | fulfilled            |
//! | 3  | Partially Shipped                | partially_fulfilled  |
//! | 4  | Refunded                         | refunded             |
//! | 5  | Cancelled                        | cancelled            |
//! | 6  | Declined                         | cancelled            |
//! | 7  | Awaiting Payment                 | pending              |
//! | 8  | Awaiting Pickup                  | paid                 |
//! | 9  | Awaiting Shipment                | paid                 |
//! | 10 | Completed                        | fulfilled            |
//! | 11 | Awaiting Fulfillment             | paid                 |
//! | 12 | Manual Verification Required     | pending              |
//! | 13 | Disputed                         | paid                 |
//! | 14 | Partially Refunded               | partially_refunded   |
//!
//! Totals: subtotal = `subtotal_ex_tax`, shipping = `shipping_cost_ex_tax`, tax = `total_tax`, discount =
//! `discount_amount`, total = `total_inc_tax`. Lines: unit = `price_ex_tax`, tax = `total_tax`, discount =
//! sum of `applied_discounts[].amount`.

use manifold_domain::{
    Channel, Currency, Order, OrderCustomer, OrderStatus, Record, Refund, RefundLine, Shipment, ShipmentLine,
};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, unsupported},
    json::{Node, sum},
};

const CHANNEL: Channel = Channel::Bigcommerce;

const STATUS: &[(i64, OrderStatus)] = &[
    (0, OrderStatus::Pending),
    (1, OrderStatus::Pending),
    (2, OrderStatus::Fulfilled),
    (3, OrderStatus::PartiallyFulfilled),
    (4, OrderStatus::Refunded),
    (5, OrderStatus::Cancelled),
    (6, OrderStatus::Cancelled),
    (7, OrderStatus::Pending),
    (8, OrderStatus::Paid),
    (9, OrderStatus::Paid),
    (10, OrderStatus::Fulfilled),
    (11, OrderStatus::Paid),
    (12, OrderStatus::Pending),
    (13, OrderStatus::Paid),
    (14, OrderStatus::PartiallyRefunded),
];

const ADDRESS: AddressKeys = AddressKeys {
    name: "",
    first_name: "first_name",
    last_name: "last_name",
    line1: "street_1",
    line2: "street_2",
    city: "city",
    region: "state",
    postal_code: "zip",
    country: "country_iso2",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || {
        serde_json::json!({
            "order": super::fixture(include_str!("../../fixtures/bigcommerce/v2-order-218-get.json")),
            "products": super::fixture(include_str!("../../fixtures/bigcommerce/v2-order-products-list.json")),
            "shipping_addresses": super::fixture(include_str!("../../fixtures/bigcommerce/v2-order-shipping-addresses-list.json")),
        })
    },
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(doc, ctx)?)))),
        DocKind::Shipment => {
            let shipments = if doc.value().is_array() { doc.items()? } else { vec![doc.clone()] };
            shipments.iter().map(|s| shipment(s, ctx).map(Record::Shipment)).collect()
        }
        DocKind::InventoryLevel => Ok(one(Record::InventoryLevel(inventory(doc, ctx)?))),
        DocKind::Refund | DocKind::Return => {
            let order = order(doc, ctx)?;
            let refunds = doc.field("refunds").items()?;
            refunds.iter().map(|r| refund(r, &order).map(Record::Refund)).collect()
        }
        DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    let o = doc.field("order");
    o.object()?;
    let currency = match o.field("default_currency_code").opt_currency()? {
        Some(c) => c,
        None => o.field("currency_code").currency()?,
    };
    let mut lines = Vec::new();
    for p in doc.field("products").required_items()? {
        lines.push(line(&p, currency)?);
    }
    let status_node = o.field("status_id");
    let status_id = status_node.i64()?;
    let status = STATUS
        .iter()
        .find(|(id, _)| *id == status_id)
        .map(|(_, s)| *s)
        .ok_or_else(|| status_node.error(format!("unknown status_id {status_id}")))?;
    let billing = o.field("billing_address");
    let billing_address = ADDRESS.read(&billing)?;
    let shipping_address = match doc.field("shipping_addresses").items()?.first() {
        Some(a) => ADDRESS.read(a)?,
        None => None,
    };
    let created_at = o.field("date_created").datetime()?;
    OrderDraft {
        channel_order_id: o.field("id").text()?,
        order_number: o.field("id").text()?,
        status,
        created_at,
        updated_at: o.field("date_modified").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            o.field("subtotal_ex_tax").amount_or_zero(currency)?,
            o.field("shipping_cost_ex_tax").amount_or_zero(currency)?,
            o.field("total_tax").amount_or_zero(currency)?,
            o.field("discount_amount").amount_or_zero(currency)?,
            o.field("total_inc_tax").opt_amount(currency)?,
        )?,
        customer: OrderCustomer {
            email: billing.field("email").opt_text()?,
            name: billing_address.as_ref().and_then(|a| a.name.clone()),
            phone: billing.field("phone").opt_text()?,
            // `customer_id` is 0 for a guest.
            channel_customer_id: build::customer_id(&o.field("customer_id"))?,
        },
        shipping_address,
        billing_address,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
}

/// One v3 refund of `order` (see the module docs).
fn refund(r: &Node<'_>, order: &Order) -> Result<Refund, NormalizeError> {
    r.object()?;
    let mut lines = Vec::new();
    for item in r.field("items").items()? {
        if item.field("item_type").text()? != "PRODUCT" {
            continue;
        }
        let id = item.field("item_id");
        let line_id = id.text()?;
        let line = order
            .lines
            .iter()
            .find(|l| l.line_id == line_id)
            .ok_or_else(|| id.error(format!("refund item {line_id} names no product of order {}", order.id)))?;
        lines.push(RefundLine {
            line_id,
            sku: line.sku.clone(),
            quantity: item.field("quantity").quantity()?,
            restock: false,
        });
    }
    Ok(Refund {
        id: r.field("id").text()?,
        order_id: order.id.clone(),
        channel: CHANNEL,
        account: order.account.clone(),
        currency: order.currency,
        amount: r.field("total_amount").amount(order.currency)?,
        lines,
        created_at: r.field("created").datetime()?,
    })
}

fn line(p: &Node<'_>, currency: Currency) -> Result<LineDraft, NormalizeError> {
    let applied = p.field("applied_discounts");
    let discounts =
        applied.items()?.iter().map(|d| d.field("amount").amount_or_zero(currency)).collect::<Result<Vec<_>, _>>()?;
    Ok(LineDraft {
        line_id: p.field("id").text()?,
        sku_path: p.field("sku").path().to_owned(),
        channel_sku: p.field("sku").opt_text()?,
        title: p.field("name").text_or_empty()?,
        quantity: p.field("quantity").quantity()?,
        unit_price: p.field("price_ex_tax").amount(currency)?,
        tax: p.field("total_tax").amount_or_zero(currency)?,
        discount: sum(currency, discounts, applied.path())?,
    })
}

fn shipment(s: &Node<'_>, ctx: &Context<'_>) -> Result<Shipment, NormalizeError> {
    s.object()?;
    let (order_id, channel_order_id) = build::order_id(CHANNEL, ctx, &s.field("order_id"))?;
    let mut lines = Vec::new();
    for item in s.field("items").items()? {
        lines.push(ShipmentLine {
            line_id: item.field("order_product_id").opt_text()?,
            sku: None,
            quantity: item.field("quantity").quantity()?,
        });
    }
    let carrier = match s.field("shipping_provider_display_name").opt_text()? {
        Some(c) => Some(c),
        None => s.field("shipping_provider").opt_text()?,
    };
    let tracking_url = match s.field("tracking_link").opt_text()? {
        Some(u) => Some(u),
        None => s.field("generated_tracking_link").opt_text()?,
    };
    Ok(Shipment {
        id: s.field("id").text()?,
        order_id,
        channel: CHANNEL,
        account: ctx.account.account.clone(),
        channel_order_id,
        carrier,
        tracking_number: s.field("tracking_number").opt_text()?,
        tracking_url,
        lines,
        shipped_at: s.field("date_created").datetime()?,
    })
}

/// `channel_item_id` is `"{product_id}"` for product-level stock, `"{product_id}:{variant_id}"` for a variant.
fn inventory(body: &Node<'_>, ctx: &Context<'_>) -> Result<manifold_domain::InventoryLevel, NormalizeError> {
    let inv = body.at("data.inventory");
    inv.object()?;
    let method = inv.field("method");
    if method.text()? != "absolute" {
        return Err(method.error("only absolute inventory changes carry a level"));
    }
    let product_id = inv.field("product_id").text()?;
    let item_id = match inv.field("variant_id").opt_text()? {
        Some(v) => format!("{product_id}:{v}"),
        None => product_id,
    };
    Ok(build::inventory_level(
        CHANNEL,
        ctx,
        build::resolve_sku(ctx, None, "")?,
        Some(item_id),
        None,
        inv.field("value").i64()?,
        body.field("created_at").datetime()?,
    ))
}

/// BigCommerce callbacks carry the event in `scope`; all but inventory levels are thin.
///
/// Thin resource ids: the order id for order scopes and for `store/order/refund/created` (whose
/// refunds `fetch_returns` reads; the order's own new status comes with `store/order/statusUpdated`),
/// `"{order_id}/{shipment_id}"` for `store/shipment/*`.
pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let scope = body.field("scope").text()?;
    let event_time = body.field("created_at").opt_datetime()?;
    let data = body.field("data");
    match scope.as_str() {
        "store/order/created" | "store/order/updated" | "store/order/statusUpdated" | "store/order/archived" => {
            Ok(Inbound::Thin { kind: DocKind::Order, resource_id: data.field("id").text()?, event_time })
        }
        "store/order/refund/created" => {
            Ok(Inbound::Thin { kind: DocKind::Return, resource_id: data.field("id").text()?, event_time })
        }
        "store/shipment/created" | "store/shipment/updated" => Ok(Inbound::Thin {
            kind: DocKind::Shipment,
            resource_id: format!("{}/{}", data.field("orderId").text()?, data.field("id").text()?),
            event_time,
        }),
        "store/product/inventory/updated"
        | "store/product/inventory/order/updated"
        | "store/sku/inventory/updated"
        | "store/sku/inventory/order/updated" => {
            let method = data.at("inventory.method").text()?;
            if method == "absolute" {
                Ok(Inbound::Full { kind: DocKind::InventoryLevel, doc: body.value().clone() })
            } else {
                Ok(ignore(format!("relative inventory change ({method}); levels are reconciled by polling")))
            }
        }
        other => Ok(ignore(format!("bigcommerce scope {other} is not ingested"))),
    }
}
