//! Money, exactly: `rust_decimal` amounts, ISO 4217 currencies, and CC-Money
//! (RFC 8506 sections 8.22, 8.8-8.11).
//!
//! ```text
//! CC-Money ::= < AVP Header: 413 >
//!              { Unit-Value }            Unit-Value ::= { Value-Digits (Integer64) }
//!              [ Currency-Code ]                        [ Exponent (Integer32) ]
//! value = Value-Digits x 10^Exponent        12.345 EUR -> 12345, -3, 978
//! ```
//!
//! No float anywhere: a decimal's mantissa and scale are the Value-Digits and the negated
//! Exponent. Reading accepts any Exponent whose value fits a `Decimal` exactly.

use std::fmt;

use iso_currency::Currency;
use rust_decimal::Decimal;
use thiserror::Error;

use crate::diameter::codec::{Avp, AvpBuf, AvpCode, DecodeError, VendorId};

/// An amount in a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

/// Why an amount or currency is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MoneyError {
    #[error("unknown currency \"{0}\" (ISO 4217 alphabetic code expected)")]
    UnknownCurrency(String),
    #[error("currency {0} has no minor unit defined by ISO 4217 and cannot carry money here")]
    NoMinorUnit(&'static str),
    #[error("{amount} has more decimals than {currency} allows ({allowed})")]
    TooPrecise {
        amount: Decimal,
        currency: &'static str,
        allowed: u32,
    },
    #[error("the amount must be above zero")]
    NotPositive,
    #[error("the amount {0} is too large to encode as CC-Money")]
    TooLarge(Decimal),
    #[error("CC-Money: {0}")]
    Avp(&'static str),
    #[error("unknown ISO 4217 numeric currency code {0}")]
    UnknownCurrencyCode(u32),
}

/// The ISO 4217 currency for an alphabetic code ("EUR"), case-sensitive as the standard is.
pub fn currency(code: &str) -> Result<Currency, MoneyError> {
    Currency::from_code(code).ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
}

impl Money {
    /// A payment amount: positive, and with no more decimals than the currency's minor unit.
    pub fn payment(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        let allowed = minor_unit(currency)?;
        let normalized = amount.normalize();
        if normalized.scale() > allowed {
            return Err(MoneyError::TooPrecise {
                amount,
                currency: currency.code(),
                allowed,
            });
        }
        Ok(Self { amount, currency })
    }

    /// Any amount (zero allowed, e.g. Used-Service-Unit 0 on a release).
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    /// `(Value-Digits, Exponent)` for this amount: the mantissa and the negated scale, with
    /// trailing zeros removed (12.50 -> 125, -1).
    pub fn unit_value(&self) -> Result<(i64, i32), MoneyError> {
        let n = self.amount.normalize();
        let digits = i64::try_from(n.mantissa()).map_err(|_| MoneyError::TooLarge(self.amount))?;
        let exponent = -i32::try_from(n.scale()).map_err(|_| MoneyError::TooLarge(self.amount))?;
        Ok((digits, exponent))
    }

    /// The CC-Money AVP.
    pub fn to_avp(&self) -> Result<AvpBuf, MoneyError> {
        let (digits, exponent) = self.unit_value()?;
        let mut unit_value = vec![AvpBuf::integer64(AvpCode::VALUE_DIGITS, digits)];
        if exponent != 0 {
            unit_value.push(AvpBuf::integer32(AvpCode::EXPONENT, exponent));
        }
        Ok(AvpBuf::grouped(
            AvpCode::CC_MONEY,
            vec![
                AvpBuf::grouped(AvpCode::UNIT_VALUE, unit_value),
                AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, u32::from(self.currency.numeric())),
            ],
        ))
    }

    /// Reads a received CC-Money AVP. A missing Currency-Code (it is only "SHOULD") takes
    /// `default_currency`.
    pub fn from_avp(avp: &Avp<'_>, default_currency: Currency) -> Result<Self, MoneyError> {
        let mut digits = None;
        let mut exponent = 0i32;
        let mut code = None;
        for m in avp.group() {
            let m = m.map_err(|_| MoneyError::Avp("malformed member"))?;
            if m.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                continue;
            }
            match m.code() {
                AvpCode::UNIT_VALUE => {
                    for u in m.group() {
                        let u = u.map_err(|_| MoneyError::Avp("malformed Unit-Value"))?;
                        match u.code() {
                            AvpCode::VALUE_DIGITS => digits = Some(u.integer64().map_err(avp_err)?),
                            AvpCode::EXPONENT => exponent = u.integer32().map_err(avp_err)?,
                            _ => {}
                        }
                    }
                }
                AvpCode::CURRENCY_CODE => code = Some(m.unsigned32().map_err(avp_err)?),
                _ => {}
            }
        }
        let digits = digits.ok_or(MoneyError::Avp("Unit-Value without Value-Digits"))?;
        let currency = match code {
            None => default_currency,
            Some(c) => u16::try_from(c)
                .ok()
                .and_then(Currency::from_numeric)
                .ok_or(MoneyError::UnknownCurrencyCode(c))?,
        };
        Ok(Self::new(
            decimal_from_unit_value(digits, exponent)?,
            currency,
        ))
    }

    /// The amount in the currency's minor unit (cents), when it is a whole number of them.
    pub fn minor_units(&self) -> Option<i64> {
        use rust_decimal::prelude::ToPrimitive;
        let exp = minor_unit(self.currency).ok()?;
        let scaled = self
            .amount
            .checked_mul(Decimal::from(10i64.checked_pow(exp)?))?;
        if scaled.fract().is_zero() {
            scaled.to_i64()
        } else {
            None
        }
    }

    /// An amount from a whole number of minor units (cents).
    pub fn from_minor_units(units: i64, currency: Currency) -> Result<Self, MoneyError> {
        let exp = minor_unit(currency)?;
        let amount = Decimal::try_from_i128_with_scale(i128::from(units), exp)
            .map_err(|_| MoneyError::Avp("amount out of range"))?;
        Ok(Self::new(amount, currency))
    }
}

fn avp_err(_: DecodeError) -> MoneyError {
    MoneyError::Avp("value of the wrong size")
}

/// Value-Digits x 10^Exponent, exactly, or an error when a `Decimal` cannot hold it.
pub fn decimal_from_unit_value(digits: i64, exponent: i32) -> Result<Decimal, MoneyError> {
    if exponent <= 0 {
        let scale = u32::try_from(-(i64::from(exponent)))
            .map_err(|_| MoneyError::Avp("exponent out of range"))?;
        Decimal::try_from_i128_with_scale(i128::from(digits), scale)
            .map_err(|_| MoneyError::Avp("exponent out of range"))
    } else {
        let factor = 10i128
            .checked_pow(
                u32::try_from(exponent).map_err(|_| MoneyError::Avp("exponent out of range"))?,
            )
            .ok_or(MoneyError::Avp("exponent out of range"))?;
        let value = i128::from(digits)
            .checked_mul(factor)
            .ok_or(MoneyError::Avp("value out of range"))?;
        Decimal::try_from_i128_with_scale(value, 0)
            .map_err(|_| MoneyError::Avp("value out of range"))
    }
}

/// Decimals allowed by the currency (EUR 2, JPY 0, KWD 3).
pub fn minor_unit(currency: Currency) -> Result<u32, MoneyError> {
    currency
        .exponent()
        .map(u32::from)
        .ok_or(MoneyError::NoMinorUnit(currency.code()))
}

/// `amount` as it is written for people: exactly the currency's minor-unit digits (`0` and
/// `0.000` EUR -> `0.00`, `5.0` JPY -> `5`, `1.5` KWD -> `1.500`), so that one table or body
/// never mixes `0` and `0.00`. An amount more precise than the minor unit keeps its digits
/// (never rounded: `0.005` EUR stays `0.005`); a currency without a minor unit (XAU) is left
/// as it is.
pub fn with_minor_digits(amount: Decimal, currency: Currency) -> Decimal {
    let Ok(minor) = minor_unit(currency) else {
        return amount;
    };
    let mut fixed = amount.normalize();
    if fixed.scale() < minor {
        // Widening only: exact (rescale caps the scale where the mantissa would overflow).
        fixed.rescale(minor);
    }
    fixed
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::{ApplicationId, CommandCode, Header, Limits, Message, MessageBuf};
    use crate::diameter::dict::Dictionary;
    use rust_decimal::prelude::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn unit_values_are_exact() {
        let eur = currency("EUR").unwrap();
        assert_eq!(Money::new(d("12.345"), eur).unit_value(), Ok((12345, -3)));
        assert_eq!(Money::new(d("0.05"), eur).unit_value(), Ok((5, -2)));
        assert_eq!(Money::new(d("12.50"), eur).unit_value(), Ok((125, -1)));
        assert_eq!(Money::new(d("100"), eur).unit_value(), Ok((100, 0)));
        assert_eq!(Money::new(d("0"), eur).unit_value(), Ok((0, 0)));
        assert_eq!(decimal_from_unit_value(5, -2), Ok(d("0.05")));
        assert_eq!(decimal_from_unit_value(12, 3), Ok(d("12000")));
        assert_eq!(decimal_from_unit_value(-7, 0), Ok(d("-7")));
        assert!(decimal_from_unit_value(1, -40).is_err());
        assert!(decimal_from_unit_value(i64::MAX, 30).is_err());
    }

    #[test]
    fn amounts_are_written_with_the_minor_unit_digits() {
        let shown = |a: &str, c: &str| with_minor_digits(d(a), currency(c).unwrap()).to_string();
        assert_eq!(shown("0", "EUR"), "0.00");
        assert_eq!(shown("0.000", "EUR"), "0.00");
        assert_eq!(shown("5", "EUR"), "5.00");
        assert_eq!(shown("12.5", "EUR"), "12.50");
        assert_eq!(shown("-3", "EUR"), "-3.00");
        assert_eq!(shown("0.005", "EUR"), "0.005", "never rounded");
        assert_eq!(shown("5.0", "JPY"), "5");
        assert_eq!(shown("1.5", "KWD"), "1.500");
        assert_eq!(shown("2.50", "XAU"), "2.50", "no minor unit: as given");
        assert_eq!(
            shown("79228162514264337593543950335", "EUR"),
            "79228162514264337593543950335",
            "no room for decimals: unchanged, not wrapped"
        );
    }

    #[test]
    fn payment_amounts_follow_the_currency() {
        let eur = currency("EUR").unwrap();
        let jpy = currency("JPY").unwrap();
        let kwd = currency("KWD").unwrap();
        assert!(Money::payment(d("4.99"), eur).is_ok());
        assert!(
            Money::payment(d("4.990"), eur).is_ok(),
            "trailing zeros are fine"
        );
        assert!(matches!(
            Money::payment(d("4.999"), eur),
            Err(MoneyError::TooPrecise { allowed: 2, .. })
        ));
        assert!(matches!(
            Money::payment(d("1.5"), jpy),
            Err(MoneyError::TooPrecise { allowed: 0, .. })
        ));
        assert!(Money::payment(d("1.125"), kwd).is_ok());
        assert_eq!(Money::payment(d("0"), eur), Err(MoneyError::NotPositive));
        assert_eq!(Money::payment(d("-1"), eur), Err(MoneyError::NotPositive));
        assert!(matches!(
            currency("EURO"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(currency("eur").is_err(), "ISO 4217 codes are upper case");
        assert_eq!(eur.numeric(), 978);
        assert_eq!(Money::new(d("12.34"), eur).minor_units(), Some(1234));
    }

    #[test]
    fn cc_money_round_trip_through_the_wire() {
        let dict = Dictionary::builtin().unwrap();
        for (amount, code) in [
            ("12.345", "KWD"),
            ("0.05", "EUR"),
            ("1000", "JPY"),
            ("99999999.99", "USD"),
        ] {
            let m = Money::new(d(amount), currency(code).unwrap());
            let msg = MessageBuf::new(Header::request(
                CommandCode::CREDIT_CONTROL,
                ApplicationId(4),
                true,
            ))
            .with(m.to_avp().unwrap())
            .to_bytes()
            .unwrap();
            let msg = Message::decode(msg, &dict, &Limits::default()).unwrap();
            let avp = msg.avp(AvpCode::CC_MONEY).unwrap();
            let back = Money::from_avp(&avp, currency("EUR").unwrap()).unwrap();
            assert_eq!(back, m);
        }
    }
}
