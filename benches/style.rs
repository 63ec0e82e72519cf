//! What `credit_control.style = "auto"` adds to each request once the style is known, against
//! a pinned style: the client's style choice when it builds a CCR, and the look-up of what the
//! answering OCS is known to take when the answer comes back (plus its Origin-State-Id).
//!
//! Run: `cargo bench --bench style`. The end-to-end comparison (charge-amount throughput,
//! pinned and auto interleaved) is `bash benches/style.sh`.

use criterion::{Criterion, criterion_group, criterion_main};

use charging_gateway::credit_control::style::Evidence;
use charging_gateway::credit_control::{
    LearnedStyle, OcsStates, RequestKind, StyleBook, StyleChoice, StyleConfig, UnitsStyle,
};

fn bench(c: &mut Criterion) {
    let pinned = StyleBook::new(StyleConfig::both(StyleChoice::Mscc));
    let auto = StyleBook::new(StyleConfig::both(StyleChoice::Auto));
    auto.seed(LearnedStyle {
        ocs: "ocs1.operator.example".into(),
        kind: RequestKind::Events,
        style: UnitsStyle::CommandLevel,
        evidence: Evidence::Fallback {
            refusal: "DIAMETER_MISSING_AVP (5005)".into(),
        },
        learned_ms: 1,
    });
    let states = OcsStates::default();
    states.observe("ocs1.operator.example", 7, 1);
    let mut g = c.benchmark_group("units_style_per_request");
    g.bench_function("pinned: choose the style", |b| {
        b.iter(|| std::hint::black_box(pinned.style(RequestKind::Events, None)))
    });
    g.bench_function("auto: choose the style", |b| {
        b.iter(|| std::hint::black_box(auto.style(RequestKind::Events, None)))
    });
    g.bench_function("auto: an answer from a known OCS", |b| {
        b.iter(|| {
            auto.accepted(
                std::hint::black_box("ocs1.operator.example"),
                RequestKind::Events,
                UnitsStyle::CommandLevel,
                2,
            )
        })
    });
    g.bench_function("the answer's Origin-State-Id, unchanged", |b| {
        b.iter(|| states.observe(std::hint::black_box("ocs1.operator.example"), 7, 2))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
