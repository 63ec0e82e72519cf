//! The units styles learnt from the OCSs ([`crate::credit_control::style`]), kept in the store
//! as resources of kind [`KIND`], one per OCS and kind of request, so that a restart, or
//! another gateway instance on the same database, starts from what was learnt instead of
//! learning it again.
//!
//! ```text
//! StyleBook --learnt / accepted--> listener --put_resource--> store (ocs.style:<ocs>:<kind>)
//! store --load at start, then every `refresh`--> StyleBook::seed
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use crate::credit_control::style::style_name;
use crate::credit_control::{CreditControlClient, LearnedStyle};
use crate::store::{ResourceFilter, ResourceRow, Store, StoreError, now_ms};

/// The resource kind of a learnt style.
pub const KIND: &str = "ocs.style";
/// The owner of gateway-wide resources (no API application reads them).
pub const OWNER: &str = "gateway";

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

/// Seeds the client's book from the store; how many styles were known.
pub async fn load(client: &CreditControlClient, store: &Store) -> Result<usize, StoreError> {
    let all = stored(store).await?;
    let n = all.len();
    for l in all {
        client.styles().seed(l);
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
