//! The Diameter Credit-Control client (RFC 4006 / RFC 8506, 3GPP TS 32.299 Gy/Ro): typed
//! requests and answers, money, subscriber identities, Session-Ids, Result-Code classes, and the
//! client session state machine of RFC 8506 section 7.
//!
//! ```text
//! charging use case --(event / reserve / update / terminate)--> CreditControlClient
//!     CreditControlRequest --to_message--> router.request --> OCS
//!     CreditControlAnswer <--read-------- answer (or timeout / peer lost)
//!     ClientSession (sans-IO, section 7 tables) decides: grant, deny, store for resolution
//! ```
//!
//! This layer imports `diameter`; it knows nothing of HTTP.

pub mod client;
pub mod fsm;
pub mod message;
pub mod money;
pub mod ocs_state;
pub mod outcome;
pub mod session_id;
pub mod style;
pub mod subscription;

pub use client::{
    CcConfig, Charged, CreditControlClient, EventRequest, Resent, ReservationRecord, Resolution,
    SessionError,
};
pub use message::{
    CcFailureHandling, CheckBalanceResult, CreditControlAnswer, CreditControlRequest,
    DdFailureHandling, FailedAvp, FinalUnitAction, MsccAnswer, ReadError, RequestType,
    RequestedAction, ServiceParameter, ServiceParameterType, Units, UnitsStyle,
};
pub use money::{Money, MoneyError};
pub use ocs_state::{OcsState, OcsStates};
pub use outcome::{Outcome, Refusal};
pub use session_id::SessionIds;
pub use style::{LearnedStyle, RequestKind, StyleBook, StyleChoice, StyleConfig};
pub use subscription::{SubscriptionId, SubscriptionType};
