//! Store benchmark: the cost of durable charges through [`Store`] under group commit.
//!
//! One charge is what the charging layer writes for it: `begin` (a pending row, durable before
//! the CCR goes out) then `update` (the outcome, durable before the answer): two durable
//! writes, each awaited. N callers (tasks on a 2-worker tokio runtime) each run charges one
//! after the other; the writer thread commits whatever is queued in one transaction.
//!
//! One criterion iteration is one charge per caller (N charges), so criterion's `thrpt` is
//! charges per second and its time divided by N the cost of one charge. After each case the
//! store's counters are printed: writes per commit and time per commit.
//!
//! Run: `cargo bench --bench store`. The SQLite file lives in a fresh directory under the
//! system temp dir (or under `$STORE_BENCH_DIR`), removed afterwards: measure on the disk the
//! gateway will use, since the fsync per commit is most of the cost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rust_decimal::Decimal;

use charging_gateway::store::{
    Backend, MemoryBackend, OpState, OperationRow, SqliteBackend, Store, StoreSettings,
};

const CALLERS: [usize; 3] = [1, 64, 512];

fn pending(n: u64) -> OperationRow {
    OperationRow {
        id: format!("op-{n:012}"),
        app: "bench".into(),
        key: Some(format!("ref-{n:012}")),
        kind: "charge".into(),
        request_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        parent: None,
        reservation_id: None,
        session_id: format!("gw.example.net;1700000000;{n}"),
        request_number: 0,
        subscriber: Some("tel:+34600000001".into()),
        amount: Some(Decimal::new(499, 2)),
        currency: Some("EUR".into()),
        reference_code: Some(format!("ref-{n:012}")),
        state: OpState::Pending,
        result_code: None,
        request: r#"{"amount":"4.99","currency":"EUR","subscriber":"tel:+34600000001","description":"one article"}"#.into(),
        outcome: None,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000,
        lease: None,
    }
}

/// `iters` charges on each of `callers` tasks; returns the wall time.
async fn run(store: &Store, next: &Arc<AtomicU64>, callers: usize, iters: u64) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let store = store.clone();
            let next = Arc::clone(next);
            tokio::spawn(async move {
                for _ in 0..iters {
                    let mut op = pending(next.fetch_add(1, Ordering::Relaxed));
                    store.begin(op.clone()).await.expect("begin is durable");
                    op.state = OpState::Succeeded;
                    op.result_code = Some(2001);
                    op.outcome = Some(r#"{"status":"charged"}"#.into());
                    op.updated_ms += 20;
                    store.update(op).await.expect("update is durable");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller task");
    }
    started.elapsed()
}

fn case(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group_name: &str,
    backend: impl Backend,
    callers: usize,
) {
    let store = Store::start(backend, group_name, StoreSettings::default()).expect("store");
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group(group_name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(callers as u64));
    let before = Instant::now();
    group.bench_function(BenchmarkId::new("callers", callers), |b| {
        b.iter_custom(|iters| rt.block_on(run(&store, &next, callers, iters)))
    });
    group.finish();
    let elapsed = before.elapsed();
    let m = store.metrics();
    let batches = m.batches.load(Ordering::Relaxed).max(1);
    let writes = m.writes.load(Ordering::Relaxed);
    if writes == 0 {
        // Filtered out on the command line.
        return;
    }
    let commit_us = m.commit_micros.load(Ordering::Relaxed);
    eprintln!(
        "{group_name}/callers/{callers}: {} charges in {:.1} s (warm-up included): \
         {:.0} durable writes/s; {:.1} writes per commit, {:.0} us per commit",
        writes / 2,
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        writes as f64 / batches as f64,
        commit_us as f64 / batches as f64,
    );
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    for callers in CALLERS {
        let dir = base.join(format!("cgw-store-bench-{}-{callers}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = SqliteBackend::open(&dir).expect("open the SQLite store");
        case(c, &rt, "store_sqlite_charge", backend, callers);
        // The writer thread closes the file once the last handle is gone; give it a moment
        // before removing the directory (nothing is measured here).
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The same path without a disk: what the channel, the writer thread and the callers cost.
    case(
        c,
        &rt,
        "store_memory_charge",
        MemoryBackend::default(),
        CALLERS[CALLERS.len() - 1],
    );
}

criterion_group!(benches, store);
criterion_main!(benches);
