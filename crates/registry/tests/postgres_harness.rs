//! The PostgreSQL test harness (`longhaul_registry::testing`) against real servers: what
//! the store's tests will lean on, checked on its own.
//!
//! Some checks need a process of their own (the shared server is one per process, and
//! what happens when a process ends can only be seen from outside it): they re-run this
//! test binary on one `#[ignore]`d test, with the environment they need.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use longhaul_registry::testing::{
    shared_server, HarnessError, PostgresServer, BINDIR_ENV, PASSWORD_ENV, SUPERUSER, URL_ENV,
};

/// Runs `sql` with the harness's psql as `user`/`password` on 127.0.0.1:`port`.
fn psql_as(psql: &Path, port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    Command::new(psql)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", user, "-d", db, "-c", sql])
        .output()
        .expect("run psql")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The processes whose parent is `pid` (the postmaster's backends and helpers).
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_private_server_starts_stops_restarts_and_cleans_up() {
    let started = Instant::now();
    let mut server = PostgresServer::start().unwrap();
    let start_time = started.elapsed();
    assert!(server.is_running());
    assert_eq!(server.host(), "127.0.0.1");
    assert_eq!(server.user(), SUPERUSER);
    assert_eq!(server.password().len(), 32);
    let port = server.port();
    assert_eq!(
        server.url("db1"),
        format!("postgres://longhaul@127.0.0.1:{port}/db1")
    );
    assert!(!server.url("db1").contains(server.password()));
    assert!(server.dir().join(format!(".s.PGSQL.{port}")).exists());
    assert!(
        !server.dir().join("password").exists(),
        "initdb's password file is removed"
    );

    // Two databases, each reachable with the password.
    let first = server.create_database().unwrap();
    let second = server.create_database().unwrap();
    assert_ne!(first, second);
    assert!(first.starts_with(&format!("t_{}_", std::process::id())));
    for db in [&first, &second] {
        let output = psql_as(
            server.psql_path(),
            port,
            SUPERUSER,
            server.password(),
            db,
            "select current_database()",
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(&stdout(&output), db);
    }
    assert_eq!(server.execute(&first, "select 6 * 7").unwrap(), "42");
    server
        .execute(
            &first,
            "create table kept (n int); insert into kept values (7)",
        )
        .unwrap();

    // A wrong password, or none, is refused.
    let output = psql_as(
        server.psql_path(),
        port,
        SUPERUSER,
        "wrong",
        &first,
        "select 1",
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("password authentication failed"),
        "{}",
        stderr(&output)
    );
    let output = psql_as(server.psql_path(), port, SUPERUSER, "", &first, "select 1");
    assert!(!output.status.success());

    // Stopped: connections are refused, and the harness says why it cannot help.
    let pid = server.pid().unwrap();
    let started = Instant::now();
    server.stop().unwrap();
    let stop_time = started.elapsed();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(process_gone(pid));
    let refused = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let output = psql_as(
        server.psql_path(),
        port,
        SUPERUSER,
        server.password(),
        &first,
        "select 1",
    );
    assert!(!output.status.success());
    let error = server.create_database().unwrap_err();
    assert!(matches!(error, HarnessError::NotRunning { port: p } if p == port));
    assert!(error.to_string().contains("restart()"), "{error}");
    server.stop().unwrap(); // Stopping a stopped server does nothing.

    // Restarted: same port, same data, same password.
    let started = Instant::now();
    server.restart().unwrap();
    let restart_time = started.elapsed();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(pid));
    assert_eq!(server.execute(&first, "select n from kept").unwrap(), "7");
    let output = psql_as(
        server.psql_path(),
        port,
        SUPERUSER,
        server.password(),
        &second,
        "select 1",
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // Restarting a running server stops it first.
    server.restart().unwrap();
    assert_eq!(server.execute(&first, "select n from kept").unwrap(), "7");

    // Dropped: the postmaster and every process it started are gone, and the directory.
    server.execute(&first, "select 1").unwrap();
    let pid = server.pid().unwrap();
    let children = children_of(pid);
    assert!(!children.is_empty(), "the postmaster has helper processes");
    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(process_gone(pid));
    wait_until(
        "the postmaster's children exit",
        Duration::from_secs(10),
        || children.iter().all(|&child| process_gone(child)),
    );
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    eprintln!("start {start_time:?}, stop {stop_time:?}, restart {restart_time:?}");
}

#[test]
fn servers_are_independent() {
    let a = PostgresServer::start().unwrap();
    let b = PostgresServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.password(), b.password());
    assert_ne!(a.dir(), b.dir());
    // Each server's password is its own.
    let output = psql_as(
        a.psql_path(),
        a.port(),
        SUPERUSER,
        b.password(),
        "postgres",
        "select 1",
    );
    assert!(!output.status.success());
    assert_eq!(a.execute("postgres", "select 1").unwrap(), "1");
    assert_eq!(b.execute("postgres", "select 1").unwrap(), "1");
}

#[test]
fn a_server_that_dies_is_seen_as_stopped_and_restarts() {
    let mut server = PostgresServer::start().unwrap();
    let pid = server.pid().unwrap();
    // SAFETY: plain system call on our own child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    wait_until(
        "the killed server is seen as stopped",
        Duration::from_secs(10),
        || !server.is_running(),
    );
    assert!(matches!(
        server.execute("postgres", "select 1"),
        Err(HarnessError::NotRunning { .. })
    ));
    // Its helpers notice the postmaster's death and exit; then it can start again.
    let started = Instant::now();
    loop {
        match server.restart() {
            Ok(()) => break,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("restart after SIGKILL: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("no restart after SIGKILL: {e}"),
        }
    }
    assert_eq!(server.execute("postgres", "select 1").unwrap(), "1");
}

#[test]
fn the_shared_server_is_one_server_with_fresh_databases() {
    let shared = shared_server().unwrap();
    assert!(std::ptr::eq(shared, shared_server().unwrap()));
    let from_ci = std::env::var_os(URL_ENV).is_some_and(|url| !url.is_empty());
    assert_eq!(shared.private_server().is_none(), from_ci);
    let first = shared.create_database().unwrap();
    let second = shared.create_database().unwrap();
    assert_ne!(first, second);
    assert!(!shared.url(&first).contains(shared.password()));
    assert!(shared
        .url(&first)
        .ends_with(&format!(":{}/{first}", shared.port())));
    let output = psql_as(
        shared.psql_path(),
        shared.port(),
        shared.user(),
        shared.password(),
        &second,
        "select current_database()",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), second);
    assert_eq!(
        shared.execute(&first, "select current_database()").unwrap(),
        first
    );
}

/// Re-runs this test binary on the `#[ignore]`d test `name` alone, without the CI
/// server's variables, plus `env`.
fn run_child_test(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove(URL_ENV)
        .env_remove(PASSWORD_ENV)
        .env_remove(BINDIR_ENV);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// The `CHILD pid=... dir=...` line a child test printed.
fn child_server(output: &Output) -> (u32, PathBuf) {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        // After libtest's "test NAME ... ", on the same line.
        .find_map(|line| line.split_once("CHILD ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no CHILD line in {text}\n{}", stderr(output)));
    let (pid, dir) = line.split_once(' ').unwrap();
    (
        pid.strip_prefix("pid=").unwrap().parse().unwrap(),
        PathBuf::from(dir.strip_prefix("dir=").unwrap()),
    )
}

#[test]
#[ignore = "run by shared_private_servers_go_with_their_process, in a process of its own"]
fn child_with_private_shared_server() {
    let shared = shared_server().unwrap();
    let server = shared
        .private_server()
        .expect("no URL given, so a private server");
    shared.create_database().unwrap();
    println!(
        "CHILD pid={} dir={}",
        server.pid().unwrap(),
        server.dir().display()
    );
    if std::env::var_os("CHILD_ABORT").is_some() {
        std::process::abort();
    }
}

#[test]
fn shared_private_servers_go_with_their_process() {
    // A process that exits normally stops its server and removes its directory.
    let output = run_child_test("child_with_private_shared_server", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (pid, dir) = child_server(&output);
    assert!(process_gone(pid), "the server was stopped at exit");
    assert!(!dir.exists(), "its directory was removed at exit");

    // A process that dies takes its server with it (the directory stays).
    let output = run_child_test("child_with_private_shared_server", &[("CHILD_ABORT", "1")]);
    assert!(!output.status.success());
    let (pid, dir) = child_server(&output);
    wait_until(
        "the server of an aborted process exits",
        Duration::from_secs(10),
        || process_gone(pid),
    );
    assert!(dir.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "run by errors_say_what_to_do, in a process of its own"]
fn child_expecting_an_error() {
    let expected = std::env::var("CHILD_EXPECT").unwrap();
    let error = match std::env::var("CHILD_CALL").unwrap().as_str() {
        "start" => PostgresServer::start().unwrap_err(),
        "shared" => shared_server().unwrap_err(),
        other => panic!("CHILD_CALL={other}"),
    };
    let message = error.to_string();
    println!("CHILD error: {message}");
    assert!(
        message.contains(&expected),
        "{message:?} lacks {expected:?}"
    );
    // The first call's failure is every call's.
    if std::env::var("CHILD_CALL").unwrap() == "shared" {
        assert_eq!(shared_server().unwrap_err().to_string(), message);
    }
}

#[test]
fn errors_say_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let cases: &[(&str, &[(&str, &str)])] = &[
        // No PostgreSQL: run .ci/run.
        (
            "start",
            &[(BINDIR_ENV, empty), ("CHILD_EXPECT", "run .ci/run")],
        ),
        // A password in the URL.
        (
            "shared",
            &[
                (
                    URL_ENV,
                    "postgres://longhaul:secret@127.0.0.1:5433/postgres",
                ),
                (PASSWORD_ENV, "secret"),
                ("CHILD_EXPECT", "move it to LH_TEST_POSTGRES_PASSWORD"),
            ],
        ),
        // A URL without its password.
        (
            "shared",
            &[
                (URL_ENV, "postgres://longhaul@127.0.0.1:5433/postgres"),
                ("CHILD_EXPECT", "LH_TEST_POSTGRES_PASSWORD: not set"),
            ],
        ),
        // A server that is not there (port 1 on loopback refuses).
        (
            "shared",
            &[
                (URL_ENV, "postgres://longhaul@127.0.0.1:1/postgres"),
                (PASSWORD_ENV, "secret"),
                (
                    "CHILD_EXPECT",
                    "cannot connect to postgres://longhaul@127.0.0.1:1/postgres",
                ),
            ],
        ),
    ];
    for (call, env) in cases {
        let mut env = env.to_vec();
        env.push(("CHILD_CALL", call));
        let output = run_child_test("child_expecting_an_error", &env);
        assert!(
            output.status.success(),
            "{call} with {env:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
    }
}
