//! The channels' token endpoints and the access tokens they issue, so clients are tested against expiry
//! and refresh as the channels document them.
//!
//! Each token endpoint lives at the channel's documented path below `/{channel}` (Login with Amazon
//! `POST /auth/o2/token`, eBay `POST /identity/v1/oauth2/token`, Etsy `POST /v3/public/oauth/token`,
//! TikTok `GET /api/v2/token/refresh`, Zalando `POST /auth/token`, OTTO `POST /v1/token`), outside the
//! API's rate limit, faults
//! and request counts (they have their own, `token_requests`). Access tokens live
//! [`TokenPolicy::lifetime`] (the documented lifetime by default); an expired one is refused with the
//! channel's documented 401 (Amazon: 403) and counted in `unauthorized`. Refresh tokens are minted by
//! [`crate::SimHandle::grant_refresh_token`] (the seller's consent); Etsy and TikTok replace the refresh
//! token on every refresh and refuse the old one, Amazon and eBay keep it. Unknown refresh tokens are
//! refused (`invalid_grant`). Access tokens the simulator never issued (the static tokens of older tests)
//! are accepted unless [`TokenPolicy::strict`].

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use manifold_domain::Channel;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{channel_error, state::SimState};

/// How the simulated token endpoints behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenPolicy {
    /// Lifetime of every issued access token; `None`: each channel's documented lifetime.
    pub lifetime: Option<Duration>,
    /// Refuse access tokens the simulator did not issue (by default they are accepted, so static test
    /// tokens keep working).
    pub strict: bool,
}

/// An access token the simulator issued.
#[derive(Debug, Clone, Copy)]
pub struct IssuedToken {
    pub channel: Channel,
    pub expires_at: Instant,
}

/// The token endpoint path of a channel, below `/{channel}`.
pub(crate) fn path(channel: Channel) -> Option<&'static str> {
    match channel {
        Channel::Amazon => Some("/auth/o2/token"),
        Channel::Ebay => Some("/identity/v1/oauth2/token"),
        Channel::Etsy => Some("/v3/public/oauth/token"),
        Channel::Tiktok => Some("/api/v2/token/refresh"),
        Channel::Zalando => Some("/auth/token"),
        Channel::Otto => Some("/v1/token"),
        // Stored tokens, keys, or (Kaufland) signed requests: no token endpoint.
        Channel::Shopify | Channel::Woocommerce | Channel::Bigcommerce | Channel::Kaufland => None,
    }
}

/// The documented access token lifetimes (Zalando's is unverified; channels without a token endpoint
/// never get here).
fn documented_lifetime(channel: Channel) -> Duration {
    match channel {
        Channel::Ebay => Duration::from_hours(2),
        Channel::Tiktok => Duration::from_hours(7 * 24),
        Channel::Otto => Duration::from_mins(30),
        Channel::Amazon
        | Channel::Etsy
        | Channel::Zalando
        | Channel::Shopify
        | Channel::Woocommerce
        | Channel::Bigcommerce
        | Channel::Kaufland => Duration::from_hours(1),
    }
}

/// Whether a refresh replaces the refresh token (Etsy and TikTok do).
fn rotates(channel: Channel) -> bool {
    matches!(channel, Channel::Etsy | Channel::Tiktok)
}

pub(crate) fn routes(channel: Channel) -> Router<Arc<SimState>> {
    let Some(p) = path(channel) else { return Router::new() };
    match channel {
        Channel::Tiktok => Router::new().route(p, get(tiktok_refresh)),
        _ => Router::new().route(
            p,
            post(move |State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes| async move {
                oauth(&state, channel, &headers, &body)
            }),
        ),
    }
}

fn mint(channel: Channel, kind: &str) -> String {
    format!("sim-{channel}-{kind}-{}", crate::channels::fresh_id())
}

impl SimState {
    /// Mints a refresh token the channel's token endpoint accepts.
    pub(crate) fn grant_refresh_token(&self, channel: Channel) -> String {
        let token = mint(channel, "refresh");
        self.lock().refresh_tokens.insert(token.clone(), channel);
        token
    }

    /// Issues an access token (and, for a refresh, the refresh token to use next).
    fn issue(&self, channel: Channel, refresh: Option<&str>) -> Result<(String, Duration, Option<String>), ()> {
        let lifetime = self.tokens.lifetime.unwrap_or_else(|| documented_lifetime(channel));
        let mut s = self.lock();
        *s.token_requests.entry(channel).or_default() += 1;
        let next_refresh = match refresh {
            None => None,
            Some(r) if s.refresh_tokens.get(r) == Some(&channel) => {
                if rotates(channel) {
                    s.refresh_tokens.remove(r);
                    let next = mint(channel, "refresh");
                    s.refresh_tokens.insert(next.clone(), channel);
                    Some(next)
                } else {
                    Some(r.to_owned())
                }
            }
            Some(_) => return Err(()),
        };
        let access = mint(channel, "access");
        s.access_tokens.insert(access.clone(), IssuedToken { channel, expires_at: Instant::now() + lifetime });
        Ok((access, lifetime, next_refresh))
    }

    /// Ends the life of every access token issued for `channel` (as a channel revoking them would).
    pub(crate) fn expire_access_tokens(&self, channel: Channel) {
        let now = Instant::now();
        for t in self.lock().access_tokens.values_mut().filter(|t| t.channel == channel) {
            t.expires_at = now;
        }
    }

    /// `None` when the request's access token is acceptable, else the channel's refusal.
    pub(crate) fn check_token(&self, channel: Channel, headers: &HeaderMap) -> Option<Response> {
        path(channel)?;
        let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim);
        let token = match channel {
            Channel::Amazon => text("x-amz-access-token"),
            Channel::Tiktok => text("x-tts-access-token"),
            _ => text("authorization").and_then(|v| v.strip_prefix("Bearer ")),
        }?;
        let mut s = self.lock();
        let verdict = match s.access_tokens.get(token) {
            Some(t) if t.channel == channel && Instant::now() < t.expires_at => return None,
            Some(t) if t.channel == channel => "expired",
            Some(_) => "invalid",
            None if self.tokens.strict => "invalid",
            None => return None,
        };
        *s.unauthorized.entry(channel).or_default() += 1;
        Some(refusal(channel, verdict == "expired"))
    }
}

/// A refused access token, in the channel's documented shape.
fn refusal(channel: Channel, expired: bool) -> Response {
    let what = if expired { "The access token you provided has expired." } else { "The access token is invalid." };
    let body = match channel {
        // SP-API answers 403 Unauthorized, with the reason in `details`.
        Channel::Amazon => {
            let body = json!({ "errors": [{ "code": "Unauthorized", "message": "Access to requested resource is denied.", "details": what }] });
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
        Channel::Ebay => json!({ "errors": [{
            "errorId": 1001, "domain": "OAuth", "category": "REQUEST", "message": "Invalid access token",
            "longMessage": "Invalid access token. Check the value of the Authorization HTTP request header.",
        }] }),
        Channel::Etsy => json!({ "error": "invalid_token", "error_description": what }),
        // Unverified: the codes come from SDK error tables.
        Channel::Tiktok => json!({
            "code": if expired { 105_002 } else { 105_001 },
            "message": if expired { "Expired credentials" } else { "Invalid credentials" },
            "request_id": "sim", "data": {},
        }),
        _ => return channel_error(channel, StatusCode::UNAUTHORIZED, what),
    };
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// `application/x-www-form-urlencoded` into pairs.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `Authorization: Basic base64(id:secret)` with both parts present.
fn basic_client(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|d| d.split_once(':').is_some_and(|(id, secret)| !id.is_empty() && !secret.is_empty()))
}

/// RFC 6749 token endpoints: Login with Amazon, eBay, Etsy, Zalando, OTTO.
fn oauth(state: &SimState, channel: Channel, headers: &HeaderMap, body: &Bytes) -> Response {
    let f = form(body);
    let has = |k: &str| f.get(k).is_some_and(|v| !v.is_empty());
    let client_ok = match channel {
        // LWA and OTTO: client id and secret in the body.
        Channel::Amazon | Channel::Otto => has("client_id") && has("client_secret"),
        // Etsy: a public client, identified by its keystring.
        Channel::Etsy => has("client_id"),
        Channel::Zalando | Channel::Ebay => basic_client(headers),
        // No OAuth token endpoint (TikTok's has its own handler).
        Channel::Shopify | Channel::Woocommerce | Channel::Bigcommerce | Channel::Kaufland | Channel::Tiktok => false,
    };
    if !client_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    // OTTO's client credentials carry the app's scopes, space separated.
    if channel == Channel::Otto && !has("scope") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope is required");
    }
    let grant = f.get("grant_type").map_or("", String::as_str);
    let refresh = match (channel, grant) {
        (Channel::Zalando | Channel::Ebay | Channel::Otto, "client_credentials") => None,
        (Channel::Amazon | Channel::Ebay | Channel::Etsy, "refresh_token") => {
            Some(f.get("refresh_token").map_or("", String::as_str))
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type is not supported"),
    };
    let Ok((access, lifetime, next_refresh)) = state.issue(channel, refresh) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        );
    };
    let token_type = match (channel, refresh) {
        (Channel::Ebay, Some(_)) => "User Access Token",
        (Channel::Ebay, None) => "Application Access Token",
        _ => "Bearer",
    };
    let mut body = json!({ "access_token": access, "token_type": token_type, "expires_in": lifetime.as_secs() });
    if let Some(scope) = f.get("scope").filter(|_| channel == Channel::Otto) {
        body["scope"] = Value::String(scope.clone());
    }
    // eBay's refresh answer carries no refresh token; LWA repeats it; Etsy sends the new one.
    if let Some(r) = next_refresh.filter(|_| channel != Channel::Ebay) {
        body["refresh_token"] = Value::String(r);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// TikTok Shop: `GET /api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token`.
async fn tiktok_refresh(State(state): State<Arc<SimState>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let has = |k: &str| q.get(k).is_some_and(|v| !v.is_empty());
    let fail = |code: u32, message: &str| {
        axum::Json(json!({ "code": code, "message": message, "request_id": "sim", "data": {} })).into_response()
    };
    if !(has("app_key") && has("app_secret")) || q.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return fail(36_004_001, "app_key, app_secret and grant_type=refresh_token are required");
    }
    let Ok((access, lifetime, next_refresh)) =
        state.issue(Channel::Tiktok, Some(q.get("refresh_token").map_or("", String::as_str)))
    else {
        // Unverified: the code comes from SDK error tables.
        return fail(36_004_004, "invalid refresh_token");
    };
    let now = chrono::Utc::now().timestamp();
    let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    axum::Json(json!({
        "code": 0, "message": "success", "request_id": "sim",
        "data": {
            "access_token": access,
            "access_token_expire_in": now + secs,
            "refresh_token": next_refresh,
            "refresh_token_expire_in": now + 365 * 86_400,
            "open_id": "sim-open-id", "seller_name": "sim", "seller_base_region": "GB", "user_type": 0,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_decoded() {
        let f = form(b"grant_type=refresh_token&refresh_token=Atzr%7CIw%3D&scope=a+b");
        assert_eq!(f["refresh_token"], "Atzr|Iw=");
        assert_eq!(f["scope"], "a b");
    }
}
