//! `manifold products show SKU`: a SKU's product content as the ERP or PIM set it, and per channel
//! account what its channel takes, what it was last given (when, under which trace id, for
//! `manifold trace`) and what the next content run would send (`manifold_app::content`).

use std::fmt::Write as _;

use manifold_app::{App, content::ContentStatus};

use crate::{
    CliError,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProductsCommand {
    /// A SKU's content and where each channel account stands with it.
    Show { sku: String },
}

impl Human for ContentStatus {
    fn human(&self) -> String {
        let mut out = match &self.content {
            None => format!("{}: no product content is set (PUT /v1/products/{{sku}})\n\n", self.sku),
            Some(c) => {
                let mut head = format!("{}: {}\n", c.sku, c.title);
                if let Some(d) = &c.description {
                    let short: String = d.chars().take(72).collect();
                    let more = if d.chars().count() > 72 { "…" } else { "" };
                    let _ = writeln!(head, "  description  {short}{more}");
                }
                for (i, image) in c.images.iter().enumerate() {
                    let _ = writeln!(head, "  image {}      {}", i + 1, image.url);
                }
                if !c.tags.is_empty() {
                    let _ = writeln!(head, "  tags         {}", c.tags.join(", "));
                }
                let _ = writeln!(head, "  updated      {}\n", c.updated_at.to_rfc3339());
                head
            }
        };
        let mut t =
            Table::new(&["CHANNEL", "ACCOUNT", "CHANNEL SKU", "TAKES", "NEXT RUN SENDS", "LAST GIVEN", "TRACE"]);
        for a in &self.accounts {
            let takes = if a.takes.is_empty() { "nothing".to_owned() } else { a.takes.join(",") };
            let pending = if a.pending.is_empty() { "-".to_owned() } else { a.pending.join(", ") };
            t.row(vec![
                a.channel.to_string(),
                a.account.clone(),
                a.channel_sku.clone(),
                takes,
                pending,
                a.delivered_at.map_or_else(|| "never".to_owned(), |d| d.to_rfc3339()),
                a.trace_id.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

pub async fn run(cmd: ProductsCommand, json: bool) -> Result<(), CliError> {
    let ProductsCommand::Show { sku } = cmd;
    let app = App::from_env().await?;
    crate::output::print(&app.content_status(&sku).await?, json)
}
