//! Exact money.
//!
//! Amounts are [`rust_decimal::Decimal`]s, scaled to their currency's minor-unit exponent (JPY 0, USD 2,
//! KWD 3) and serialized as JSON strings (`"199.00"`), never floats. Channels that send floats
//! (WooCommerce line prices, Zalando) go through [`Amount::from_json_number`], which reads the number's
//! shortest decimal representation so `19.99` stays `19.99` instead of `19.989999…`.

use std::{fmt, str::FromStr};

use rust_decimal::{Decimal, RoundingStrategy};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// Currencies whose minor unit is not 2 digits (ISO 4217 table); everything else uses 2.
const EXPONENTS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

impl Currency {
    pub fn new(code: &str) -> Result<Self, DomainError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(DomainError::InvalidCurrency(code.to_owned()));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from three ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in this currency's minor unit.
    pub fn exponent(&self) -> u32 {
        // Sorted by code (a test holds it so): every money amount a normalizer reads asks this.
        EXPONENTS.binary_search_by(|(c, _)| c.as_bytes().cmp(&self.0[..])).map_or(2, |i| EXPONENTS[i].1)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Currency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 currency code"
        })
    }
}

/// An exact decimal amount in some currency, scaled to that currency's exponent.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Scales `value` to the currency's exponent, rounding half away from zero.
    pub fn new(value: Decimal, currency: Currency) -> Self {
        let mut v = value.round_dp_with_strategy(currency.exponent(), RoundingStrategy::MidpointAwayFromZero);
        v.rescale(currency.exponent());
        Self(v)
    }

    /// Parses a decimal string as channels send it (`"199.00"`, `"62.6793"`, `"1500"`).
    pub fn parse(value: &str, currency: Currency) -> Result<Self, DomainError> {
        let trimmed = value.trim();
        Decimal::from_str(trimmed)
            .or_else(|_| Decimal::from_scientific(trimmed))
            .map(|d| Self::new(d, currency))
            .map_err(|e| DomainError::InvalidAmount { value: value.to_owned(), reason: e.to_string() })
    }

    /// Reads a JSON number without going through binary floating point arithmetic.
    pub fn from_json_number(value: &serde_json::Number, currency: Currency) -> Result<Self, DomainError> {
        // serde_json prints an f64 with the shortest representation that round-trips, so `19.99`
        // comes back as "19.99" and parses to exactly 19.99.
        Self::parse(&value.to_string(), currency)
    }

    /// An amount in minor units with an explicit divisor (Etsy's `{amount, divisor}`).
    pub fn from_minor_units(amount: i64, divisor: u32, currency: Currency) -> Result<Self, DomainError> {
        if !is_power_of_ten(divisor) {
            return Err(DomainError::InvalidAmount {
                value: format!("{amount}/{divisor}"),
                reason: "divisor must be a power of ten".into(),
            });
        }
        let d = Decimal::from(amount) / Decimal::from(divisor);
        Ok(Self::new(d, currency))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// `self * qty`, kept at the same scale.
    pub fn times(&self, qty: u32) -> Self {
        let mut v = self.0 * Decimal::from(qty);
        v.rescale(self.0.scale());
        Self(v)
    }

    /// `self / qty` in `currency`, rounded half away from zero; `qty` 0 gives zero.
    pub fn per_unit(&self, qty: u32, currency: Currency) -> Self {
        if qty == 0 {
            return Self::new(Decimal::ZERO, currency);
        }
        Self::new(self.0 / Decimal::from(qty), currency)
    }

    pub fn checked_add(self, other: Self) -> Self {
        let scale = self.0.scale().max(other.0.scale());
        let mut v = self.0 + other.0;
        v.rescale(scale);
        Self(v)
    }

    pub fn checked_sub(self, other: Self) -> Self {
        let scale = self.0.scale().max(other.0.scale());
        let mut v = self.0 - other.0;
        v.rescale(scale);
        Self(v)
    }
}

fn is_power_of_ten(mut n: u32) -> bool {
    if n == 0 {
        return false;
    }
    while n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Decimal::from_str(&s).map(Amount).map_err(|e| serde::de::Error::custom(format!("invalid amount {s:?}: {e}")))
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
            "description": "Exact decimal amount as a string, scaled to the record currency's exponent"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponent_table_is_sorted_so_lookups_can_bisect_it() {
        assert!(EXPONENTS.windows(2).all(|w| w[0].0 < w[1].0), "EXPONENTS must stay sorted by code");
        assert_eq!(Currency::new("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::new("KWD").unwrap().exponent(), 3);
        assert_eq!(Currency::new("EUR").unwrap().exponent(), 2);
    }

    fn cur(c: &str) -> Currency {
        Currency::new(c).unwrap()
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Amount::parse("1500", cur("JPY")).unwrap().to_string(), "1500");
        assert_eq!(Amount::parse("199", cur("USD")).unwrap().to_string(), "199.00");
        assert_eq!(Amount::parse("1.5", cur("KWD")).unwrap().to_string(), "1.500");
    }

    #[test]
    fn four_decimal_strings_round_half_away_from_zero() {
        assert_eq!(Amount::parse("62.6793", cur("USD")).unwrap().to_string(), "62.68");
        assert_eq!(Amount::parse("0.0050", cur("USD")).unwrap().to_string(), "0.01");
    }

    #[test]
    fn float_json_numbers_keep_their_cents() {
        let n: serde_json::Number = serde_json::from_str("19.99").unwrap();
        assert_eq!(Amount::from_json_number(&n, cur("EUR")).unwrap().to_string(), "19.99");
        let n: serde_json::Number = serde_json::from_str("0.1").unwrap();
        let sum = Amount::from_json_number(&n, cur("EUR")).unwrap().times(3);
        assert_eq!(sum.to_string(), "0.30");
    }

    #[test]
    fn minor_units_with_divisor() {
        assert_eq!(Amount::from_minor_units(1999, 100, cur("USD")).unwrap().to_string(), "19.99");
        assert!(Amount::from_minor_units(1, 0, cur("USD")).is_err());
    }

    #[test]
    fn serializes_as_a_string() {
        let a = Amount::parse("199.00", cur("USD")).unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"199.00\"");
        assert!(serde_json::from_str::<Amount>("199.0").is_err(), "floats are refused");
    }

    #[test]
    fn bad_currency_codes_are_errors() {
        for bad in ["usd", "US", "EURO", ""] {
            assert!(Currency::new(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = Amount::parse(&s, cur("USD"));
        }

        #[test]
        fn cents_survive_float_round_trip(cents in 0i64..10_000_000) {
            #[allow(clippy::cast_precision_loss)]
            let f = cents as f64 / 100.0;
            let n = serde_json::Number::from_f64(f).unwrap();
            let a = Amount::from_json_number(&n, cur("USD")).unwrap();
            proptest::prop_assert_eq!(a, Amount::from_minor_units(cents, 100, cur("USD")).unwrap());
        }
    }
}
