//! Stale reads, end to end: a three-node cluster in this process takes a deposit, every
//! replica applies it, then two nodes are stopped. On the survivor (no majority, so no
//! leader) a normal (linearizable) balances query fails with the typed unavailable error
//! once the server's leader wait runs out, over gRPC and REST, while the same query
//! flagged stale answers the balances written before, from the survivor's replica.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradelog_client::{AsOf, Balance, Client, ClientConfig, ClientError, Consistency};
use tradelog_domain::*;
use tradelog_server::RunningServer;

const SHARDS: u32 = 2;
const USD: AssetId = AssetId(1);
const ACCOUNT: AccountId = AccountId(3);
const WAIT: Duration = Duration::from_secs(60);

use tradelog_server::testing::{free_port, loopback_url as url};

async fn start(
    id: u64,
    port: u16,
    dir: std::path::PathBuf,
    members: &BTreeMap<u64, String>,
) -> RunningServer {
    tradelog_server::testing::start_cluster_node(id, port, dir, members, SHARDS).await
}

/// A client of one node only, that does not retry: a query's first answer is what the
/// test sees. The request timeout is far above the server's leader wait, so a query that
/// hung would be a `Timeout`, not the `Unavailable` the survivor must answer.
fn one_node(url: String) -> Client {
    let mut c = ClientConfig::new(url);
    c.request_timeout_ms = 60_000;
    c.retry.attempts_max = 1;
    c.route_to_leaders = false;
    Client::new(c).unwrap()
}

/// A GET over plain HTTP/1.1: the status and the JSON body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk (small answers): size line, data, terminator.
        let (_, rest) = body.split_once("\r\n").unwrap();
        rest.rsplit_once("\r\n0\r\n")
            .map_or(rest, |(data, _)| data)
            .trim_end()
            .to_owned()
    } else {
        body.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_without_a_leader_answers_stale_reads_and_refuses_the_others() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, url(ports[id as usize - 1])))
        .collect();
    let mut servers = BTreeMap::new();
    for id in 1..=3u64 {
        let dir = root.path().join(format!("node-{id}"));
        servers.insert(id, start(id, ports[id as usize - 1], dir, &members).await);
    }
    let mut c = ClientConfig::cluster(members.values().cloned());
    c.request_timeout_ms = 60_000;
    c.retry.attempts_max = 60;
    c.retry.backoff_ms_max = 500;
    let cluster = Client::new(c).unwrap();
    cluster
        .create_asset(Asset {
            id: USD,
            code: "USD".into(),
            scale: 2,
        })
        .await
        .unwrap();
    cluster.open_account(ACCOUNT, Principal(7)).await.unwrap();
    cluster
        .deposit(TransferId(1), ACCOUNT, USD, Amount(12_345))
        .await
        .unwrap();
    let written = cluster.balances(ACCOUNT).await.unwrap();
    assert_eq!(
        vec![Balance {
            asset: USD,
            available: Amount(12_345),
            held: Amount(0)
        }],
        written.balances
    );

    // Every replica applied the deposit: each node's own state (a stale read) shows it.
    for port in &ports {
        let node = one_node(url(*port)).stale();
        let deadline = Instant::now() + WAIT;
        loop {
            match node.balances(ACCOUNT).await {
                Ok(b) if b == written => break,
                other => assert!(Instant::now() < deadline, "node {port}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Two of three stop: node 1 is left alone, with no majority for any shard.
    for id in [2, 3] {
        servers.remove(&id).unwrap().shutdown().await.unwrap();
    }
    let survivor = servers.get(&1).unwrap();
    let client = one_node(url(ports[0]));
    assert_eq!(Consistency::Linearizable, client.consistency());

    // gRPC: a normal read is refused with the typed error (not a hang, not a timeout)...
    match client.balances(ACCOUNT).await {
        Err(ClientError::Unavailable { endpoint, .. }) => assert_eq!(url(ports[0]), endpoint),
        other => panic!("a linearizable read without a leader: {other:?}"),
    }
    // ... while the stale one answers what was written, at the same position.
    let stale = client.stale();
    assert_eq!(Consistency::Stale, stale.consistency());
    assert_eq!(written, stale.balances(ACCOUNT).await.unwrap());
    assert_eq!(
        written,
        client
            .with_consistency(Consistency::Stale)
            .balances(ACCOUNT)
            .await
            .unwrap()
    );
    // The catalog and the account's open orders too.
    let catalog = stale.catalog().await.unwrap();
    assert_eq!(
        vec![Asset {
            id: USD,
            code: "USD".into(),
            scale: 2
        }],
        catalog.assets
    );
    let open = stale.open_orders(ACCOUNT).await.unwrap();
    assert!(open.orders.is_empty(), "{open:?}");
    assert!(matches!(
        client.catalog().await,
        Err(ClientError::Unavailable { .. })
    ));
    // A stale read of a past point is refused: as-of answers are fixed points already.
    match stale.balances_as_of(ACCOUNT, AsOf::LogIndex(1)).await {
        Err(ClientError::InvalidArgument(m)) => {
            assert_eq!("invalid field `stale`: cannot be combined with `as_of`", m)
        }
        other => panic!("stale with as_of: {other:?}"),
    }

    // REST: the same two reads.
    let http = survivor.http_addr();
    let (status, v) = http_get(http, &format!("/v1/accounts/{ACCOUNT}/balances")).await;
    assert_eq!(
        (503, "unavailable"),
        (status, v["error"]["code"].as_str().unwrap()),
        "{v}"
    );
    let (status, v) = http_get(http, &format!("/v1/accounts/{ACCOUNT}/balances?stale=true")).await;
    assert_eq!(200, status, "{v}");
    assert_eq!(
        serde_json::json!({
            "account": ACCOUNT.0,
            "balances": [{"asset": USD.0, "available": 12_345, "held": 0}],
            "position": {"shard": written.position.shard.0, "seq": written.position.seq},
        }),
        serde_json::json!({
            "account": v["account"],
            "balances": v["balances"],
            "position": v["position"],
        })
    );
    let (status, v) = http_get(
        http,
        &format!("/v1/accounts/{ACCOUNT}/balances?stale=true&as_of_index=1"),
    )
    .await;
    assert_eq!(
        (
            400,
            "invalid field `stale`: cannot be combined with `as_of`"
        ),
        (status, v["error"]["message"].as_str().unwrap()),
        "{v}"
    );

    servers.remove(&1).unwrap().shutdown().await.unwrap();
}
