//! Black-box test of `tradelog serve`: the real binary on free ports of 127.0.0.1, spoken
//! to over plain HTTP/1.1, stopped with SIGTERM, started again on the same data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port of 127.0.0.1, claimed for this test (`tradelog_server::ports`).
fn free_port() -> u16 {
    tradelog_server::ports::free_loopback_port().expect("a free port")
}

/// One request with `Connection: close`; `None` if the server cannot be reached.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The server process; killed if a test fails while it runs.
struct Serve {
    child: Child,
    http_port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve(dir: &Path, logs: &Path, via_env: bool) -> Serve {
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tradelog"));
    cmd.arg("serve");
    let grpc = format!("127.0.0.1:{grpc_port}");
    let http_addr = format!("127.0.0.1:{http_port}");
    if via_env {
        cmd.env("TRADELOG_DATA_DIR", dir)
            .env("TRADELOG_SHARDS", "2")
            .env("TRADELOG_GRPC_ADDR", &grpc)
            .env("TRADELOG_HTTP_ADDR", &http_addr);
    } else {
        cmd.arg("--data-dir").arg(dir).args([
            "--shards",
            "2",
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &http_addr,
        ]);
    }
    let out = std::fs::File::create(logs.with_extension("out")).unwrap();
    let err = std::fs::File::create(logs.with_extension("err")).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start tradelog serve");
    let mut s = Serve { child, http_port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http(http_port, "GET", "/ready", "") {
            break;
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!(
                "tradelog serve exited early ({status}): {}",
                std::fs::read_to_string(logs.with_extension("err")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "tradelog serve never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

/// Sends SIGTERM and returns the exit code (it must exit within a few seconds).
fn terminate(mut s: Serve) -> i32 {
    let pid = s.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn command(port: u16, json: &str) -> String {
    let (status, body) = http(port, "POST", "/v1/commands", json).expect("server reachable");
    assert_eq!(status, 200, "{json}: {body}");
    assert!(body.contains("\"Ok\""), "{json}: {body}");
    body
}

fn balance_of_7(port: u16) -> String {
    let (status, body) =
        http(port, "GET", "/v1/accounts/7/balances", "").expect("server reachable");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn serve_answers_http_stops_on_sigterm_and_restarts_with_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let logs = tmp.path().join("first");
    let s = serve(&data, &logs, false);
    let port = s.http_port;
    command(port, r#"{"CreateAsset":{"id":1,"code":"USD","scale":2}}"#);
    command(port, r#"{"OpenAccount":{"account":7,"owner":7}}"#);
    command(
        port,
        r#"{"Deposit":{"id":1,"account":7,"asset":1,"amount":12345}}"#,
    );
    let before = balance_of_7(port);
    assert!(
        before.contains(r#""balances":[{"asset":1,"available":12345,"held":0}]"#),
        "{before}"
    );
    let (status, body) = http(port, "POST", "/v1/commands", "{").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_json"), "{body}");
    let (status, metrics) = http(port, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("tradelog_commands_total"), "{metrics}");

    assert_eq!(terminate(s), 0, "graceful exit");
    let out = std::fs::read_to_string(logs.with_extension("out")).unwrap();
    assert!(
        out.contains(&format!("HTTP on http://127.0.0.1:{port}")),
        "{out}"
    );
    let err = std::fs::read_to_string(logs.with_extension("err")).unwrap();
    assert!(err.contains("finished in-flight work"), "{err}");

    // Again, configured through the environment this time: the same balance.
    let s = serve(&data, &tmp.path().join("second"), true);
    let after = balance_of_7(s.http_port);
    let strip = |b: &str| b.split(",\"position\"").next().unwrap().to_owned();
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(terminate(s), 0);

    // The stopped node's data verifies offline: checksums, chain, full replay.
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .arg("verify")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("shard 0: OK") && text.contains("shard 1: OK"),
        "{text}"
    );

    // A damaged byte in a log record is found and named.
    let seg = data.join("shard-1/log/segment-00000000000000000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 20] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .arg("verify")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("shard 1: FAILED"), "{text}");
}
