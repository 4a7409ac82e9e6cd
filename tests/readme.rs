//! The README's shell blocks, run as a newcomer would paste them: in order, in one shell,
//! in a fresh directory, against the binary under test.
//!
//! Each ```` ```sh ```` block of README.md is preceded by a directive that says how:
//!
//! - `<!-- readme-test: run -->`: run in the shared shell, so variables and `PATH`
//!   carry on to the next block, as in a terminal;
//! - `<!-- readme-test: background until "TEXT" -->`: a long-running command (the dev
//!   cluster), started in the background; the next block waits until it prints TEXT;
//! - `<!-- readme-test: skip, REASON -->`: not run, for the reason given.
//!
//! A block without a directive fails the test, so a new block cannot slip past it.
//! Two programs are stood in for: `cargo`, whose `run`/`build`/`install` of this
//! repository are answered by the binary already built for the tests, and `ffplay`,
//! which needs a display, by `ffprobe` reading the same URL (it must find video there).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::require_ffmpeg;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// The whole walk-through is a minute of work; anything near this limit is a hang.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// How a block is run.
#[derive(Debug, PartialEq)]
enum Directive {
    Run,
    Background { until: String },
    Skip,
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    directive: Directive,
    code: String,
}

/// Every ```` ```sh ```` block of `readme` with its directive, or the lines of blocks
/// without a (valid) one.
fn blocks(readme: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let line = i + 1;
        let directive = i
            .checked_sub(1)
            .map(|p| lines[p].trim())
            .and_then(|d| d.strip_prefix("<!-- readme-test:"))
            .and_then(|d| d.strip_suffix("-->"))
            .map(str::trim)
            .and_then(|d| {
                if d == "run" {
                    Some(Directive::Run)
                } else if d.starts_with("skip, ") {
                    Some(Directive::Skip)
                } else {
                    d.strip_prefix("background until \"")
                        .and_then(|t| t.strip_suffix('"'))
                        .map(|t| Directive::Background { until: t.into() })
                }
            });
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.trim_end() == "```")
            .map(|p| i + 1 + p);
        let Some(end) = end else {
            errors.push(format!("README.md line {line}: the block is never closed"));
            break;
        };
        match directive {
            Some(directive) => blocks.push(Block {
                line,
                directive,
                code: lines[i + 1..end].join("\n"),
            }),
            None => errors.push(format!(
                "README.md line {line}: no `<!-- readme-test: run | background until \"TEXT\" \
                 | skip, REASON -->` on the line before the block"
            )),
        }
        i = end + 1;
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors.join("\n"))
    }
}

/// The README as one shell script: `run` blocks inline, `background` blocks started
/// with their output in `background-N.log` and waited for.
fn script(blocks: &[Block]) -> String {
    let mut script = String::from(
        r#"set -euo pipefail
# wait_for FILE TEXT: until FILE holds TEXT (at most 180 s).
wait_for() {
  local deadline=$((SECONDS + 180))
  until grep -qF -- "$2" "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "readme test: \"$2\" never appeared in $1:" >&2
      cat "$1" >&2
      exit 1
    fi
    sleep 0.5
  done
}
"#,
    );
    for (n, block) in blocks.iter().enumerate() {
        match &block.directive {
            Directive::Skip => continue,
            Directive::Run => {
                script.push_str(&format!(
                    "echo '>>> README.md line {}' >&2\n{}\n",
                    block.line, block.code
                ));
            }
            Directive::Background { until } => {
                script.push_str(&format!(
                    "echo '>>> README.md line {line} (in the background)' >&2\n\
                     ( {code}\n) > background-{n}.log 2>&1 &\n\
                     wait_for background-{n}.log {until:?}\n",
                    line = block.line,
                    code = block.code,
                ));
            }
        }
    }
    script.push_str("echo '>>> README.md done' >&2\n");
    script
}

/// `cargo` for the README's uses of it, answered by the binary under test.
fn cargo_stand_in() -> String {
    format!(
        r#"#!/bin/sh
# The README's cargo commands, answered by the binary the tests built.
case "$1 $2" in
  "run --release") shift 2; [ "${{1:-}}" = "--" ] && shift; exec {BIN:?} "$@" ;;
  "build --release") exit 0 ;;
  "install --path") exit 0 ;;
  *) echo "readme test: no stand-in for cargo $*" >&2; exit 1 ;;
esac
"#
    )
}

/// `ffplay`, which needs a display: ffprobe reads the same URL and must find video.
const FFPLAY_STAND_IN: &str = r#"#!/bin/sh
# ffplay needs a display; check what it would show with ffprobe instead.
url=""
for a in "$@"; do url="$a"; done
out=$(timeout 40 ffprobe -v error -show_entries stream=codec_type -of csv=p=0 "$url") || {
  echo "readme test: ffprobe could not read $url" >&2; exit 1; }
echo "$out" | grep -q video || { echo "readme test: no video at $url: $out" >&2; exit 1; }
echo "played $url:" $out
"#;

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Copies `from` (a directory of files and directories) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_shell_block_has_a_directive() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks = blocks(&readme).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        blocks
            .iter()
            .filter(|b| b.directive != Directive::Skip)
            .count()
            >= 4,
        "the walk-through is run: {blocks:?}"
    );
}

#[test]
fn a_block_without_a_directive_is_refused() {
    let text = "intro\n```sh\necho hi\n```\n";
    let error = blocks(text).unwrap_err();
    assert!(error.contains("line 2"), "{error}");
}

/// The README's walk-through, pasted in order into one shell in a fresh directory: the
/// dev cluster, publish and play, the entry commands, and the two-site cluster by hand.
#[test]
fn the_readme_walk_through_works_when_pasted() {
    require_ffmpeg();
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "the README's walk-through needs curl (.ci/run installs it)"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let blocks = blocks(&readme).unwrap_or_else(|e| panic!("{e}"));

    // A fresh directory with what a clone has that the blocks use (`config/`), and the
    // build's binary where `cargo build --release` leaves it.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo.join("config"), &dir.path().join("config"));
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(BIN, dir.path().join("target/release/longhaul")).unwrap();
    let stand_ins = dir.path().join("stand-ins");
    std::fs::create_dir_all(&stand_ins).unwrap();
    write_executable(&stand_ins.join("cargo"), &cargo_stand_in());
    write_executable(&stand_ins.join("ffplay"), FFPLAY_STAND_IN);
    let script_path = dir.path().join("readme.sh");
    std::fs::write(&script_path, script(&blocks)).unwrap();

    let path = format!(
        "{}:{}",
        stand_ins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut shell = std::os::unix::process::CommandExt::process_group(
        Command::new("bash")
            .arg(&script_path)
            .current_dir(dir.path())
            .env("PATH", path)
            .env_remove("LONGHAUL_API")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap()),
        0,
    )
    .spawn()
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = shell.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Whatever happened, end everything the walk-through started (the dev cluster, the
    // nodes and encoders in the background): the shell's whole process group.
    // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
    unsafe {
        libc::kill(-(shell.id() as i32), libc::SIGTERM);
    }
    let _ = shell.wait();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let logs = || {
        let mut logs = String::new();
        for name in ["background-0.log", "hand/nyc.log", "hand/fra.log"] {
            let text = read(&dir.path().join(name));
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            logs.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.into_iter().rev() {
                logs.push_str(l);
                logs.push('\n');
            }
        }
        logs
    };
    let (out, err) = (read(&stdout), read(&stderr));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "the README's blocks failed ({s}):\n--- stdout\n{out}\n--- stderr\n{err}\n{}",
            logs()
        ),
        None => panic!(
            "the README's blocks took over {SCRIPT_LIMIT:?}:\n--- stdout\n{out}\n--- stderr\n{err}\n{}",
            logs()
        ),
    }
    assert!(err.contains(">>> README.md done"), "{err}");
    // Both plays in "Publish and play" and the one by hand found video.
    assert_eq!(out.matches("played ").count(), 3, "{out}");
    assert!(out.contains("played http://127.0.0.1:18081/live/"), "{out}");
}
