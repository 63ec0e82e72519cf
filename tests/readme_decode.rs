//! The "Decoding a message" section of README.md works as written: every command of its `sh`
//! block runs, from the repository's root, on the files that ship with it (`cargo run
//! --release --` stands for the `gateway` binary this test was built with), and the `text`
//! block that follows is what the first command prints.

use std::path::Path;
use std::process::Command;

/// The section of `readme` under `heading`, up to the next heading of the same level.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let body = &readme[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// The fenced code blocks of `text`: (language, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Whether `tool` is on the PATH.
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_readme_decode_commands_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = blocks(section(&readme, "## Decoding a message"));
    let sh = blocks
        .iter()
        .position(|(lang, _)| lang == "sh")
        .expect("a sh block");
    let (_, commands) = &blocks[sh];
    let (lang, first_output) = blocks.get(sh + 1).expect("the output after the commands");
    assert_eq!(lang, "text");
    let commands: Vec<&str> = commands
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    let bin = env!("CARGO_BIN_EXE_gateway");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut outputs = Vec::new();
    for command in &commands {
        assert!(
            command.contains("cargo run --release -- decode"),
            "not a decode command: {command}"
        );
        // Tools other than cargo that the command pipes from (xxd, od).
        let tools: Vec<&str> = command
            .split('|')
            .filter_map(|stage| stage.split_whitespace().next())
            .filter(|t| *t != "cargo")
            .collect();
        if let Some(missing) = tools.iter().find(|t| !have(t)) {
            assert!(!ci, "{missing} is not installed (CI=true): {command}");
            println!("SKIPPED: {missing} is not installed: {command}");
            continue;
        }
        let shell = command.replace("cargo run --release --", &format!("'{bin}'"));
        let out = Command::new("sh")
            .args(["-c", &shell])
            .current_dir(root)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{command}\nexit {:?}\n{stderr}",
            out.status
        );
        if command.contains("--json") {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["header"]["version"], 1, "{command}: {v}");
            assert!(v["avps"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
        } else {
            let head = stdout.lines().next().unwrap_or_default();
            assert!(
                head.contains(" code=") && head.contains(" length="),
                "{command}: {stdout}"
            );
            assert!(!stdout.contains("malformed"), "{command}: {stdout}");
        }
        outputs.push((*command, stdout));
    }
    // The block after the commands is what the first one prints.
    let (first, printed) = outputs.first().expect("the first command ran");
    assert!(
        first.contains("decode 01"),
        "the first takes its hex as an argument"
    );
    assert_eq!(printed.trim_end(), first_output.trim_end());
    // Every form of conf/examples/ccr_event.bin (raw, xxd, od) decodes to the same text.
    let same: Vec<&String> = outputs
        .iter()
        .filter(|(c, _)| c.contains("conf/examples/ccr_event.bin") && !c.contains("--json"))
        .map(|(_, o)| o)
        .collect();
    assert!(!same.is_empty());
    assert!(same.windows(2).all(|w| w[0] == w[1]), "{same:#?}");
    if !ci && same.len() < 3 {
        println!(
            "SKIPPED: only {} forms of ccr_event.bin compared",
            same.len()
        );
    } else {
        assert_eq!(same.len(), 3);
    }
}
