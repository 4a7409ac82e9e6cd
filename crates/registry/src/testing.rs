//! Real PostgreSQL servers for tests (cargo feature `testing`).
//!
//! The registry's PostgreSQL back end is tested against a real server from Debian's
//! packages, not a mock: what we need to know is how PostgreSQL itself behaves (its
//! locking, its errors, a server that goes away and comes back), and only a real
//! server answers that. This module starts such servers and cleans up after them, with
//! a blocking API that tests call from anywhere (from async tests, inside
//! `spawn_blocking`).
//!
//! - [`PostgresServer::start`]: a private, throwaway server (initdb into a fresh
//!   temporary directory, listening on a free 127.0.0.1 port, password auth for the
//!   superuser [`SUPERUSER`] with a random password), for tests that stop, restart or
//!   otherwise disturb their server. Dropping it stops it and removes its directory.
//! - [`shared_server`]: one server for the many tests that only need a fresh database
//!   each ([`SharedServer::create_database`]): the one `.ci/run` started, named by
//!   [`URL_ENV`] and [`PASSWORD_ENV`], or else a private one started once per test
//!   process.
//!
//! ```no_run
//! use longhaul_registry::testing::shared_server;
//!
//! let server = shared_server()?;
//! let database = server.create_database()?;
//! // Connect to server.url(&database) with server.password().
//! assert_eq!(server.execute(&database, "select 1")?, "1");
//! # Ok::<(), longhaul_registry::testing::HarnessError>(())
//! ```
//!
//! **Where PostgreSQL comes from.** The programs (`initdb`, `postgres`, `psql`) are
//! looked for in [`BINDIR_ENV`] if set, else in the newest `/usr/lib/postgresql/*/bin`
//! (Debian's layout), else next to the `initdb` on `PATH`. Missing, every call fails with
//! [`HarnessError::NotInstalled`], which says to run `.ci/run` (which installs it).
//!
//! **Running as root.** `initdb` and `postgres` refuse to run as root, so when the test
//! process is root they run as the `postgres` system user that Debian's package creates
//! (the temporary directory is handed to that user); otherwise as the current user.
//! `psql` runs as the current user: it only connects over TCP with the password.
//!
//! **Servers never outlive the test process.** A server is spawned from one long-lived
//! thread of the test process with `PR_SET_PDEATHSIG` set to `SIGQUIT` (PostgreSQL's
//! immediate shutdown, which still removes its shared memory and pid file), so even a
//! test process that is killed or aborts takes its servers with it. (The signal is sent
//! when the *thread* that spawned the server exits, hence the one thread that lives as
//! long as the process, rather than whichever test thread, or `spawn_blocking` thread,
//! happened to call [`PostgresServer::start`].) Dropped servers, and the private shared
//! server of a process that exits normally, leave nothing behind; a process that is
//! killed leaves its servers' directories (`$TMPDIR/longhaul-pg-*`, about 40 MB each).
//!
//! **Speed.** Servers run with `fsync`, `synchronous_commit` and `full_page_writes` off
//! and the minimal `wal_level`: their data is thrown away, so crash safety buys nothing.
//! A private server costs about 1.5 s, nearly all of it `initdb`; a database on a running
//! server about 0.3 s (see [`READY_TIMEOUT`] for the measurements). `initdb` once per
//! process into a template directory, copied for each server, was measured and left out:
//! a copy (`cp -a`, 39 MB) took 0.06-0.9 s here against `initdb`'s 1.1-2.1 s, so it
//! would save about a second per server after the first, at the price of one more
//! directory to clean up and one password for all of a process's servers; and few tests
//! need a server of their own.

use std::env;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use thiserror::Error;

/// The superuser of every server [`PostgresServer::start`] creates.
pub const SUPERUSER: &str = "longhaul";

/// Environment variable naming the server [`shared_server`] uses, as a URL **without**
/// password, e.g. `postgres://longhaul@127.0.0.1:5433/postgres` (the database is the one
/// `CREATE DATABASE` runs in). `.ci/run` sets it, with [`PASSWORD_ENV`]. (Not
/// `LONGHAUL_`: that prefix is the binary's config overrides, and tests run the binary
/// with these set.)
pub const URL_ENV: &str = "LH_TEST_POSTGRES_URL";

/// Environment variable with the password for [`URL_ENV`]'s user.
pub const PASSWORD_ENV: &str = "LH_TEST_POSTGRES_PASSWORD";

/// Environment variable naming a directory with `initdb`, `postgres` and `psql`, to use
/// instead of the newest `/usr/lib/postgresql/*/bin`.
pub const BINDIR_ENV: &str = "LH_TEST_PG_BINDIR";

/// Where Debian installs each PostgreSQL major version: `<this>/<version>/bin`.
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";

/// The system user that runs `initdb` and `postgres` when the tests run as root; Debian's
/// `postgresql` package creates it.
const SERVER_USER_WHEN_ROOT: &str = "postgres";

/// How long [`PostgresServer::start`] and [`PostgresServer::restart`] wait for the server
/// to accept connections once `postgres` is launched.
///
/// Measured on the 2-core development machine (PostgreSQL 15, Debian 12, other builds
/// running), 20 servers: `start()` takes 1.2-2.2 s, nearly all of it `initdb` (1.1-2.2 s;
/// the server is ready 0.03-0.08 s after launch); `restart()` 0.03-0.08 s; `stop()`
/// 0.04-0.09 s; drop 0.04-0.16 s; `create_database()` 0.27-0.51 s. 30 s is far beyond
/// that, for a loaded CI machine, and still ends a broken start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `initdb` may take (about 1 s normally; see [`READY_TIMEOUT`]).
pub const INITDB_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one `psql` command may take, connecting included.
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown ([`PostgresServer::stop`]) may take before the server is
/// killed (`SIGKILL`). It takes well under a second: with `fsync` off its shutdown
/// checkpoint only hands pages to the kernel.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for a process to go once sent `SIGKILL` (or, when the test process
/// exits, `SIGQUIT`).
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How many free ports [`PostgresServer::start`] tries: another process can take the
/// port between our finding it free and the server binding it.
const START_ATTEMPTS: u32 = 4;

/// Longest pause between two looks at a process or a server that we are waiting for.
const MAX_POLL: Duration = Duration::from_millis(20);

/// How much of a log or of a program's output an error quotes: its last lines, up to
/// this many bytes.
const TAIL_BYTES: u64 = 4096;
/// ... and at most this many lines.
const TAIL_LINES: usize = 30;

/// Why the harness could not give a test its server: what happened, and what to do.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No PostgreSQL programs were found.
    #[error(
        "PostgreSQL is not installed (looked for initdb in {looked_in}): run .ci/run, \
         which installs it from Debian's packages, or apt-get install postgresql \
         (or set {BINDIR_ENV} to a directory with initdb, postgres and psql)"
    )]
    NotInstalled {
        /// Where we looked.
        looked_in: String,
    },

    /// The tests run as root and there is no `postgres` user to run the server as.
    #[error(
        "the tests run as root, and initdb and postgres refuse to run as root, but there \
         is no '{SERVER_USER_WHEN_ROOT}' system user to run them as: install Debian's \
         postgresql package (which creates it), or run the tests as an unprivileged user"
    )]
    NoServerUser,

    /// A file or process operation failed.
    #[error("could not {action}: {error}")]
    Io {
        /// What we were doing, e.g. "create a temporary directory in /tmp".
        action: String,
        /// The operating system's error.
        error: String,
    },

    /// `initdb` or `psql` ran and failed.
    #[error("{program} failed ({status}) while {doing}; its output ends with:\n{output}")]
    CommandFailed {
        /// The program: `initdb` or `psql`.
        program: String,
        /// What it was asked to do, e.g. "running `CREATE DATABASE ...` in database postgres".
        doing: String,
        /// Its exit status.
        status: String,
        /// The tail of its output (stderr, then stdout).
        output: String,
    },

    /// Something did not finish in time, and was killed.
    #[error(
        "{what} did not finish within {} s, and was killed (is the machine overloaded?); \
         {tail_name} ends with:\n{tail}",
        after.as_secs()
    )]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long we waited.
        after: Duration,
        /// Whose output `tail` is, e.g. "the server log /tmp/longhaul-pg-x/server.log".
        tail_name: String,
        /// The tail of that output.
        tail: String,
    },

    /// The server exited while starting.
    #[error("PostgreSQL exited while starting ({status}); its log {log} ends with:\n{tail}")]
    ServerExited {
        /// Its exit status.
        status: String,
        /// The server log's path (gone with the server's directory if `start` failed).
        log: String,
        /// The tail of the server log.
        tail: String,
    },

    /// The port was taken by another process (on [`PostgresServer::restart`], or on every
    /// attempt of [`PostgresServer::start`]).
    #[error(
        "port {port} on 127.0.0.1 is taken by another process, so PostgreSQL could not \
         listen on it (a restarted server keeps its port; a new one tries {START_ATTEMPTS} \
         free ports); its log {log} ends with:\n{tail}"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The server log's path (gone with the server's directory if `start` failed).
        log: String,
        /// The tail of the server log.
        tail: String,
    },

    /// A fast shutdown did not finish in time; the server was killed instead.
    #[error(
        "PostgreSQL did not finish a fast shutdown within {} s, so it was killed \
         (SIGKILL); it is stopped now, but a restart may find stale shared memory; its \
         log {log} ends with:\n{tail}",
        after.as_secs()
    )]
    ShutdownTimedOut {
        /// How long we waited.
        after: Duration,
        /// The server log's path (gone with the server's directory if `start` failed).
        log: String,
        /// The tail of the server log.
        tail: String,
    },

    /// The server is stopped.
    #[error("the PostgreSQL server on port {port} is stopped: call restart() first")]
    NotRunning {
        /// Its port.
        port: u16,
    },

    /// [`URL_ENV`] or [`PASSWORD_ENV`] is wrong.
    #[error(
        "{variable}: {problem}; {URL_ENV} should name a server without its password, \
         e.g. postgres://longhaul@127.0.0.1:5433/postgres, and {PASSWORD_ENV} hold the \
         password (.ci/run sets both for the server it starts); unset both to have the \
         tests start their own server"
    )]
    BadEnvironment {
        /// The variable.
        variable: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl HarnessError {
    fn io(action: impl Into<String>, error: impl ToString) -> HarnessError {
        HarnessError::Io {
            action: action.into(),
            error: error.to_string(),
        }
    }
}

/// The PostgreSQL programs the harness runs.
#[derive(Debug, Clone)]
struct Programs {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

impl Programs {
    fn find() -> Result<Programs, HarnessError> {
        let bindir = find_bindir()?;
        let postgres = bindir.join("postgres");
        if !is_file(&postgres) {
            return Err(HarnessError::NotInstalled {
                looked_in: format!("{} (it has initdb but no postgres)", bindir.display()),
            });
        }
        Ok(Programs {
            initdb: bindir.join("initdb"),
            postgres,
            psql: find_psql(Some(&bindir))?,
        })
    }
}

/// The directory with `initdb` and `postgres`: [`BINDIR_ENV`], else the newest
/// `/usr/lib/postgresql/*/bin`, else the (symlink-resolved) directory of `initdb` on PATH.
fn find_bindir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = env::var_os(BINDIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if is_file(&dir.join("initdb")) {
            return Ok(dir);
        }
        return Err(HarnessError::NotInstalled {
            looked_in: format!("{BINDIR_ENV}={}", dir.display()),
        });
    }
    if let Some(dir) = newest_debian_bindir() {
        return Ok(dir);
    }
    if let Some(initdb) = on_path("initdb") {
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = initdb.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(HarnessError::NotInstalled {
        looked_in: format!("{DEBIAN_PG_LIB}/*/bin and on PATH"),
    })
}

/// The `bin` directory of the highest PostgreSQL version under `/usr/lib/postgresql`
/// that has `initdb` (versions compared as numbers: 9.6 < 10 < 15).
fn newest_debian_bindir() -> Option<PathBuf> {
    let mut newest: Option<(Vec<u32>, PathBuf)> = None;
    for entry in fs::read_dir(DEBIAN_PG_LIB).ok()?.flatten() {
        let Some(version) = entry.file_name().to_str().and_then(parse_version) else {
            continue;
        };
        let bindir = entry.path().join("bin");
        if is_file(&bindir.join("initdb"))
            && newest.as_ref().is_none_or(|(best, _)| version > *best)
        {
            newest = Some((version, bindir));
        }
    }
    newest.map(|(_, bindir)| bindir)
}

/// "15" → [15], "9.6" → [9, 6]; anything else → None.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// `psql` from `bindir` if it has one, else from PATH.
fn find_psql(bindir: Option<&Path>) -> Result<PathBuf, HarnessError> {
    if let Some(psql) = bindir.map(|dir| dir.join("psql")).filter(|p| is_file(p)) {
        return Ok(psql);
    }
    on_path("psql").ok_or_else(|| HarnessError::NotInstalled {
        looked_in: match bindir {
            Some(dir) => format!("{} and on PATH (for psql)", dir.display()),
            None => "on PATH (for psql)".to_string(),
        },
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_file(candidate))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

/// The user that `initdb` and `postgres` run as, when not the current one.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// `Some(postgres user)` when we are root (PostgreSQL refuses to run as root), else None.
fn server_user() -> Result<Option<RunAs>, HarnessError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user(SERVER_USER_WHEN_ROOT)
        .map(Some)
        .ok_or(HarnessError::NoServerUser)
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let name = CString::new(name).ok()?;
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value to be filled in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and buf's length is passed with it.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(RunAs {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// A command for a PostgreSQL program: no `PG*` variables from our environment (they
/// would redirect `psql`), the C locale (log messages we can match), stdin closed.
fn command(program: &Path, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PG") {
            command.env_remove(key);
        }
    }
    command
        .env("LC_ALL", "C")
        .current_dir(cwd)
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        // std sets the group, drops supplementary groups, then sets the user.
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// What a program that ran to its end said.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn output_tail(&self) -> String {
        tail_of(&format!("{}{}", self.stderr, self.stdout))
    }
}

/// Runs `command` to its end, killing it after `timeout`.
fn run_bounded(
    mut command: Command,
    program: &str,
    doing: &str,
    timeout: Duration,
) -> Result<Finished, HarnessError> {
    let capture = || {
        tempfile::tempfile()
            .map_err(|e| HarnessError::io(format!("create a file for {program}'s output"), e))
    };
    let (mut stdout, mut stderr) = (capture()?, capture()?);
    let clone = |file: &File| {
        file.try_clone()
            .map_err(|e| HarnessError::io(format!("set up {program}'s output"), e))
    };
    command.stdout(clone(&stdout)?).stderr(clone(&stderr)?);
    let mut child = command.spawn().map_err(|e| {
        HarnessError::io(
            format!("run {} ({doing})", command.get_program().to_string_lossy()),
            e,
        )
    })?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {}
            result => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(match result {
                    Err(e) => HarnessError::io(format!("wait for {program} ({doing})"), e),
                    _ => HarnessError::Timeout {
                        what: format!("{program} ({doing})"),
                        after: timeout,
                        tail_name: "its output".to_string(),
                        tail: tail_of(&format!(
                            "{}{}",
                            read_from(&mut stderr, 0),
                            read_from(&mut stdout, 0)
                        )),
                    },
                });
            }
        }
        thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
    };
    Ok(Finished {
        status,
        stdout: read_from(&mut stdout, 0),
        stderr: read_from(&mut stderr, 0),
    })
}

/// The text of `file` from byte `offset` on (lossily decoded; empty if unreadable).
fn read_from(file: &mut File, offset: u64) -> String {
    let mut bytes = Vec::new();
    let _ = file
        .seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last [`TAIL_LINES`] lines of `text`, at most about [`TAIL_BYTES`] of them.
fn tail_of(text: &str) -> String {
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(TAIL_BYTES as usize);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let lines: Vec<&str> = text[start..].lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.is_empty() {
        "(nothing)".to_string()
    } else {
        tail
    }
}

/// `bytes` random bytes from the OS CSPRNG, as lowercase hex.
fn random_hex(bytes: usize) -> Result<String, HarnessError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| HarnessError::io("read the operating system's random number generator", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A database name no other test (or test process) uses: `t_<pid>_<counter>_<random>`.
fn unique_database_name() -> Result<String, HarnessError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(format!("t_{}_{n}_{}", std::process::id(), random_hex(4)?))
}

/// A port that was free on 127.0.0.1 a moment ago. Another process may take it before
/// the server binds it; [`PostgresServer::start`] then tries another.
fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| HarnessError::io("find a free port on 127.0.0.1", e))
}

/// `s` with everything but URL-unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a server listens and how to log in: all that `psql`, `url` and
/// `create_database` need.
#[derive(Debug)]
struct Endpoint {
    host: String,
    port: u16,
    user: String,
    password: String,
    /// The database `CREATE DATABASE` runs in.
    maintenance_database: String,
    psql: PathBuf,
}

impl Endpoint {
    fn url(&self, database: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{}@{host}:{}/{}",
            percent_encode(&self.user),
            self.port,
            percent_encode(database)
        )
    }

    fn execute(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        let mut psql = command(&self.psql, None, Path::new("/"));
        psql.env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.host)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql);
        let doing = format!(
            "running `{sql}` in database {database} on {}:{}",
            self.host, self.port
        );
        let finished = run_bounded(psql, "psql", &doing, PSQL_TIMEOUT)?;
        if !finished.status.success() {
            return Err(HarnessError::CommandFailed {
                program: "psql".to_string(),
                doing,
                status: finished.status.to_string(),
                output: finished.output_tail(),
            });
        }
        Ok(finished.stdout.trim_end().to_string())
    }

    fn create_database(&self) -> Result<String, HarnessError> {
        let name = unique_database_name()?;
        self.execute(
            &self.maintenance_database,
            &format!("CREATE DATABASE \"{name}\""),
        )?;
        Ok(name)
    }
}

/// A request to the keeper thread: spawn this, send back the child.
struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `command` (a server) so that it gets `SIGQUIT` when the test process ends,
/// however it ends.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so the fork
/// happens on one keeper thread that lives as long as the process, not on the calling
/// thread (a test's thread, or a `spawn_blocking` thread that tokio retires when idle).
fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    static KEEPER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);
    let keeper = {
        let mut keeper = lock(&KEEPER);
        match keeper.as_ref() {
            Some(sender) => sender.clone(),
            None => {
                let (sender, requests) = mpsc::channel::<SpawnRequest>();
                thread::Builder::new()
                    .name("longhaul-pg-keeper".to_string())
                    .spawn(move || {
                        // Never ends: KEEPER holds a sender for the life of the process.
                        for mut request in requests {
                            let _ = request.reply.send(request.command.spawn());
                        }
                    })?;
                *keeper = Some(sender.clone());
                sender
            }
        }
    };

    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // async-signal-safe system calls and does not allocate.
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The test process may have died before prctl: then nobody will signal us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply, replies) = mpsc::channel();
    keeper
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the harness's keeper thread is gone"))?;
    replies
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| io::Error::other("the harness's keeper thread did not answer"))?
}

/// A private PostgreSQL server in a temporary directory, for one test (or a few).
///
/// Its superuser is [`SUPERUSER`], with a random password; it listens on 127.0.0.1 and on
/// a unix socket in its directory. Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct PostgresServer {
    /// Removed on drop. Holds `data/`, `server.log` and the unix socket.
    dir: TempDir,
    data_dir: PathBuf,
    log_path: PathBuf,
    postgres: PathBuf,
    run_as: Option<RunAs>,
    endpoint: Endpoint,
    /// The postmaster, while it runs (or until we notice it exited).
    child: Mutex<Option<Child>>,
}

impl PostgresServer {
    /// Starts a private server: `initdb` into a fresh temporary directory, then
    /// `postgres` on a free 127.0.0.1 port (several tried, if the first is taken by the
    /// time the server binds it), and waits until it accepts connections.
    ///
    /// Takes about 1-1.5 s, mostly `initdb` (see [`READY_TIMEOUT`]); for tests that just
    /// need a database, [`shared_server`] is cheaper.
    pub fn start() -> Result<PostgresServer, HarnessError> {
        let programs = Programs::find()?;
        let run_as = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("longhaul-pg-")
            .tempdir()
            .map_err(|e| {
                HarnessError::io(
                    format!(
                        "create a temporary directory in {}",
                        env::temp_dir().display()
                    ),
                    e,
                )
            })?;
        if let Some(user) = run_as {
            chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(|e| {
                HarnessError::io(
                    format!(
                        "hand {} to the {SERVER_USER_WHEN_ROOT} user",
                        dir.path().display()
                    ),
                    e,
                )
            })?;
        }
        let password = random_hex(16)?;
        let data_dir = dir.path().join("data");
        initdb(&programs.initdb, run_as, dir.path(), &data_dir, &password)?;

        let mut server = PostgresServer {
            log_path: dir.path().join("server.log"),
            data_dir,
            dir,
            postgres: programs.postgres,
            run_as,
            endpoint: Endpoint {
                host: Ipv4Addr::LOCALHOST.to_string(),
                port: 0,
                user: SUPERUSER.to_string(),
                password,
                maintenance_database: "postgres".to_string(),
                psql: programs.psql,
            },
            child: Mutex::new(None),
        };
        let mut attempt = 1;
        loop {
            server.endpoint.port = free_port()?;
            match server.launch() {
                Err(HarnessError::PortInUse { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(server),
            }
        }
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The TCP port, the same for the server's whole life (restarts included).
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// [`SUPERUSER`].
    pub fn user(&self) -> &str {
        &self.endpoint.user
    }

    /// The superuser's password (random, 32 hex digits).
    pub fn password(&self) -> &str {
        &self.endpoint.password
    }

    /// `postgres://longhaul@127.0.0.1:PORT/DATABASE`, without the password (give it to
    /// the client separately, from [`Self::password`]).
    pub fn url(&self, database: &str) -> String {
        self.endpoint.url(database)
    }

    /// The server's temporary directory: `data/`, `server.log`, and the unix socket
    /// (`.s.PGSQL.PORT`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log (its stderr), appended to across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The `psql` the harness uses.
    pub fn psql_path(&self) -> &Path {
        &self.endpoint.psql
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running_child(|child| child.id())
    }

    /// Whether the server runs (it can have been stopped, or have died).
    pub fn is_running(&self) -> bool {
        self.running_child(|_| ()).is_some()
    }

    /// Creates a database with a fresh name (`t_<pid>_<counter>_<random>`) and returns
    /// the name.
    pub fn create_database(&self) -> Result<String, HarnessError> {
        self.check_running()?;
        self.endpoint.create_database()
    }

    /// Runs `sql` in `database` as the superuser with `psql`, and returns what it printed
    /// (unaligned, tuples only: `select 1` gives `1`), without the final newline.
    pub fn execute(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        self.check_running()?;
        self.endpoint.execute(database, sql)
    }

    /// Stops the server with a fast shutdown (`SIGINT`: connections are closed, the
    /// server checkpoints and exits), keeping its data for [`Self::restart`]. After
    /// [`STOP_TIMEOUT`] it is killed instead, and this returns
    /// [`HarnessError::ShutdownTimedOut`]. Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        self.shut_down(libc::SIGINT, STOP_TIMEOUT)
    }

    /// Starts the server again on the same port and data directory, after [`Self::stop`]
    /// (or after it died), and waits until it accepts connections. A running server is
    /// stopped first. Fails with [`HarnessError::PortInUse`] if another process took the
    /// port meanwhile.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.launch()
    }

    /// [`PostgresServer::start`] with a fresh database on it: the server and the
    /// database's name.
    pub fn start_with_database() -> Result<(PostgresServer, String), HarnessError> {
        let server = PostgresServer::start()?;
        let database = server.create_database()?;
        Ok((server, database))
    }

    /// Turns TLS on with this certificate chain and key (PEM), and restarts: clients
    /// may then connect with `sslmode=require` (plain connections still work, as
    /// `pg_hba.conf`'s `host` lines allow both). The files go in the data directory,
    /// owned by the server's user and readable by it alone, as PostgreSQL demands of a key.
    pub fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), HarnessError> {
        let cert = self.data_dir.join("server.crt");
        let key = self.data_dir.join("server.key");
        for (path, text) in [(&cert, cert_pem), (&key, key_pem)] {
            fs::write(path, text)
                .map_err(|e| HarnessError::io(format!("write {}", path.display()), e))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| HarnessError::io(format!("set the mode of {}", path.display()), e))?;
            if let Some(user) = self.run_as {
                chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                    HarnessError::io(format!("hand {} to the server's user", path.display()), e)
                })?;
            }
        }
        // One statement per call: ALTER SYSTEM refuses to run inside the transaction
        // that psql puts several statements of one command in.
        for setting in [
            "ALTER SYSTEM SET ssl = on",
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        ] {
            self.execute("postgres", setting)?;
        }
        self.restart()
    }

    /// Turns TLS on with a certificate for `localhost` and `127.0.0.1` from a CA made
    /// on the spot, and returns that CA's certificate (PEM) for the clients to trust.
    pub fn enable_tls_with_test_ca(&mut self) -> Result<String, HarnessError> {
        let made = |e: rcgen::Error| HarnessError::io("make a test certificate", e);
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(made)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "longhaul test database CA");
        let ca_key = rcgen::KeyPair::generate().map_err(made)?;
        let ca = ca_params.self_signed(&ca_key).map_err(made)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(made)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().map_err(made)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(made)?;
        self.enable_tls(&cert.pem(), &key.serialize_pem())?;
        Ok(ca.pem())
    }

    fn check_running(&self) -> Result<(), HarnessError> {
        if self.is_running() {
            Ok(())
        } else {
            Err(HarnessError::NotRunning { port: self.port() })
        }
    }

    /// `f(postmaster)` if it runs; forgets it if it exited.
    fn running_child<T>(&self, f: impl FnOnce(&Child) -> T) -> Option<T> {
        let mut child = lock(&self.child);
        if matches!(child.as_mut().map(Child::try_wait), Some(Ok(None))) {
            child.as_ref().map(f)
        } else {
            *child = None;
            None
        }
    }

    /// Launches `postgres` on the data directory and port, and waits until it is ready.
    fn launch(&self) -> Result<(), HarnessError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| HarnessError::io(format!("open {}", self.log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| HarnessError::io(format!("open {}", self.log_path.display()), e))?;

        let mut postgres = command(&self.postgres, self.run_as, self.dir.path());
        postgres
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port().to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            // Quoted: the setting is a list, split at commas.
            .arg(format!(
                "unix_socket_directories=\"{}\"",
                self.dir.path().display()
            ))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                // WAL for crash recovery only: CREATE DATABASE, once per test, writes
                // less (10 in a row with psql, twice: 0.26 and 0.13 s each on average,
                // against 0.28 and 0.21 s with the default wal_level).
                "-c",
                "wal_level=minimal",
                "-c",
                "max_wal_senders=0",
            ])
            .stdout(log)
            .stderr(log_for_stderr);
        let child = spawn_tied_to_process(postgres)
            .map_err(|e| HarnessError::io(format!("run {}", self.postgres.display()), e))?;
        let pid = child.id();
        *lock(&self.child) = Some(child);
        self.wait_until_ready(pid, log_start)
    }

    /// Waits until the postmaster `pid` accepts connections (its `postmaster.pid` says
    /// "ready", as `pg_ctl -w` checks, and a TCP connection succeeds), it exits, or
    /// [`READY_TIMEOUT`] passes (then it is killed).
    fn wait_until_ready(&self, pid: u32, log_start: u64) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()));
        let mut pause = Duration::from_millis(1);
        loop {
            let exited = {
                let mut child = lock(&self.child);
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(None)) => None,
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Err(e)) => Some(format!("could not wait for it: {e}")),
                    None => Some("stopped by another thread".to_string()),
                }
            };
            if let Some(status) = exited {
                *lock(&self.child) = None;
                let since_launch = self.log_since(log_start);
                let log = self.log_path.display().to_string();
                let tail = tail_of(&since_launch);
                return Err(if since_launch.contains("Address already in use") {
                    HarnessError::PortInUse {
                        port: self.port(),
                        log,
                        tail,
                    }
                } else {
                    HarnessError::ServerExited { status, log, tail }
                });
            }
            if self.pid_file_says_ready(pid)
                && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill_now();
                return Err(HarnessError::Timeout {
                    what: format!("PostgreSQL's start on port {}", self.port()),
                    after: READY_TIMEOUT,
                    tail_name: format!("its log {}", self.log_path.display()),
                    tail: tail_of(&self.log_since(log_start)),
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Whether `postmaster.pid` is postmaster `pid`'s and has status "ready" (line 8).
    fn pid_file_says_ready(&self, pid: u32) -> bool {
        let Ok(text) = fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return false;
        };
        let mut lines = text.lines();
        lines.next().map(str::trim) == Some(pid.to_string().as_str())
            && lines.nth(6).map(str::trim) == Some("ready")
    }

    fn log_since(&self, offset: u64) -> String {
        File::open(&self.log_path)
            .map(|mut log| read_from(&mut log, offset))
            .unwrap_or_default()
    }

    /// Sends `signal` to the postmaster and waits up to `timeout` for it to exit; kills
    /// it after that.
    fn shut_down(&self, signal: libc::c_int, timeout: Duration) -> Result<(), HarnessError> {
        let mut guard = lock(&self.child);
        let Some(child) = guard.as_mut() else {
            return Ok(());
        };
        if !matches!(child.try_wait(), Ok(None)) {
            *guard = None;
            return Ok(());
        }
        let pid = child.id();
        // SAFETY: plain system call; the child is not reaped yet, so its pid is still its.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
        if wait_bounded(child, timeout) {
            *guard = None;
            return Ok(());
        }
        let _ = child.kill();
        let gone = wait_bounded(child, KILL_TIMEOUT);
        *guard = None;
        let tail = tail_of(&self.log_since(0));
        if !gone {
            return Err(HarnessError::Timeout {
                what: format!("killing PostgreSQL (pid {pid})"),
                after: KILL_TIMEOUT,
                tail_name: format!("its log {}", self.log_path.display()),
                tail,
            });
        }
        Err(HarnessError::ShutdownTimedOut {
            after: timeout,
            log: self.log_path.display().to_string(),
            tail,
        })
    }

    /// Kills the postmaster (after a failed start).
    fn kill_now(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            wait_bounded(&mut child, KILL_TIMEOUT);
        }
    }
}

/// Waits up to `timeout` for `child` to exit; whether it did.
fn wait_bounded(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {}
            // Err: not our child any more (already reaped); nothing left to wait for.
            Err(_) => return true,
            Ok(None) => return false,
        }
        thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
    }
}

impl Drop for PostgresServer {
    /// Stops the server (immediate shutdown: its data is about to go) and removes its
    /// directory.
    fn drop(&mut self) {
        let _ = self.shut_down(libc::SIGQUIT, KILL_TIMEOUT);
    }
}

/// Runs `initdb` for `data_dir`: superuser [`SUPERUSER`] with `password`
/// (scram-sha-256), UTF-8, C locale, without syncing to disk.
fn initdb(
    initdb: &Path,
    run_as: Option<RunAs>,
    dir: &Path,
    data_dir: &Path,
    password: &str,
) -> Result<(), HarnessError> {
    let password_file = dir.join("password");
    fs::write(&password_file, password)
        .map_err(|e| HarnessError::io(format!("write {}", password_file.display()), e))?;
    if let Some(user) = run_as {
        chown(&password_file, Some(user.uid), Some(user.gid)).map_err(|e| {
            HarnessError::io(
                format!(
                    "hand {} to the {SERVER_USER_WHEN_ROOT} user",
                    password_file.display()
                ),
                e,
            )
        })?;
    }
    let mut command = command(initdb, run_as, dir);
    command
        .args(["--no-sync", "--auth=scram-sha-256", "--username", SUPERUSER])
        .args(["--encoding=UTF8", "--locale=C"])
        .arg(format!("--pwfile={}", password_file.display()))
        .arg("-D")
        .arg(data_dir);
    let doing = match run_as {
        None => format!("creating {}", data_dir.display()),
        Some(_) => format!(
            "creating {} as the {SERVER_USER_WHEN_ROOT} user, who must be able to reach it",
            data_dir.display()
        ),
    };
    let result = run_bounded(command, "initdb", &doing, INITDB_TIMEOUT);
    let _ = fs::remove_file(&password_file);
    let finished = result?;
    if finished.status.success() {
        Ok(())
    } else {
        Err(HarnessError::CommandFailed {
            program: "initdb".to_string(),
            doing,
            status: finished.status.to_string(),
            output: finished.output_tail(),
        })
    }
}

/// The server that tests share: see [`shared_server`].
#[derive(Debug)]
pub struct SharedServer {
    endpoint: Endpoint,
    /// The server we started, when the environment named none.
    private: Option<PostgresServer>,
}

impl SharedServer {
    /// The server's host (127.0.0.1 for a private one).
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// The user tests log in as (a superuser).
    pub fn user(&self) -> &str {
        &self.endpoint.user
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.endpoint.password
    }

    /// `postgres://USER@HOST:PORT/DATABASE`, without the password.
    pub fn url(&self, database: &str) -> String {
        self.endpoint.url(database)
    }

    /// Creates a database with a fresh name (`t_<pid>_<counter>_<random>`) and returns
    /// the name. Tests share the server, so each should work in its own database.
    pub fn create_database(&self) -> Result<String, HarnessError> {
        self.endpoint.create_database()
    }

    /// Runs `sql` in `database` with `psql`; see [`PostgresServer::execute`].
    pub fn execute(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        self.endpoint.execute(database, sql)
    }

    /// The `psql` the harness uses.
    pub fn psql_path(&self) -> &Path {
        &self.endpoint.psql
    }

    /// The server this process started, when [`URL_ENV`] named none.
    pub fn private_server(&self) -> Option<&PostgresServer> {
        self.private.as_ref()
    }

    fn from_environment() -> Result<SharedServer, HarnessError> {
        match (non_empty_env(URL_ENV)?, non_empty_env(PASSWORD_ENV)?) {
            (None, None) => {
                let server = PostgresServer::start()?;
                let endpoint = Endpoint {
                    host: server.endpoint.host.clone(),
                    port: server.endpoint.port,
                    user: server.endpoint.user.clone(),
                    password: server.endpoint.password.clone(),
                    maintenance_database: server.endpoint.maintenance_database.clone(),
                    psql: server.endpoint.psql.clone(),
                };
                Ok(SharedServer {
                    endpoint,
                    private: Some(server),
                })
            }
            (Some(url), Some(password)) => {
                let target = parse_url(&url).map_err(|problem| HarnessError::BadEnvironment {
                    variable: URL_ENV,
                    problem: format!("{url:?} {problem}"),
                })?;
                let psql = find_psql(find_bindir().ok().as_deref())?;
                let endpoint = Endpoint {
                    host: target.host,
                    port: target.port,
                    user: target.user,
                    password,
                    maintenance_database: target.database,
                    psql,
                };
                endpoint
                    .execute(&endpoint.maintenance_database, "select 1")
                    .map_err(|e| HarnessError::BadEnvironment {
                        variable: URL_ENV,
                        problem: format!("cannot connect to {url} with {PASSWORD_ENV}: {e}"),
                    })?;
                Ok(SharedServer {
                    endpoint,
                    private: None,
                })
            }
            (Some(_), None) => Err(HarnessError::BadEnvironment {
                variable: PASSWORD_ENV,
                problem: format!("not set, but {URL_ENV} is"),
            }),
            (None, Some(_)) => Err(HarnessError::BadEnvironment {
                variable: URL_ENV,
                problem: format!("not set, but {PASSWORD_ENV} is"),
            }),
        }
    }
}

fn non_empty_env(variable: &'static str) -> Result<Option<String>, HarnessError> {
    match env::var(variable) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(HarnessError::BadEnvironment {
            variable,
            problem: "not valid UTF-8".to_string(),
        }),
    }
}

/// The parts of `postgres://USER@HOST[:PORT][/DATABASE]` the harness uses.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    user: String,
    host: String,
    port: u16,
    database: String,
}

/// Parses [`URL_ENV`]'s value. No password, no query, no percent-encoding.
fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("does not start with postgres://")?;
    if rest.contains(['?', '#', '%']) {
        return Err("has a query, fragment or %-escape, which the harness does not read".into());
    }
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host_port) = authority
        .rsplit_once('@')
        .ok_or("has no user (USER@HOST)")?;
    if user.contains(':') {
        return Err(format!("contains a password: move it to {PASSWORD_ENV}"));
    }
    if user.is_empty() {
        return Err("has an empty user".into());
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("has an unclosed [")?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => 5432,
        Some(port) => port
            .parse()
            .map_err(|_| format!("has a bad port {port:?}"))?,
    };
    Ok(Target {
        user: user.to_string(),
        host: host.to_string(),
        port,
        database: if database.is_empty() {
            "postgres".to_string()
        } else {
            database.to_string()
        },
    })
}

static SHARED: OnceLock<Result<SharedServer, HarnessError>> = OnceLock::new();

/// The server shared by the tests of this process, for tests that never stop it: each
/// should [`SharedServer::create_database`] its own database.
///
/// If [`URL_ENV`] and [`PASSWORD_ENV`] are set (`.ci/run` sets them), that server;
/// otherwise a private one, started on the first call (about 1-1.5 s; see
/// [`READY_TIMEOUT`]) and stopped, its directory removed, when the process exits. (If
/// the process is killed instead, the server still goes, with it; its directory stays.
/// See the module docs.) The first call's result, failure included, is every call's.
///
/// "Per process" means per test binary under `cargo test`, but per test under
/// `cargo nextest`, which runs each test in a process of its own: there, set the two
/// variables (to a server of your own, as `.ci/run` does) to avoid an `initdb` per test.
pub fn shared_server() -> Result<&'static SharedServer, HarnessError> {
    SHARED
        .get_or_init(|| {
            let shared = SharedServer::from_environment()?;
            if shared.private.is_some() {
                // SAFETY: registers a plain extern "C" function that does not unwind.
                unsafe { libc::atexit(stop_shared_server_at_exit) };
            }
            Ok(shared)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// At process exit: stops the private shared server and removes its directory.
extern "C" fn stop_shared_server_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(SharedServer {
            private: Some(server),
            ..
        })) = SHARED.get()
        {
            let _ = server.shut_down(libc::SIGQUIT, KILL_TIMEOUT);
            let _ = fs::remove_dir_all(server.dir());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_the_environment_are_parsed() {
        assert_eq!(
            parse_url("postgres://longhaul@127.0.0.1:5433/postgres"),
            Ok(Target {
                user: "longhaul".into(),
                host: "127.0.0.1".into(),
                port: 5433,
                database: "postgres".into(),
            })
        );
        assert_eq!(
            parse_url("postgresql://me@[::1]"),
            Ok(Target {
                user: "me".into(),
                host: "::1".into(),
                port: 5432,
                database: "postgres".into(),
            })
        );
        assert!(parse_url("postgres://me:secret@localhost/x")
            .unwrap_err()
            .contains("password"));
        assert!(parse_url("mysql://me@localhost").is_err());
        assert!(parse_url("postgres://localhost:5432/x").is_err());
        assert!(parse_url("postgres://me@localhost:port/x").is_err());
        assert!(parse_url("postgres://me@localhost/x?sslmode=disable").is_err());
    }

    #[test]
    fn urls_we_give_out_have_no_password_and_are_escaped() {
        let endpoint = Endpoint {
            host: "::1".into(),
            port: 5433,
            user: "longhaul".into(),
            password: "secret".into(),
            maintenance_database: "postgres".into(),
            psql: PathBuf::from("psql"),
        };
        assert_eq!(
            endpoint.url("t_1_2_ab"),
            "postgres://longhaul@[::1]:5433/t_1_2_ab"
        );
        assert_eq!(
            endpoint.url("a b/c"),
            "postgres://longhaul@[::1]:5433/a%20b%2Fc"
        );
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(parse_version("10") > parse_version("9.6"));
        assert!(parse_version("15") > parse_version("10"));
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn tails_keep_the_last_lines() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = tail_of(&text);
        assert!(tail.starts_with(&format!("line {}", 100 - TAIL_LINES)));
        assert!(tail.ends_with("line 99"));
        assert_eq!(tail_of(""), "(nothing)");
    }
}
