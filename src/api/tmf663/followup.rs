//! The follow-up of abandoned carts (to be written).
