//! What a deployment's operator provides before the functions can run, done for the local stack: the
//! channel configuration in the stack's `ConfigBucket` (object `channels.toml`) with every endpoint
//! pointed at the channel simulators, and each account's credentials in Secrets Manager.
//! Used by `manifold demo` and by the startup test.

use manifold_domain::{Channel, config::ChannelConfig};
use manifold_simulator::SimHandle;

use crate::CliError;

/// The webhook secret of every demo account but Etsy (whose Standard Webhooks secret has its own form).
pub const WEBHOOK_SECRET: &str = "demo-webhook-secret";
pub const ETSY_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The object key the template gives every function (`CONFIG_KEY`).
pub const CONFIG_KEY: &str = "channels.toml";
/// eBay's endpoint verification token (32 to 80 characters), as entered in its developer portal.
pub const EBAY_VERIFICATION_TOKEN: &str = "demo-verification-token-0123456789abcdef";

/// The webhook secret the demo gives `channel`'s account (Kaufland signs notifications with the
/// seller's secret key, the one the simulator knows).
pub fn webhook_secret(channel: Channel) -> &'static str {
    match channel {
        Channel::Etsy => ETSY_WEBHOOK_SECRET,
        Channel::Kaufland => manifold_simulator::KAUFLAND_KEYS.1,
        _ => WEBHOOK_SECRET,
    }
}

/// `example` (a channels.toml) with each account's `endpoint` pointed at its simulator; validated.
pub fn config_for_simulators(example: &str, sim: &SimHandle) -> Result<(String, ChannelConfig), CliError> {
    let mut doc: toml::Table =
        toml::from_str(example).map_err(|e| CliError::Usage(format!("the example configuration: {e}")))?;
    for account in doc.get_mut("accounts").and_then(toml::Value::as_array_mut).into_iter().flatten() {
        let Some(table) = account.as_table_mut() else { continue };
        let channel: Channel = table
            .get("channel")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .parse()
            .map_err(|e| CliError::Usage(format!("the example configuration: {e}")))?;
        table.insert("endpoint".into(), toml::Value::String(sim.base_url(channel)));
    }
    // HubSpot CRM accounts reach the simulator's HubSpot; webhook CRMs keep their own endpoint.
    for crm in doc.get_mut("crms").and_then(toml::Value::as_array_mut).into_iter().flatten() {
        let Some(table) = crm.as_table_mut() else { continue };
        if table.get("kind").and_then(toml::Value::as_str) == Some("hubspot") {
            table.insert("endpoint".into(), toml::Value::String(sim.hubspot_url()));
        }
    }
    let text = toml::to_string(&doc).map_err(|e| CliError::Usage(format!("cannot write the configuration: {e}")))?;
    let config = ChannelConfig::parse(CONFIG_KEY, &text)?;
    Ok((text, config))
}

/// Writes the configuration to `s3://bucket/channels.toml`.
pub async fn put_config(sdk: &aws_config::SdkConfig, bucket: &str, text: &str) -> Result<(), CliError> {
    aws_sdk_s3::Client::new(sdk)
        .put_object()
        .bucket(bucket)
        .key(CONFIG_KEY)
        .content_type("application/toml")
        .body(aws_sdk_s3::primitives::ByteStream::from(text.as_bytes().to_vec()))
        .send()
        .await
        .map_err(|e| CliError::Aws {
            service: "s3",
            operation: "PutObject",
            source: Box::new(e.into_service_error()),
        })?;
    Ok(())
}

/// The client secret of the demo's HubSpot app (what its webhooks are signed with).
pub const HUBSPOT_CLIENT_SECRET: &str = "demo-hubspot-client-secret";

/// Creates (or overwrites) each account's and each CRM account's secret with the demo credentials.
pub async fn put_secrets(sdk: &aws_config::SdkConfig, config: &ChannelConfig) -> Result<(), CliError> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let crms = config.crms.iter().map(|c| {
        let value = match c.kind {
            manifold_domain::customers::CrmKind::Hubspot => serde_json::json!({
                "token": manifold_simulator::hubspot::DEFAULT_TOKEN,
                "client_secret": HUBSPOT_CLIENT_SECRET
            })
            .to_string(),
            manifold_domain::customers::CrmKind::Webhook => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        };
        (c.secret.clone(), value)
    });
    let accounts = config.accounts.iter().map(|a| {
        let value = serde_json::json!({
            "webhook_secret": webhook_secret(a.channel),
            "access_token": "demo-token",
            "client_id": "ck_demo",
            "client_secret": "cs_demo",
            "api_key": "demo-keystring",
            "verification_token": EBAY_VERIFICATION_TOKEN,
            "client_key": manifold_simulator::KAUFLAND_KEYS.0,
            "secret_key": manifold_simulator::KAUFLAND_KEYS.1
        })
        .to_string();
        (a.secret.clone(), value)
    });
    for (name, value) in accounts.chain(crms).collect::<Vec<_>>() {
        if sm.create_secret().name(&name).secret_string(&value).send().await.is_err() {
            sm.put_secret_value().secret_id(&name).secret_string(&value).send().await.map_err(|e| CliError::Aws {
                service: "secretsmanager",
                operation: "PutSecretValue",
                source: Box::new(e.into_service_error()),
            })?;
        }
    }
    Ok(())
}
