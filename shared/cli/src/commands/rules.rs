//! `manifold rules test`: which rules fire and what they give, for an order file or for one SKU on
//! one account, without writing anything. Against the running configuration, or with `--config FILE`
//! against a file before it is pushed.

use std::{fmt::Write as _, path::PathBuf};

use chrono::{DateTime, Utc};
use manifold_app::{App, prices::PricePreview};
use manifold_domain::{
    Channel, Order,
    config::ChannelConfig,
    rules::{Fulfillment, RuleBook, SkuFacts},
};
use serde::Serialize;

use crate::{
    CliError,
    output::{Human, Table},
};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RulesCommand {
    /// Routes an order (`--order FILE`, a canonical order as JSON) or prices a SKU for an account
    /// (`--sku SKU --account [CHANNEL:]ACCOUNT`).
    Test(TestArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// A canonical order (JSON), as `manifold trace` or the pull API shows it.
    #[arg(long, conflicts_with_all = ["sku", "account"])]
    pub order: Option<PathBuf>,
    #[arg(long, requires = "account")]
    pub sku: Option<String>,
    /// `ACCOUNT`, or `CHANNEL:ACCOUNT` when the id is used on more than one channel.
    #[arg(long, requires = "sku")]
    pub account: Option<String>,
    /// Test a configuration file instead of the running configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The time to evaluate windows at (RFC 3339); now by default.
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
}

/// What the rules make of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderTest {
    pub order_id: String,
    pub at: DateTime<Utc>,
    pub fulfillment: Fulfillment,
}

impl Human for OrderTest {
    fn human(&self) -> String {
        let f = &self.fulfillment;
        let mut out = String::new();
        let _ = writeln!(out, "order {} at {}", self.order_id, self.at.to_rfc3339());
        let _ = writeln!(
            out,
            "carrier   {} {}",
            f.carrier.as_deref().unwrap_or("-"),
            f.service.as_deref().unwrap_or_default()
        );
        let _ = writeln!(out, "location  {}", f.location.as_deref().unwrap_or("(the account's)"));
        let hold = f.hold.as_ref().map_or_else(|| "-".into(), |h| format!("{} (rule {})", h.reason, h.rule));
        let _ = writeln!(out, "hold      {hold}");
        let _ = writeln!(out, "tags      {}\n", if f.tags.is_empty() { "-".into() } else { f.tags.join(", ") });
        out + &applied_table(f.rules.iter().map(|r| (&r.rule, &r.kind, &r.effect)))
    }
}

impl Human for PricePreview {
    fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} on {}:{}", self.sku, self.channel, self.account);
        let _ = match &self.base {
            Some(b) => {
                writeln!(out, "base      {} {} (effective {})", b.amount, b.currency, b.effective_at.to_rfc3339())
            }
            None => writeln!(out, "base      -"),
        };
        let _ = match (&self.price, &self.currency, &self.refused) {
            (Some(p), Some(c), _) => writeln!(out, "price     {p} {c}"),
            (_, _, Some(r)) => writeln!(out, "refused   {r}"),
            _ => Ok(()),
        };
        let _ = match &self.last_delivered {
            Some(d) => writeln!(
                out,
                "delivered {} {} at {} (trace {})",
                d.amount,
                d.currency,
                d.delivered_at.to_rfc3339(),
                d.trace_id
            ),
            None => writeln!(out, "delivered never"),
        };
        out + "\n" + &applied_table(self.rules.iter().map(|r| (&r.rule, &r.kind, &r.effect)))
    }
}

fn applied_table<'a>(rules: impl Iterator<Item = (&'a String, &'a String, &'a String)>) -> String {
    let mut t = Table::new(&["RULE", "KIND", "EFFECT"]);
    let mut any = false;
    for (rule, kind, effect) in rules {
        any = true;
        t.row(vec![rule.clone(), kind.clone(), effect.clone()]);
    }
    if any { t.render() } else { "no rule fires\n".to_owned() }
}

/// The canonical order in `file` (a pull API answer's `record` too), without its routing so far.
pub fn read_order(file: &std::path::Path) -> Result<Order, CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| CliError::Read { path: file.display().to_string(), source })?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| CliError::Json { path: file.display().to_string(), source })?;
    // A pull API answer wraps the record; its routing so far is not what is being tested.
    if let Some(record) = value.get("record").cloned() {
        value = record;
    }
    if let Some(o) = value.as_object_mut() {
        o.remove("fulfillment");
    }
    serde_json::from_value(value)
        .map_err(|e| CliError::Usage(format!("{} is not a canonical order: {e}", file.display())))
}

/// Routes `order` through `config`'s rules; `facts` are what the content says of its products.
pub fn test_order(
    config: &ChannelConfig,
    order: &Order,
    facts: &SkuFacts,
    at: DateTime<Utc>,
) -> Result<OrderTest, CliError> {
    let book = RuleBook::new(&config.rules).map_err(|(path, reason)| CliError::Usage(format!("{path}: {reason}")))?;
    Ok(OrderTest { order_id: order.id.to_string(), at, fulfillment: book.route(order, facts, at) })
}

/// The channel and account `spec` names in `config` (`CHANNEL:ACCOUNT`, or an account id used once).
pub fn find_account(config: &ChannelConfig, spec: &str) -> Result<(Channel, String), CliError> {
    if let Some((channel, account)) = spec.split_once(':') {
        let channel = crate::commands::parse_channel(channel).map_err(CliError::Usage)?;
        return Ok((channel, account.to_owned()));
    }
    let found: Vec<_> = config.accounts.iter().filter(|a| a.account.as_str() == spec).collect();
    match found.as_slice() {
        [one] => Ok((one.channel, spec.to_owned())),
        [] => Err(CliError::Usage(format!("no account {spec:?} is configured"))),
        _ => Err(CliError::Usage(format!("account {spec:?} is on more than one channel: write CHANNEL:{spec}"))),
    }
}

pub async fn run(cmd: RulesCommand, json: bool) -> Result<(), CliError> {
    let RulesCommand::Test(args) = cmd;
    let at = args.at.unwrap_or_else(Utc::now);
    let file_config = args.config.as_deref().map(ChannelConfig::load).transpose()?;
    if let Some(file) = &args.order {
        let order = read_order(file)?;
        // The stack is read only for what the rules need: its configuration when no file is given,
        // what the content says of the order's products when a rule needs it (tags, weight).
        let needs_facts = |c: &ChannelConfig| RuleBook::new(&c.rules).is_ok_and(|b| b.needs_product_facts());
        let (config, app) = if let Some(c) = file_config {
            let app = if needs_facts(&c) { Some(App::from_env().await?) } else { None };
            (c, app)
        } else {
            let app = App::from_env().await?;
            ((*app.config().await).clone(), Some(app))
        };
        let facts = match &app {
            Some(app) if needs_facts(&config) => app.line_facts(&order).await?,
            _ => SkuFacts::new(),
        };
        return crate::output::print(&test_order(&config, &order, &facts, at)?, json);
    }
    let (Some(sku), Some(account)) = (&args.sku, &args.account) else {
        return Err(CliError::Usage("give --order FILE, or --sku SKU --account ACCOUNT".into()));
    };
    let app = App::from_env().await?;
    let config = match file_config {
        Some(c) => c,
        None => (*app.config().await).clone(),
    };
    let (channel, account) = find_account(&config, account)?;
    crate::output::print(&app.price_preview(&config, channel, &account, sku, at).await?, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("../../../../infra/channels.example.toml");

    fn with_rules(rules: &str) -> ChannelConfig {
        ChannelConfig::parse("channels.toml", &format!("{CONFIG}\n{rules}")).unwrap()
    }

    /// A pull API answer for a Shopify order shipped to Austria, as an operator saves it.
    fn order_file(total: &str) -> PathBuf {
        let order = serde_json::json!({ "record": {
            "id": "shopify:shop-eu:7", "channel": "shopify", "account": "shop-eu", "channel_order_id": "7",
            "order_number": "#7", "status": "paid", "created_at": "2026-11-30T10:00:00Z",
            "updated_at": "2026-11-30T10:00:00Z", "currency": "EUR", "lines": [],
            "totals": {"subtotal": total, "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": total},
            "customer": {"email": null, "name": null, "phone": null},
            "shipping_address": {"name": null, "line1": null, "line2": null, "city": "Graz", "region": null,
                "postal_code": "8010", "country_code": "AT"},
            "billing_address": null, "source_version": 1,
            "fulfillment": {"carrier": "OLD", "rules": [{"rule": "old", "kind": "shipping", "effect": "carrier OLD"}]}
        }});
        let dir = std::env::temp_dir().join(format!("manifold-rules-test-{}-{total}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("order.json");
        std::fs::write(&path, order.to_string()).unwrap();
        path
    }

    #[test]
    fn an_order_file_is_routed_afresh_by_the_rules_given_and_says_which_fired() {
        let config = with_rules(
            "[[rules.shipping]]\nid = \"alpine-express\"\nwhen = 'order.shipping_address.country_code == \"AT\" && order.totals.total > 100'\ncarrier = \"DHL\"\nservice = \"Express\"\n\n[[rules.routing]]\nid = \"review-large\"\norder = { min_total = 1000 }\nhold = \"value above 1000\"\n",
        );
        let at = "2026-11-30T12:00:00Z".parse().unwrap();
        let small = test_order(&config, &read_order(&order_file("150.00")).unwrap(), &SkuFacts::new(), at).unwrap();
        assert_eq!(small.fulfillment.carrier.as_deref(), Some("DHL"));
        assert!(small.fulfillment.hold.is_none());
        let text = small.human();
        assert!(text.contains("alpine-express") && !text.contains("OLD"), "{text}");
        let large = test_order(&config, &read_order(&order_file("1500.00")).unwrap(), &SkuFacts::new(), at).unwrap();
        assert_eq!(large.fulfillment.hold.as_ref().map(|h| h.rule.as_str()), Some("review-large"));
        assert!(large.human().contains("value above 1000 (rule review-large)"));
        let none =
            test_order(&with_rules(""), &read_order(&order_file("150.00")).unwrap(), &SkuFacts::new(), at).unwrap();
        assert!(none.human().contains("no rule fires"));
    }

    #[test]
    fn an_account_is_named_by_its_id_or_channel_and_id() {
        let config = with_rules("");
        assert_eq!(find_account(&config, "shop-eu").unwrap(), (Channel::Shopify, "shop-eu".to_owned()));
        assert_eq!(find_account(&config, "ebay:ebay-de").unwrap(), (Channel::Ebay, "ebay-de".to_owned()));
        assert!(find_account(&config, "nobody").unwrap_err().to_string().contains("no account"));
    }
}
