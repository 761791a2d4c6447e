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

use manifold_domain::{Channel, Currency, Order, OrderCustomer, OrderStatus, Record};

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
        DocKind::Refund | DocKind::Return | DocKind::Shipment | DocKind::Product => Err(unsupported(CHANNEL, kind)),
    }
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
