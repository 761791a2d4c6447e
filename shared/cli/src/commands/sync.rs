//! `manifold sync CHANNEL ACCOUNT KIND [--full]` starts a sync run (a full catalog push, a re-sync
//! after a mapping change, the push after a legacy ERP import) and follows it page by page until it
//! ends; `manifold sync runs` lists the runs, scheduled and triggered, with what each did.
//!
//! The run is the same as `POST /v1/sync/{channel}/{account}/{kind}` starts (`App::start_sync`), with
//! trigger `cli`; the scheduler function does its pages from the `SyncQueue`.

use std::{
    io::{IsTerminal, Write},
    time::Duration,
};

use chrono::{Days, NaiveDate, Utc};
use manifold_app::{
    App,
    sync::{
        RunStatus, Slot, SyncKind, SyncRun, Trigger,
        store::{DynamoSyncStore, SyncStore},
    },
};
use manifold_domain::{AccountId, Channel};
use serde::Serialize;

use crate::{
    CliError,
    commands::parse_channel,
    output::{self, Human, Table},
};

#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SyncArgs {
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The channel (`shopify`, `etsy`, ...).
    #[arg(value_parser = parse_channel, required = true)]
    pub channel: Option<Channel>,
    /// The account id in the configuration.
    #[arg(required = true)]
    pub account: Option<String>,
    /// What to sync: stock, prices, images, orders or reconcile.
    #[arg(value_parser = parse_kind, required = true)]
    pub kind: Option<SyncKind>,
    /// The whole catalog, not only what changed since the last scheduled run.
    #[arg(long)]
    pub full: bool,
    /// Print the job id and return without following the run.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SyncCommand {
    /// Every run (scheduled, api, cli): kind, trigger, start, end, examined, pushed, drift, errors.
    Runs {
        /// Days back from today (UTC), today included.
        #[arg(long, default_value_t = 1)]
        days: u32,
        #[arg(long, value_parser = parse_channel)]
        channel: Option<Channel>,
        #[arg(long)]
        account: Option<String>,
    },
}

fn parse_kind(s: &str) -> Result<SyncKind, String> {
    s.parse()
}

/// The runs of a period, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunsReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub runs: Vec<SyncRun>,
}

fn time(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

impl Human for RunsReport {
    fn human(&self) -> String {
        if self.runs.is_empty() {
            return format!("no sync runs from {} to {}\n", self.from, self.to);
        }
        let mut t = Table::new(&[
            "RUN", "CHANNEL", "ACCOUNT", "KIND", "TRIGGER", "STATUS", "STARTED", "FINISHED", "EXAMINED", "PUSHED",
            "DRIFT", "ERRORS",
        ])
        .numeric(&[8, 9, 10, 11]);
        for r in &self.runs {
            t.row(vec![
                r.id.clone(),
                r.channel.to_string(),
                r.account.to_string(),
                r.kind.to_string(),
                r.trigger.as_str().to_owned(),
                r.status.as_str().to_owned(),
                time(Some(r.started_at)),
                time(r.finished_at),
                r.examined.to_string(),
                r.pushed.to_string(),
                r.drift.to_string(),
                r.errors.to_string(),
            ]);
        }
        t.render()
    }
}

/// The runs started over the `days` days ending `today`, optionally of one channel or account.
pub async fn runs(
    store: &dyn SyncStore,
    days: u32,
    today: NaiveDate,
    channel: Option<Channel>,
    account: Option<&str>,
) -> Result<RunsReport, CliError> {
    let from = today.checked_sub_days(Days::new(u64::from(days.max(1) - 1))).unwrap_or(today);
    let mut runs = store.runs(from, today).await?;
    runs.retain(|r| channel.is_none_or(|c| r.channel == c) && account.is_none_or(|a| r.account.as_str() == a));
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(RunsReport { from, to: today, runs })
}

/// Reads the run until it ends, calling `progress` each time its page count moved.
pub async fn follow(
    store: &dyn SyncStore,
    id: &str,
    poll: Duration,
    mut progress: impl FnMut(&SyncRun),
) -> Result<SyncRun, CliError> {
    let mut seen = None;
    loop {
        let run = store.run(id).await?.ok_or_else(|| CliError::Usage(format!("no sync run {id:?}")))?;
        if seen != Some(run.pages) || run.status != RunStatus::Running {
            seen = Some(run.pages);
            progress(&run);
        }
        if run.status != RunStatus::Running {
            return Ok(run);
        }
        tokio::time::sleep(poll).await;
    }
}

/// One progress line: a spinner while the run goes (a catalog walk learns its size only at its last
/// page, so there is no honest percentage), the pages and counts so far.
pub fn progress_line(run: &SyncRun) -> String {
    const SPIN: [char; 4] = ['|', '/', '-', '\\'];
    let mark = if run.status == RunStatus::Running { SPIN[run.pages as usize % SPIN.len()] } else { '*' };
    format!(
        "[{mark}] {} {}/{} {}: page {}, examined {}, pushed {}, unchanged {}, drift {}, errors {}",
        run.kind,
        run.channel,
        run.account,
        run.status.as_str(),
        run.pages,
        run.examined,
        run.pushed,
        run.examined.saturating_sub(run.pushed),
        run.drift,
        run.errors
    )
}

/// Runs a `sync` command against the deployment named by the environment.
pub async fn run(args: SyncArgs, json: bool) -> Result<(), CliError> {
    if let Some(SyncCommand::Runs { days, channel, account }) = args.command {
        // Reading the runs needs only the StateTable, not the channel configuration.
        let aws = crate::aws::Aws::from_env().await?;
        let store = DynamoSyncStore::new(aws.ddb.clone(), &aws.env.state_table);
        let report = runs(&store, days, Utc::now().date_naive(), channel, account.as_deref()).await?;
        return output::print(&report, json);
    }
    let app = App::from_env().await?;
    let (Some(channel), Some(account), Some(kind)) = (args.channel, args.account, args.kind) else {
        return Err(CliError::Usage("manifold sync CHANNEL ACCOUNT KIND [--full], or manifold sync runs".into()));
    };
    let account = AccountId::new(&account).map_err(|e| CliError::Usage(format!("bad account: {e}")))?;
    let started = app.start_sync(Slot::new(channel, account, kind), Trigger::Cli, args.full, Utc::now()).await?;
    eprintln!("job {} started ({})", started.id, if started.full { "full" } else { "changes only" });
    if args.no_wait {
        return output::print(
            &RunsReport { from: Utc::now().date_naive(), to: Utc::now().date_naive(), runs: vec![started] },
            json,
        );
    }
    let terminal = std::io::stderr().is_terminal();
    let ended = follow(&**app.sync_store, &started.id, Duration::from_millis(500), |run| {
        let line = progress_line(run);
        let mut err = std::io::stderr();
        // On a terminal the line redraws in place; in a log, one line per page.
        let _ = if terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    })
    .await?;
    if terminal {
        eprintln!();
    }
    let today = Utc::now().date_naive();
    output::print(&RunsReport { from: today, to: today, runs: vec![ended.clone()] }, json)?;
    match ended.status {
        RunStatus::Failed => Err(CliError::Usage(format!(
            "sync run {} failed: {}",
            ended.id,
            ended.note.as_deref().unwrap_or("no reason recorded")
        ))),
        _ => Ok(()),
    }
}
