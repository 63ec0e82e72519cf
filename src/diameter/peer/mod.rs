//! Diameter peers (RFC 6733 section 5, RFC 3539): the sans-IO state machine of one peer
//! connection pair, its watchdog, and the base-protocol messages it exchanges by itself.
//!
//! ```text
//!  transport (tokio, sockets)           PeerFsm (this module: no I/O, no clock)
//!  ---------------------------          ---------------------------------------
//!  connect done / failed    ---event--> connected / connect_failed
//!  frame read               ---event--> received(conn, frame)
//!  socket closed            ---event--> disconnected(conn)
//!  sleep until poll_timeout ---event--> handle_timeout(now)
//!  write / close / dial     <--action-- poll_action(): Send, Close, Connect, Deliver, Usable
//! ```

pub mod fsm;
pub mod messages;
pub mod watchdog;

pub use fsm::{Action, Conn, PeerFsm, PeerSettings, PeerState, PeerStats};
pub use messages::{Capabilities, DisconnectCause, LocalIdentity};
pub use watchdog::{Watchdog, WatchdogState};

#[cfg(test)]
mod tests;
