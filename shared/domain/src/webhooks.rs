//! Signed outbound webhooks to any HTTP endpoint (a WMS, an ERP, a CRM): the configuration's
//! `[[webhooks]]` subscriptions, checked when it is loaded. Deliveries follow Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`); the delivery path lives in
//! `manifold_app::webhooks_out`.
//!
//! ```toml
//! [[webhooks]]
//! id = "wms"                                        # a-z, 0-9, -; 1 to 40
//! url = "https://wms.example.com/hooks/manifold"    # https (plain http only on loopback)
//! events = ["OrderAccepted", "ShipmentCreated"]     # the bus's event kinds
//! secret = "manifold/webhooks/wms"                  # Secrets Manager: the signing key, whsec_...
//! ```

use serde::{Deserialize, Serialize};

use crate::events::EventKind;

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<EventKind>,
    /// Secrets Manager name of the signing secret (`whsec_` and base64, as Standard Webhooks gives it),
    /// stored as the plain string or as `{"secret": ...}`; never the secret itself.
    pub secret: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Subscription {
    /// Whether it takes events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.enabled && self.events.contains(&kind)
    }
}

/// Checks every subscription: `(path, reason)` of the first problem.
pub(crate) fn validate(subscriptions: &[Subscription]) -> Result<(), (String, String)> {
    let mut ids = std::collections::BTreeSet::new();
    for (i, s) in subscriptions.iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        crate::config::validate_name(&s.id).map_err(|m| (at("id"), m))?;
        if !ids.insert(s.id.as_str()) {
            return Err((at("id"), format!("duplicate subscription {}", s.id)));
        }
        crate::config::validate_endpoint(&s.url).map_err(|m| (at("url"), m))?;
        if s.events.is_empty() {
            return Err((at("events"), "name at least one event kind".into()));
        }
        crate::config::validate_secret_name(&s.secret).map_err(|m| (at("secret"), m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), (String, String)> {
        let s: Subscription = toml::from_str(text).map_err(|e| ("parse".to_owned(), e.to_string()))?;
        validate(&[s])
    }

    #[test]
    fn subscriptions_are_checked_with_their_path() {
        let ok = "id = \"wms\"\nurl = \"https://wms.example.com/h\"\nevents = [\"OrderAccepted\"]\nsecret = \"manifold/webhooks/wms\"";
        assert_eq!(check(ok), Ok(()));
        assert_eq!(
            check(&ok.replace("https://wms.example.com", "http://wms.example.com")).unwrap_err().0,
            "webhooks[0].url"
        );
        assert_eq!(check(&ok.replace("https://wms.example.com", "http://127.0.0.1:9")), Ok(()), "loopback");
        assert_eq!(check(&ok.replace("[\"OrderAccepted\"]", "[]")).unwrap_err().0, "webhooks[0].events");
        assert_eq!(check(&ok.replace("\"wms\"", "\"W M S\"")).unwrap_err().0, "webhooks[0].id");
        assert_eq!(
            check(&ok.replace("OrderAccepted", "OrderShipped")).unwrap_err().0,
            "parse",
            "an unknown event kind"
        );
    }
}
