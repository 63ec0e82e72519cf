//! Splitting an amount among end users by whole percentages, exactly, in the currency's minor
//! unit.
//!
//! Rule (largest remainder, documented in the README): each share gets
//! `floor(total x percent / 100)` minor units; the minor units left over go one each to the
//! shares with the largest discarded fraction, the earlier share first on a tie. The shares
//! always add up to the total, and no share differs from its exact value by a minor unit or
//! more.

use iso_currency::Currency;
use rust_decimal::Decimal;

use crate::credit_control::Money;

/// Why a split is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error("splitInfo must list at least one end user")]
    Empty,
    #[error("percent must be a whole number from 1 to 100 (entry {0})")]
    Percent(usize),
    #[error("the percentages add up to {0}, not 100")]
    Sum(u32),
    #[error("the amount is not a whole number of {currency} minor units")]
    Precision { currency: &'static str },
    #[error("entry {index}: {percent}% of {total} is less than one minor unit of {currency}")]
    TooSmall {
        index: usize,
        percent: u32,
        total: Decimal,
        currency: &'static str,
    },
}

/// The shares of `total` for `percents`, in order.
pub fn split(total: Money, percents: &[u32]) -> Result<Vec<Money>, SplitError> {
    if percents.is_empty() {
        return Err(SplitError::Empty);
    }
    for (i, p) in percents.iter().enumerate() {
        if !(1..=100).contains(p) {
            return Err(SplitError::Percent(i));
        }
    }
    let sum: u32 = percents.iter().sum();
    if sum != 100 {
        return Err(SplitError::Sum(sum));
    }
    let currency: Currency = total.currency;
    let code = currency.code();
    let minor = total
        .minor_units()
        .ok_or(SplitError::Precision { currency: code })?;
    let units = i128::from(minor);
    let mut shares: Vec<i128> = Vec::with_capacity(percents.len());
    let mut fractions: Vec<(i128, usize)> = Vec::with_capacity(percents.len());
    for (i, p) in percents.iter().enumerate() {
        let exact = units * i128::from(*p);
        shares.push(exact / 100);
        fractions.push((exact % 100, i));
    }
    let mut left = units - shares.iter().sum::<i128>();
    // Largest fraction first; on a tie, the earlier share.
    fractions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in fractions {
        if left <= 0 {
            break;
        }
        if let Some(s) = shares.get_mut(i) {
            *s += 1;
            left -= 1;
        }
    }
    let mut out = Vec::with_capacity(shares.len());
    for (i, s) in shares.into_iter().enumerate() {
        let small = || SplitError::TooSmall {
            index: i,
            percent: percents.get(i).copied().unwrap_or_default(),
            total: total.amount,
            currency: code,
        };
        if s <= 0 {
            return Err(small());
        }
        let s = i64::try_from(s).map_err(|_| small())?;
        out.push(Money::from_minor_units(s, currency).map_err(|_| small())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn eur(s: &str) -> Money {
        Money::new(
            Decimal::from_str(s).unwrap(),
            Currency::from_code("EUR").unwrap(),
        )
    }

    #[test]
    fn remainders_go_to_the_largest_fractions() {
        let s = split(eur("10.00"), &[33, 33, 34]).unwrap();
        assert_eq!(s, vec![eur("3.30"), eur("3.30"), eur("3.40")]);
        // 1.00 in thirds: 33.33.. each; one cent left goes to the first (tie).
        let s = split(eur("1.00"), &[33, 33, 34]).unwrap();
        assert_eq!(s, vec![eur("0.33"), eur("0.33"), eur("0.34")]);
        let s = split(eur("0.10"), &[50, 25, 25]).unwrap();
        assert_eq!(s, vec![eur("0.05"), eur("0.03"), eur("0.02")]);
        let jpy = Money::new(Decimal::from(101), Currency::from_code("JPY").unwrap());
        let s = split(jpy, &[50, 50]).unwrap();
        assert_eq!(
            s.iter().map(|m| m.amount).sum::<Decimal>(),
            Decimal::from(101)
        );
        assert_eq!(s[0].amount, Decimal::from(51));
    }

    #[test]
    fn refusals() {
        assert_eq!(split(eur("1.00"), &[]), Err(SplitError::Empty));
        assert_eq!(split(eur("1.00"), &[0, 100]), Err(SplitError::Percent(0)));
        assert_eq!(split(eur("1.00"), &[50, 49]), Err(SplitError::Sum(99)));
        assert!(matches!(
            split(eur("0.01"), &[50, 50]),
            Err(SplitError::TooSmall { index: 1, .. })
        ));
        assert!(matches!(
            split(eur("1.001"), &[100]),
            Err(SplitError::Precision { .. })
        ));
    }

    proptest! {
        #[test]
        fn shares_add_up_and_stay_within_a_minor_unit(
            cents in 100i64..10_000_000,
            cuts in proptest::collection::vec(1u32..100, 1..6),
        ) {
            // Turn the cuts into percentages that add up to 100.
            let mut percents = Vec::new();
            let mut left = 100u32;
            for c in cuts {
                if left <= 1 { break; }
                let p = 1 + c % (left - 1);
                percents.push(p);
                left -= p;
            }
            percents.push(left);
            let total = Money::from_minor_units(cents, Currency::from_code("EUR").unwrap()).unwrap();
            let shares = split(total, &percents).unwrap();
            let sum: Decimal = shares.iter().map(|m| m.amount).sum();
            prop_assert_eq!(sum, total.amount);
            for (s, p) in shares.iter().zip(&percents) {
                let exact = total.amount * Decimal::from(*p) / Decimal::from(100);
                prop_assert!((s.amount - exact).abs() < Decimal::new(1, 2));
            }
        }
    }
}
