//! `gateway bench`: a closed-loop HTTP load generator for the Payment API. Each connection is
//! one HTTP/1.1 keep-alive connection that sends its next request as soon as the previous
//! answer arrives; every request carries a fresh referenceCode, so every one is a real charge.
//! Prints throughput and latency percentiles per scenario.
//!
//! ```text
//! charge       POST /rest/payment/charge-amount                      (one CCR-EVENT)
//! reservation  reserve-amount -> charge-reservation -> release-reservation
//!              (CCR-I, CCR-U, CCR-T: one "cycle")
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Charge,
    Reservation,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of a running gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, value_enum, default_value = "charge")]
    pub scenario: Scenario,
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// How long to measure.
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// HTTP Basic user.
    #[arg(long, default_value = "demo")]
    pub user: String,
    #[arg(long, default_value = "demo-secret")]
    pub password: String,
    /// End users are `tel:+<prefix><connection>`, one per connection.
    #[arg(long, default_value = "3469")]
    pub msisdn_prefix: String,
    #[arg(long, default_value = "0.01")]
    pub amount: String,
    #[arg(long, default_value = "EUR")]
    pub currency: String,
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

async fn connect(host: &str) -> Result<Conn, String> {
    let stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender })
}

impl Conn {
    /// POSTs `body`; returns the status and the body.
    async fn post(
        &mut self,
        host: &str,
        path: &str,
        auth: &str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let req = Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

struct Run {
    host: String,
    auth: String,
    args_amount: String,
    currency: String,
    scenario: Scenario,
    stop: AtomicBool,
    measuring: AtomicBool,
    stats: Stats,
    run_id: String,
}

async fn worker(run: Arc<Run>, index: usize, msisdn: String) -> Result<Vec<u32>, String> {
    let mut conn = connect(&run.host).await?;
    let mut lat = Vec::with_capacity(1 << 16);
    let mut n = 0u64;
    let charge = |n: u64| {
        format!(
            r#"{{"charge":{{"description":"bench","amount":"{}","currency":"{}","code":"b"}},"endUserIdentifier":"tel:+{}","referenceCode":"{}-{}-{}"}}"#,
            run.args_amount, run.currency, msisdn, run.run_id, index, n
        )
    };
    while !run.stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let ok = match run.scenario {
            Scenario::Charge => {
                let (s, _) = conn
                    .post(
                        &run.host,
                        "/rest/payment/charge-amount",
                        &run.auth,
                        charge(n),
                    )
                    .await?;
                s == 204
            }
            Scenario::Reservation => reservation_cycle(&run, &mut conn, &msisdn, index, n).await?,
        };
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if run.measuring.load(Ordering::Relaxed) {
            lat.push(micros);
            if ok {
                run.stats.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                run.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(lat)
}

async fn reservation_cycle(
    run: &Run,
    conn: &mut Conn,
    msisdn: &str,
    index: usize,
    n: u64,
) -> Result<bool, String> {
    let charge = format!(
        r#"{{"description":"bench","amount":"{}","currency":"{}","code":"b"}}"#,
        run.args_amount, run.currency
    );
    let (s, body) = conn
        .post(
            &run.host,
            "/rest/payment/reserve-amount",
            &run.auth,
            format!(r#"{{"charge":{charge},"endUserIdentifier":"tel:+{msisdn}"}}"#),
        )
        .await?;
    if s != 200 {
        return Ok(false);
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("result")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let (s, _) = conn
        .post(
            &run.host,
            "/rest/payment/charge-reservation",
            &run.auth,
            format!(
                r#"{{"charge":{charge},"referenceCode":"{}-r{index}-{n}","reservationIdentifier":"{id}"}}"#,
                run.run_id
            ),
        )
        .await?;
    if s != 204 {
        return Ok(false);
    }
    let (s, _) = conn
        .post(
            &run.host,
            "/rest/payment/release-reservation",
            &run.auth,
            format!(r#"{{"reservationIdentifier":"{id}"}}"#),
        )
        .await?;
    Ok(s == 204)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

pub async fn run(args: &BenchArgs) -> Result<String, String> {
    let host = args
        .url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?
        .trim_end_matches('/')
        .to_string();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", args.user, args.password))
    );
    let run = Arc::new(Run {
        host,
        auth,
        args_amount: args.amount.clone(),
        currency: args.currency.clone(),
        scenario: args.scenario,
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        stats: Stats::default(),
        // Unique per process too: several load generators started in the same millisecond
        // (benches/cluster.sh) must not send each other's referenceCodes.
        run_id: format!("bench{:x}p{}", crate::store::now_ms(), std::process::id()),
    });
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections.max(1) {
        let msisdn = format!("{}{:07}", args.msisdn_prefix, i);
        tasks.push(tokio::spawn(worker(Arc::clone(&run), i, msisdn)));
    }
    tokio::time::sleep(args.warmup).await;
    run.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    run.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    run.stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => return Err(format!("a connection failed: {e}")),
            Err(e) => return Err(format!("a worker stopped: {e}")),
        }
    }
    lat.sort_unstable();
    let ok = run.stats.ok.load(Ordering::Relaxed);
    let failed = run.stats.failed.load(Ordering::Relaxed);
    let rate = ok as f64 / elapsed.as_secs_f64();
    let unit = match args.scenario {
        Scenario::Charge => "charges",
        Scenario::Reservation => "reserve/charge/release cycles",
    };
    Ok(format!(
        "scenario {:?}: {} connections, {:.1} s measured\n\
         {ok} {unit} succeeded, {failed} failed\n\
         throughput {rate:.0} {unit}/s\n\
         latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
        args.scenario,
        args.connections,
        elapsed.as_secs_f64(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
        percentile(&lat, 100.0),
    ))
}
