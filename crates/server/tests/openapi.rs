//! The OpenAPI document (`docs/api/openapi.json`) against the real server: it lists exactly
//! the router's paths and methods, it is what `/openapi.json` serves, and every example
//! request in it succeeds against a running server with a small known state, answering
//! an object with exactly the documented properties.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tradelog_server::{http_routes, Server, ServerConfig, OPENAPI_JSON};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/api/openapi.json");
    assert_eq!(
        text, OPENAPI_JSON,
        "the server serves the checked-in document"
    );
    serde_json::from_str(&text).expect("the document is JSON")
}

/// (METHOD, path) of every operation of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let routes: BTreeSet<(String, String)> = http_routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(routes.len(), http_routes().len(), "no route twice");
    assert_eq!(operations(&doc), routes);
    // Every operation is described and answers 200; every path parameter has an example
    // (the example requests below need one).
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        for key in ["operationId", "summary"] {
            assert!(op[key].is_string(), "{method} {path}: no {key}");
        }
        assert!(
            op["responses"]["200"].is_object(),
            "{method} {path}: no 200"
        );
        for p in op["parameters"].as_array().into_iter().flatten() {
            assert!(p["description"].is_string(), "{method} {path}: {p}");
            if p["in"] == "path" {
                assert!(
                    p["required"] == json!(true) && !p["example"].is_null(),
                    "{p}"
                );
            }
        }
    }
}

async fn send(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, Vec<u8>) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let res = c.request(req).await.expect("HTTP request");
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if ctype.starts_with("text/event-stream") {
        // A stream that stays open: its head is the answer.
        return (status, ctype, Vec::new());
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, body.to_vec())
}

/// The schema a `$ref` names.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The request an operation's examples make: the path with its parameters filled in,
/// the query parameters that have an example, the request body's example.
fn example_request(op: &Value, path: &str) -> (String, Option<Value>) {
    let mut path = path.to_owned();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap();
        let value = match &p["example"] {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match p["in"].as_str().unwrap() {
            "path" => path = path.replace(&format!("{{{name}}}"), &value),
            "query" => query.push(format!("{name}={value}")),
            other => panic!("parameter in {other}"),
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let body = op["requestBody"]["content"]["application/json"]["example"].clone();
    (path, (!body.is_null()).then_some(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_request_succeeds_against_a_running_server() {
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        shards: 4,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.http_addr();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // The state the examples assume: USD (1) and BTC (2), market 1 on shard 0, account 7
    // (shard 3) with USD and BTC, account 8 (shard 0) with a resting sell order (id 1).
    let fixture = [
        json!({"CreateAsset": {"id": 1, "code": "USD", "scale": 2}}),
        json!({"CreateAsset": {"id": 2, "code": "BTC", "scale": 8}}),
        json!({"CreateMarket": {"id": 1, "base": 2, "quote": 1, "lot_size": 1_000_000,
            "tick_size": 100, "min_qty": 1_000_000, "max_qty": 100_000_000_000u64,
            "maker_fee_bps": 10, "taker_fee_bps": 20, "fee_account": 8, "collar_bps": 0,
            "shard": 0}}),
        json!({"OpenAccount": {"account": 7, "owner": 7}}),
        json!({"OpenAccount": {"account": 8, "owner": 8}}),
        json!({"Deposit": {"id": 1, "account": 7, "asset": 1, "amount": 10_000_000}}),
        json!({"Deposit": {"id": 2, "account": 7, "asset": 2, "amount": 100_000_000}}),
        json!({"Deposit": {"id": 3, "account": 8, "asset": 2, "amount": 500_000_000}}),
        json!({"PlaceOrder": {"account": 8, "market": 1, "side": "Sell", "order_type": "Limit",
            "tif": "Gtc", "price": 30_000, "qty": 1_000_000, "post_only": false,
            "client_order_id": 0, "stp": "CancelResting"}}),
    ];
    for cmd in &fixture {
        let (status, _, body) = send(&c, addr, "POST", "/v1/commands", Some(cmd)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{v}");
        assert!(
            v["outcome"]["result"]["Ok"].is_string() || v["outcome"]["result"]["Ok"].is_object(),
            "{cmd}: {v}"
        );
    }
    // The order rests once its shard applied it (the answer comes from the account's
    // shard; here both are shard 0, so it already has).
    let mut ran = 0;
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let (target, body) = example_request(op, &path);
        let (status, ctype, bytes) = tokio::time::timeout(
            Duration::from_secs(10),
            send(&c, addr, &method, &target, body.as_ref()),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {target}: no answer"));
        let text = String::from_utf8_lossy(&bytes);
        if op["x-cluster-only"] == json!(true) {
            // Refused on this single node, with the documented error.
            assert_eq!(status, 409, "{method} {target}: {text}");
            assert!(
                op["responses"]["409"].is_object(),
                "{method} {path}: no 409"
            );
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["error"]["code"], json!("failed_precondition"), "{v}");
            ran += 1;
            continue;
        }
        assert_eq!(status, 200, "{method} {target}: {text}");
        let content = op["responses"]["200"]["content"].as_object().unwrap();
        let (want_type, media) = content.iter().next().unwrap();
        assert!(
            ctype.starts_with(want_type.as_str()),
            "{method} {target}: {ctype} is not {want_type}"
        );
        if want_type == "application/json" {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let schema = resolve(&doc, &media["schema"]);
            if let Some(props) = schema["properties"].as_object() {
                let got: BTreeSet<&String> = v.as_object().expect("an object").keys().collect();
                let want: BTreeSet<&String> = props.keys().collect();
                assert_eq!(want, got, "{method} {target}: {v}");
            }
        }
        ran += 1;
    }
    assert_eq!(ran, http_routes().len());
    server.shutdown().await.unwrap();
}
