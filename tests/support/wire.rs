//! Wireshark's Diameter dissector as an independent judge of what went on the wire.
//!
//! ```text
//! Capture::start(ports) --spawn--> dumpcap -i lo -f "tcp port A or tcp port B or tcp port M" -q -w <tmp>/wire.pcapng
//!                       <--ready-- "File: <tmp>/wire.pcapng" on its stderr (interface open, filter set)
//!     ... the test's Diameter traffic on ports A, B ...
//! Capture::finish()     --marker-> a unique token sent to the capture's own port M, awaited in the file
//!                       --SIGTERM-> dumpcap (it must report no dropped packet)
//!                       --tshark -r FILE -d tcp.port==A,diameter ... -T pdml--> WireReport
//! WireReport::assert_clean(allowed): every finding not allowed fails the test, named by frame,
//!                       ports, command and Hop-by-Hop id, with Wireshark's own expert message
//! ```
//!
//! A finding is any of:
//! - an expert info of severity Warning or Error, or of group Malformed whatever its severity
//!   ("Padding is missing" is a Note of that group), raised by the Diameter dissector or a
//!   dissector it called; the transport's own (TCP resets, lost segments) describe the
//!   connection, not the encoding, and are not findings;
//! - a Malformed Packet (a dissector exception) anywhere in the frame;
//! - TCP payload on a Diameter port that Wireshark did not dissect as Diameter and that is not
//!   part of a PDU reassembled in a later frame (a frame Wireshark would not even call Diameter).
//!
//! Why a marker: libpcap on Linux hands packets to dumpcap a block at a time and dumpcap
//! flushes its file on its own schedule, so stopping it right after the last message could
//! lose that message. Packets on the loopback reach the capture in the order they are sent, so
//! once the token sent after the test's traffic is in the file, everything before it is too.
//!
//! Tools: `dumpcap` and `tshark` from the Debian package `tshark` (it pulls in
//! `wireshark-common`, which installs dumpcap). Capturing needs CAP_NET_RAW and CAP_NET_ADMIN:
//! root has them; a developer who is not root runs `sudo dpkg-reconfigure wireshark-common`
//! (answering yes) and `sudo usermod -aG wireshark $USER`, then logs in again, or gives the
//! binary the capabilities with `sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap`.
//! Without the tools, or without the right to capture, `capture_or_skip` fails the test under
//! `CI=true` and otherwise prints that the wire check is skipped (the test itself goes on).
//! tshark runs with an empty `WIRESHARK_CONFIG_DIR`, so a developer's own Wireshark
//! preferences (heuristics, decode-as rules, dictionaries) cannot change the verdict.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `_ws.expert.severity` of a Warning (PI_WARN); Error (PI_ERROR) is above it.
const SEVERITY_WARNING: u32 = 0x0060_0000;
/// `_ws.expert.group` of the Malformed group (PI_MALFORMED).
const GROUP_MALFORMED: u32 = 0x0700_0000;
/// Protocols below Diameter whose expert infos are about the connection, not the encoding.
const TRANSPORT: [&str; 7] = ["geninfo", "frame", "eth", "sll", "ip", "ipv6", "tcp"];
/// How long dumpcap may take to start, to record the marker, and to stop.
const PATIENCE: Duration = Duration::from_secs(15);

/// Wireshark's own limitations on frames the project sends, allowed one by one: the expert
/// info (field name and message) on one AVP. Everything else the dissector flags fails.
pub const WIRESHARK_LIMITS: &[Allowed] = &[Allowed {
    expert: "diameter.avp.no_data",
    text: "Data is empty",
    avp_code: 437,
    vendor: 0,
    why: "an empty Requested-Service-Unit is grammatical (RFC 8506 section 8.18: every member \
          is optional); Wireshark warns on any AVP without data, Grouped ones included",
}];

/// One expert info that is not a finding: `expert` (its field name, e.g.
/// `diameter.avp.no_data`) with exactly the message `text`, on AVP `avp_code` of `vendor`.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    pub expert: &'static str,
    pub text: &'static str,
    pub avp_code: u32,
    pub vendor: u32,
    /// Why this is Wireshark's limitation and not an encoding bug.
    pub why: &'static str,
}

impl Allowed {
    fn covers(&self, f: &Finding) -> bool {
        f.expert == self.expert
            && f.text == self.text
            && f.avp
                .as_ref()
                .is_some_and(|a| a.code == self.avp_code && a.vendor == self.vendor)
    }
}

/// A located Wireshark installation.
#[derive(Clone, Debug)]
pub struct Tools {
    pub dumpcap: PathBuf,
    pub tshark: PathBuf,
    /// `tshark --version`, first line.
    pub version: String,
}

impl Tools {
    /// dumpcap and tshark on the PATH, looked up once per test binary.
    pub fn find() -> Result<Self, String> {
        static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
        TOOLS.get_or_init(Self::locate).clone()
    }

    fn locate() -> Result<Self, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let on_path = |name: &str| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .ok_or(format!("{name} is not on the PATH"))
        };
        let dumpcap = on_path("dumpcap")?;
        let tshark = on_path("tshark")?;
        let out = Command::new(&tshark)
            .arg("--version")
            .output()
            .map_err(|e| format!("{}: {e}", tshark.display()))?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('.')
            .to_string();
        Ok(Self {
            dumpcap,
            tshark,
            version,
        })
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A capture of `ports` for `what` (a test's name), or `None` when it cannot be made here:
/// under `CI=true` that fails the test; otherwise it says the wire check is skipped.
pub fn capture_or_skip(what: &str, ports: &[u16]) -> Option<Capture> {
    let why = match Tools::find().and_then(|t| Capture::start(&t, ports)) {
        Ok(c) => return Some(c),
        Err(why) => why,
    };
    assert!(
        !under_ci(),
        "{what}: {why}. CI=true: the wire check must run; install the Debian package tshark \
         (.ci/run does) and capture as root or with dumpcap's capabilities"
    );
    // Straight to the process's stderr, past the harness's capture, so that it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "{what}: wire check SKIPPED: {why} (install tshark; capturing needs root, the \
         wireshark group or `setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap`)"
    );
    None
}

/// A running dumpcap on the loopback interface, filtered on the Diameter ports and its own
/// marker port.
pub struct Capture {
    tools: Tools,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    marker: TcpListener,
    ports: Vec<u16>,
    scratch: Scratch,
}

impl Capture {
    /// Starts dumpcap and returns once it says it writes its file (the interface is open and
    /// the filter installed by then). Blocks the calling thread (a test's, not a runtime
    /// worker's) for as long as dumpcap takes to start.
    pub fn start(tools: &Tools, ports: &[u16]) -> Result<Self, String> {
        assert!(!ports.is_empty(), "a capture needs the Diameter ports");
        let scratch = Scratch::new()?;
        let marker = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("bind the marker port: {e}"))?;
        let marker_port = marker
            .local_addr()
            .map_err(|e| format!("marker port: {e}"))?
            .port();
        let filter = ports
            .iter()
            .chain([marker_port].iter())
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new(&tools.dumpcap)
            .args(["-i", "lo", "-q", "-f", &filter, "-w"])
            .arg(scratch.pcap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", tools.dumpcap.display()))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = child.stderr.take().map(|s| {
            let log = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        });
        let mut capture = Self {
            tools: tools.clone(),
            child: Some(child),
            stderr,
            reader,
            marker,
            ports: ports.to_vec(),
            scratch,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if capture.stderr().contains("File: ") {
                return Ok(capture);
            }
            let exited = capture
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                capture.stop();
                return Err(format!(
                    "dumpcap did not start capturing on lo (filter `{filter}`): {}",
                    capture
                        .stderr()
                        .trim()
                        .lines()
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the capture once everything sent so far is in the file, and has tshark judge it.
    /// Fails the test when the capture is incomplete or tshark cannot read it.
    pub fn finish(mut self) -> WireReport {
        let token = self.send_marker();
        let deadline = Instant::now() + PATIENCE;
        while !contains(
            &std::fs::read(self.scratch.pcap()).unwrap_or_default(),
            &token,
        ) {
            if Instant::now() > deadline {
                self.scratch.keep();
                panic!(
                    "wire check: dumpcap did not record the marker within {PATIENCE:?}, so the \
                     capture may miss frames; capture kept in {}; dumpcap said: {}",
                    self.scratch.dir.display(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        let said = self.stderr();
        if let Some(dropped) = dropped(&said).filter(|d| *d > 0) {
            self.scratch.keep();
            panic!(
                "wire check: dumpcap dropped {dropped} packets, so the check would be unsound; \
                 capture kept in {}; dumpcap said: {said}",
                self.scratch.dir.display()
            );
        }
        let mut args = vec![
            "-r".to_string(),
            self.scratch.pcap().display().to_string(),
            "-n".into(),
            "-o".into(),
            "tcp.desegment_tcp_streams:TRUE".into(),
            "-o".into(),
            "diameter.desegment:TRUE".into(),
        ];
        for p in &self.ports {
            args.push("-d".into());
            args.push(format!("tcp.port=={p},diameter"));
        }
        let marker = self.marker.local_addr().map(|a| a.port()).unwrap_or(0);
        args.push("-Y".into());
        args.push(format!("tcp.len > 0 && !(tcp.port == {marker})"));
        let out = Command::new(&self.tools.tshark)
            .args(&args)
            .args(["-T", "pdml"])
            .env("WIRESHARK_CONFIG_DIR", self.scratch.config())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("wire check: run {}: {e}", self.tools.tshark.display()));
        if !out.status.success() {
            self.scratch.keep();
            panic!(
                "wire check: tshark {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pdml = String::from_utf8_lossy(&out.stdout);
        let (messages, findings) = parse_pdml(&pdml, &self.ports).unwrap_or_else(|e| {
            self.scratch.keep();
            panic!("wire check: tshark's PDML does not parse: {e}")
        });
        let reproduce = format!(
            "WIRESHARK_CONFIG_DIR={} {} {} -V",
            self.scratch.config().display(),
            self.tools.tshark.display(),
            args.iter()
                .map(|a| if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        WireReport {
            version: self.tools.version.clone(),
            ports: self.ports.clone(),
            messages,
            findings,
            reproduce,
            scratch: std::mem::replace(&mut self.scratch, Scratch::none()),
        }
    }

    /// A connection to the marker port carrying a token no other capture holds.
    fn send_marker(&self) -> Vec<u8> {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let token = format!(
            "wire-check marker {} {} {nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
        .into_bytes();
        let addr = self.marker.local_addr().expect("marker address");
        let mut s = TcpStream::connect(addr).expect("connect to the marker port");
        s.write_all(&token).expect("write the marker");
        token
    }

    /// Everything dumpcap printed so far.
    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// SIGTERM (dumpcap then closes its file), SIGKILL if it has not exited in time; then
    /// the rest of its stderr.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + PATIENCE;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What tshark made of a capture.
#[derive(Debug)]
pub struct WireReport {
    /// `tshark --version`, first line.
    pub version: String,
    /// The ports decoded as Diameter.
    pub ports: Vec<u16>,
    /// Every Diameter message the dissector found, in frame order.
    pub messages: Vec<WireMessage>,
    /// Everything flagged, allowed or not.
    pub findings: Vec<Finding>,
    /// The tshark command line that shows the frames in full.
    pub reproduce: String,
    scratch: Scratch,
}

impl WireReport {
    /// The findings none of `allowed` covers.
    pub fn unexpected(&self, allowed: &[Allowed]) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| !allowed.iter().any(|a| a.covers(f)))
            .collect()
    }

    /// What the check fails with when a finding is not covered by `allowed`: each such
    /// finding on a line, and how to see the frames.
    pub fn failure(&self, allowed: &[Allowed]) -> Option<String> {
        let bad = self.unexpected(allowed);
        if bad.is_empty() {
            return None;
        }
        let mut frames: Vec<u64> = bad.iter().map(|f| f.frame).collect();
        frames.dedup();
        let list: Vec<String> = bad.iter().map(|f| format!("  {f}")).collect();
        Some(format!(
            "wire check ({}): Wireshark's Diameter dissector has {} findings in {} frames \
             ({} Diameter messages on ports {:?}):\n{}\nsee the frames with:\n  {}",
            self.version,
            bad.len(),
            frames.len(),
            self.messages.len(),
            self.ports,
            list.join("\n"),
            self.reproduce
        ))
    }

    /// Fails the test with `failure`, keeping the capture, when a finding is not allowed.
    pub fn assert_clean(&self, allowed: &[Allowed]) {
        if let Some(failure) = self.failure(allowed) {
            self.scratch.keep();
            panic!("{failure}\n(the capture is kept for that)");
        }
    }

    /// The messages that went to or came from `port`.
    pub fn on_port(&self, port: u16) -> impl Iterator<Item = &WireMessage> {
        self.messages
            .iter()
            .filter(move |m| m.src_port == port || m.dst_port == port)
    }

    /// How many requests (`request`) or answers of command `code` went to or from `port`.
    pub fn count(&self, port: u16, code: u32, request: bool) -> usize {
        self.on_port(port)
            .filter(|m| m.code == code && m.request == request)
            .count()
    }
}

/// One Diameter message as Wireshark dissected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage {
    pub frame: u64,
    pub src_port: u16,
    pub dst_port: u16,
    pub code: u32,
    pub request: bool,
    /// Wireshark's name of the command ("Credit-Control").
    pub command: String,
    pub hop_by_hop: u32,
}

impl fmt::Display for WireMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) h2h=0x{:08x}",
            self.command,
            if self.request { "Request" } else { "Answer" },
            self.code,
            self.hop_by_hop
        )
    }
}

/// The AVP a finding sits in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvpRef {
    pub code: u32,
    pub vendor: u32,
    pub name: String,
}

/// One thing flagged in one frame.
#[derive(Clone, Debug)]
pub struct Finding {
    pub frame: u64,
    pub src_port: u16,
    pub dst_port: u16,
    /// The message it was found in, when Wireshark dissected one.
    pub message: Option<WireMessage>,
    /// The expert info's field name (`diameter.avp.invalid-len`), `_ws.malformed` for an
    /// exception, or `not-diameter` for payload Wireshark did not take as Diameter.
    pub expert: String,
    /// Wireshark's severity and group ("Warning/Undecoded").
    pub class: String,
    /// Wireshark's message.
    pub text: String,
    pub avp: Option<AvpRef>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame {} ({} -> {}) ",
            self.frame, self.src_port, self.dst_port
        )?;
        match &self.message {
            Some(m) => write!(f, "{m}")?,
            None => write!(f, "(no Diameter message)")?,
        }
        write!(f, ": [{}] {} ({})", self.class, self.text, self.expert)?;
        if let Some(a) = &self.avp {
            write!(f, " in AVP {}({}", a.name, a.code)?;
            if a.vendor != 0 {
                write!(f, ", vendor {}", a.vendor)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// The capture's directory: the file, tshark's empty configuration. Removed on drop unless
/// kept (a failed check keeps it for a look in Wireshark).
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    keep: Cell<bool>,
}

impl Scratch {
    fn new() -> Result<Self, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wire-check-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("config"))
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            keep: Cell::new(false),
        })
    }

    /// A scratch that owns nothing (what a finished `Capture` is left with).
    fn none() -> Self {
        Self {
            dir: PathBuf::new(),
            keep: Cell::new(true),
        }
    }

    fn pcap(&self) -> PathBuf {
        self.dir.join("wire.pcapng")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config")
    }

    fn keep(&self) {
        if !self.keep.replace(true) && !self.dir.as_os_str().is_empty() {
            eprintln!("wire check: capture kept in {}", self.dir.display());
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep.get() && !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The dropped count of dumpcap's last report:
/// `Packets received/dropped on interface 'Loopback: lo': 333/0 (...)`.
fn dropped(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("Packets received/dropped"))?;
    let counts = line.rsplit_once("': ")?.1.split_whitespace().next()?;
    counts.split_once('/')?.1.parse().ok()
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

/// The value of `name` attribute of an element (`proto` or `field` name).
fn name_of<'a>(n: Node<'a, '_>) -> &'a str {
    n.attribute("name").unwrap_or_default()
}

/// The first descendant of `n` (itself included) named `name`.
fn find<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.descendants()
        .find(|d| d.is_element() && name_of(*d) == name)
}

fn show<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    find(n, name).and_then(|f| f.attribute("show"))
}

fn number(n: Node<'_, '_>, name: &str) -> Option<u64> {
    let s = show(n, name)?;
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A child field of `n` itself (not of its nested AVPs) named `name`.
fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && name_of(*c) == name)
}

fn shown<'a>(n: Option<Node<'a, '_>>) -> Option<&'a str> {
    n.and_then(|c| c.attribute("show"))
}

fn message_of(pdu: Node<'_, '_>, frame: u64, src: u16, dst: u16) -> WireMessage {
    let code = child(pdu, "diameter.cmd.code");
    // "Command Code: Credit-Control (272)"
    let command = code
        .and_then(|c| c.attribute("showname"))
        .and_then(|s| s.strip_prefix("Command Code: "))
        .and_then(|s| s.rsplit_once(" (").map(|(n, _)| n.to_string()))
        .unwrap_or_else(|| "?".into());
    let request = child(pdu, "diameter.flags")
        .and_then(|f| child(f, "diameter.flags.request"))
        .and_then(|r| r.attribute("show"))
        .is_some_and(|s| s == "1" || s == "True");
    let hop_by_hop = shown(child(pdu, "diameter.hopbyhopid"))
        .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    WireMessage {
        frame,
        src_port: src,
        dst_port: dst,
        code: shown(code).and_then(|s| s.parse().ok()).unwrap_or(0),
        request,
        command,
        hop_by_hop,
    }
}

/// The innermost AVP around `n`.
fn avp_of(n: Node<'_, '_>) -> Option<AvpRef> {
    let avp = n
        .ancestors()
        .find(|a| a.is_element() && name_of(*a) == "diameter.avp")?;
    let code = child(avp, "diameter.avp.code")?
        .attribute("show")?
        .parse()
        .ok()?;
    let vendor = child(avp, "diameter.avp.vendorId")
        .and_then(|v| v.attribute("show"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // "AVP: Requested-Service-Unit(437) l=8 f=-M-"
    let name = avp
        .attribute("showname")
        .and_then(|s| s.strip_prefix("AVP: "))
        .and_then(|s| s.split_once('(').map(|(n, _)| n.to_string()))
        .unwrap_or_default();
    Some(AvpRef { code, vendor, name })
}

/// Messages and findings of tshark's PDML (one `<packet>` per frame with TCP payload).
fn parse_pdml(pdml: &str, ports: &[u16]) -> Result<(Vec<WireMessage>, Vec<Finding>), String> {
    let doc = roxmltree::Document::parse(pdml).map_err(|e| e.to_string())?;
    let mut messages = Vec::new();
    let mut findings = Vec::new();
    for pkt in doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("packet"))
    {
        let frame = number(pkt, "num").unwrap_or(0);
        let port = |name| number(pkt, name).and_then(|p| u16::try_from(p).ok());
        let (src, dst) = (
            port("tcp.srcport").unwrap_or(0),
            port("tcp.dstport").unwrap_or(0),
        );
        let pdus: Vec<Node<'_, '_>> = pkt
            .children()
            .filter(|n| n.has_tag_name("proto") && name_of(*n) == "diameter")
            .collect();
        let in_frame: Vec<WireMessage> = pdus
            .iter()
            .map(|p| message_of(*p, frame, src, dst))
            .collect();
        let message_around = |n: Node<'_, '_>| {
            pdus.iter()
                .position(|p| n.ancestors().any(|a| a == *p))
                .and_then(|i| in_frame.get(i).cloned())
        };
        for e in pkt
            .descendants()
            .filter(|n| n.is_element() && name_of(*n) == "_ws.expert")
        {
            let owner = e
                .ancestors()
                .find(|a| a.has_tag_name("proto"))
                .map(name_of)
                .unwrap_or_default();
            if TRANSPORT.contains(&owner) {
                continue;
            }
            let severity = number(e, "_ws.expert.severity").unwrap_or(0);
            let group = number(e, "_ws.expert.group").unwrap_or(0);
            if severity < u64::from(SEVERITY_WARNING) && group != u64::from(GROUP_MALFORMED) {
                continue;
            }
            let expert = e
                .children()
                .filter(|c| c.is_element())
                .map(name_of)
                .find(|n| !n.starts_with("_ws.expert"))
                .unwrap_or("_ws.expert");
            // "Expert Info (Warning/Undecoded): Data is empty"
            let class = e
                .attribute("showname")
                .and_then(|s| s.split_once('(')?.1.split_once(')'))
                .map(|(c, _)| c.to_string())
                .unwrap_or_default();
            findings.push(Finding {
                frame,
                src_port: src,
                dst_port: dst,
                message: message_around(e),
                expert: expert.to_string(),
                class,
                text: show(e, "_ws.expert.message")
                    .unwrap_or_default()
                    .to_string(),
                avp: avp_of(e),
            });
        }
        // An exception shown without an expert info of its own (those are reported above;
        // a Malformed expert info also adds a hidden `_ws.malformed`).
        for m in pkt.descendants().filter(|n| {
            n.is_element()
                && name_of(*n) == "_ws.malformed"
                && n.attribute("hide") != Some("yes")
                && find(*n, "_ws.expert").is_none()
        }) {
            findings.push(Finding {
                frame,
                src_port: src,
                dst_port: dst,
                message: message_around(m),
                expert: "_ws.malformed".into(),
                class: "Error/Malformed".into(),
                text: m.attribute("showname").unwrap_or("Malformed Packet").into(),
                avp: avp_of(m),
            });
        }
        let payload = number(pkt, "tcp.len").unwrap_or(0);
        let on_diameter_port = ports.contains(&src) || ports.contains(&dst);
        let later = find(pkt, "tcp.reassembled_in").is_some();
        let retransmitted = [
            "tcp.analysis.retransmission",
            "tcp.analysis.fast_retransmission",
            "tcp.analysis.spurious_retransmission",
        ]
        .iter()
        .any(|n| find(pkt, n).is_some());
        if payload > 0 && on_diameter_port && pdus.is_empty() && !later && !retransmitted {
            findings.push(Finding {
                frame,
                src_port: src,
                dst_port: dst,
                message: None,
                expert: "not-diameter".into(),
                class: "Error/Not dissected".into(),
                text: format!("{payload} bytes of TCP payload not dissected as Diameter"),
                avp: None,
            });
        }
        messages.extend(in_frame);
    }
    Ok((messages, findings))
}
