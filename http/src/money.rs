//! Prices: JSON numbers with at most two decimals on the wire, integer
//! cents everywhere else.
//!
//! A price never passes through an `f64`: a double cannot hold every amount
//! up to [`CENTS_MAX`] to the cent, and rounding would change what the
//! client sent without saying so. The number's exact JSON text is read
//! (serde_json's `RawValue`) and parsed as a decimal — `12.5`, `12.50` and
//! `1.25e1` are all 1250 cents, `12.345` is refused — and cents are written
//! back as exact text with two decimals (`12.50`), still a JSON number.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// Largest amount in cents: 2^53 − 1 (90071992547409.91), the largest
/// integer below which every JSON client holds every integer exactly in a
/// double — the same bound as ids and the products service's amounts.
pub const CENTS_MAX: u64 = (1 << 53) - 1;

/// Most digits a price's text may carry: 2^53 cents has 16, and a client
/// may pad with zeros; anything longer is not a real price and is refused
/// before any arithmetic.
const PRICE_DIGITS_MAX: i64 = 40;

/// A price in integer cents, (de)serialized as a JSON number of currency
/// units with at most two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(pub u64);

/// Why a price was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// Below zero.
    #[error("must not be negative")]
    Negative,
    /// Three or more decimals.
    #[error("must have at most two decimals")]
    TooPrecise,
    /// Above [`CENTS_MAX`] cents.
    #[error("must be at most 90071992547409.91")]
    TooLarge,
    /// Not a number at all.
    #[error("must be a number such as 12.50")]
    NotANumber,
}

impl Price {
    /// The amount in cents.
    #[must_use]
    pub fn cents(self) -> u64 {
        self.0
    }

    /// A price of `cents`.
    ///
    /// # Errors
    /// [`PriceError::TooLarge`] above [`CENTS_MAX`].
    pub fn from_cents(cents: u64) -> Result<Self, PriceError> {
        if cents > CENTS_MAX {
            return Err(PriceError::TooLarge);
        }
        Ok(Self(cents))
    }

    /// Parses an amount in currency units written as a JSON number
    /// (`12`, `12.5`, `12.50`, `1.25e1`).
    ///
    /// # Errors
    /// [`PriceError`] for a negative amount, three or more decimals, an
    /// amount above [`CENTS_MAX`] cents, or text that is not a number.
    pub fn parse(text: &str) -> Result<Self, PriceError> {
        let text = text.trim();
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let (units, decimals) = match mantissa.split_once('.') {
            Some((units, decimals)) if !decimals.is_empty() => (units, decimals),
            Some(_) => return Err(PriceError::NotANumber),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || !all_digits(units) || !all_digits(decimals) {
            return Err(PriceError::NotANumber);
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(PriceError::NotANumber);
                }
                // A longer exponent is absurd for a price; saturate and let
                // the checks below refuse it (or accept a zero).
                e.parse().unwrap_or(if e.starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                })
            }
        };
        // The amount is `digits × 10^(exponent − len(decimals))`, with
        // `digits` the units and decimals written together.
        let digits: String = units.chars().chain(decimals.chars()).collect();
        let digits = digits.trim_start_matches('0');
        let is_zero = digits.trim_end_matches('0').is_empty();
        if is_zero {
            return Ok(Self(0));
        }
        if negative {
            return Err(PriceError::Negative);
        }
        // In cents: `digits × 10^scale`, scale = exponent − len(decimals) + 2;
        // a negative scale must only drop trailing zeros.
        let decimals_len = i64::try_from(decimals.len()).map_err(|_| PriceError::NotANumber)?;
        let mut scale = exponent.saturating_sub(decimals_len).saturating_add(2);
        let mut digits = digits;
        while scale < 0 {
            match digits.strip_suffix('0') {
                Some(rest) => {
                    digits = rest;
                    scale += 1;
                }
                None => return Err(PriceError::TooPrecise),
            }
        }
        let digits_len = i64::try_from(digits.len()).map_err(|_| PriceError::TooLarge)?;
        if digits_len.saturating_add(scale) > PRICE_DIGITS_MAX {
            return Err(PriceError::TooLarge);
        }
        let mut cents: u64 = digits.parse().map_err(|_| PriceError::TooLarge)?;
        for _ in 0..scale {
            cents = cents.checked_mul(10).ok_or(PriceError::TooLarge)?;
        }
        Self::from_cents(cents)
    }
}

impl fmt::Display for Price {
    /// Two decimals: `12.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Err(de::Error::custom(PriceError::NotANumber));
        }
        Self::parse(text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Result<Price, String> {
        serde_json::from_str::<Price>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_with_up_to_two_decimals_become_cents() {
        for (text, cents) in [
            ("12", 1200),
            ("12.5", 1250),
            ("12.50", 1250),
            ("0.01", 1),
            ("1.25e1", 1250),
            ("125E-1", 1250),
            ("1.5e-1", 15),
            ("0", 0),
            ("-0", 0),
            ("0.000", 0),
            ("19.99", 1999),
            ("12.3400", 1234),
            ("90071992547409.90", CENTS_MAX - 1),
            ("90071992547409.91", CENTS_MAX),
        ] {
            assert_eq!(from_json(text), Ok(Price(cents)), "{text}");
        }
    }

    #[test]
    fn three_decimals_negatives_strings_and_huge_amounts_are_refused() {
        for bad in [
            "12.345",
            "1.005",
            "1e-3",
            "-1",
            "-0.5",
            "\"12\"",
            "null",
            "true",
            "[1]",
            "1e300",
            "1e99999999999999999999",
            "90071992547409.92",
            "18446744073709551615",
        ] {
            assert!(from_json(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn cents_serialize_as_an_exact_number_with_two_decimals() {
        assert_eq!(serde_json::to_string(&Price(1250)).unwrap(), "12.50");
        assert_eq!(serde_json::to_string(&Price(1)).unwrap(), "0.01");
        for cents in [0, 1, 7, 10, 99, 101, 123_456_789, CENTS_MAX - 1, CENTS_MAX] {
            let text = serde_json::to_string(&Price(cents)).unwrap();
            assert_eq!(from_json(&text), Ok(Price(cents)), "{text}");
            let number: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(number.is_number(), "{text}");
        }
    }

    #[test]
    fn the_limit_is_stated_as_the_largest_accepted_price() {
        assert_eq!(
            PriceError::TooLarge.to_string(),
            format!("must be at most {}", Price(CENTS_MAX))
        );
        assert_eq!(
            from_json(&Price(CENTS_MAX).to_string()),
            Ok(Price(CENTS_MAX))
        );
    }

    #[test]
    fn text_amounts_parse_like_json_numbers() {
        assert_eq!(Price::parse("100.00"), Ok(Price(10_000)));
        assert_eq!(Price::parse("100"), Ok(Price(10_000)));
        assert_eq!(Price::parse("1.2.3"), Err(PriceError::NotANumber));
        assert_eq!(Price::parse(".5"), Err(PriceError::NotANumber));
        assert_eq!(Price::parse("5."), Err(PriceError::NotANumber));
        assert_eq!(Price::parse("abc"), Err(PriceError::NotANumber));
        assert_eq!(Price::parse("1.234"), Err(PriceError::TooPrecise));
        assert_eq!(Price::parse("-3"), Err(PriceError::Negative));
    }
}
