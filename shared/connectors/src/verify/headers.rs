//! A read-only view over request headers that the verifiers share, so every scheme reports a missing or
//! garbled header the same way.

use std::fmt;

use http::HeaderMap;

use super::VerifyError;

/// Case-insensitive access to a request's headers.
///
/// `http::HeaderMap` stores names in lower case and lowercases a `&str` name on lookup, so
/// `get("X-Shopify-Hmac-Sha256")` finds `x-shopify-hmac-sha256`. This wrapper adds the two answers every
/// verifier wants: a typed "missing" error, and a refusal of values that are not visible ASCII (no channel
/// signs with anything else).
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    map: &'a HeaderMap,
}

impl<'a> Headers<'a> {
    pub fn new(map: &'a HeaderMap) -> Self {
        Self { map }
    }

    /// The first value of `name` (any case), or `None` when absent or when `name` is not a valid header name.
    pub fn get(&self, name: &str) -> Result<Option<&'a str>, VerifyError> {
        self.map
            .get(name)
            .map(|value| {
                value.to_str().map_err(|_| VerifyError::Malformed(format!("header `{name}` is not visible ASCII")))
            })
            .transpose()
    }

    /// Like [`Headers::get`], but absence is [`VerifyError::Missing`].
    pub fn require(&self, name: &'static str) -> Result<&'a str, VerifyError> {
        self.get(name)?.ok_or(VerifyError::Missing(name))
    }
}

/// Names only: values include signatures and, for BigCommerce, the shared secret itself.
impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}
