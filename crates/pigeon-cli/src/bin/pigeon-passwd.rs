//! `pigeon-passwd`: manages password files for Pigeon and Mosquitto, as `mosquitto_passwd`
//! does, with the same options, messages and exit codes.
//!
//! Differences from `mosquitto_passwd` 2.0: comments and blank lines are kept when a file is
//! edited (2.0 reports them as corrupt and drops the rest of the file); a corrupt file is left
//! alone and the program fails; edits go to a temporary file in the same directory that then
//! replaces the original (keeping its permissions and owner, and writing through a symbolic
//! link to its target), so the file is never half-written; usernames that the broker could
//! not read back (empty, not UTF-8, starting with white space or `#`) are refused; extra
//! arguments are an error rather than ignored; `-h` and `--help` print the usage and exit with
//! 0. `--compat 2.1` writes Mosquitto 2.1's form (1000 iterations, 64-byte salt).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::termios::{self, LocalFlags, SetArg};
use pigeon_broker::auth::passwd::{
    self, Algorithm, HashParams, MAX_LEN, PasswordFile, UsernameError,
};

const USAGE: &str = "\
pigeon-passwd manages password files for Pigeon and Mosquitto brokers.

Usage: pigeon-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [--compat 2.0|2.1] [-c | -D] passwordfile username
       pigeon-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [--compat 2.0|2.1] [-c] -b passwordfile username password
       pigeon-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [--compat 2.0|2.1] -U passwordfile
 -b : batch mode: the password is taken from the command line, where other users and the
      shell history can see it.
 -c : create a new password file; an existing one is replaced.
 -D : delete the user instead of adding it or changing its password.
 -H : the hash: sha512-pbkdf2 ($7$, the default) or sha512 ($6$, for Mosquitto 1.6 and
      earlier).
 -I : the number of PBKDF2 iterations (default 101).
 -U : replace the plain-text passwords of a password file by hashes. Every entry is hashed,
      already hashed ones too, so run it once only.
 --compat 2.1 : write Mosquitto 2.1's form of sha512-pbkdf2 (1000 iterations unless -I says
      otherwise, a 64-byte salt), which Mosquitto 2.0 cannot read. 2.0 is the default.
 -h, --help : show this help.

Comments (lines starting with #) and blank lines are kept.
";

/// How the program ends: a message for standard error and an exit code, or the usage text.
#[derive(Debug)]
enum Failure {
    /// The message (without a final newline) and the exit code.
    Error(String, u8),
    /// Print the usage on standard output and exit with 1.
    Usage,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure::Error(message.into(), 1)
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Add the user or change its password (`-c` to start a new file).
    Set { create: bool },
    /// `-D`.
    Delete,
    /// `-U`.
    Hash,
}

#[derive(Debug)]
struct Command {
    mode: Mode,
    params: HashParams,
    file: PathBuf,
    username: Option<OsString>,
    /// The password given on the command line (`-b`).
    password: Option<OsString>,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match parse_args(args) {
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(command)) => run(&command),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage) => {
            print!("{USAGE}");
            ExitCode::from(1)
        }
        Err(Failure::Error(message, code)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

/// Reads the command line; `None` for `-h`/`--help`. Options come first, as with
/// `mosquitto_passwd`: the first argument that is not one starts the positional ones.
fn parse_args(args: Vec<OsString>) -> Result<Option<Command>> {
    let mut args = args.into_iter().peekable();
    let (mut batch, mut create, mut delete, mut hash) = (false, false, false, false);
    let mut algorithm = Algorithm::Sha512Pbkdf2;
    let mut iterations = None;
    let mut compat = HashParams::MOSQUITTO_2_0;
    while let Some(arg) = args.peek() {
        let option = arg.as_bytes();
        if option.len() < 2 || option[0] != b'-' {
            break;
        }
        let option = option.to_vec();
        args.next();
        let mut value = |name: &str| {
            args.next().ok_or_else(|| {
                Failure::new(format!(
                    "Error: {name} argument given but not enough other arguments."
                ))
            })
        };
        match option.as_slice() {
            b"--" => break,
            b"-h" | b"--help" => return Ok(None),
            b"-b" => batch = true,
            b"-c" => create = true,
            b"-D" => delete = true,
            b"-U" => hash = true,
            b"-H" => {
                let name = value("-H")?;
                let name = name.to_string_lossy();
                algorithm = Algorithm::from_name(&name)
                    .ok_or_else(|| Failure::new(format!("Error: Unknown hash type '{name}'")))?;
            }
            b"-I" => iterations = Some(parse_iterations(&value("-I")?)?),
            b"--compat" => compat = parse_compat(&value("--compat")?)?,
            _ => {
                if let Some(version) = option.strip_prefix(b"--compat=") {
                    compat = parse_compat(OsStr::from_bytes(version))?;
                } else {
                    return Err(Failure::Usage);
                }
            }
        }
    }
    let positional: Vec<OsString> = args.collect();

    for (a, b, both) in [
        (create, delete, "-c and -D"),
        (batch, delete, "-b and -D"),
        (create, hash, "-c and -U"),
        (delete, hash, "-D and -U"),
    ] {
        if a && b {
            return Err(Failure::new(format!(
                "Error: {both} cannot be used together."
            )));
        }
    }
    let mode = if hash {
        if positional.len() != 1 {
            return Err(Failure::new(
                "Error: -U argument given but password file missing.",
            ));
        }
        Mode::Hash
    } else if delete {
        Mode::Delete
    } else {
        Mode::Set { create }
    };
    let missing = |flag: &str| {
        Failure::new(format!(
            "Error: {flag} argument given but password file or username missing."
        ))
    };
    if create && batch && positional.len() < 3 {
        return Err(Failure::new(
            "Error: -c argument given but password file, username, or password missing.",
        ));
    }
    if positional.len() < 2 && mode != Mode::Hash {
        if create {
            return Err(missing("-c"));
        }
        if delete {
            return Err(missing("-D"));
        }
    }
    let wanted = match mode {
        Mode::Hash => 1,
        _ if batch => 3,
        _ => 2,
    };
    if positional.len() != wanted {
        return Err(Failure::Usage);
    }

    let params = HashParams {
        algorithm,
        iterations: iterations.unwrap_or(compat.iterations),
        salt_len: compat.salt_len,
    };
    let mut positional = positional.into_iter();
    Ok(Some(Command {
        mode,
        params,
        file: positional.next().map(PathBuf::from).unwrap_or_default(),
        username: positional.next(),
        password: positional.next(),
    }))
}

fn parse_iterations(value: &OsStr) -> Result<NonZeroU32> {
    let text = value.to_string_lossy();
    let positive = || Failure::new("Error: Number of iterations must be > 0.");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(positive());
    }
    match text.parse::<u32>() {
        Ok(n) => NonZeroU32::new(n).ok_or_else(positive),
        Err(_) => Err(Failure::new(
            "Error: Number of iterations must be at most 4294967295.",
        )),
    }
}

fn parse_compat(value: &OsStr) -> Result<HashParams> {
    match value.as_bytes() {
        b"2.0" => Ok(HashParams::MOSQUITTO_2_0),
        b"2.1" => Ok(HashParams::MOSQUITTO_2_1),
        _ => Err(Failure::new(format!(
            "Error: Unknown --compat version '{}' (2.0 or 2.1).",
            value.to_string_lossy()
        ))),
    }
}

fn run(command: &Command) -> Result<()> {
    let file = &command.file;
    let username = match &command.username {
        Some(name) => Some(check_username(name)?),
        None => None,
    };
    match command.mode {
        Mode::Hash => {
            let mut passwords = read_file(file)?;
            passwords
                .hash_all(&command.params)
                .map_err(|e| Failure::new(format!("Error: {e}.")))?;
            write_file(file, &passwords.to_string())
        }
        Mode::Delete => {
            let username = username.unwrap_or_default();
            let mut passwords = read_file(file)?;
            if passwords.remove(&username) == 0 {
                return Err(Failure::new(format!(
                    "Warning: User {username} not found in password file."
                )));
            }
            write_file(file, &passwords.to_string())
        }
        Mode::Set { create } => {
            let username = username.unwrap_or_default();
            let mut passwords = match create {
                true => PasswordFile::new(),
                false => read_file(file)?,
            };
            let password = match &command.password {
                Some(password) => password.as_bytes().to_vec(),
                None => prompt_password()?,
            };
            if password.len() > MAX_LEN {
                return Err(Failure::new(
                    "Error: Password must be less than 65536 characters long.",
                ));
            }
            passwords
                .set_password(&username, &password, &command.params)
                .map_err(|e| Failure::new(format!("Error: {e}.")))?;
            write_file(file, &passwords.to_string())
        }
    }
}

fn check_username(name: &OsStr) -> Result<String> {
    let name = name
        .to_str()
        .ok_or_else(|| Failure::new("Error: Username must be valid UTF-8."))?;
    passwd::check_username(name).map_err(|e| {
        Failure::new(match e {
            UsernameError::Colon => "Error: Username must not contain the ':' character.",
            UsernameError::ControlCharacter => {
                "Error: Username must not contain control characters."
            }
            UsernameError::TooLong => "Error: Username must be less than 65536 characters long.",
            UsernameError::Empty => "Error: Username must not be empty.",
            UsernameError::BadStart => "Error: Username must not start with white space or '#'.",
            _ => "Error: Invalid username.",
        })
    })?;
    Ok(name.to_owned())
}

/// The C library's description of an I/O error ("No such file or directory").
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

fn read_file(path: &Path) -> Result<PasswordFile> {
    let bytes = fs::read(path).map_err(|e| {
        Failure::new(format!(
            "Error: Unable to open password file {}. {}.",
            path.display(),
            describe(&e)
        ))
    })?;
    PasswordFile::parse_bytes(&bytes).map_err(|e| {
        Failure::new(format!(
            "Error: Corrupt password file at line {} ({}).",
            e.line, e.kind
        ))
    })
}

/// Asks for the password twice on the terminal (without echo).
fn prompt_password() -> Result<Vec<u8>> {
    let io_error = |e: io::Error| Failure::new(format!("Error: {}.", describe(&e)));
    let first = read_password("Password: ").map_err(io_error)?;
    if first.is_empty() {
        return Err(Failure::new("Error: Empty password."));
    }
    let second = read_password("Reenter password: ").map_err(io_error)?;
    if first != second {
        return Err(Failure::Error(
            "Error: Passwords do not match.".to_owned(),
            2,
        ));
    }
    Ok(first)
}

/// Turns terminal echo back on when dropped.
struct EchoOff {
    saved: termios::Termios,
}

impl EchoOff {
    /// Turns echo off on standard input, if it is a terminal.
    fn new() -> io::Result<Option<EchoOff>> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)?;
        Ok(Some(EchoOff { saved }))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Prints `prompt` on standard output and reads a line from standard input, with echo off
/// on a terminal; the line break that was not echoed is printed after it (whether or not
/// standard input is a terminal, as `mosquitto_passwd` does).
fn read_password(prompt: &str) -> io::Result<Vec<u8>> {
    let mut stdout = io::stdout();
    let mut line = Vec::new();
    {
        // Echo goes off before the prompt appears, so that nothing typed after it is shown.
        let _echo = EchoOff::new()?;
        write!(stdout, "{prompt}")?;
        stdout.flush()?;
        io::stdin().lock().read_until(b'\n', &mut line)?;
    }
    writeln!(stdout)?;
    stdout.flush()?;
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    Ok(line)
}

/// Replaces the file at `path` (or, for a symbolic link, its target) with `contents`: they
/// are written to a temporary file in the same directory, which then takes the original's
/// permissions and owner (a new file gets 0666 less the umask) and is renamed over it.
fn write_file(path: &Path, contents: &str) -> Result<()> {
    let open_error = |e: &io::Error| {
        Failure::new(format!(
            "Error: Unable to open file {} for writing. {}.",
            path.display(),
            describe(e)
        ))
    };
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let existing = match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            return Err(open_error(&io::Error::from_raw_os_error(
                Errno::EISDIR as i32,
            )));
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(open_error(&e)),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().unwrap_or(target.as_os_str());
    let (temp_path, mut temp) =
        create_temp(&dir, name, existing.is_some()).map_err(|e| open_error(&e))?;
    let written = (|| -> io::Result<()> {
        if let Some(meta) = &existing {
            // Owner first: changing it may clear set-id bits that the mode then restores.
            let here = temp.metadata()?;
            if (here.uid(), here.gid()) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::fchown(&temp, Some(meta.uid()), Some(meta.gid()))?;
            }
            temp.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        temp.write_all(contents.as_bytes())?;
        temp.sync_all()?;
        fs::rename(&temp_path, &target)?;
        if let Ok(dir) = File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temp_path);
        Failure::new(format!(
            "Error: Unable to write password file {}. {}.",
            path.display(),
            describe(&e)
        ))
    })
}

/// Creates a new temporary file beside `name` in `dir`: mode 0600 when it is to replace an
/// existing file (its mode is set afterwards), else 0666 less the umask.
fn create_temp(dir: &Path, name: &OsStr, replacing: bool) -> io::Result<(PathBuf, File)> {
    let mode = if replacing { 0o600 } else { 0o666 };
    let mut attempt = 0;
    loop {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".pigeon-passwd.{}.{attempt}", std::process::id()));
        let temp_path = dir.join(&temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
