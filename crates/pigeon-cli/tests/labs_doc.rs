//! docs/labs.md, run: every command block of the guide runs against a broker on a free port,
//! and the output the guide shows is compared with what the commands print.
//!
//! The guide marks its blocks with HTML comments (invisible when rendered), each followed by
//! the fenced block it applies to, except `stop`:
//!
//! - `<!-- test: file NAME -->`: write the block to NAME in the working directory;
//! - `<!-- test: start NAME [wait="PROC:TEXT"] -->`: start the block's command in the
//!   background as process NAME, then wait until process PROC has printed TEXT once more;
//! - `<!-- test: run [status=N] -->`: run each line of the block, each must exit with N (0);
//! - `<!-- test: output [NAME] [exact] -->`: the block is what process NAME (or the last
//!   `run`) printed: its lines, in order, among the printed ones, or exactly them;
//! - `<!-- test: stop NAME -->`: Ctrl-C (SIGINT) to process NAME;
//! - `<!-- test: skip (REASON) -->`: the block is not run, for the reason given.
//!
//! A fenced block without a marker fails the test, so no command of the guide goes unchecked.
//! Commands run with `sh -c` in a temporary directory, with this build's binaries first on
//! PATH. The guide uses Mosquitto's port, 1883 (and 1884 for WebSockets); the test puts free ports in their place
//! (and adds `-p PORT` to clients and the configless broker), and puts 1883 back in what the
//! commands print. Timestamps, client ports, generated client ids and the version number are
//! left out of the comparison.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use pigeon_test::{Background, PATIENCE, TempDir, free_port, wait_until};

const GUIDE: &str = include_str!("../../../docs/labs.md");

/// One marked block of the guide.
#[derive(Debug)]
struct Step {
    line: usize,
    kind: String,
    args: Vec<String>,
    body: Option<String>,
}

impl Step {
    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"'))
    }

    fn name(&self) -> Option<&str> {
        self.args
            .first()
            .map(String::as_str)
            .filter(|a| !a.contains('='))
    }

    fn body(&self) -> &str {
        self.body
            .as_deref()
            .unwrap_or_else(|| panic!("line {}: {} needs a code block", self.line, self.kind))
    }
}

/// The guide's steps; panics on a fenced block without a marker.
fn steps(text: &str) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut pending: Option<Step> = None;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(marker) = line
            .strip_prefix("<!-- test:")
            .and_then(|m| m.strip_suffix("-->"))
        {
            if let Some(step) = pending.take() {
                steps.push(step);
            }
            let mut words = marker.trim().splitn(2, ' ');
            let kind = words.next().unwrap_or_default().to_owned();
            let rest = words.next().unwrap_or_default().trim();
            let args = if kind == "skip" {
                assert!(
                    rest.starts_with('(') && rest.len() > 2,
                    "line {}: a skip says why",
                    i + 1
                );
                vec![rest.to_owned()]
            } else {
                split_args(rest)
            };
            pending = Some(Step {
                line: i + 1,
                kind,
                args,
                body: None,
            });
        } else if line.starts_with("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].trim_start().starts_with("```") {
                end += 1;
            }
            let body = lines[start..end].join("\n");
            match pending.take() {
                Some(mut step) if step.kind != "stop" => {
                    step.body = Some(body);
                    steps.push(step);
                }
                other => panic!(
                    "docs/labs.md line {}: a code block without a test marker ({other:?})",
                    i + 1
                ),
            }
            i = end;
        }
        i += 1;
    }
    steps.extend(pending);
    steps
}

/// Words, with "double-quoted" parts kept together.
fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ' ' if !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

/// A command of the guide, made to use `port` (and `ws_port` for the guide's 1884).
fn adapt(command: &str, port: u16, ws_port: u16) -> String {
    let command = command
        .replace("1883", &port.to_string())
        .replace("1884", &ws_port.to_string());
    let (program, rest) = command.split_once(' ').unwrap_or((&command, ""));
    let words: Vec<&str> = rest.split_whitespace().collect();
    let needs_port = match program {
        "pigeon-sub" | "pigeon-pub" | "pigeon-rr" => {
            !words.contains(&"-p") && !words.contains(&"-L")
        }
        "pigeon" => !words.contains(&"-c") && !words.contains(&"-p") && !words.contains(&"-h"),
        _ => false,
    };
    if needs_port {
        format!("{program} -p {port} {rest}")
    } else {
        command
    }
}

/// A line without what changes from run to run.
fn normalize(line: &str) -> String {
    let mut line = line.trim();
    // "1764726000: " timestamps.
    if let Some((stamp, rest)) = line.split_once(": ")
        && !stamp.is_empty()
        && stamp.bytes().all(|b| b.is_ascii_digit())
    {
        line = rest.trim();
    }
    let mut out = String::new();
    let mut rest = line;
    loop {
        let next = [("127.0.0.1:", 0), ("auto-", 1), ("version ", 2)]
            .iter()
            .filter_map(|&(pat, kind)| rest.find(pat).map(|at| (at, pat, kind)))
            .min();
        let Some((at, pat, kind)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at + pat.len()]);
        rest = &rest[at + pat.len()..];
        let keep = |c: char| match kind {
            0 => c.is_ascii_digit(),
            1 => c.is_ascii_hexdigit() || c == '-',
            _ => c.is_ascii_digit() || c == '.',
        };
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        if len > 0 {
            out.push('*');
        }
        rest = &rest[len..];
    }
    out
}

/// Whether `expected` (normalized lines) is found in `actual`: in order, or exactly.
fn matches(expected: &[String], actual: &str, exact: bool) -> bool {
    let actual: Vec<String> = actual.lines().map(normalize).collect();
    if exact {
        return actual == expected;
    }
    let mut it = actual.iter();
    expected.iter().all(|e| it.any(|a| a == e))
}

struct Lab {
    port: u16,
    /// The port standing for the guide's WebSockets port, 1884.
    ws_port: u16,
    dir: TempDir,
    path: std::ffi::OsString,
    processes: HashMap<String, Background>,
    last: String,
    /// The guide's files, written again with each broker's port.
    files: Vec<(String, String)>,
}

impl Lab {
    fn new() -> Lab {
        let bin = Path::new(env!("CARGO_BIN_EXE_pigeon"))
            .parent()
            .expect("the binaries' directory")
            .to_path_buf();
        let mut paths = vec![bin];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Lab {
            port: free_port(),
            ws_port: free_port(),
            dir: TempDir::new("labs-doc"),
            path: std::env::join_paths(paths).unwrap(),
            processes: HashMap::new(),
            last: String::new(),
            files: Vec::new(),
        }
    }

    fn shell(&self, command: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("exec {}", adapt(command, self.port, self.ws_port)),
        ])
        .current_dir(self.dir.path())
        .env("PATH", &self.path);
        cmd
    }

    /// The output of process `name` (or the last run), with the ports put back to 1883 and
    /// 1884.
    fn output_of(&self, name: Option<&str>) -> String {
        let text = match name {
            Some(n) => self.process(n).output(),
            None => self.last.clone(),
        };
        text.replace(&self.port.to_string(), "1883")
            .replace(&self.ws_port.to_string(), "1884")
    }

    fn process(&self, name: &str) -> &Background {
        self.processes
            .get(name)
            .unwrap_or_else(|| panic!("no process {name:?} started"))
    }

    fn everything(&self) -> String {
        let mut all = String::new();
        for (name, p) in &self.processes {
            all.push_str(&format!("--- {name}:\n{}\n", p.output()));
        }
        all
    }

    fn write_files(&self) {
        for (name, body) in &self.files {
            let text = body
                .replace("1883", &self.port.to_string())
                .replace("1884", &self.ws_port.to_string());
            std::fs::write(self.dir.path().join(name), text + "\n").unwrap();
        }
    }

    /// Starts the broker on a free port: a new one for each start, and again when another
    /// test took it meanwhile (tests run in parallel; a port is only ours while we listen).
    fn start_broker(&mut self, name: &str, command: &str, at: &str) {
        let mut outputs = String::new();
        for _ in 0..20 {
            self.port = free_port();
            self.ws_port = free_port();
            self.write_files();
            let mut p = Background::spawn(&mut self.shell(command), name);
            wait_until(|| p.output().contains(" running") || p.output().contains("in use"));
            if p.output().contains("in use") {
                p.kill();
                outputs.push_str(&p.output());
                continue;
            }
            self.processes.insert(name.to_owned(), p);
            return;
        }
        panic!("{at}: no free port for the broker:\n{outputs}");
    }

    fn step(&mut self, step: &Step) {
        let at = format!("docs/labs.md line {}", step.line);
        match step.kind.as_str() {
            "skip" => {}
            "file" => {
                let name = step.name().expect("file NAME");
                self.files.push((name.to_owned(), step.body().to_owned()));
                self.write_files();
            }
            "start" => {
                let name = step.name().expect("start NAME").to_owned();
                let wait = step.arg("wait").map(|w| {
                    let (proc_name, text) = w.split_once(':').expect("wait=PROC:TEXT");
                    let before = if proc_name == name {
                        0
                    } else {
                        self.process(proc_name).output().matches(text).count()
                    };
                    (proc_name.to_owned(), text.to_owned(), before)
                });
                let command = step.body().trim();
                if command == "pigeon" || command.starts_with("pigeon ") {
                    self.start_broker(&name, command, &at);
                } else {
                    let p = Background::spawn(&mut self.shell(command), &name);
                    self.processes.insert(name, p);
                }
                if let Some((proc_name, text, before)) = wait {
                    assert!(
                        wait_until(
                            || self.process(&proc_name).output().matches(&*text).count() > before
                        ),
                        "{at}: {proc_name} did not print {text:?}:\n{}",
                        self.everything()
                    );
                }
            }
            "run" => {
                let status: i32 = step.arg("status").map_or(0, |s| s.parse().unwrap());
                self.last.clear();
                for command in step.body().lines().filter(|l| !l.trim().is_empty()) {
                    let mut p = Background::spawn(&mut self.shell(command), command);
                    let done = p.wait_exit(PATIENCE);
                    self.last.push_str(&p.stdout());
                    self.last.push_str(&p.stderr());
                    assert_eq!(
                        done.and_then(|s| s.code()),
                        Some(status),
                        "{at}: {command:?} printed:\n{}\n{}",
                        p.output(),
                        self.everything()
                    );
                }
            }
            "output" => {
                let exact = step.args.iter().any(|a| a == "exact");
                let name = step.name().filter(|&n| n != "exact");
                let expected: Vec<String> = step.body().lines().map(normalize).collect();
                let ok = wait_until(|| matches(&expected, &self.output_of(name), exact));
                assert!(
                    ok,
                    "{at}: the guide shows\n{}\nbut {} printed\n{}",
                    step.body(),
                    name.unwrap_or("the last command"),
                    self.output_of(name)
                );
            }
            "stop" => {
                let name = step.name().expect("stop NAME");
                let p = self
                    .processes
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("{at}: no process {name}"));
                p.signal("INT");
                assert!(p.wait_exit(PATIENCE).is_some(), "{at}: {name} did not stop");
            }
            other => panic!("{at}: unknown marker {other:?}"),
        }
    }
}

#[test]
fn every_command_of_the_labs_guide_works_as_shown() {
    let steps = steps(GUIDE);
    assert!(
        steps.iter().filter(|s| s.kind == "run").count() >= 6,
        "{steps:?}"
    );
    let mut lab = Lab::new();
    for step in &steps {
        lab.step(step);
    }
}

#[test]
fn normalize_leaves_out_what_changes_between_runs() {
    assert_eq!(
        normalize(
            "1764726001: New client connected from 127.0.0.1:50312 as \
             auto-6C1F6A7E-1B9C-4E49-A1B3-7B8B0E65A1D2 (p2, c1, k60)."
        ),
        "New client connected from 127.0.0.1:* as auto-* (p2, c1, k60)."
    );
    assert_eq!(
        normalize("$SYS/broker/version pigeon version 0.1.0"),
        "$SYS/broker/version pigeon version *"
    );
    assert_eq!(
        adapt("pigeon-sub -t a", 4242, 4343),
        "pigeon-sub -p 4242 -t a"
    );
    assert_eq!(
        adapt("pigeon -c pigeon.conf -v", 4242, 4343),
        "pigeon -c pigeon.conf -v"
    );
    assert_eq!(adapt("pigeon -v", 4242, 4343), "pigeon -p 4242 -v");
    assert_eq!(
        adapt("pigeon-sub -L ws://localhost:1884/t -v", 4242, 4343),
        "pigeon-sub -L ws://localhost:4343/t -v"
    );
    assert!(!matches(&["b".into(), "a".into()], "a\nb\n", false));
    assert!(matches(&["a".into(), "c".into()], "a\nb\nc\n", false));
}
