//! Start-up errors: one line on stderr and exit code 2. (Living in this package also makes
//! `cargo test --workspace` build the `corral` binary that the black-box tests run.)

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::TempDir;

fn corral_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

/// Runs corral to its exit, which must come within a deadline: a case that starts a server
/// instead of refusing is a failure, not a hang.
fn run(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(corral_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run corral");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for corral") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("corral {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn usage_and_environment_errors_exit_2_with_a_reason() {
    let dir = TempDir::new("startup");
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let free = "127.0.0.1:0";
    for (args, needle) in [
        (vec!["run", "--bogus"], "unexpected argument '--bogus'"),
        (vec!["run", "--workers", "0"], "--workers"),
        (
            vec!["run", "--data-dir", data, "--listen", &busy_addr],
            "cannot listen on",
        ),
        (
            vec![
                "run",
                "--data-dir",
                data,
                "--listen",
                free,
                "--http",
                &busy_addr,
            ],
            "(--http)",
        ),
        (
            vec![
                "run",
                "--data-dir",
                file.to_str().unwrap(),
                "--listen",
                free,
            ],
            "not a directory",
        ),
        (
            vec!["run", "--data-dir", "/proc/corral", "--listen", free],
            "cannot create data dir",
        ),
        (
            vec![
                "run",
                "--data-dir",
                data,
                "--listen",
                free,
                "--max-value-bytes",
                "64MiB",
                "--ring-bytes",
                "8MiB",
            ],
            "cannot hold one request",
        ),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
