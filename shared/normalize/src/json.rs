//! Field access into untyped channel JSON that remembers where it is.
//!
//! Channel payloads are large, loosely typed and change between API versions, so the normalizers read
//! only the fields they need through [`Node`] instead of deserializing whole structs. Every accessor
//! either returns the value or a [`NormalizeError`] whose path names the exact field
//! (`line_items[0].quantity`), which is what makes a quarantined payload fixable.

use chrono::{DateTime, Utc};
use manifold_domain::{Amount, Currency};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{NormalizeError, dates};

static NULL: Value = Value::Null;

/// A position in a JSON document: the value there (null when absent) and its path from the root.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: String,
}

/// How a channel spells a money object (`{"amount": "1.00", "currency_code": "USD"}` and variants).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoneyShape {
    pub amount: &'static str,
    pub currency: &'static str,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Self { value, path: String::new() }
    }

    pub fn value(&self) -> &'a Value {
        self.value
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn error(&self, message: impl Into<String>) -> NormalizeError {
        NormalizeError::new(self.path.clone(), message)
    }

    /// The member `key` (a null node when absent or when this is not an object).
    pub fn field(&self, key: &str) -> Node<'a> {
        // Built by pushing, not `format!`: this runs for every field a normalizer reads.
        let mut path = String::with_capacity(self.path.len() + 1 + key.len());
        if !self.path.is_empty() {
            path.push_str(&self.path);
            path.push('.');
        }
        path.push_str(key);
        Node { value: self.value.get(key).unwrap_or(&NULL), path }
    }

    /// Follows a dotted chain of members: `at("payload.OrderItems")`.
    pub fn at(&self, dotted: &str) -> Node<'a> {
        dotted.split('.').fold(self.clone(), |n, k| n.field(k))
    }

    /// True when the value is absent, null or an empty string.
    pub fn is_blank(&self) -> bool {
        match self.value {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    fn expected(&self, what: &str) -> NormalizeError {
        if self.value.is_null() {
            self.error(format!("required {what} is missing"))
        } else {
            self.error(format!("expected {what}, found {}", self.type_name()))
        }
    }

    /// Elements of an array; absent or null counts as empty.
    pub fn items(&self) -> Result<Vec<Node<'a>>, NormalizeError> {
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node { value, path: format!("{}[{i}]", self.path) })
                .collect()),
            _ => Err(self.expected("an array")),
        }
    }

    /// Elements of an array that must be present.
    pub fn required_items(&self) -> Result<Vec<Node<'a>>, NormalizeError> {
        if self.value.is_array() { self.items() } else { Err(self.expected("an array")) }
    }

    /// Requires an object here.
    pub fn object(&self) -> Result<&Self, NormalizeError> {
        if self.value.is_object() { Ok(self) } else { Err(self.expected("an object")) }
    }

    /// Text, or an integer rendered as text (channels send ids both ways). Blank counts as absent.
    pub fn opt_text(&self) -> Result<Option<String>, NormalizeError> {
        match self.value {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim().to_owned())),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            _ => Err(self.expected("a string")),
        }
    }

    pub fn text(&self) -> Result<String, NormalizeError> {
        self.opt_text()?.ok_or_else(|| self.expected("a non-empty string"))
    }

    /// A string field taken as is (titles may legitimately be empty).
    pub fn text_or_empty(&self) -> Result<String, NormalizeError> {
        Ok(self.opt_text()?.unwrap_or_default())
    }

    pub fn opt_i64(&self) -> Result<Option<i64>, NormalizeError> {
        match self.value {
            Value::Null => Ok(None),
            Value::Number(n) => {
                n.as_i64().map(Some).ok_or_else(|| self.error(format!("expected an integer, found {n}")))
            }
            _ => Err(self.expected("an integer")),
        }
    }

    pub fn i64(&self) -> Result<i64, NormalizeError> {
        self.opt_i64()?.ok_or_else(|| self.expected("an integer"))
    }

    /// A non-negative count (quantities). Strings are refused: a quantity sent as text is a contract break.
    pub fn quantity(&self) -> Result<u32, NormalizeError> {
        let n = self.i64()?;
        u32::try_from(n).map_err(|_| self.error(format!("expected a quantity between 0 and {}, found {n}", u32::MAX)))
    }

    pub fn opt_bool(&self) -> Result<Option<bool>, NormalizeError> {
        match self.value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            _ => Err(self.expected("a boolean")),
        }
    }

    pub fn currency(&self) -> Result<Currency, NormalizeError> {
        let code = self.text()?;
        Currency::new(&code).map_err(|e| NormalizeError::domain(&self.path, &e))
    }

    pub fn opt_currency(&self) -> Result<Option<Currency>, NormalizeError> {
        if self.is_blank() { Ok(None) } else { self.currency().map(Some) }
    }

    /// An amount sent as a decimal string or a JSON number, scaled to `currency`.
    pub fn opt_amount(&self, currency: Currency) -> Result<Option<Amount>, NormalizeError> {
        let parsed = match self.value {
            Value::Null => return Ok(None),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => Amount::parse(s, currency),
            Value::Number(n) => Amount::from_json_number(n, currency),
            _ => return Err(self.expected("an amount (decimal string or number)")),
        };
        let amount = parsed.map_err(|e| NormalizeError::domain(&self.path, &e))?;
        bounded(amount, &self.path).map(Some)
    }

    pub fn amount(&self, currency: Currency) -> Result<Amount, NormalizeError> {
        self.opt_amount(currency)?.ok_or_else(|| self.expected("an amount"))
    }

    /// An amount that counts as zero when absent.
    pub fn amount_or_zero(&self, currency: Currency) -> Result<Amount, NormalizeError> {
        Ok(self.opt_amount(currency)?.unwrap_or(zero(currency)))
    }

    /// A money object in the channel's `shape`; its currency must be the order's.
    pub fn opt_money(&self, shape: MoneyShape, currency: Currency) -> Result<Option<Amount>, NormalizeError> {
        if self.value.is_null() {
            return Ok(None);
        }
        self.object()?;
        let code = self.field(shape.currency);
        if let Some(found) = code.opt_currency()?
            && found != currency
        {
            return Err(code.error(format!("currency {found} differs from the order currency {currency}")));
        }
        self.field(shape.amount).opt_amount(currency)
    }

    pub fn money_or_zero(&self, shape: MoneyShape, currency: Currency) -> Result<Amount, NormalizeError> {
        Ok(self.opt_money(shape, currency)?.unwrap_or(zero(currency)))
    }

    /// A timestamp: RFC 3339, RFC 2822, zone-less ISO (taken as UTC) or unix seconds.
    pub fn opt_datetime(&self) -> Result<Option<DateTime<Utc>>, NormalizeError> {
        match self.value {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => dates::parse(s).map(Some).ok_or_else(|| {
                self.error(format!("unrecognised date {s:?} (expected RFC 3339, RFC 2822 or ISO 8601)"))
            }),
            Value::Number(n) => n
                .as_i64()
                .and_then(dates::from_unix_seconds)
                .map(Some)
                .ok_or_else(|| self.error(format!("unix timestamp {n} is out of range"))),
            _ => Err(self.expected("a date")),
        }
    }

    pub fn datetime(&self) -> Result<DateTime<Utc>, NormalizeError> {
        self.opt_datetime()?.ok_or_else(|| self.expected("a date"))
    }
}

/// Zero in `currency`, at its scale.
pub(crate) fn zero(currency: Currency) -> Amount {
    Amount::new(Decimal::ZERO, currency)
}

/// The largest amount a document may state (one quadrillion units of its currency, far past any order).
///
/// `Decimal` holds about ±7.9e28 and its operators panic past that, as do `Amount::times`,
/// `checked_add` and `checked_sub` on top of them; a bound at the door keeps every stored record safe to
/// add up downstream, and the arithmetic below keeps the normalizers themselves from panicking.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// Refuses an amount beyond [`MAX_AMOUNT`] either way.
pub(crate) fn bounded(amount: Amount, path: &str) -> Result<Amount, NormalizeError> {
    if amount.value().abs() > Decimal::from(MAX_AMOUNT) {
        return Err(NormalizeError::new(path, format!("amount {amount} is beyond the supported ±{MAX_AMOUNT}")));
    }
    Ok(amount)
}

fn overflow(path: &str) -> NormalizeError {
    NormalizeError::new(path, "amounts add up past the supported decimal range")
}

/// `a + b` in `currency`; an error at `path` instead of a panic on overflow.
pub(crate) fn add(a: Amount, b: Amount, currency: Currency, path: &str) -> Result<Amount, NormalizeError> {
    a.value().checked_add(b.value()).map(|v| Amount::new(v, currency)).ok_or_else(|| overflow(path))
}

/// `a - b` in `currency`; an error at `path` instead of a panic on overflow.
pub(crate) fn sub(a: Amount, b: Amount, currency: Currency, path: &str) -> Result<Amount, NormalizeError> {
    a.value().checked_sub(b.value()).map(|v| Amount::new(v, currency)).ok_or_else(|| overflow(path))
}

/// `unit * quantity` in `currency` (a line total); an error at `path` instead of a panic on overflow.
pub(crate) fn times(unit: Amount, quantity: u32, currency: Currency, path: &str) -> Result<Amount, NormalizeError> {
    unit.value().checked_mul(Decimal::from(quantity)).map(|v| Amount::new(v, currency)).ok_or_else(|| overflow(path))
}

/// Sums amounts, starting from zero in `currency`; an error at `path` instead of a panic on overflow.
pub(crate) fn sum(
    currency: Currency,
    amounts: impl IntoIterator<Item = Amount>,
    path: &str,
) -> Result<Amount, NormalizeError> {
    amounts.into_iter().try_fold(zero(currency), |acc, a| add(acc, a, currency, path))
}

/// The absolute value (channels disagree on whether discounts are negative).
pub(crate) fn abs(amount: Amount, currency: Currency) -> Amount {
    Amount::new(amount.value().abs(), currency)
}
