//! The background task of TMF654: every `tmf654.scheduler_interval` it runs what is due at
//! the injected clock's time ([`Topups::run_due`]): the periods of automatic top-ups, and
//! top-ups whose outcome is pending or that reached no OCS. `gateway serve` starts it beside
//! the REST server and stops it before the gateway shuts down.
//!
//! ```text
//! tick(now) -> resources of kind tmf654.topup with due_ms <= now (index), at most `batch`
//!   parent:  periods next.. with due(n) <= now, each once (child P-p<n>, key from (P, n)),
//!            in order: a downtime is caught up period by period, never one period twice
//!   pending: the charging record's outcome recorded; a request that reached no OCS is sent
//!            again with the same key until retry_window after its first attempt, then failed
//! ```
//!
//! Nothing here sleeps for a period: the clock is read once per tick, so tests drive a
//! [`super::schedule::ManualClock`] through a year in a few ticks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::schedule::Clock;
use super::topups::{Pass, Topups};
use crate::charging::Charging;
use crate::config::Tmf654Config;

/// How the scheduler runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// Time between passes.
    pub interval: Duration,
    /// How long a top-up that reached no OCS is retried.
    pub retry_window: Duration,
    /// Most due resources per pass.
    pub batch: usize,
}

impl From<&Tmf654Config> for SchedulerSettings {
    fn from(c: &Tmf654Config) -> Self {
        Self {
            interval: c.scheduler_interval,
            retry_window: c.retry_window,
            batch: c.scheduler_batch,
        }
    }
}

/// The scheduler of automatic and pending top-ups.
pub struct Scheduler {
    topups: Topups,
    clock: Arc<dyn Clock>,
    settings: SchedulerSettings,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A running scheduler task.
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Scheduler {
    pub fn new(
        charging: Arc<Charging>,
        settings: SchedulerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            topups: Topups::new(charging),
            clock,
            settings,
        }
    }

    /// One pass at the clock's time.
    pub async fn tick(&self) -> Pass {
        let now = self.clock.now();
        let window = i64::try_from(self.settings.retry_window.as_millis()).unwrap_or(i64::MAX);
        let pass = self
            .topups
            .run_due(now, window, self.settings.batch.max(1))
            .await;
        if pass.due > 0 {
            debug!(?pass, "tmf654 scheduler pass");
        }
        pass
    }

    /// Runs [`Scheduler::tick`] every `interval` (the first at once: what fell due while the
    /// gateway was down runs on start) until stopped.
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let every = self.settings.interval.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            info!(interval = ?every, "tmf654 scheduler started");
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                // A pass is not cut by the stop signal: it ends after its current top-up
                // (each is idempotent anyway, so an abort would not double anything).
                self.tick().await;
                if *stopped.borrow() {
                    break;
                }
            }
            info!("tmf654 scheduler stopped");
        });
        SchedulerHandle { stop, task }
    }
}

impl SchedulerHandle {
    /// Stops the task: waits up to `grace` for the pass in progress, then aborts it.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            abort.abort();
        }
    }
}
