//! `pigeon-passwd` against the real thing: the files it writes are accepted by Debian's
//! `mosquitto` 2.0 broker, the files `mosquitto_passwd` writes are verified by
//! `pigeon_broker::auth::passwd`, and its messages and exit codes are `mosquitto_passwd`'s.
//!
//! Needs Debian's `mosquitto` package (the broker and `mosquitto_passwd`) besides
//! `mosquitto-clients`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use pigeon_broker::auth::passwd::{Credentials, PasswordFile};
use pigeon_test::{Broker, TempDir, mosquitto_pub, wait_until};

const PIGEON_PASSWD: &str = env!("CARGO_BIN_EXE_pigeon-passwd");

/// A program from Debian's `mosquitto` package, on `PATH` or in /usr/sbin.
fn mosquitto_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `apt-get install mosquitto` (Debian's broker package)")
        })
}

/// Runs `program` with `args` and `stdin` to completion.
fn run(program: impl AsRef<Path>, dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program.as_ref())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.as_ref().display()));
    let mut input = child.stdin.take().expect("stdin");
    // A program that fails early closes its end; its output tells the rest.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait")
}

/// `pigeon-passwd ARGS` in `dir`.
fn pigeon_passwd(dir: &Path, args: &[&str]) -> Output {
    run(PIGEON_PASSWD, dir, args, b"")
}

/// `pigeon-passwd ARGS` in `dir`, asserting success.
fn pigeon_passwd_ok(dir: &Path, args: &[&str]) {
    let out = pigeon_passwd(dir, args);
    assert!(
        out.status.success(),
        "pigeon-passwd {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn credentials(path: &Path) -> Credentials {
    let file = PasswordFile::parse_bytes(&fs::read(path).unwrap()).unwrap();
    let (credentials, errors) = file.credentials();
    assert!(errors.is_empty(), "{errors:?}");
    credentials
}

/// Debian's mosquitto broker with `allow_anonymous false` and `password_file`.
fn mosquitto_with_passwords(password_file: &Path) -> Broker {
    let binary = mosquitto_tool("mosquitto");
    let password_file = password_file.to_owned();
    Broker::start_with(&binary, move |port, dir| {
        let conf = dir.join("mosquitto.conf");
        // `user root`: the tests run as root, and Mosquitto would otherwise drop to the
        // `mosquitto` user, which may not be able to read the test's directory.
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
            password_file.display()
        );
        fs::write(&conf, text).expect("write mosquitto.conf");
        vec!["-c".to_owned(), conf.display().to_string()]
    })
}

fn assert_accepted(broker: &Broker, user: &str, password: &str) {
    let out = mosquitto_pub(broker, &["-u", user, "-P", password, "-t", "t", "-m", "x"]);
    assert!(
        out.status.success(),
        "{user}/{password} refused ({}): {}\nbroker log:\n{}",
        out.status,
        stderr(&out),
        broker.log()
    );
}

fn assert_refused(broker: &Broker, user: &str, password: &str) {
    let out = mosquitto_pub(broker, &["-u", user, "-P", password, "-t", "t", "-m", "x"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{user}/{password}: {}\nbroker log:\n{}",
        stderr(&out),
        broker.log()
    );
    assert!(stderr(&out).contains("not authorised"), "{}", stderr(&out));
}

#[test]
fn mosquitto_accepts_files_written_by_pigeon_passwd() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    // A plain-text file converted with -U, with a comment and a blank line, then edited.
    fs::write(d.join("passwd"), "# Users\n\nplain:converted\n").unwrap();
    pigeon_passwd_ok(d, &["-U", "passwd"]);
    pigeon_passwd_ok(d, &["-b", "passwd", "alice", "secret"]);
    pigeon_passwd_ok(d, &["-b", "passwd", "bob", "with space: $ and ü"]);
    pigeon_passwd_ok(d, &["-H", "sha512", "-b", "passwd", "carol", "legacy"]);
    pigeon_passwd_ok(
        d,
        &[
            "-H",
            "sha512-pbkdf2",
            "-I",
            "1000",
            "-b",
            "passwd",
            "dave",
            "x",
        ],
    );
    pigeon_passwd_ok(d, &["-b", "passwd", "eve", "first"]);
    pigeon_passwd_ok(d, &["-b", "passwd", "eve", "second"]);
    pigeon_passwd_ok(d, &["-b", "passwd", "gone", "gone"]);
    pigeon_passwd_ok(d, &["-D", "passwd", "gone"]);
    let text = fs::read_to_string(d.join("passwd")).unwrap();
    assert!(text.starts_with("# Users\n\nplain:$7$101$"), "{text}");
    assert!(text.contains("\ncarol:$6$"), "{text}");
    assert!(text.contains("\ndave:$7$1000$"), "{text}");

    let broker = mosquitto_with_passwords(&d.join("passwd"));
    assert_accepted(&broker, "plain", "converted");
    assert_accepted(&broker, "alice", "secret");
    assert_accepted(&broker, "bob", "with space: $ and ü");
    assert_accepted(&broker, "carol", "legacy");
    assert_accepted(&broker, "dave", "x");
    assert_accepted(&broker, "eve", "second");
    assert_refused(&broker, "alice", "wrong");
    assert_refused(&broker, "eve", "first");
    assert_refused(&broker, "gone", "gone");
    assert_refused(&broker, "nobody", "secret");
    assert!(!broker.log().contains("Error"), "{}", broker.log());
}

#[test]
fn files_written_by_mosquitto_passwd_are_verified_and_edited() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    let tool = mosquitto_tool("mosquitto_passwd");
    for args in [
        &["-c", "-b", "passwd", "alice", "secret"][..],
        &["-b", "passwd", "bob", "pässwörd: $7$"],
        &["-b", "passwd", "empty", ""],
        &["-H", "sha512", "-b", "passwd", "carol", "legacy"],
        &["-I", "1000", "-b", "passwd", "dave", "thousand"],
    ] {
        let out = run(&tool, d, args, b"");
        assert!(
            out.status.success(),
            "mosquitto_passwd {args:?}: {}",
            stderr(&out)
        );
    }
    let path = d.join("passwd");
    let check = |credentials: &Credentials| {
        assert!(credentials.verify("alice", b"secret"));
        assert!(credentials.verify("bob", "pässwörd: $7$".as_bytes()));
        assert!(credentials.verify("empty", b""));
        assert!(credentials.verify("carol", b"legacy"));
        assert!(credentials.verify("dave", b"thousand"));
        assert!(!credentials.verify("alice", b"Secret"));
        assert!(!credentials.verify("empty", b" "));
        assert!(!credentials.verify("carol", b"legacy "));
    };
    check(&credentials(&path));

    // pigeon-passwd's edits leave mosquitto_passwd's entries byte for byte.
    let before = fs::read_to_string(&path).unwrap();
    pigeon_passwd_ok(d, &["-b", "passwd", "frank", "new"]);
    let after = fs::read_to_string(&path).unwrap();
    assert!(after.starts_with(&before), "{before}\n---\n{after}");
    let credentials = credentials(&path);
    check(&credentials);
    assert!(credentials.verify("frank", b"new"));
}

#[test]
fn delete_removes_the_user_and_keeps_the_rest() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    pigeon_passwd_ok(d, &["-c", "-b", "passwd", "alice", "a"]);
    pigeon_passwd_ok(d, &["-b", "passwd", "bob", "b"]);
    let mut text = fs::read_to_string(d.join("passwd")).unwrap();
    text.insert_str(0, "# header\n\n");
    fs::write(d.join("passwd"), &text).unwrap();

    pigeon_passwd_ok(d, &["-D", "passwd", "alice"]);
    let after = fs::read_to_string(d.join("passwd")).unwrap();
    let bob_line = text.lines().find(|l| l.starts_with("bob:")).unwrap();
    assert_eq!(after, format!("# header\n\n{bob_line}\n"));

    let out = pigeon_passwd(d, &["-D", "passwd", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Warning: User alice not found in password file.\n"
    );
    assert_eq!(fs::read_to_string(d.join("passwd")).unwrap(), after);
}

#[test]
fn update_hashes_every_plain_text_password() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    fs::write(d.join("passwd"), "# plain\nalice:one\nbob:two:three\n\n").unwrap();
    pigeon_passwd_ok(d, &["-U", "passwd"]);
    let text = fs::read_to_string(d.join("passwd")).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], "# plain");
    assert!(lines[1].starts_with("alice:$7$101$"), "{text}");
    assert!(lines[2].starts_with("bob:$7$101$"), "{text}");
    assert_eq!(lines[3..], ["", ""]);
    let credentials = credentials(&d.join("passwd"));
    assert!(credentials.verify("alice", b"one"));
    assert!(credentials.verify("bob", b"two:three"));

    // -H applies to -U too.
    fs::write(d.join("legacy"), "carol:pw\n").unwrap();
    pigeon_passwd_ok(d, &["-H", "sha512", "-U", "legacy"]);
    let text = fs::read_to_string(d.join("legacy")).unwrap();
    assert!(text.starts_with("carol:$6$"), "{text}");
    assert!(credentials_of(&text).verify("carol", b"pw"));
}

fn credentials_of(text: &str) -> Credentials {
    PasswordFile::parse(text).unwrap().credentials().0
}

#[test]
fn batch_create_and_the_2_1_form() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    fs::write(d.join("passwd"), "old:entry\n").unwrap();
    // -c replaces an existing file.
    pigeon_passwd_ok(d, &["-c", "-b", "passwd", "alice", "secret"]);
    let text = fs::read_to_string(d.join("passwd")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let fields: Vec<&str> = text.trim_end().split('$').collect();
    assert_eq!(fields[..3], ["alice:", "7", "101"], "{text}");
    assert_eq!(fields[3].len(), 16, "a 12-byte salt: {text}");
    assert!(credentials_of(&text).verify("alice", b"secret"));

    // Batch mode takes an empty password, as mosquitto_passwd does.
    pigeon_passwd_ok(d, &["-b", "passwd", "empty", ""]);
    assert!(credentials(&d.join("passwd")).verify("empty", b""));

    pigeon_passwd_ok(d, &["--compat", "2.1", "-c", "-b", "new", "bob", "pw"]);
    let text = fs::read_to_string(d.join("new")).unwrap();
    let fields: Vec<&str> = text.trim_end().split('$').collect();
    assert_eq!(fields[..3], ["bob:", "7", "1000"], "{text}");
    assert_eq!(fields[3].len(), 88, "a 64-byte salt: {text}");
    assert!(credentials_of(&text).verify("bob", b"pw"));
}

#[test]
fn permissions_owner_and_symbolic_links_are_kept() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    let path = d.join("passwd");
    pigeon_passwd_ok(d, &["-c", "-b", "passwd", "alice", "a"]);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    // The tests run as root, which may give the file to anyone.
    let root = fs::metadata(&path).unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(&path, Some(4321), Some(8765)).unwrap();
    }
    let owner = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    let before = owner(&path);
    assert_eq!(before.0, 0o640);

    pigeon_passwd_ok(d, &["-b", "passwd", "bob", "b"]);
    assert_eq!(owner(&path), before);
    pigeon_passwd_ok(d, &["-D", "passwd", "alice"]);
    assert_eq!(owner(&path), before);
    pigeon_passwd_ok(d, &["-c", "-b", "passwd", "carol", "c"]);
    assert_eq!(
        owner(&path),
        before,
        "-c on an existing file keeps its mode too"
    );

    // Through a symbolic link: the target is edited, the link stays a link.
    symlink("passwd", d.join("link")).unwrap();
    pigeon_passwd_ok(d, &["-b", "link", "dave", "d"]);
    assert!(
        fs::symlink_metadata(d.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(owner(&path), before);
    let credentials = credentials(&path);
    assert!(credentials.verify("carol", b"c"));
    assert!(credentials.verify("dave", b"d"));

    // No temporary file is left behind.
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "passwd"]);
}

#[test]
fn a_failed_edit_leaves_the_file_alone() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    // A corrupt line: the whole file is refused, nothing is written (mosquitto_passwd 2.0
    // reports it, then truncates the file there).
    let corrupt = "alice:x\n# fine\nnot an entry\nbob:y\n";
    fs::write(d.join("passwd"), corrupt).unwrap();
    let out = pigeon_passwd(d, &["-b", "passwd", "carol", "pw"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: Corrupt password file at line 3 (no ':' between username and password).\n"
    );
    assert_eq!(fs::read_to_string(d.join("passwd")).unwrap(), corrupt);

    // A file that cannot be written: the target is a directory.
    fs::create_dir(d.join("dir")).unwrap();
    let out = pigeon_passwd(d, &["-c", "-b", "dir", "u", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: Unable to open file dir for writing. Is a directory.\n"
    );
    let out = pigeon_passwd(d, &["-c", "-b", "missing/passwd", "u", "p"]);
    assert_eq!(
        stderr(&out),
        "Error: Unable to open file missing/passwd for writing. No such file or directory.\n"
    );
}

#[test]
fn interactive_passwords_are_asked_twice() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    let out = run(
        PIGEON_PASSWD,
        d,
        &["-c", "passwd", "alice"],
        b"secret\nsecret\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Password: \nReenter password: \n"
    );
    assert!(credentials(&d.join("passwd")).verify("alice", b"secret"));

    let out = run(PIGEON_PASSWD, d, &["passwd", "bob"], b"one\ntwo\n");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "Error: Passwords do not match.\n");
    assert!(!credentials(&d.join("passwd")).contains("bob"));

    for input in [&b"\n"[..], b""] {
        let out = run(PIGEON_PASSWD, d, &["passwd", "bob"], input);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out), "Error: Empty password.\n");
    }
    let out = run(PIGEON_PASSWD, d, &["-c", "new", "bob"], b"x\ny\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.join("new").exists(), "nothing written after a mismatch");
}

/// On a terminal, the password is not echoed: `pigeon-passwd` runs on a pseudo-terminal
/// and the test types at the prompts.
#[test]
fn passwords_typed_on_a_terminal_are_not_echoed() {
    let dir = TempDir::new("passwd");
    let d = dir.path();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = {
        let slave = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        Command::new(PIGEON_PASSWD)
            .args(["-c", "passwd", "alice"])
            .current_dir(d)
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("spawn pigeon-passwd")
    };
    drop(pty.slave);
    let mut master = fs::File::from(pty.master);
    let screen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let mut master = master.try_clone().expect("dup master");
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0; 256];
            // Ends with EIO once pigeon-passwd has exited and closed the terminal.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    assert!(wait_until(|| shown().contains("Password: ")), "{}", shown());
    master.write_all(b"hunter2\n").unwrap();
    assert!(
        wait_until(|| shown().contains("Reenter password: ")),
        "{}",
        shown()
    );
    master.write_all(b"hunter2\n").unwrap();
    let status = child.wait().expect("wait");
    reader.join().unwrap();
    assert!(status.success(), "{status}: {}", shown());
    assert_eq!(shown(), "Password: \r\nReenter password: \r\n");
    assert!(credentials(&d.join("passwd")).verify("alice", b"hunter2"));
}

/// The same command line given to `mosquitto_passwd` and `pigeon-passwd`, each in a directory
/// of its own holding the same files, gives the same exit code and standard error (and, for
/// the usage text, both print it on standard output).
#[test]
fn messages_and_exit_codes_are_mosquitto_passwds() {
    let tool = mosquitto_tool("mosquitto_passwd");
    let cases: &[&[&str]] = &[
        &[],
        &["passwd"],
        &["-b", "passwd", "alice"],
        &["-Z", "passwd", "alice"],
        &["-c"],
        &["-c", "passwd"],
        &["-D", "passwd"],
        &["-U"],
        &["-H"],
        &["-I"],
        &["-H", "md5", "-b", "passwd", "alice", "pw"],
        &["-I", "0", "-b", "passwd", "alice", "pw"],
        &["-I", "-3", "-b", "passwd", "alice", "pw"],
        &["-c", "-D", "passwd", "alice"],
        &["-b", "-D", "passwd", "alice"],
        &["-c", "-U", "passwd"],
        &["-D", "-U", "passwd"],
        &["-b", "missing", "alice", "pw"],
        &["-D", "missing", "alice"],
        &["-U", "missing"],
        &["-b", "passwd", "al:ice", "pw"],
        &["-b", "passwd", "al\nice", "pw"],
        &["-D", "passwd", "nobody"],
        &["-D", "passwd", "alice"],
        &["-b", "passwd", "bob", "pw"],
        &["-c", "-b", "passwd", "bob", "pw"],
        &["-H", "sha512", "-b", "passwd", "bob", "pw"],
        &["-U", "passwd"],
        &["-b", "-U", "passwd"],
        &["-U", "-H", "sha512", "passwd"],
        &["-c", "-b", "passwd", "bob"],
        &["-c", "-b", "passwd"],
        &["-b", "-c"],
        &["-I", "5", "passwd"],
    ];
    for args in cases {
        let mut outputs = Vec::new();
        for program in [tool.as_path(), Path::new(PIGEON_PASSWD)] {
            let dir = TempDir::new("passwd-compare");
            fs::write(dir.path().join("passwd"), "alice:plain\n").unwrap();
            let out = run(program, dir.path(), args, b"");
            outputs.push((out.status.code(), stderr(&out), !out.stdout.is_empty()));
        }
        assert_eq!(
            outputs[1], outputs[0],
            "pigeon-passwd vs mosquitto_passwd {args:?}"
        );
    }
}
