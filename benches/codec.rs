//! Codec benchmark: decode a ~400-byte CCR-UPDATE carrying two Multiple-Services-Credit-Control
//! groups (walking every AVP, Grouped included) and encode the matching CCA.
//!
//! Run: `cargo bench --bench codec`. Besides criterion's timings it prints the heap
//! allocations per decode and per encode, counted by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};

use charging_gateway::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, AvpIter, AvpTypes, CommandCode, DataType, Header, Limits,
    Members, Message, MessageBuf, Time, VendorId,
};
use charging_gateway::diameter::dict::Dictionary;

/// Counts heap allocations and forwards them to mimalloc, the allocator the `gateway` binary
/// runs with (src/main.rs), so the figures are those of the product.
struct Counting;

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { INNER.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn money(digits: i64, exponent: i32) -> AvpBuf {
    AvpBuf::grouped(
        AvpCode::CC_MONEY,
        vec![
            AvpBuf::grouped(
                AvpCode::UNIT_VALUE,
                vec![
                    AvpBuf::integer64(AvpCode::VALUE_DIGITS, digits),
                    AvpBuf::integer32(AvpCode::EXPONENT, exponent),
                ],
            ),
            AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, 978),
        ],
    )
}

fn common(h: Header) -> MessageBuf {
    MessageBuf::new(h).with(AvpBuf::utf8_static(
        AvpCode::SESSION_ID,
        "gw1.operator.example;1700000000;42;pay-7f3a9c",
    ))
}

/// A CCR-UPDATE with two MSCC groups, as a Gy client sends mid-session: per rating group the
/// units used since the last report and a request for more.
pub fn ccr_update() -> MessageBuf {
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    );
    h.hop_by_hop = 0x1234_5678;
    h.end_to_end = 0x9abc_def0;
    let mscc = |rg: u32, seconds: u32, octets: u64| {
        AvpBuf::grouped(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            vec![
                AvpBuf::grouped(AvpCode::REQUESTED_SERVICE_UNIT, vec![]),
                AvpBuf::grouped(
                    AvpCode::USED_SERVICE_UNIT,
                    vec![
                        AvpBuf::unsigned32(AvpCode::CC_TIME, seconds),
                        AvpBuf::unsigned64(AvpCode::CC_TOTAL_OCTETS, octets),
                    ],
                ),
                AvpBuf::unsigned32(AvpCode::RATING_GROUP, rg),
                AvpBuf::enumerated(AvpCode::REPORTING_REASON, 3).vendor(VendorId::TGPP),
            ],
        )
    };
    common(h)
        .with(AvpBuf::utf8_static(
            AvpCode::ORIGIN_HOST,
            "gw1.operator.example",
        ))
        .with(AvpBuf::utf8_static(
            AvpCode::ORIGIN_REALM,
            "operator.example",
        ))
        .with(AvpBuf::utf8_static(
            AvpCode::DESTINATION_REALM,
            "ocs.operator.example",
        ))
        .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
        .with(AvpBuf::utf8_static(
            AvpCode::SERVICE_CONTEXT_ID,
            "32251@3gpp.org",
        ))
        .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 2))
        .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 1))
        .with(AvpBuf::time(AvpCode::EVENT_TIMESTAMP, Time(0xE9B0_0000)))
        .with(AvpBuf::grouped(
            AvpCode::SUBSCRIPTION_ID,
            vec![
                AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0),
                AvpBuf::utf8_static(AvpCode::SUBSCRIPTION_ID_DATA, "34671999000"),
            ],
        ))
        .with(AvpBuf::enumerated(AvpCode::MULTIPLE_SERVICES_INDICATOR, 1))
        .with(mscc(1, 60, 1_048_576))
        .with(mscc(2, 60, 52_428_800))
}

/// The CCA answering [`ccr_update`]: grants per rating group.
pub fn cca_update() -> MessageBuf {
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    )
    .answer();
    h.hop_by_hop = 0x1234_5678;
    h.end_to_end = 0x9abc_def0;
    let mscc = |rg: u32, grant: i64| {
        AvpBuf::grouped(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            vec![
                AvpBuf::grouped(AvpCode::GRANTED_SERVICE_UNIT, vec![money(grant, -2)]),
                AvpBuf::unsigned32(AvpCode::SERVICE_IDENTIFIER, 1000 + rg),
                AvpBuf::unsigned32(AvpCode::RATING_GROUP, rg),
                AvpBuf::unsigned32(AvpCode::VALIDITY_TIME, 3600),
                AvpBuf::unsigned32(AvpCode::RESULT_CODE, 2001),
            ],
        )
    };
    common(h)
        .with(AvpBuf::unsigned32(AvpCode::RESULT_CODE, 2001))
        .with(AvpBuf::utf8_static(
            AvpCode::ORIGIN_HOST,
            "ocs1.operator.example",
        ))
        .with(AvpBuf::utf8_static(
            AvpCode::ORIGIN_REALM,
            "ocs.operator.example",
        ))
        .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
        .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 2))
        .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 1))
        .with(mscc(1, 500))
        .with(mscc(2, 1000))
}

/// Visits every AVP, descending into Grouped ones; returns a checksum so nothing is optimized out.
fn walk(iter: Members<'_>, dict: &Dictionary) -> u64 {
    let mut sum = 0u64;
    for avp in iter {
        sum = sum.wrapping_add(u64::from(avp.code().0) + avp.data().len() as u64);
        let vendor = avp.vendor_id().unwrap_or_default();
        if dict.data_type(avp.code(), vendor) == Some(DataType::Grouped) {
            sum = sum.wrapping_add(walk(avp.members(), dict));
        }
    }
    sum
}

fn decode_and_walk(frame: &Bytes, dict: &Dictionary, limits: &Limits) -> u64 {
    let msg =
        Message::decode(frame.clone(), dict, limits).unwrap_or_else(|e| panic!("decode: {e}"));
    let mut sum = 0u64;
    for avp in msg.avps() {
        sum = sum.wrapping_add(u64::from(avp.code().0) + avp.data().len() as u64);
        let vendor = avp.vendor_id().unwrap_or_default();
        if dict.data_type(avp.code(), vendor) == Some(DataType::Grouped) {
            sum = sum.wrapping_add(walk(avp.members(), dict));
        }
    }
    sum
}

fn allocations_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let dict = Dictionary::builtin().unwrap_or_else(|e| panic!("dictionary: {e}"));
    let limits = Limits::default();
    let frame = ccr_update()
        .to_bytes()
        .unwrap_or_else(|e| panic!("encode: {e}"));
    let cca = cca_update();
    let cca_len = cca.encoded_len().unwrap_or_else(|e| panic!("encode: {e}"));
    let avp_count = {
        let msg = Message::decode(frame.clone(), &dict, &limits).unwrap_or_else(|e| panic!("{e}"));
        dict.check(&msg, &limits)
            .unwrap_or_else(|e| panic!("CCR fails its grammar: {e}"));
        fn count(iter: AvpIter<'_>, dict: &Dictionary) -> usize {
            iter.filter_map(Result::ok)
                .map(|a| {
                    let v = a.vendor_id().unwrap_or_default();
                    1 + if dict.data_type(a.code(), v) == Some(DataType::Grouped) {
                        count(a.group(), dict)
                    } else {
                        0
                    }
                })
                .sum()
        }
        count(AvpIter::new(&frame[20..], 20), &dict)
    };
    let decode_allocs = allocations_per_call(10_000, || {
        black_box(decode_and_walk(black_box(&frame), &dict, &limits));
    });
    let encode_allocs = allocations_per_call(10_000, || {
        let mut b = BytesMut::new();
        black_box(&cca)
            .encode(&mut b)
            .unwrap_or_else(|e| panic!("{e}"));
        black_box(b);
    });
    let mut kept = BytesMut::with_capacity(4096);
    let reused_allocs = allocations_per_call(10_000, || {
        kept.clear();
        black_box(&cca)
            .encode(&mut kept)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let build_allocs = allocations_per_call(10_000, || {
        black_box(cca_update().to_bytes().unwrap_or_else(|e| panic!("{e}")));
    });
    println!(
        "CCR-UPDATE: {} bytes, {avp_count} AVPs; heap allocations per decode+walk: {decode_allocs:.2}",
        frame.len()
    );
    println!(
        "CCA: {cca_len} bytes; heap allocations per encode: {encode_allocs:.2} (fresh buffer), \
         {reused_allocs:.2} (reused buffer), {build_allocs:.2} (build and encode)"
    );

    let mut g = c.benchmark_group("codec");
    g.bench_function("decode_ccr_update", |b| {
        b.iter(|| {
            Message::decode(black_box(frame.clone()), &dict, &limits)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    g.bench_function("decode_ccr_update_walk_all", |b| {
        b.iter(|| decode_and_walk(black_box(&frame), &dict, &limits))
    });
    g.bench_function("encode_cca", |b| {
        b.iter(|| {
            let mut buf = BytesMut::new();
            black_box(&cca)
                .encode(&mut buf)
                .unwrap_or_else(|e| panic!("{e}"));
            buf
        })
    });
    let mut reused = BytesMut::with_capacity(4096);
    g.bench_function("encode_cca_reused_buffer", |b| {
        b.iter(|| {
            reused.clear();
            black_box(&cca)
                .encode(&mut reused)
                .unwrap_or_else(|e| panic!("{e}"));
            black_box(reused.len())
        })
    });
    g.bench_function("build_and_encode_cca", |b| {
        b.iter(|| cca_update().to_bytes().unwrap_or_else(|e| panic!("{e}")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
