//! Every "Try it" block of README.md (each `sh` block that calls the REST API on
//! `127.0.0.1:8080`) answers what its comments say, run as a newcomer runs it: the `gateway`
//! binary started with no arguments in a copy of the repository's `conf/` (its REST API and
//! the simulator's Diameter port moved to ports chosen at run time), every block run by bash,
//! all of them twice with a restart in between (the second time in the reverse order), and
//! that against the bundled simulator in each of its profiles.
//!
//! The comments are the specification, read here, not copied: a comment that names HTTP
//! statuses (`# charge-amount: 204, ...`) states one per `curl` command under it, in order; a
//! comment that names none checks nothing. A comment naming some other number of statuses is
//! a README error this test reports.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::process::{GatewayProcess, TempDir};

const README_HOST: &str = "127.0.0.1:8080";

/// The fenced `sh` blocks of the README that call the REST API.
fn try_it_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) if lang.trim() == "sh" => open = Some((n + 2, String::new())),
            (Some(_), Some(_)) => {
                if let Some((at, body)) = open.take()
                    && body.contains("curl ")
                    && body.contains(README_HOST)
                {
                    out.push((at, body));
                }
            }
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The HTTP statuses a comment names: three digits from 100 to 599 standing alone (`204,`,
/// `(201 reserved)`, `409 ALREADY_EXISTS`), not part of an amount (`100.00`) or of a longer
/// number (`4012`, `+34600000001`).
fn statuses(comment: &str) -> Vec<u16> {
    let b = comment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let before_ok = start == 0 || matches!(b[start - 1], b' ' | b'(');
        let after_ok = i == b.len() || matches!(b[i], b' ' | b',' | b';' | b':' | b')');
        if i - start == 3 && before_ok && after_ok && (b'1'..=b'5').contains(&b[start]) {
            out.push(comment[start..i].parse().unwrap_or(0));
        }
    }
    out
}

/// What each `curl` of a block must answer, in order (`None`: its comment states nothing).
fn expected(at: usize, block: &str) -> Vec<Option<u16>> {
    let mut groups: Vec<(usize, Vec<u16>, usize)> = vec![(at, Vec::new(), 0)];
    for (i, line) in block.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            groups.push((at + i, statuses(comment), 0));
        } else if let Some(g) = groups.last_mut() {
            g.2 += line.matches("curl -").count();
        }
    }
    let mut out = Vec::new();
    for (line, want, curls) in groups {
        if want.is_empty() {
            out.extend(std::iter::repeat_n(None, curls));
        } else {
            assert_eq!(
                want.len(),
                curls,
                "README.md:{line}: the comment names {} status(es) ({want:?}) for {curls} curl \
                 command(s): one per command, in order",
                want.len()
            );
            out.extend(want.into_iter().map(Some));
        }
    }
    out
}

#[test]
fn comments_give_one_status_per_command() {
    assert_eq!(statuses(" charge-amount: 204, 4.99 EUR debited"), [204]);
    assert_eq!(
        statuses(" 2-step: a purchase (201), prepare (200 \"ready\"), then confirm (202; ...)"),
        [201, 200, 202]
    );
    assert_eq!(
        statuses(" above the application's max_amount (100.00): 403 X (4012) +34600000001"),
        [403]
    );
    assert_eq!(
        statuses(" unknown: 400 {\"code\":\"5030\"}; 400 code 5031"),
        [400, 400]
    );
    assert!(statuses(" monthly, 12 times, the first now").is_empty());
}

/// Runs `block` with bash in `cwd` against `host`; the status of every curl it made, in order.
fn run_block(cwd: &Path, host: &str, block: &str, gateway: &Path) -> Vec<u16> {
    // Each curl also writes its status to stderr; `cargo run --release --` is the binary under
    // test.
    let script = format!(
        r#"curl() {{ command curl -w '%{{stderr}}@@HTTP %{{http_code}}\n' "$@"; }}
cargo() {{ if [ "$1 $2 $3" = "run --release --" ]; then shift 3; "{bin}" "$@"; else echo "@@UNEXPECTED cargo $*" >&2; return 1; fi; }}
{body}"#,
        bin = gateway.display(),
        body = block.replace(README_HOST, host),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("@@UNEXPECTED"),
        "{stderr}\n--- stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("@@HTTP ")?.trim().parse().ok())
        .collect()
}

/// Every block, in the order given; each curl's status checked against its comment.
fn run_all(cwd: &Path, host: &str, blocks: &[(usize, String)], gateway: &Path, pass: &str) {
    for (at, block) in blocks {
        let want = expected(*at, block);
        let got = run_block(cwd, host, block, gateway);
        assert_eq!(
            got.len(),
            want.len(),
            "README.md:{at} ({pass}): {} curl commands ran, {} expected; statuses {got:?}",
            got.len(),
            want.len()
        );
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if let Some(w) = w {
                assert_eq!(
                    w,
                    g,
                    "README.md:{at} ({pass}): curl command {} answered {g}, its comment says {w}",
                    i + 1
                );
            }
        }
    }
}

/// A copy of the repository's `conf/` in `dir`, the simulator's Diameter port chosen at run
/// time (the REST one is moved by the environment), the dictionaries linked.
fn newcomer_checkout(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::copy(
        root.join("conf/gateway.toml"),
        dir.join("conf/gateway.toml"),
    )
    .unwrap();
    let sim = std::fs::read_to_string(root.join("conf/ocs-sim.toml")).unwrap();
    assert!(
        sim.contains("listen = \"127.0.0.1:3868\""),
        "conf/ocs-sim.toml moved its port"
    );
    std::fs::write(
        dir.join("conf/ocs-sim.toml"),
        sim.replace("listen = \"127.0.0.1:3868\"", "listen = \"127.0.0.1:0\""),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("dictionaries"), dir.join("dictionaries")).unwrap();
    // conf/gateway.toml serves the demo catalog ([catalog] file) and the demo pool of numbers
    // and SIMs ([inventory] file).
    std::os::unix::fs::symlink(root.join("conf/catalog"), dir.join("conf/catalog")).unwrap();
    std::os::unix::fs::symlink(root.join("conf/inventory"), dir.join("conf/inventory")).unwrap();
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn every_try_it_block_answers_as_its_comments_say_twice_and_in_each_profile() {
    if !have("curl") || !have("bash") {
        assert!(
            std::env::var("CI").is_err(),
            "curl and bash are needed (CI=true: not skipped)"
        );
        eprintln!("SKIPPED: curl or bash missing");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = try_it_blocks(&readme);
    assert!(blocks.len() >= 4, "the Try it blocks: {}", blocks.len());
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    for profile in ["any", "rfc4006", "3gpp"] {
        let dir = TempDir::new(&format!("readme-{profile}"));
        newcomer_checkout(&dir.0);
        let env = [
            ("GATEWAY__HTTP__LISTEN", "127.0.0.1:0"),
            ("GATEWAY__OCS_SIM__PROFILE", profile),
        ];
        let gw = GatewayProcess::start_in(&dir.0, &env).await;
        run_all(
            &dir.0,
            &gw.host,
            &blocks,
            &gateway,
            &format!("{profile}, first run"),
        );
        gw.stop();
        // `N=$(date +%s)` keys the CAMARA block's requests: a new second for the second run.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let gw = GatewayProcess::start_in(&dir.0, &env).await;
        let reversed: Vec<_> = blocks.iter().rev().cloned().collect();
        run_all(
            &dir.0,
            &gw.host,
            &reversed,
            &gateway,
            &format!("{profile}, after a restart, in reverse order"),
        );
        gw.stop();
        // A clean start is one command away (with the gateway stopped).
        let out = Command::new(&gateway)
            .arg("reset")
            .current_dir(&dir.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("gateway.sqlite3") && text.contains("ocs-sim-journal.jsonl"),
            "{text}"
        );
        assert!(!dir.0.join("data/gateway.sqlite3").exists());
    }
}
