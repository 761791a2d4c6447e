//! TikTok Shop Partner API (Order 202309).
//!
//! Input: one order object from Get Order Detail 202309 (`data.orders[0]`): `id`, `status`,
//! `create_time`/`update_time` (unix seconds), `payment {currency, sub_total, shipping_fee, tax,
//! total_amount, seller_discount, platform_discount}`, `recipient_address`, `buyer_email`, `user_id`
//! (the buyer's id), `line_items[]`.
//!
//! Trap: every line item is ONE unit (no quantity field). Units with the same `seller_sku` (and
//! `sku_id`) at the same `sale_price` are aggregated into one canonical line whose quantity is the unit
//! count and whose id is the first unit's id; units of one SKU at different prices stay separate lines,
//! so no money is lost. Money is decimal strings in `payment.currency`.
//!
//! Status (`status`):
//! | TikTok                                   | canonical           |
//! |------------------------------------------|---------------------|
//! | UNPAID                                   | pending             |
//! | ON_HOLD, AWAITING_SHIPMENT, AWAITING_COLLECTION | paid         |
//! | PARTIALLY_SHIPPING                       | partially_fulfilled |
//! | IN_TRANSIT, DELIVERED, COMPLETED         | fulfilled           |
//! | CANCELLED                                | cancelled           |
//!
//! Totals: subtotal = `payment.sub_total`, shipping = `shipping_fee`, tax = `tax`, discount =
//! `seller_discount + platform_discount`, total = `total_amount`. Line discount = the units' own
//! `seller_discount + platform_discount`.
//!
//! Webhook (`type` 1 = order status change, 3 = recipient address update, 11 = cancellation status
//! change, 12 = return status change; from community SDKs, unverified):
//! `{type, tts_notification_id, shop_id, timestamp, data: {order_id, ..., update_time}}`. Types 1, 3
//! and 11 re-read the order; 12 reads its returns.
//!
//! Returns (`fetch_returns`: `{"order": <the order above>, "returns": [Search Returns
//! return_orders]}`): a `RETURN_AND_REFUND` or `REPLACEMENT` return becomes a Return whose lines are
//! the returned units (`return_line_items[]`, one unit each, matched to the canonical line of their
//! `order_line_item_id`, else of their `sku_id`); a `REFUND` (money only) that is complete becomes a
//! Refund without lines. `return_status`:
//! | TikTok                                                     | canonical |
//! |------------------------------------------------------------|-----------|
//! | RETURN_OR_REFUND_REQUEST_PENDING                           | requested |
//! | AWAITING_BUYER_SHIP, BUYER_SHIPPED_ITEM                    | approved  |
//! | RETURN_OR_REFUND_REQUEST_SUCCESS                           | received  |
//! | RETURN_OR_REFUND_REQUEST_COMPLETE                          | refunded  |
//! | REFUND_OR_RETURN_REQUEST_REJECT, REJECT_RECEIVE_PACKAGE, RETURN_OR_REFUND_REQUEST_CANCEL | rejected |

use manifold_domain::{Amount, Channel, Order, OrderCustomer, OrderStatus, Record, Refund, ReturnLine, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, unsupported},
    json::{Node, abs, add},
};

const CHANNEL: Channel = Channel::Tiktok;

const STATUS: &[(&str, OrderStatus)] = &[
    ("UNPAID", OrderStatus::Pending),
    ("ON_HOLD", OrderStatus::Paid),
    ("AWAITING_SHIPMENT", OrderStatus::Paid),
    ("AWAITING_COLLECTION", OrderStatus::Paid),
    ("PARTIALLY_SHIPPING", OrderStatus::PartiallyFulfilled),
    ("IN_TRANSIT", OrderStatus::Fulfilled),
    ("DELIVERED", OrderStatus::Fulfilled),
    ("COMPLETED", OrderStatus::Fulfilled),
    ("CANCELLED", OrderStatus::Cancelled),
];

const ADDRESS: AddressKeys = AddressKeys {
    name: "name",
    first_name: "first_name",
    last_name: "last_name",
    line1: "address_line1",
    line2: "address_line2",
    city: "",
    region: "",
    postal_code: "postal_code",
    country: "region_code",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/tiktok/order-detail-202309-written-from-docs.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(doc, ctx)?)))),
        DocKind::Return | DocKind::Refund => returns(doc, ctx),
        DocKind::Shipment | DocKind::InventoryLevel | DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
}

/// What makes units one canonical line: seller SKU, SKU id and sale price.
type UnitKey = (Option<String>, Option<String>, Amount);

const RETURN_STATUS: &[(&str, ReturnState)] = &[
    ("RETURN_OR_REFUND_REQUEST_PENDING", ReturnState::Requested),
    ("AWAITING_BUYER_SHIP", ReturnState::Approved),
    ("BUYER_SHIPPED_ITEM", ReturnState::Approved),
    ("RETURN_OR_REFUND_REQUEST_SUCCESS", ReturnState::Received),
    ("RETURN_OR_REFUND_REQUEST_COMPLETE", ReturnState::Refunded),
    ("REFUND_OR_RETURN_REQUEST_REJECT", ReturnState::Rejected),
    ("REJECT_RECEIVE_PACKAGE", ReturnState::Rejected),
    ("RETURN_OR_REFUND_REQUEST_CANCEL", ReturnState::Rejected),
];

/// The returns and refunds of one order (see the module docs).
fn returns(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    let raw_order = doc.field("order");
    let order = order(&raw_order, ctx)?;
    // Every unit's canonical line, as `order` aggregated them: the first unit of a key names the line.
    let mut unit_line: Vec<(String, Option<String>, String)> = Vec::new();
    let mut firsts: Vec<(UnitKey, String)> = Vec::new();
    for unit in raw_order.field("line_items").required_items()? {
        let key = (
            unit.field("seller_sku").opt_text()?,
            unit.field("sku_id").opt_text()?,
            unit.field("sale_price").amount(order.currency)?,
        );
        let id = unit.field("id").text()?;
        let line = if let Some((_, line)) = firsts.iter().find(|(k, _)| *k == key) {
            line.clone()
        } else {
            firsts.push((key.clone(), id.clone()));
            id.clone()
        };
        unit_line.push((id, key.1, line));
    }
    let mut out = Vec::new();
    for r in doc.field("returns").items()? {
        let return_id = r.field("return_id").text()?;
        let created_at = r.field("create_time").datetime()?;
        let updated_at = r.field("update_time").opt_datetime()?.unwrap_or(created_at);
        let state = build::map_status(RETURN_STATUS, &r.field("return_status"))?;
        if r.field("return_type").text()? == "REFUND" {
            if state == ReturnState::Refunded {
                let total = r.at("refund_amount.refund_total");
                out.push(Record::Refund(Refund {
                    id: return_id,
                    order_id: order.id.clone(),
                    channel: CHANNEL,
                    account: order.account.clone(),
                    currency: order.currency,
                    amount: total.amount(order.currency)?,
                    lines: Vec::new(),
                    created_at: updated_at,
                }));
            }
            continue;
        }
        let mut lines: Vec<ReturnLine> = Vec::new();
        for item in r.field("return_line_items").required_items()? {
            let by_unit = item.field("order_line_item_id").opt_text()?;
            let by_sku = item.field("sku_id").opt_text()?;
            let line_id = unit_line
                .iter()
                .find(|(unit, sku, _)| match &by_unit {
                    Some(u) => unit == u,
                    None => by_sku.is_some() && *sku == by_sku,
                })
                .map(|(_, _, line)| line.clone())
                .ok_or_else(|| item.error(format!("names no unit of order {}", order.channel_order_id)))?;
            if let Some(l) = lines.iter_mut().find(|l| l.line_id == line_id) {
                l.quantity += 1;
            } else {
                let sku = order.lines.iter().find(|l| l.line_id == line_id).and_then(|l| l.sku.clone());
                lines.push(ReturnLine { line_id, sku, quantity: 1, reason: None });
            }
        }
        let reason = r.field("return_reason").opt_text()?;
        out.push(Record::Return(super::order_return(
            &order,
            return_id,
            state,
            reason,
            lines,
            (created_at, updated_at),
        )));
    }
    Ok(out)
}

/// `district_info[]` entries are `{address_level_name, address_name}`; pick the one named `level`.
fn district(address: &Node<'_>, levels: &[&str]) -> Result<Option<String>, NormalizeError> {
    for d in address.field("district_info").items()? {
        let level = d.field("address_level_name").opt_text()?.unwrap_or_default();
        if levels.iter().any(|l| l.eq_ignore_ascii_case(&level)) {
            return d.field("address_name").opt_text();
        }
    }
    Ok(None)
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    doc.object()?;
    let payment = doc.field("payment");
    let currency = payment.field("currency").currency()?;
    let discount_of = |n: &Node<'_>| -> Result<Amount, NormalizeError> {
        let platform = n.field("platform_discount");
        add(
            abs(n.field("seller_discount").amount_or_zero(currency)?, currency),
            abs(platform.amount_or_zero(currency)?, currency),
            currency,
            platform.path(),
        )
    };
    let mut lines: Vec<LineDraft> = Vec::new();
    let mut keys: Vec<UnitKey> = Vec::new();
    for unit in doc.field("line_items").required_items()? {
        let sku = unit.field("seller_sku").opt_text()?;
        let sku_id = unit.field("sku_id").opt_text()?;
        let price = unit.field("sale_price").amount(currency)?;
        let discount = discount_of(&unit)?;
        let key = (sku.clone(), sku_id, price);
        if let Some(i) = keys.iter().position(|k| *k == key) {
            let line = &mut lines[i];
            line.quantity = line.quantity.checked_add(1).ok_or_else(|| unit.error("too many units of one SKU"))?;
            line.discount = add(line.discount, discount, currency, unit.path())?;
            continue;
        }
        keys.push(key);
        let title = match unit.field("product_name").opt_text()? {
            Some(t) => t,
            None => unit.field("sku_name").text_or_empty()?,
        };
        lines.push(LineDraft {
            line_id: unit.field("id").text()?,
            sku_path: unit.field("seller_sku").path().to_owned(),
            channel_sku: sku,
            title,
            quantity: 1,
            unit_price: price,
            tax: crate::json::zero(currency),
            discount,
        });
    }
    let address = doc.field("recipient_address");
    let mut shipping_address = ADDRESS.read(&address)?;
    if let Some(a) = shipping_address.as_mut() {
        a.city = district(&address, &["city"])?;
        a.region = district(&address, &["state", "province", "county"])?;
    }
    let subtotal = match payment.field("sub_total").opt_amount(currency)? {
        Some(s) => s,
        None => build::line_subtotal(currency, &lines, doc.field("line_items").path())?,
    };
    let created_at = doc.field("create_time").datetime()?;
    let id = doc.field("id").text()?;
    OrderDraft {
        order_number: id.clone(),
        channel_order_id: id,
        status: build::map_status(STATUS, &doc.field("status"))?,
        created_at,
        updated_at: doc.field("update_time").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            subtotal,
            payment.field("shipping_fee").amount_or_zero(currency)?,
            payment.field("tax").amount_or_zero(currency)?,
            discount_of(&payment)?,
            payment.field("total_amount").opt_amount(currency)?,
        )?,
        customer: OrderCustomer {
            email: doc.field("buyer_email").opt_text()?,
            name: shipping_address.as_ref().and_then(|a| a.name.clone()),
            phone: address.field("phone_number").opt_text()?,
            channel_customer_id: build::customer_id(&doc.field("user_id"))?,
        },
        shipping_address,
        billing_address: None,
        ship_by: None,
    }
    .build(CHANNEL, ctx)
}

pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let kind = body.field("type").i64()?;
    let event_time = match body.at("data.update_time").opt_datetime()? {
        Some(t) => Some(t),
        None => body.field("timestamp").opt_datetime()?,
    };
    match kind {
        1 | 3 | 11 => {
            Ok(Inbound::Thin { kind: DocKind::Order, resource_id: body.at("data.order_id").text()?, event_time })
        }
        12 => Ok(Inbound::Thin { kind: DocKind::Return, resource_id: body.at("data.order_id").text()?, event_time }),
        other => Ok(ignore(format!("tiktok notification type {other} is not ingested"))),
    }
}
