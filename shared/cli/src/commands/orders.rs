//! `manifold orders late`: orders that missed their ship-by deadline and shipments whose tracking the
//! channel never showed, as the deadline watch reported them (kept 30 days).
//! `manifold orders release ID`: releases an order a routing rule held for review, so it reserves its
//! stock (`manifold_app::rules`).

use manifold_aws::watch::{DynamoWatch, Reported, WatchKind, WatchStore};
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum OrdersCommand {
    /// Orders not shipped by their deadline, and tracking the channel never confirmed.
    Late,
    /// Releases an order held for review by a routing rule: it reserves its stock from now on.
    Release {
        /// The order id (`{channel}:{account}:{channel_order_id}`).
        id: String,
        /// Who releases it (recorded on the order); the login name by default.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

impl Human for manifold_app::rules::Released {
    fn human(&self) -> String {
        format!(
            "order {} released by {} at {} (held by rule {}: {})\n",
            self.order_id,
            self.released_by,
            self.released_at.to_rfc3339(),
            self.rule,
            self.reason
        )
    }
}

/// Everything reported late, earliest deadline first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateReport {
    pub late: Vec<Reported>,
    pub unconfirmed_tracking: Vec<Reported>,
}

impl Human for LateReport {
    fn human(&self) -> String {
        if self.late.is_empty() && self.unconfirmed_tracking.is_empty() {
            return "no late orders and no unconfirmed tracking\n".to_owned();
        }
        let mut t = Table::new(&["WHAT", "ORDER", "CHANNEL", "ACCOUNT", "DEADLINE", "REPORTED", "WHY"]);
        for (what, list) in [("late", &self.late), ("tracking", &self.unconfirmed_tracking)] {
            for r in list {
                t.row(vec![
                    what.to_owned(),
                    r.order_id.to_string(),
                    r.channel.to_string(),
                    r.account.clone(),
                    r.deadline.format("%Y-%m-%d %H:%M").to_string(),
                    r.reported_at.format("%Y-%m-%d %H:%M").to_string(),
                    r.reason.clone(),
                ]);
            }
        }
        format!(
            "{} late order(s), {} unconfirmed tracking push(es)\n\n{}",
            self.late.len(),
            self.unconfirmed_tracking.len(),
            t.render()
        )
    }
}

/// What the watch reported.
pub async fn late(store: &dyn WatchStore) -> Result<LateReport, CliError> {
    Ok(LateReport {
        late: store.reported(WatchKind::ShipBy).await?,
        unconfirmed_tracking: store.reported(WatchKind::Tracking).await?,
    })
}

pub async fn run(cmd: &OrdersCommand, json: bool) -> Result<(), CliError> {
    if let OrdersCommand::Release { id, by } = cmd {
        let app = manifold_app::App::from_env().await?;
        let trace_id = manifold_app::trace::mint();
        let released = app.release_order(id, by, &trace_id, chrono::Utc::now()).await?;
        return crate::output::print(&released, json);
    }
    let aws = Aws::from_env().await?;
    let store = DynamoWatch::new(aws.ddb.clone(), &aws.env.state_table);
    match cmd {
        OrdersCommand::Late => crate::output::print(&late(&store).await?, json),
        OrdersCommand::Release { .. } => unreachable!("answered above"),
    }
}
