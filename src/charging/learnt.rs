//! What the gateway learns of its OCSs, kept in the store so that a restart, or another
//! gateway instance on the same database, starts from it: the units styles
//! ([`crate::credit_control::style`], resources of kind [`KIND`], one per OCS and kind of
//! request), the OCSs' Origin-State-Ids ([`crate::credit_control::ocs_state`], kind
//! [`STATE_KIND`]), and the operations resolved across an OCS restart (kind [`RESTART_KIND`],
//! for the operator to reconcile).
//!
//! ```text
//! StyleBook --learnt / accepted--> listener --put_resource--> store (ocs.style:<ocs>:<kind>)
//! OcsStates --observed change----> listener --put_resource--> store (ocs.state:<ocs>)
//! store --load at start, then every `refresh`--> StyleBook::seed, OcsStates::seed
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use crate::credit_control::style::style_name;
use crate::credit_control::{CreditControlClient, LearnedStyle, OcsState};
use crate::store::{ResourceFilter, ResourceRow, Store, StoreError, now_ms};

/// The resource kind of a learnt style.
pub const KIND: &str = "ocs.style";
/// The resource kind of an OCS's Origin-State-Id.
pub const STATE_KIND: &str = "ocs.state";
/// The resource kind of an operation resolved across an OCS restart.
pub const RESTART_KIND: &str = "ocs.restart";
/// The owner of gateway-wide resources (no API application reads them).
pub const OWNER: &str = "gateway";

fn state_row(s: &OcsState) -> ResourceRow {
    let now = now_ms();
    ResourceRow {
        id: format!("{STATE_KIND}:{}", s.ocs),
        app: OWNER.into(),
        kind: STATE_KIND.into(),
        state: s.origin_state_id.to_string(),
        parent: None,
        due_ms: None,
        body: serde_json::to_string(s).unwrap_or_default(),
        created_ms: now,
        updated_ms: now,
    }
}

/// An operation resolved by a re-sent request that an OCS answered after it restarted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcrossRestart {
    pub operation_id: String,
    pub app: String,
    /// `charge`, `refund`, `reserve-additional`, ...
    pub kind: String,
    pub session_id: String,
    pub request_number: u32,
    pub ocs: String,
    /// The OCS's Origin-State-Id before the restart (when it was known).
    pub origin_state_id_before: Option<u32>,
    pub origin_state_id_after: u32,
    /// When the operation was first sent, and when it was resolved (ms since the epoch).
    pub sent_ms: i64,
    pub resolved_ms: i64,
    /// The operation's state once resolved (`succeeded`, `refused`, ...).
    pub state: String,
    pub result_code: Option<u32>,
}

/// Records `r` (once per operation).
pub async fn record_restart(store: &Store, r: &AcrossRestart) -> Result<(), StoreError> {
    store
        .put_resource(ResourceRow {
            id: format!("{RESTART_KIND}:{}", r.operation_id),
            app: OWNER.into(),
            kind: RESTART_KIND.into(),
            state: r.state.clone(),
            parent: Some(r.operation_id.clone()),
            due_ms: None,
            body: serde_json::to_string(r).unwrap_or_default(),
            created_ms: r.resolved_ms,
            updated_ms: r.resolved_ms,
        })
        .await
}

/// The operations resolved across an OCS restart, newest first, at most `limit`.
pub async fn restarts(store: &Store, limit: usize) -> Result<Vec<AcrossRestart>, StoreError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(RESTART_KIND.into()),
            app: Some(OWNER.into()),
            limit,
            ..ResourceFilter::default()
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect())
}

fn row_of(l: &LearnedStyle) -> ResourceRow {
    let now = now_ms();
    ResourceRow {
        id: format!("{KIND}:{}:{}", l.ocs, l.kind.name()),
        app: OWNER.into(),
        kind: KIND.into(),
        state: style_name(l.style).into(),
        parent: None,
        due_ms: None,
        body: serde_json::to_string(l).unwrap_or_default(),
        created_ms: l.learned_ms,
        updated_ms: now,
    }
}

/// Every learnt style in the store (rows that do not read are skipped with a warning).
pub async fn stored(store: &Store) -> Result<Vec<LearnedStyle>, StoreError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(KIND.into()),
            app: Some(OWNER.into()),
            ascending: true,
            ..ResourceFilter::default()
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match serde_json::from_str::<LearnedStyle>(&r.body) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(id = %r.id, error = %e, "unreadable learnt style left aside");
                None
            }
        })
        .collect())
}

/// Seeds the client's books from the store; how many styles were known.
pub async fn load(client: &CreditControlClient, store: &Store) -> Result<usize, StoreError> {
    let all = stored(store).await?;
    let n = all.len();
    for l in all {
        client.styles().seed(l);
    }
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(STATE_KIND.into()),
            app: Some(OWNER.into()),
            ..ResourceFilter::default()
        })
        .await?;
    for r in rows {
        match serde_json::from_str::<OcsState>(&r.body) {
            Ok(s) => client.ocs_states().seed(s),
            Err(e) => warn!(id = %r.id, error = %e, "unreadable OCS state left aside"),
        }
    }
    Ok(n)
}

/// Keeps what the client learns in the store, and reads every `refresh` what other instances
/// learnt. Ends when the client is dropped.
pub fn spawn(
    client: &Arc<CreditControlClient>,
    store: Store,
    refresh: Duration,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.styles().set_listener(tx);
    let (tx, mut states) = mpsc::unbounded_channel();
    client.ocs_states().set_listener(tx);
    let weak = Arc::downgrade(client);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                learnt = rx.recv() => {
                    let Some(l) = learnt else { break };
                    if let Err(e) = store.put_resource(row_of(&l)).await {
                        warn!(ocs = %l.ocs, error = %e, "learnt units style not stored");
                    }
                }
                state = states.recv() => {
                    let Some(s) = state else { break };
                    if let Err(e) = store.put_resource(state_row(&s)).await {
                        warn!(ocs = %s.ocs, error = %e, "OCS state not stored");
                    }
                }
                _ = tick.tick() => {
                    let Some(client) = weak.upgrade() else { break };
                    if let Err(e) = load(&client, &store).await {
                        warn!(error = %e, "cannot read the learnt units styles");
                    }
                }
            }
        }
    })
}
