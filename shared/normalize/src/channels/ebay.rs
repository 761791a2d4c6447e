//! eBay Sell Fulfillment API.
//!
//! Input: the `Order` object of `getOrder` (`GET /sell/fulfillment/v1/order/{orderId}`): `orderId`,
//! `creationDate`, `lastModifiedDate`, `orderFulfillmentStatus`, `orderPaymentStatus`, `cancelStatus`,
//! `pricingSummary {priceSubtotal, deliveryCost, priceDiscount, tax, total}`, `buyer`,
//! `fulfillmentStartInstructions[0].shippingStep.shipTo`, `lineItems[]`.
//!
//! Money: `{value: "12.34", currency: "USD"}`. Trap: `lineItems[].lineItemCost` is the line total (unit
//! price x quantity, before discounts), so `unit_price = lineItemCost / quantity`. Line tax = sum of
//! `taxes[].amount`, line discount = sum of `appliedPromotions[].discountAmount` (absolute values).
//!
//! Status (first match wins):
//! | eBay                                          | canonical           |
//! |-----------------------------------------------|---------------------|
//! | `cancelStatus.cancelState` CANCELED           | cancelled           |
//! | payment FULLY_REFUNDED                        | refunded            |
//! | payment PARTIALLY_REFUNDED                    | partially_refunded  |
//! | fulfillment FULFILLED                         | fulfilled           |
//! | fulfillment IN_PROGRESS                       | partially_fulfilled |
//! | payment PAID                                  | paid                |
//! | payment PENDING, FAILED (fulfillment NOT_STARTED) | pending         |
//!
//! Totals: subtotal = `priceSubtotal`, shipping = `deliveryCost`, tax = `tax`, discount =
//! |`priceDiscount`|, total = `total`.
//!
//! Returns: the returns sweep's document of one order (see the connector's module docs):
//! `{"order": getOrder, "order_id", "returns": [Post-Order ReturnSummaryType], "kept": [return ids]}`.
//! One Return per `returnId`; its unit is `creationInfo.item` (`itemId` + `transactionId`, matched
//! to the line's `legacyItemId` + `lineItemId`) times `returnQuantity`. `state` (ReturnStateEnum):
//! | eBay                                                      | canonical                     |
//! |-----------------------------------------------------------|-------------------------------|
//! | `ITEM_KEPT`, or a return once seen kept (`kept`)          | rejected (nothing comes back) |
//! | `ITEM_DELIVERED`                                          | received                      |
//! | `CLOSED`, `*REFUND*` with an actual refund                | refunded                      |
//! | `CLOSED` without one                                      | rejected                      |
//! | `ITEM_READY_TO_SHIP`, `ITEM_SHIPPED`, `*REFUND*` pending  | approved                      |
//! | anything else (`INITIAL`, `RETURN_REQUESTED`, ...)        | requested                     |
//! An actual refund (`sellerTotalRefund.actualRefundAmount`, else the buyer's) is also a Refund of
//! the order, so money back is recorded even when the goods stay with the buyer.
//!
//! Notifications (`metadata.topic`): order topics (`ORDER_CONFIRMATION`, `ITEM_MARKED_SHIPPED`, ...)
//! are thin; the order id is read from `notification.data.orderId` (payload shape unverified).

use manifold_domain::{Channel, Order, OrderCustomer, OrderStatus, Record, Refund, ReturnLine, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, unsupported},
    json::{MoneyShape, Node, abs, sum},
};

const CHANNEL: Channel = Channel::Ebay;

const MONEY: MoneyShape = MoneyShape { amount: "value", currency: "currency" };

const ADDRESS: AddressKeys = AddressKeys {
    name: "",
    first_name: "",
    last_name: "",
    line1: "addressLine1",
    line2: "addressLine2",
    city: "city",
    region: "stateOrProvince",
    postal_code: "postalCode",
    country: "countryCode",
};

const ORDER_TOPICS: &[&str] = &["ORDER_CONFIRMATION", "ITEM_MARKED_SHIPPED", "ORDER_CANCELLATION", "ITEM_SOLD"];

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || super::fixture(include_str!("../../fixtures/ebay/getorder-written-from-docs.json")),
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(doc, ctx)?)))),
        DocKind::Refund | DocKind::Return => returns(doc, ctx),
        DocKind::Shipment | DocKind::InventoryLevel | DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
}

/// One order's return summaries (see the module docs): a Return each, and a Refund beside it when
/// money went back.
fn returns(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    doc.object()?;
    let order_node = doc.field("order");
    if order_node.value().is_null() {
        return Err(match doc.field("order_id").opt_text()? {
            Some(id) => order_node.error(format!("eBay serves no order {id} for these returns")),
            None => doc.field("order_id").error("the return summaries name no orderId"),
        });
    }
    let order = order(&order_node, ctx)?;
    let items = order_node.field("lineItems").required_items()?;
    let kept: Vec<String> = doc.field("kept").items()?.iter().map(Node::text).collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for summary in doc.field("returns").required_items()? {
        let return_id = summary.field("returnId").text()?;
        let creation = summary.field("creationInfo");
        let item = creation.field("item");
        let (item_id, transaction) = (item.field("itemId").text()?, item.field("transactionId").opt_text()?);
        // The listing's line of this purchase; a listing bought once in the order is its line whatever
        // the transaction id says.
        let candidates: Vec<&Node<'_>> = items
            .iter()
            .filter(|i| i.field("legacyItemId").opt_text().ok().flatten().as_deref() == Some(item_id.as_str()))
            .collect();
        let by_transaction = candidates
            .iter()
            .find(|i| transaction.is_some() && i.field("lineItemId").opt_text().ok().flatten() == transaction);
        let line =
            by_transaction.or_else(|| candidates.first().filter(|_| candidates.len() == 1)).ok_or_else(|| {
                item.error(format!("item {item_id} is no single line of order {}", order.channel_order_id))
            })?;
        let line_id = line.field("lineItemId").text()?;
        let quantity_node = item.field("returnQuantity");
        let quantity = quantity_node.quantity()?;
        if quantity == 0 {
            return Err(quantity_node.error("a return of no units"));
        }
        let reason = creation.field("reason").opt_text()?;
        let sku = order.lines.iter().find(|l| l.line_id == line_id).and_then(|l| l.sku.clone());
        let lines = vec![ReturnLine { line_id, sku, quantity, reason: reason.clone() }];
        let refund_node = match summary.at("sellerTotalRefund.actualRefundAmount") {
            n if n.value().is_null() => summary.at("buyerTotalRefund.actualRefundAmount"),
            n => n,
        };
        let refunded = refund_node.opt_money(MONEY, order.currency)?.filter(|a| !a.is_zero());
        let state_text = summary.field("state").opt_text()?.unwrap_or_default();
        let state = match state_text.as_str() {
            _ if kept.contains(&return_id) => ReturnState::Rejected,
            "ITEM_KEPT" => ReturnState::Rejected,
            "ITEM_DELIVERED" => ReturnState::Received,
            s if (s == "CLOSED" || s.contains("REFUND")) && refunded.is_some() => ReturnState::Refunded,
            "CLOSED" => ReturnState::Rejected,
            s if s == "ITEM_READY_TO_SHIP" || s == "ITEM_SHIPPED" || s.contains("REFUND") => ReturnState::Approved,
            _ => ReturnState::Requested,
        };
        let created_at = creation.at("creationDate.value").opt_datetime()?.unwrap_or(ctx.received_at);
        if let Some(amount) = refunded {
            out.push(Record::Refund(Refund {
                id: return_id.clone(),
                order_id: order.id.clone(),
                channel: CHANNEL,
                account: order.account.clone(),
                currency: order.currency,
                amount,
                lines: Vec::new(),
                created_at,
            }));
        }
        let at = (created_at, ctx.received_at.max(created_at));
        out.push(Record::Return(super::order_return(&order, return_id, state, reason, lines, at)));
    }
    Ok(out)
}

fn status(doc: &Node<'_>) -> Result<OrderStatus, NormalizeError> {
    let cancel = doc.at("cancelStatus.cancelState").opt_text()?;
    let payment = doc.field("orderPaymentStatus").opt_text()?;
    let fulfillment = doc.field("orderFulfillmentStatus").opt_text()?;
    Ok(match (cancel.as_deref(), payment.as_deref(), fulfillment.as_deref()) {
        (Some("CANCELED"), _, _) => OrderStatus::Cancelled,
        (_, Some("FULLY_REFUNDED"), _) => OrderStatus::Refunded,
        (_, Some("PARTIALLY_REFUNDED"), _) => OrderStatus::PartiallyRefunded,
        (_, _, Some("FULFILLED")) => OrderStatus::Fulfilled,
        (_, _, Some("IN_PROGRESS")) => OrderStatus::PartiallyFulfilled,
        (_, Some("PAID"), _) => OrderStatus::Paid,
        (_, Some("PENDING" | "FAILED") | None, _) => OrderStatus::Pending,
        (_, Some(other), _) => {
            return Err(doc.field("orderPaymentStatus").error(format!("unknown orderPaymentStatus {other:?}")));
        }
    })
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    doc.object()?;
    let pricing = doc.field("pricingSummary");
    let currency = pricing.at("total.currency").currency()?;
    let money = |n: &Node<'_>| n.money_or_zero(MONEY, currency);
    let mut lines = Vec::new();
    // The order ships by its earliest line's `shipByDate` (the seller's handling time; shipping
    // later is a late-shipment defect on eBay).
    let mut ship_by: Option<chrono::DateTime<chrono::Utc>> = None;
    for item in doc.field("lineItems").required_items()? {
        if let Some(by) = item.at("lineItemFulfillmentInstructions.shipByDate").opt_datetime()? {
            ship_by = Some(ship_by.map_or(by, |s| s.min(by)));
        }
        let quantity = item.field("quantity").quantity()?;
        let taxes_node = item.field("taxes");
        let taxes = taxes_node.items()?.iter().map(|t| money(&t.field("amount"))).collect::<Result<Vec<_>, _>>()?;
        let promos_node = item.field("appliedPromotions");
        let promos = promos_node
            .items()?
            .iter()
            .map(|p| money(&p.field("discountAmount")).map(|a| abs(a, currency)))
            .collect::<Result<Vec<_>, _>>()?;
        lines.push(LineDraft {
            line_id: item.field("lineItemId").text()?,
            sku_path: item.field("sku").path().to_owned(),
            channel_sku: item.field("sku").opt_text()?,
            title: item.field("title").text_or_empty()?,
            quantity,
            unit_price: money(&item.field("lineItemCost"))?.per_unit(quantity, currency),
            tax: sum(currency, taxes, taxes_node.path())?,
            discount: sum(currency, promos, promos_node.path())?,
        });
    }
    let instructions = doc.field("fulfillmentStartInstructions").items()?;
    let ship_to = instructions.first().map_or_else(|| doc.at("shippingStep.shipTo"), |i| i.at("shippingStep.shipTo"));
    let mut shipping_address = ADDRESS.read(&ship_to.field("contactAddress"))?;
    let ship_name = ship_to.field("fullName").opt_text()?;
    if let Some(a) = shipping_address.as_mut() {
        a.name.clone_from(&ship_name);
    }
    let registration = doc.at("buyer.buyerRegistrationAddress");
    let first_some = |a: Node<'_>, b: Node<'_>| -> Result<Option<String>, NormalizeError> {
        match a.opt_text()? {
            Some(t) => Ok(Some(t)),
            None => b.opt_text(),
        }
    };
    let created_at = doc.field("creationDate").datetime()?;
    let id = doc.field("orderId").text()?;
    OrderDraft {
        order_number: id.clone(),
        channel_order_id: id,
        status: status(doc)?,
        created_at,
        updated_at: doc.field("lastModifiedDate").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            money(&pricing.field("priceSubtotal"))?,
            money(&pricing.field("deliveryCost"))?,
            money(&pricing.field("tax"))?,
            abs(money(&pricing.field("priceDiscount"))?, currency),
            pricing.field("total").opt_money(MONEY, currency)?,
        )?,
        customer: OrderCustomer {
            email: first_some(registration.field("email"), ship_to.field("email"))?,
            name: first_some(registration.field("fullName"), ship_to.field("fullName"))?,
            phone: first_some(registration.at("primaryPhone.phoneNumber"), ship_to.at("primaryPhone.phoneNumber"))?,
            channel_customer_id: doc.at("buyer.username").opt_text()?,
        },
        shipping_address,
        billing_address: None,
        ship_by,
    }
    .build(CHANNEL, ctx)
}

pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let topic = body.at("metadata.topic").text()?;
    if !ORDER_TOPICS.contains(&topic.as_str()) {
        return Ok(ignore(format!("ebay topic {topic} is not ingested")));
    }
    let notification = body.field("notification");
    Ok(Inbound::Thin {
        kind: DocKind::Order,
        resource_id: notification.at("data.orderId").text()?,
        event_time: notification.field("eventDate").opt_datetime()?,
    })
}
