//! Start-up errors: one line on stderr and exit code 2. (Living in this package also makes
//! `cargo test --workspace` build the `corral` binary that the black-box tests run.)

use std::process::Command;

use corral_tests::TempDir;

fn corral_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(corral_bin())
        .args(args)
        .output()
        .expect("run corral");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
            ],
            "cannot hold one request",
        ),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
