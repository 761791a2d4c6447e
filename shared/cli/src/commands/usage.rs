//! `manifold usage`: what each channel cost, per day: channel API calls, AWS requests, orders and the
//! AWS cost ingest counted for them (its own calls, as the SDK interceptor counted them, priced at
//! us-east-1 list prices) into the StateTable (`StateStore::add_usage`).

use chrono::{Days, NaiveDate, Utc};
use manifold_aws::state::{StateStore, Usage};
use manifold_domain::Channel;
use serde::Serialize;

use crate::{
    CliError,
    aws::Aws,
    commands::parse_channel,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// Days back from today (UTC), today included.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub api_calls: u64,
    pub aws_requests: u64,
    pub orders: u64,
    pub usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<Usage>,
    pub totals: Totals,
}

fn usd(micro: f64) -> f64 {
    micro / 1_000_000.0
}

impl Human for UsageReport {
    fn human(&self) -> String {
        let mut t =
            Table::new(&["DAY", "CHANNEL", "API CALLS", "AWS REQUESTS", "ORDERS", "EST. USD"]).numeric(&[2, 3, 4, 5]);
        for u in &self.days {
            t.row(vec![
                u.day.clone(),
                u.channel.clone(),
                u.api_calls.to_string(),
                u.aws_requests.to_string(),
                u.orders.to_string(),
                format!("{:.4}", usd(u.micro_usd)),
            ]);
        }
        let s = &self.totals;
        t.row(vec![
            "total".to_owned(),
            String::new(),
            s.api_calls.to_string(),
            s.aws_requests.to_string(),
            s.orders.to_string(),
            format!("{:.4}", s.usd),
        ]);
        let per_order = if s.orders > 0 {
            #[allow(clippy::cast_precision_loss)] // order counts are far below 2^52
            let per = s.usd / s.orders as f64;
            format!(", {per:.6} USD per order")
        } else {
            String::new()
        };
        if self.days.is_empty() {
            return format!("usage {} to {}: nothing recorded\n", self.from, self.to);
        }
        format!("usage {} to {}{per_order}\n\n{}", self.from, self.to, t.render())
    }
}

/// Usage of `channels` over the `days` days ending `today`, sorted by day then channel, with totals.
pub async fn usage(
    state: &StateStore,
    channels: &[Channel],
    days: u32,
    today: NaiveDate,
) -> Result<UsageReport, CliError> {
    let from = today.checked_sub_days(Days::new(u64::from(days.max(1) - 1))).unwrap_or(today);
    let mut rows = Vec::new();
    for c in channels {
        rows.extend(state.usage(c.as_str(), from, today).await?);
    }
    rows.sort_by(|a, b| (&a.day, &a.channel).cmp(&(&b.day, &b.channel)));
    let totals = Totals {
        api_calls: rows.iter().map(|u| u.api_calls).sum(),
        aws_requests: rows.iter().map(|u| u.aws_requests).sum(),
        orders: rows.iter().map(|u| u.orders).sum(),
        // A fold from +0.0: an empty f64 sum is -0.0, which would print as "-0.0000".
        usd: usd(rows.iter().map(|u| u.micro_usd).fold(0.0, |a, b| a + b)),
    };
    Ok(UsageReport { from, to: today, days: rows, totals })
}

pub async fn run(args: &UsageArgs) -> Result<UsageReport, CliError> {
    let aws = Aws::from_env().await?;
    let state = StateStore::new(aws.ddb.clone(), &aws.env.state_table);
    let channels = args.channel.map_or_else(|| Channel::ALL.to_vec(), |c| vec![c]);
    usage(&state, &channels, args.days, Utc::now().date_naive()).await
}
