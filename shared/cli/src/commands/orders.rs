//! `manifold orders late`: orders that missed their ship-by deadline and shipments whose tracking the
//! channel never showed, as the deadline watch reported them (kept 30 days).

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
    let aws = Aws::from_env().await?;
    let store = DynamoWatch::new(aws.ddb.clone(), &aws.env.state_table);
    match cmd {
        OrdersCommand::Late => crate::output::print(&late(&store).await?, json),
    }
}
