//! What each channel can do for a merchant, job by job: the capability matrix.
//!
//! Every channel answers the same eleven questions ([`Operation`]); each answer is a [`Cell`] that
//! names the API operation it uses, the documentation that says the channel's API does not offer it,
//! or what is still missing here. The cells live beside the channel's other facts (its `SPEC` in this
//! folder), so a gap is written down where the channel is, not discovered by a merchant.
//! `manifold channels` prints the matrix and the README embeds the same text; a test keeps the two
//! equal, and the integration tests exercise every supported cell against the channel's simulator.

use std::fmt::Write as _;

use super::Channel;

/// One job a merchant expects of every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// New orders reach Manifold (webhook, notification or poll).
    OrdersIn,
    /// Changes to known orders, cancellations included, reach Manifold.
    OrderUpdatesIn,
    /// Refunds and returns reach Manifold as canonical records.
    ReturnsIn,
    /// Sellable quantities are written to the channel.
    StockOut,
    /// Selling prices are written to the channel.
    PriceOut,
    /// Shipments (carrier, tracking number) are written back to the channel's order.
    TrackingOut,
    /// An order Manifold cannot fulfil is cancelled on the channel (the `cancel` oversell policy).
    CancelOut,
    /// The channel is told the order was taken over, where it expects to be.
    Acknowledge,
    /// Orders changed since a time are listed (sweeps catch lost webhooks).
    ListOrdersSince,
    /// The channel's current quantity per SKU is read back (reconciliation).
    ReadStock,
    /// What the account lists, with the channel's own ids, is read (the catalog).
    ListingSync,
}

impl Operation {
    /// Every operation, in the matrix's column order.
    pub const ALL: [Operation; 11] = [
        Operation::OrdersIn,
        Operation::OrderUpdatesIn,
        Operation::ReturnsIn,
        Operation::StockOut,
        Operation::PriceOut,
        Operation::TrackingOut,
        Operation::CancelOut,
        Operation::Acknowledge,
        Operation::ListOrdersSince,
        Operation::ReadStock,
        Operation::ListingSync,
    ];

    /// The operation as the matrix heads it.
    pub fn title(self) -> &'static str {
        match self {
            Operation::OrdersIn => "orders in",
            Operation::OrderUpdatesIn => "order updates and cancellations in",
            Operation::ReturnsIn => "refunds and returns in",
            Operation::StockOut => "stock out",
            Operation::PriceOut => "price out",
            Operation::TrackingOut => "tracking out",
            Operation::CancelOut => "cancel out",
            Operation::Acknowledge => "acknowledge",
            Operation::ListOrdersSince => "list orders since",
            Operation::ReadStock => "read stock",
            Operation::ListingSync => "listing sync",
        }
    }
}

/// One channel's answer for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Built, through the named API operation.
    Supported(&'static str),
    /// The channel's API does not offer it; the text says where the documentation says so.
    NotOffered(&'static str),
    /// The API offers it and Manifold does not do it yet; the text says what is missing.
    NotBuilt(&'static str),
}

impl Cell {
    pub fn is_supported(self) -> bool {
        matches!(self, Cell::Supported(_))
    }

    /// The cell's word in the matrix.
    pub fn status(self) -> &'static str {
        match self {
            Cell::Supported(_) => "yes",
            Cell::NotOffered(_) => "not offered",
            Cell::NotBuilt(_) => "not yet built",
        }
    }

    /// The operation used, the documentation relied on, or what is missing.
    pub fn detail(self) -> &'static str {
        match self {
            Cell::Supported(s) | Cell::NotOffered(s) | Cell::NotBuilt(s) => s,
        }
    }
}

/// A channel's answer to every [`Operation`]: a struct rather than a map, so a channel cannot leave
/// one out.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub orders_in: Cell,
    pub order_updates_in: Cell,
    pub returns_in: Cell,
    pub stock_out: Cell,
    pub price_out: Cell,
    pub tracking_out: Cell,
    pub cancel_out: Cell,
    pub acknowledge: Cell,
    pub list_orders_since: Cell,
    pub read_stock: Cell,
    pub listing_sync: Cell,
}

impl Capabilities {
    pub fn cell(&self, op: Operation) -> Cell {
        match op {
            Operation::OrdersIn => self.orders_in,
            Operation::OrderUpdatesIn => self.order_updates_in,
            Operation::ReturnsIn => self.returns_in,
            Operation::StockOut => self.stock_out,
            Operation::PriceOut => self.price_out,
            Operation::TrackingOut => self.tracking_out,
            Operation::CancelOut => self.cancel_out,
            Operation::Acknowledge => self.acknowledge,
            Operation::ListOrdersSince => self.list_orders_since,
            Operation::ReadStock => self.read_stock,
            Operation::ListingSync => self.listing_sync,
        }
    }
}

/// Every cell of every channel that is not built yet, as `(channel, operation, what is missing)`.
pub fn gaps() -> Vec<(Channel, Operation, &'static str)> {
    Channel::ALL
        .into_iter()
        .flat_map(|c| {
            Operation::ALL.into_iter().filter_map(move |op| match c.spec().capabilities.cell(op) {
                Cell::NotBuilt(what) => Some((c, op, what)),
                _ => None,
            })
        })
        .collect()
}

/// The matrix as Markdown: an overview (one row per operation, one column per channel), then each
/// channel's cells with the operation, documentation or gap behind them. What `manifold channels`
/// prints and the README embeds.
pub fn markdown() -> String {
    let mut out = String::new();
    let mark = |cell: Cell| match cell {
        Cell::Supported(_) => "yes",
        Cell::NotOffered(_) => "n/a",
        Cell::NotBuilt(_) => "**gap**",
    };
    out.push_str("| operation |");
    for c in Channel::ALL {
        let _ = write!(out, " {} |", c.title());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Channel::ALL.len()));
    out.push('\n');
    for op in Operation::ALL {
        let _ = write!(out, "| {} |", op.title());
        for c in Channel::ALL {
            let _ = write!(out, " {} |", mark(c.spec().capabilities.cell(op)));
        }
        out.push('\n');
    }
    out.push_str("\n`yes`: built; `n/a`: the channel's API does not offer it; `gap`: not yet built.\n");
    for c in Channel::ALL {
        let _ = write!(out, "\n**{}**\n\n", c.title());
        for op in Operation::ALL {
            let cell = c.spec().capabilities.cell(op);
            let _ = writeln!(out, "- {}: {}: {}", op.title(), cell.status(), cell.detail());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_a_row_and_every_channel_a_column() {
        let md = markdown();
        let table: Vec<&str> = md.lines().take_while(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 2 + Operation::ALL.len());
        for row in &table {
            assert_eq!(row.matches('|').count(), Channel::ALL.len() + 2, "{row}");
        }
        for c in Channel::ALL {
            assert!(md.contains(&format!("**{}**", c.title())));
        }
    }

    #[test]
    fn every_cell_says_what_it_rests_on() {
        for c in Channel::ALL {
            for op in Operation::ALL {
                let cell = c.spec().capabilities.cell(op);
                assert!(cell.detail().len() > 8, "{c} {}: {cell:?} says too little", op.title());
            }
        }
    }
}
