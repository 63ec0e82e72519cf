//! The request of an operation as it is recorded before the CCR goes out, so that it can be
//! sent again exactly (same Session-Id and CC-Request-Number, T flag) after a restart or to
//! learn an unknown outcome.

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credit_control::{
    CreditControlClient, CreditControlRequest, Money, RequestType, RequestedAction,
    ServiceParameter, SubscriptionId, Units, UnitsStyle,
};

/// A recorded CCR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub request_type: RequestType,
    pub number: u32,
    /// The end user as given (a URI `SubscriptionId::parse` accepts).
    pub subscriber: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RequestedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<Decimal>,
    pub currency: String,
    /// Service-Parameter-Info (type, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<(u32, String)>,
    /// Where the units went (absent in records older than the choice: the client's current
    /// style for the kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<UnitsStyle>,
}

impl Recorded {
    /// A one-time event (CCR EVENT, number 0) of `amount` for `subscriber`.
    pub fn event(
        action: RequestedAction,
        subscriber: impl Into<String>,
        amount: Money,
        parameters: &[ServiceParameter],
    ) -> Self {
        Self {
            request_type: RequestType::Event,
            number: 0,
            subscriber: subscriber.into(),
            action: Some(action),
            requested: Some(amount.amount),
            used: None,
            currency: amount.currency.code().to_string(),
            parameters: Self::params(parameters),
            style: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    pub fn params(parameters: &[ServiceParameter]) -> Vec<(u32, String)> {
        parameters
            .iter()
            .map(|p| (p.kind, String::from_utf8_lossy(&p.value).into_owned()))
            .collect()
    }

    fn service_parameters(&self) -> Vec<ServiceParameter> {
        self.parameters
            .iter()
            .map(|(kind, value)| ServiceParameter {
                kind: *kind,
                value: bytes::Bytes::copy_from_slice(value.as_bytes()),
            })
            .collect()
    }

    /// The CCR again, as the client first built it.
    pub fn to_request(
        &self,
        client: &CreditControlClient,
        session_id: &str,
    ) -> Option<CreditControlRequest> {
        let currency = Currency::from_code(&self.currency)?;
        let money = |a: Decimal| Units::money(Money::new(a, currency));
        let mut req = client.base_request(session_id, self.request_type, self.number);
        req.subscription = Some(SubscriptionId::parse(&self.subscriber).ok()?);
        req.requested_action = self.action;
        req.requested = self.requested.map(money);
        req.used = self.used.map(money);
        req.service_parameters = self.service_parameters();
        if let Some(s) = self.style {
            req.style = s;
        }
        Some(req)
    }
}
