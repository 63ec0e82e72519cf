//! Credit-control event flows that `tests/credit_control.rs` runs straight against the OCS
//! simulator and `tests/interop_freediameter.rs` runs through a freeDiameter relay: one
//! sequence, so both suites check the same thing.

use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;

use charging_gateway::credit_control::{
    CheckBalanceResult, CreditControlClient, EventRequest, Money, RequestedAction, SubscriptionId,
    UnitsStyle, money::currency,
};
use charging_gateway::ocs::OcsSim;

pub fn eur(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), currency("EUR").unwrap())
}

/// An event of `action` for subscriber `s`, without parameters or tag.
pub fn event(s: &str, action: RequestedAction, amount: Option<Money>) -> EventRequest {
    EventRequest {
        subscription: SubscriptionId::parse(s).unwrap(),
        action,
        amount,
        service_identifier: None,
        parameters: Vec::new(),
        tag: None,
    }
}

/// On `tel:+34600000001` holding 5.00 EUR: a refund of 1.25 (balance 6.25), a balance check
/// for exactly 6.25 (enough) and for 6.26 (not), and a price enquiry for service 1000
/// (0.99 EUR). Neither the checks nor the enquiry move the balance.
pub async fn refund_check_and_price(c: &Arc<CreditControlClient>, sim: &OcsSim, style: UnitsStyle) {
    let who = "tel:+34600000001";
    let r = c
        .event(event(
            who,
            RequestedAction::RefundAccount,
            Some(eur("1.25")),
        ))
        .await;
    assert!(r.outcome.is_success(), "{style:?}: {}", r.outcome);
    assert_eq!(sim.balance(who), Some(eur("6.25")));
    for (amount, expected) in [
        ("6.25", CheckBalanceResult::EnoughCredit),
        ("6.26", CheckBalanceResult::NoCredit),
    ] {
        let r = c
            .event(event(who, RequestedAction::CheckBalance, Some(eur(amount))))
            .await;
        assert_eq!(
            r.outcome.answer().unwrap().check_balance,
            Some(expected),
            "{style:?}: {amount}"
        );
    }
    let mut price = event(who, RequestedAction::PriceEnquiry, None);
    price.service_identifier = Some(1000);
    let r = c.event(price).await;
    let (cost, _) = r.outcome.answer().unwrap().cost.clone().unwrap();
    assert_eq!(cost, eur("0.99"));
    assert_eq!(sim.balance(who), Some(eur("6.25")));
}
