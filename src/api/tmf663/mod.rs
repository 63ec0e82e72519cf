//! TMF663 Shopping Cart v4 (API.md 7.2): the cart a customer of the digital sales channel
//! fills before checkout. The stored model and its prices are in [`model`].

pub mod followup;
pub mod model;
