//! `manifold sign CHANNEL FILE`: the headers a channel would send with this webhook body, signed with a
//! webhook secret (the demo's by default), one `Name: value` per line, for `curl -H @headers.txt`.

use std::{collections::BTreeMap, path::PathBuf};

use manifold_domain::Channel;

use crate::{CliError, seed};

#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The channel whose signature scheme to use.
    #[arg(value_parser = super::parse_channel)]
    pub channel: Channel,
    /// The body to sign, exactly as it will be posted (`curl --data-binary @FILE`).
    pub file: PathBuf,
    /// The account's webhook secret (default: the one `manifold demo` stores).
    #[arg(long, env = "MANIFOLD_WEBHOOK_SECRET")]
    pub secret: Option<String>,
    /// The channel's event name header where it sends one (`orders/create` for Shopify...).
    #[arg(long)]
    pub topic: Option<String>,
}

/// The signed headers, in the order a channel sends them.
pub fn run(args: &SignArgs) -> Result<Vec<(String, String)>, CliError> {
    let body =
        std::fs::read(&args.file).map_err(|source| CliError::Read { path: args.file.display().to_string(), source })?;
    let secret = args.secret.clone().unwrap_or_else(|| seed::webhook_secret(args.channel).to_owned());
    let message_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let signed = manifold_connectors::verify::sign(
        args.channel,
        &secret,
        &BTreeMap::new(),
        &message_id,
        &body,
        chrono::Utc::now(),
    )
    .map_err(|e| CliError::Usage(format!("{}: {e}", args.channel)))?;
    let mut out: Vec<(String, String)> =
        signed.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    out.push(("content-type".into(), "application/json".into()));
    let id = uuid::Uuid::new_v4().to_string();
    match (args.channel, &args.topic) {
        (Channel::Shopify, topic) => {
            out.push(("x-shopify-topic".into(), topic.clone().unwrap_or_else(|| "orders/create".into())));
            out.push(("x-shopify-event-id".into(), id));
        }
        (Channel::Woocommerce, topic) => {
            out.push(("x-wc-webhook-topic".into(), topic.clone().unwrap_or_else(|| "order.created".into())));
            out.push(("x-wc-webhook-delivery-id".into(), id));
        }
        _ => {}
    }
    Ok(out)
}

/// `Name: value` lines.
pub fn print(headers: &[(String, String)], json: bool) {
    if json {
        let map: BTreeMap<&str, &str> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        println!("{}", serde_json::to_string_pretty(&map).unwrap_or_default());
    } else {
        for (k, v) in headers {
            println!("{k}: {v}");
        }
    }
}
