//! `manifold customers`: one person across channels and CRMs (`manifold_app::customers`).
//!
//! - `show ID` (or `--order ORDER_ID`): the customer after any merge, its identities, history and
//!   orders across channels;
//! - `merge A B --reason`: B is merged into A;
//! - `split ID IDENTITY --reason`: the identity (`email:...`, `phone:+...`, `channel_id:...`) and the
//!   orders that named it move to a new customer, kept apart from then on;
//! - `forget ID`: erases the person everywhere (also `DELETE /v1/customers/{id}`);
//! - `sync`: every CRM account's run now, whatever its cadence (the changed customers queued);
//! - `audit`: merges, splits and erasures, with who did them (ids and counts only).
//!
//! Every change is written with the operator's name (`--by`, the login name by default).

use std::fmt::Write as _;

use manifold_app::{
    App,
    customers::{CustomerView, Forgotten},
};
use manifold_aws::customers::AuditEntry;
use manifold_domain::{OrderId, customers::Customer};
use serde::Serialize;

use crate::{
    CliError,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CustomersCommand {
    /// A customer, its identities, its history and its orders across channels.
    Show {
        /// The customer id (`cus_...`); or give `--order`.
        id: Option<String>,
        /// The customer of this order (`{channel}:{account}:{channel_order_id}`).
        #[arg(long)]
        order: Option<String>,
    },
    /// Merges customer B into customer A (A keeps its id; B redirects to it).
    Merge {
        a: String,
        b: String,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Splits one identity (`email:...`, `phone:+...`, `channel_id:...`) and its orders off a customer.
    Split {
        id: String,
        identity: String,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Erases a person: contact data out of the customer, its orders, the quarantine and every CRM.
    Forget {
        id: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Runs every CRM account's sync now (as its cadence would): the changed customers queued for the CRM consumer.
    Sync,
    /// Merges, splits and erasures, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

fn customer_head(c: &Customer) -> String {
    let mut out = format!("{}\n", c.id);
    let field = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if let Some(at) = c.forgotten_at {
        let _ = writeln!(out, "  forgotten    {} (contact data erased)", at.to_rfc3339());
    }
    let _ = writeln!(out, "  name         {}", field(&c.name));
    let _ = writeln!(out, "  email        {}", field(&c.email));
    let _ = writeln!(out, "  phone        {}", field(&c.phone));
    let totals: Vec<String> = c.totals.iter().map(|(cur, a)| format!("{cur} {a}")).collect();
    let _ = writeln!(
        out,
        "  orders       {} ({})",
        c.order_count,
        if totals.is_empty() { "-".into() } else { totals.join(", ") }
    );
    if let (Some(first), Some(last)) = (c.first_order_at, c.last_order_at) {
        let _ = writeln!(out, "  first, last  {}, {}", first.to_rfc3339(), last.to_rfc3339());
    }
    for (k, v) in &c.attributes {
        let _ = writeln!(out, "  {k:<12} {v} (CRM-owned)");
    }
    for (crm, id) in &c.crm_ids {
        let _ = writeln!(out, "  in CRM       {crm}: {id}");
    }
    for k in &c.identities {
        let from = match (&k.channel, &k.account) {
            (Some(ch), Some(a)) => format!(" (first seen on {ch}:{a})"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  identity     {}{from}", k.identity.key());
    }
    for h in &c.history {
        let other = h.other.clone().unwrap_or_default();
        let rule = h.rule.as_ref().map(|r| format!(" by rule {r}")).unwrap_or_default();
        let reason = h.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
        let by = h.by.as_ref().map(|b| format!(" ({b})")).unwrap_or_default();
        let _ = writeln!(out, "  history      {} {:?} {other}{rule}{reason}{by}", h.at.to_rfc3339(), h.action);
    }
    out
}

impl Human for CustomerView {
    fn human(&self) -> String {
        let mut out = String::new();
        if let Some(from) = &self.redirected_from {
            let _ = writeln!(out, "{from} was merged into {}", self.customer.id);
        }
        out.push_str(&customer_head(&self.customer));
        out.push('\n');
        let mut t = Table::new(&["ORDER", "CHANNEL", "ACCOUNT", "CREATED", "STATUS", "TOTAL"]);
        for o in &self.orders {
            t.row(vec![
                o.order_id.clone(),
                o.channel.clone(),
                o.account.clone(),
                o.created_at.to_rfc3339(),
                o.status.clone(),
                format!("{} {}", o.currency, o.total),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

impl Human for Customer {
    fn human(&self) -> String {
        customer_head(self)
    }
}

/// Both customers after a split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub kept: Customer,
    pub split_off: Customer,
}

impl Human for SplitReport {
    fn human(&self) -> String {
        format!("{}\n{}", customer_head(&self.kept), customer_head(&self.split_off))
    }
}

impl Human for Forgotten {
    fn human(&self) -> String {
        format!(
            "{} forgotten: {} order(s) erased, {} claim(s) released, {} quarantined payload(s) and {} dead letter(s) deleted, {} CRM erasure(s) queued\n",
            self.customer_id,
            self.orders_erased,
            self.claims_released,
            self.quarantined_deleted,
            self.dead_letters_deleted,
            self.crm_requests
        )
    }
}

/// What each CRM account's run queued.
#[derive(Debug, Clone, Serialize)]
pub struct CrmRuns {
    pub runs: Vec<manifold_app::crm::CrmRun>,
}

impl Human for CrmRuns {
    fn human(&self) -> String {
        let mut t = Table::new(&["CRM", "EXAMINED", "CHANGED", "JOBS", "WITHOUT EMAIL"]);
        for r in &self.runs {
            t.row(vec![
                r.crm.clone(),
                r.examined.to_string(),
                r.queued.to_string(),
                r.jobs.to_string(),
                r.without_email.to_string(),
            ]);
        }
        t.render()
    }
}

/// The audit, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub entries: Vec<AuditEntry>,
}

impl Human for AuditReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["AT", "ACTION", "CUSTOMER", "OTHER", "BY", "DETAIL"]);
        for e in &self.entries {
            let detail: Vec<String> = e.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.row(vec![
                e.at.to_rfc3339(),
                e.action.clone(),
                e.customer_id.clone(),
                e.other.clone().unwrap_or_else(|| "-".into()),
                e.by.clone(),
                detail.join(" "),
            ]);
        }
        t.render()
    }
}

pub async fn run(cmd: CustomersCommand, json: bool) -> Result<(), CliError> {
    let app = App::from_env().await?;
    let now = chrono::Utc::now();
    match cmd {
        CustomersCommand::Show { id, order } => {
            let id = match (id, order) {
                (Some(id), _) => id,
                (None, Some(order)) => {
                    let order = OrderId::new(order.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
                    app.customer_of_order(&order)
                        .await?
                        .ok_or_else(|| CliError::Usage(format!("order {order} is not joined to a customer (yet)")))?
                }
                (None, None) => return Err(CliError::Usage("give a customer id or --order".into())),
            };
            let view = app.show_customer(&id).await?.ok_or_else(|| CliError::Usage(format!("no customer {id}")))?;
            crate::output::print(&view, json)
        }
        CustomersCommand::Merge { a, b, reason, by } => {
            crate::output::print(&app.merge_customers(&a, &b, &reason, &by, now).await?, json)
        }
        CustomersCommand::Split { id, identity, reason, by } => {
            let (kept, split_off) = app.split_customer(&id, &identity, &reason, &by, now).await?;
            crate::output::print(&SplitReport { kept, split_off }, json)
        }
        CustomersCommand::Forget { id, by } => crate::output::print(&app.forget_customer(&id, &by, now).await?, json),
        CustomersCommand::Sync => crate::output::print(&CrmRuns { runs: app.run_crm_syncs(now, true).await? }, json),
        CustomersCommand::Audit { limit } => {
            crate::output::print(&AuditReport { entries: app.customer_audit(limit).await? }, json)
        }
    }
}
