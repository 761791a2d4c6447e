//! Amazon Selling Partner API: Orders v0, Orders 2026-01-01 and Notifications.
//!
//! Order inputs (detected by shape):
//! * Orders v0: `{"order": <getOrder response .payload>, "order_items": [<getOrderItems response
//!   .payload.OrderItems>]}`. Trap: `ItemPrice` is the line total (unit price x quantity), so
//!   `unit_price = ItemPrice / QuantityOrdered`. The order's `AmazonOrderId` is authoritative; items are
//!   not cross-checked against it.
//! * Orders 2026-01-01: the getOrder response's `order` object (`orderId`, camelCase), bare or still
//!   wrapped as `{"order": {...}}`. `product.price.unitPrice` is a real unit price.
//!
//! Currency: the order total's currency, else the first priced item's, else the marketplace's
//! (Pending orders carry no prices at all). Every other amount must be in that currency.
//!
//! Inventory: a `LISTINGS_ITEM_MFN_QUANTITY_CHANGE` notification (`Payload.Sku`, `Payload.Quantity`).
//!
//! Status, v0 `OrderStatus` / 2026 `fulfillment.fulfillmentStatus`:
//! | v0                   | 2026                 | canonical           |
//! |----------------------|----------------------|---------------------|
//! | Pending              | PENDING              | pending             |
//! | PendingAvailability  | PENDING_AVAILABILITY | pending             |
//! | Unshipped            | UNSHIPPED            | paid                |
//! | PartiallyShipped     | PARTIALLY_SHIPPED    | partially_fulfilled |
//! | Shipped              | SHIPPED              | fulfilled           |
//! | InvoiceUnconfirmed   | -                    | fulfilled           |
//! | Canceled             | CANCELLED            | cancelled           |
//! | Unfulfillable        | UNFULFILLABLE        | cancelled           |
//!
//! Totals, v0: subtotal = sum of `ItemPrice`, shipping = sum of `ShippingPrice`, tax = sum of `ItemTax` +
//! `ShippingTax`, discount = sum of `PromotionDiscount` + `ShippingDiscount`, total = `OrderTotal` (or the
//! sum of those). 2026: from `proceeds.breakdowns` (`ITEM`, `SHIPPING`, `TAX`, `DISCOUNT`) and
//! `proceeds.grandTotal`; line tax/discount from each item's `proceeds.breakdowns`.

use manifold_domain::{Channel, Currency, Order, OrderCustomer, OrderStatus, Record, Refund, ReturnLine, ReturnState};

use crate::{
    Context, DocKind, Inbound, NormalizeError,
    build::{self, AddressKeys, LineDraft, OrderDraft},
    channels::{ignore, one, unsupported},
    json::{MoneyShape, Node, abs, sum, zero},
};

const CHANNEL: Channel = Channel::Amazon;

const STATUS: &[(&str, OrderStatus)] = &[
    ("Pending", OrderStatus::Pending),
    ("PendingAvailability", OrderStatus::Pending),
    ("PENDING_AVAILABILITY", OrderStatus::Pending),
    ("Unshipped", OrderStatus::Paid),
    ("PartiallyShipped", OrderStatus::PartiallyFulfilled),
    ("PARTIALLY_SHIPPED", OrderStatus::PartiallyFulfilled),
    ("Shipped", OrderStatus::Fulfilled),
    ("InvoiceUnconfirmed", OrderStatus::Fulfilled),
    ("Canceled", OrderStatus::Cancelled),
    ("CANCELLED", OrderStatus::Cancelled),
    ("Unfulfillable", OrderStatus::Cancelled),
];

/// Marketplace id -> currency, for orders that carry no money yet.
const MARKETPLACE_CURRENCY: &[(&str, &str)] = &[
    ("ATVPDKIKX0DER", "USD"),
    ("A2EUQ1WTGCTBG2", "CAD"),
    ("A1AM78C64UM0Y8", "MXN"),
    ("A2Q3Y263D00KWC", "BRL"),
    ("A1F83G8C2ARO7P", "GBP"),
    ("A1PA6795UKMFR9", "EUR"),
    ("A13V1IB3VIYZZH", "EUR"),
    ("APJ6JRA9NG5V4", "EUR"),
    ("A1RKKUPIHCS9HS", "EUR"),
    ("A1805IZSGTT6HS", "EUR"),
    ("AMEN7PMS3EDWL", "EUR"),
    ("A2NODRKZP88ZB9", "SEK"),
    ("A1C3SOZRARQ6R3", "PLN"),
    ("A33AVAJ2PDY3EV", "TRY"),
    ("A21TJRUUN4KGV", "INR"),
    ("A1VC38T7YXB528", "JPY"),
    ("A39IBJ37TRP1C6", "AUD"),
    ("A19VAU5U5O7RUS", "SGD"),
    ("A2VIGQ35RCS4UG", "AED"),
    ("A17E79C6D8DWNP", "SAR"),
];

const V0_MONEY: MoneyShape = MoneyShape { amount: "Amount", currency: "CurrencyCode" };
const V2026_MONEY: MoneyShape = MoneyShape { amount: "amount", currency: "currencyCode" };

const V0_ADDRESS: AddressKeys = AddressKeys {
    name: "Name",
    first_name: "",
    last_name: "",
    line1: "AddressLine1",
    line2: "AddressLine2",
    city: "City",
    region: "StateOrRegion",
    postal_code: "PostalCode",
    country: "CountryCode",
};

const V2026_ADDRESS: AddressKeys = AddressKeys {
    name: "name",
    first_name: "",
    last_name: "",
    line1: "addressLine1",
    line2: "addressLine2",
    city: "city",
    region: "stateOrRegion",
    postal_code: "postalCode",
    country: "countryCode",
};

/// This channel in the normalizer registry ([`super::module`]).
pub(crate) const MODULE: super::Normalizer = super::Normalizer {
    normalize,
    classify,
    // The order document ingest receives, for the benchmarks (`crate::samples`).
    sample: || {
        let order = super::fixture(include_str!("../../fixtures/amazon/orders-v0-getOrder-response-example.json"));
        let items = super::fixture(include_str!("../../fixtures/amazon/orders-v0-getOrderItems-response-example.json"));
        serde_json::json!({ "order": order["payload"], "order_items": items["payload"]["OrderItems"] })
    },
};

pub(crate) fn normalize(kind: DocKind, doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    match kind {
        DocKind::Order => Ok(one(Record::Order(Box::new(order(doc, ctx)?)))),
        DocKind::InventoryLevel => Ok(one(Record::InventoryLevel(mfn_quantity(doc, ctx)?))),
        DocKind::Refund | DocKind::Return => returns(doc, ctx),
        DocKind::Shipment | DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
}

/// The returns report's rows of one order (see the module docs): one Return per Amazon RMA, and a
/// Refund beside it when money went back.
fn returns(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Vec<Record>, NormalizeError> {
    doc.object()?;
    if doc.field("order").value().is_null() {
        let id = doc.field("order_id").opt_text()?.unwrap_or_default();
        return Err(doc.field("order").error(format!("Amazon serves no order {id} for these returns")));
    }
    let order = order(doc, ctx)?;
    let items = doc.field("order_items").items()?;
    let mut by_rma: Vec<(String, Vec<Node<'_>>)> = Vec::new();
    for row in doc.field("returns").required_items()? {
        let rma = row.field("Amazon RMA ID").text()?;
        if let Some((_, rows)) = by_rma.iter_mut().find(|(r, _)| *r == rma) {
            rows.push(row);
        } else {
            by_rma.push((rma, vec![row]));
        }
    }
    let mut out = Vec::new();
    for (rma, rows) in by_rma {
        let (mut lines, mut delivered, mut refunded) = (Vec::<ReturnLine>::new(), false, Vec::new());
        let first = &rows[0];
        for row in &rows {
            let sku_node = row.field("Merchant SKU");
            let sku = sku_node.text()?;
            let item = items
                .iter()
                .find(|i| i.field("SellerSKU").opt_text().ok().flatten().as_deref() == Some(sku.as_str()))
                .ok_or_else(|| sku_node.error(format!("{sku} is no item of order {}", order.channel_order_id)))?;
            let line_id = item.field("OrderItemId").text()?;
            let quantity_node = row.field("Return quantity");
            let quantity = quantity_node
                .text()?
                .parse::<u32>()
                .ok()
                .filter(|q| *q > 0)
                .ok_or_else(|| quantity_node.error("expected a whole number of units"))?;
            let sku = order.lines.iter().find(|l| l.line_id == line_id).and_then(|l| l.sku.clone());
            lines.push(ReturnLine { line_id, sku, quantity, reason: row.field("Return Reason").opt_text()? });
            delivered |= row.field("Return delivery date").opt_datetime()?.is_some();
            let code = row.field("Currency code");
            if let Some(c) = code.opt_currency()?
                && c != order.currency
            {
                return Err(code.error(format!("refund currency {c} differs from the order's {}", order.currency)));
            }
            if let Some(a) = row.field("Refunded Amount").opt_amount(order.currency)?
                && !a.is_zero()
            {
                refunded.push(a);
            }
        }
        let status = first.field("Return request status").opt_text()?.unwrap_or_default().to_ascii_lowercase();
        // Goods count as back only once Amazon reports them delivered to the seller: a refund alone
        // may be a returnless one.
        let state = match (delivered, refunded.is_empty()) {
            (true, false) => ReturnState::Refunded,
            (true, true) => ReturnState::Received,
            _ if ["reject", "declin", "cancel"].iter().any(|w| status.contains(w)) => ReturnState::Rejected,
            _ if ["approv", "authoriz", "closed"].iter().any(|w| status.contains(w)) => ReturnState::Approved,
            _ => ReturnState::Requested,
        };
        let created_at = first.field("Return request date").opt_datetime()?.unwrap_or(ctx.received_at);
        if !refunded.is_empty() {
            let path = first.field("Refunded Amount").path().to_owned();
            out.push(Record::Refund(Refund {
                id: rma.clone(),
                order_id: order.id.clone(),
                channel: CHANNEL,
                account: order.account.clone(),
                currency: order.currency,
                amount: crate::json::sum(order.currency, refunded, &path)?,
                lines: Vec::new(),
                created_at,
            }));
        }
        let reason = first.field("Return Reason").opt_text()?;
        let at = (created_at, ctx.received_at.max(created_at));
        out.push(Record::Return(super::order_return(&order, rma, state, reason, lines, at)));
    }
    Ok(out)
}

fn order(doc: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    doc.object()?;
    if !doc.field("orderId").value().is_null() {
        return order_2026(doc, ctx);
    }
    let inner = doc.field("order");
    if !inner.field("orderId").value().is_null() {
        return order_2026(&inner, ctx);
    }
    order_v0(&inner, &doc.field("order_items"), ctx)
}

fn marketplace_currency(node: &Node<'_>) -> Result<Option<Currency>, NormalizeError> {
    let Some(id) = node.opt_text()? else { return Ok(None) };
    Ok(MARKETPLACE_CURRENCY.iter().find(|(m, _)| *m == id).and_then(|(_, c)| Currency::new(c).ok()))
}

/// The first currency found among `candidates` (money objects), else the marketplace's.
fn pick_currency(candidates: &[Node<'_>], code_key: &str, marketplace: &Node<'_>) -> Result<Currency, NormalizeError> {
    for c in candidates {
        if let Some(code) = c.field(code_key).opt_currency()? {
            return Ok(code);
        }
    }
    marketplace_currency(marketplace)?
        .ok_or_else(|| marketplace.error("no amount carries a currency and the marketplace is unknown"))
}

fn order_v0(o: &Node<'_>, items: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    o.object()?;
    let items_path = items.path();
    let items = items.required_items()?;
    let mut candidates = vec![o.field("OrderTotal")];
    candidates.extend(items.iter().map(|i| i.field("ItemPrice")));
    let currency = pick_currency(&candidates, "CurrencyCode", &o.field("MarketplaceId"))?;
    let money = |n: &Node<'_>, key: &str| n.field(key).money_or_zero(V0_MONEY, currency);

    let (mut lines, mut line_totals, mut shipping, mut tax, mut discount) = (vec![], vec![], vec![], vec![], vec![]);
    for item in &items {
        let quantity = item.field("QuantityOrdered").quantity()?;
        let line_total = money(item, "ItemPrice")?;
        let item_tax = money(item, "ItemTax")?;
        let promo = abs(money(item, "PromotionDiscount")?, currency);
        line_totals.push(line_total);
        shipping.push(money(item, "ShippingPrice")?);
        tax.extend([item_tax, money(item, "ShippingTax")?]);
        discount.extend([promo, abs(money(item, "ShippingDiscount")?, currency)]);
        lines.push(LineDraft {
            line_id: item.field("OrderItemId").text()?,
            sku_path: item.field("SellerSKU").path().to_owned(),
            channel_sku: item.field("SellerSKU").opt_text()?,
            title: item.field("Title").text_or_empty()?,
            quantity,
            unit_price: line_total.per_unit(quantity, currency),
            tax: item_tax,
            discount: promo,
        });
    }
    let buyer = o.field("BuyerInfo");
    let text_of = |primary: Node<'_>, fallback: Node<'_>| -> Result<Option<String>, NormalizeError> {
        match primary.opt_text()? {
            Some(t) => Ok(Some(t)),
            None => fallback.opt_text(),
        }
    };
    let shipping_address = V0_ADDRESS.read(&o.field("ShippingAddress"))?;
    let created_at = o.field("PurchaseDate").datetime()?;
    let id = o.field("AmazonOrderId").text()?;
    OrderDraft {
        order_number: id.clone(),
        channel_order_id: id,
        status: build::map_status(STATUS, &o.field("OrderStatus"))?,
        created_at,
        updated_at: o.field("LastUpdateDate").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            sum(currency, line_totals, items_path)?,
            sum(currency, shipping, items_path)?,
            sum(currency, tax, items_path)?,
            sum(currency, discount, items_path)?,
            o.field("OrderTotal").opt_money(V0_MONEY, currency)?,
        )?,
        customer: OrderCustomer {
            email: text_of(buyer.field("BuyerEmail"), o.field("BuyerEmail"))?,
            name: text_of(buyer.field("BuyerName"), o.field("BuyerName"))?,
            phone: o.at("ShippingAddress.Phone").opt_text()?,
            // Amazon gives sellers no id of the buyer (`BuyerEmail` is an anonymized relay address).
            channel_customer_id: None,
        },
        shipping_address,
        billing_address: None,
        ship_by: o.field("LatestShipDate").opt_datetime()?,
    }
    .build(CHANNEL, ctx)
}

/// Sums the `subtotal` of every breakdown of `kind` in a `proceeds` object.
fn breakdown(
    proceeds: &Node<'_>,
    kind: &str,
    currency: Currency,
) -> Result<Option<manifold_domain::Amount>, NormalizeError> {
    let mut found = Vec::new();
    for b in proceeds.field("breakdowns").items()? {
        if b.field("type").opt_text()?.as_deref() == Some(kind) {
            found.push(b.field("subtotal").money_or_zero(V2026_MONEY, currency)?);
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    sum(currency, found, proceeds.field("breakdowns").path()).map(Some)
}

fn order_2026(o: &Node<'_>, ctx: &Context<'_>) -> Result<Order, NormalizeError> {
    let items = o.field("orderItems").required_items()?;
    let proceeds = o.field("proceeds");
    let mut candidates = vec![proceeds.field("grandTotal")];
    candidates.extend(items.iter().map(|i| i.at("product.price.unitPrice")));
    let currency = pick_currency(&candidates, "currencyCode", &o.at("salesChannel.marketplaceId"))?;

    let mut lines = Vec::new();
    for item in &items {
        let product = item.field("product");
        let item_proceeds = item.field("proceeds");
        lines.push(LineDraft {
            line_id: item.field("orderItemId").text()?,
            sku_path: product.field("sellerSku").path().to_owned(),
            channel_sku: product.field("sellerSku").opt_text()?,
            title: product.field("title").text_or_empty()?,
            quantity: item.field("quantityOrdered").quantity()?,
            unit_price: product.at("price.unitPrice").money_or_zero(V2026_MONEY, currency)?,
            tax: breakdown(&item_proceeds, "TAX", currency)?.unwrap_or(zero(currency)),
            discount: abs(breakdown(&item_proceeds, "DISCOUNT", currency)?.unwrap_or(zero(currency)), currency),
        });
    }
    let line_subtotal = build::line_subtotal(currency, &lines, o.field("orderItems").path())?;
    let status_node = o.at("fulfillment.fulfillmentStatus");
    let address = o.at("recipient.deliveryAddress");
    let created_at = o.field("createdTime").datetime()?;
    let id = o.field("orderId").text()?;
    OrderDraft {
        order_number: id.clone(),
        channel_order_id: id,
        status: build::map_status(STATUS, &status_node)?,
        created_at,
        updated_at: o.field("lastUpdatedTime").opt_datetime()?.unwrap_or(created_at),
        currency,
        lines,
        totals: build::totals(
            currency,
            breakdown(&proceeds, "ITEM", currency)?.unwrap_or(line_subtotal),
            breakdown(&proceeds, "SHIPPING", currency)?.unwrap_or(zero(currency)),
            breakdown(&proceeds, "TAX", currency)?.unwrap_or(zero(currency)),
            abs(breakdown(&proceeds, "DISCOUNT", currency)?.unwrap_or(zero(currency)), currency),
            proceeds.field("grandTotal").opt_money(V2026_MONEY, currency)?,
        )?,
        customer: OrderCustomer {
            email: o.at("buyer.buyerEmail").opt_text()?,
            name: o.at("buyer.buyerName").opt_text()?,
            phone: address.field("phone").opt_text()?,
            // Amazon gives sellers no id of the buyer (`buyerEmail` is an anonymized relay address).
            channel_customer_id: None,
        },
        shipping_address: V2026_ADDRESS.read(&address)?,
        billing_address: None,
        ship_by: o.at("fulfillment.shipByWindow.latestDateTime").opt_datetime()?,
    }
    .build(CHANNEL, ctx)
}

/// `LISTINGS_ITEM_MFN_QUANTITY_CHANGE`: merchant-fulfilled quantity of one seller SKU.
fn mfn_quantity(body: &Node<'_>, ctx: &Context<'_>) -> Result<manifold_domain::InventoryLevel, NormalizeError> {
    let kind = body.field("NotificationType");
    if kind.text()? != "LISTINGS_ITEM_MFN_QUANTITY_CHANGE" {
        return Err(kind.error("expected a LISTINGS_ITEM_MFN_QUANTITY_CHANGE notification"));
    }
    let payload = body.field("Payload");
    let sku = payload.field("Sku");
    if sku.is_blank() {
        return Err(sku.error("required sku is missing"));
    }
    Ok(build::inventory_level(
        CHANNEL,
        ctx,
        build::sku_at(ctx, &sku)?,
        None,
        payload.field("FulfillmentChannelCode").opt_text()?,
        payload.field("Quantity").i64()?,
        body.field("EventTime").datetime()?,
    ))
}

/// SP-API notifications (SQS message bodies) keyed by `NotificationType`.
pub(crate) fn classify(_topic: Option<&str>, body: &Node<'_>) -> Result<Inbound, NormalizeError> {
    let kind = body.field("NotificationType").text()?;
    let event_time = body.field("EventTime").opt_datetime()?;
    match kind.as_str() {
        // Carries no money, email or address: fetch the order.
        "ORDER_CHANGE" => Ok(Inbound::Thin {
            kind: DocKind::Order,
            resource_id: body.at("Payload.OrderChangeNotification.AmazonOrderId").text()?,
            event_time,
        }),
        "LISTINGS_ITEM_MFN_QUANTITY_CHANGE" => {
            Ok(Inbound::Full { kind: DocKind::InventoryLevel, doc: body.value().clone() })
        }
        other => Ok(ignore(format!("amazon notification {other} is not ingested"))),
    }
}
