//! Logs on the real binary: every line of a run (supervisor and workers) is a JSON object
//! with the common fields; sampled write lines carry the connection id and the sequence
//! number that correlates them with the event log; `--log-format text` is for people.

use std::time::Duration;

use corral_tests::Corral;

#[test]
fn every_line_is_json_with_the_common_fields_and_writes_are_correlated() {
    let mut corral = Corral::start(2, &["--log-sample-rate", "1"]);
    let mut c = corral.client();
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    drop(c);
    assert!(corral.stop(Duration::from_secs(20)).success());
    let log = corral.log();
    let mut seqs = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["ts", "level", "msg", "component", "process", "process_pid"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        if v["component"] == "lifecycle" && v["msg"] == "worker spawned" {
            assert!(
                v.get("worker").is_some() && v.get("pid").is_some(),
                "{line}"
            );
        }
        if v["msg"] == "write" {
            assert!(v["conn"].as_u64().is_some(), "{line}");
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs.len(), 20, "every write sampled at rate 1");
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 20, "one sequence number per write: {seqs:?}");
    assert!(sorted[0] > 0);
}

#[test]
fn text_format_is_one_readable_line_per_event() {
    let mut corral = Corral::start(1, &["--log-format", "text", "--command-metrics", "off"]);
    assert!(corral.stop(Duration::from_secs(20)).success());
    let log = corral.log();
    let ready = log
        .lines()
        .find(|l| l.contains(" worker ready ") && l.contains("component=lifecycle"))
        .unwrap_or_else(|| panic!("{log}"));
    // 2026-01-31T12:34:56.789Z INFO  worker ready ...
    let (ts, rest) = ready.split_once(' ').unwrap();
    assert_eq!(ts.len(), 24, "{ready}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ready}");
    assert!(rest.starts_with("INFO"), "{ready}");
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
}
