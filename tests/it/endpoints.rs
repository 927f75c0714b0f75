//! Many endpoints: deliveries to hundreds of distinct loopback hosts, the
//! bound on idle keep-alive connections across them (read from `/proc`),
//! the connections a busy endpoint keeps between bursts, host names
//! resolved for a burst of new hosts, and the file-descriptor limit raised
//! at start.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hookline::delivery::runner::Topics;

use crate::support::process::{command, output};
use crate::support::replica::{Replica, TestTenant, create_topics, replica_config, write_topology};
use crate::support::{Broker, Receiver};

/// The `n`th test host: 127.1.x.y, never 127.0.0.1, each a host of its own
/// to the client's pool.
fn host(n: usize) -> IpAddr {
    let n = u32::try_from(n).unwrap();
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}

/// This process holds a few descriptors per host (a listener, the
/// replica's connection and the accepted one): more than a soft limit of
/// 1024 allows, so it is raised as `hookline run` raises its own.
fn raise_fd_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::increase_nofile_limit(hard).unwrap();
}

/// Sockets of this process (they hold a descriptor: a socket closed and in
/// TIME_WAIT holds none) whose remote end is one of `peers`.
fn connections_to(peers: &HashSet<SocketAddr>) -> usize {
    let own: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9
                && own.contains(fields[9])
                && parse_address(fields[2]).is_some_and(|remote| peers.contains(&remote))
        })
        .count()
}

/// `0302017F:1F90` of `/proc/net/tcp`: the address as the kernel stores it
/// (network order, printed as a native integer), the port in hex.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(ip.to_ne_bytes())),
        port,
    ))
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "type": "x", "data": {}})).unwrap()
}

/// Registers tenant `t{i}` at `urls[i]`, then produces `rounds` events to
/// each tenant, round after round; returns the ids produced.
async fn register_and_produce(
    broker: &Broker,
    topics: &Topics,
    urls: &[String],
    rounds: usize,
) -> HashSet<String> {
    for (i, url) in urls.iter().enumerate() {
        let tenant = TestTenant::new(&format!("t{i}"));
        tenant.register(broker, topics, &tenant.record(url)).await;
    }
    let mut ids = HashSet::new();
    for round in 0..rounds {
        for i in 0..urls.len() {
            let id = format!("e{round}-{i}");
            broker
                .produce(
                    &topics.events,
                    Some(format!("t{i}").as_bytes()),
                    Some(&event(&id)),
                    &[],
                )
                .await;
            ids.insert(id);
        }
    }
    ids
}

/// Every distinct `webhook-id` the receivers got.
fn arrived(receivers: &[Receiver]) -> HashSet<String> {
    receivers
        .iter()
        .flat_map(|r| r.received())
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect()
}

async fn wait_arrived(receivers: &[Receiver], expected: &HashSet<String>) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ids = arrived(receivers);
        if ids.is_superset(expected) || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_hundreds_of_hosts_arrive_and_idle_connections_stay_bounded() {
    const HOSTS: usize = 300;
    // Twenty hosts may keep one idle connection each.
    const MAX_IDLE: usize = 20;
    raise_fd_limit();
    let broker = Broker::new("endpoints");
    let topics = create_topics(&broker, 4).await;
    let mut receivers = Vec::new();
    for n in 0..HOSTS {
        receivers.push(
            Receiver::ok_on(host(n))
                .await
                .expect("127.1.0.0/16 is loopback on Linux"),
        );
    }
    let urls: Vec<String> = receivers.iter().map(|r| r.url("/hook")).collect();
    let peers: HashSet<SocketAddr> = receivers.iter().map(|r| r.addr).collect();
    // Two rounds, so that the second finds the first's kept connections.
    let expected = register_and_produce(&broker, &topics, &urls, 2).await;

    let config = replica_config(
        &broker,
        &[
            ("DELIVERY__POOL_MAX_IDLE_PER_HOST", "1"),
            ("DELIVERY__POOL_MAX_IDLE", &MAX_IDLE.to_string()),
        ],
    );
    let replica = Replica::start(config, &topics).await;
    let ids = wait_arrived(&receivers, &expected).await;
    let missing: Vec<&String> = expected.difference(&ids).collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");
    for (n, receiver) in receivers.iter().enumerate() {
        assert!(receiver.received().len() >= 2, "host {}", host(n));
    }

    // The last attempts may still be reading their answers; connections of
    // hosts beyond the kept ones close with them. Without the bound across
    // hosts, each of the 300 hosts would keep its connection for the idle
    // timeout (60 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = connections_to(&peers);
    while open > MAX_IDLE && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = connections_to(&peers);
    }
    assert!(
        open <= MAX_IDLE,
        "{open} connections open to {HOSTS} hosts, bound {MAX_IDLE}"
    );
    // Keep-alive still works for the kept hosts.
    assert!(open > 0, "no connection kept alive");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_endpoint_keeps_a_connection_for_each_attempt_it_takes_at_once() {
    // Thirty tenants on one endpoint that answers after 300 ms: in key
    // order, each round puts thirty attempts to it in flight at once.
    const TENANTS: usize = 30;
    const ANSWER: Duration = Duration::from_millis(300);
    let broker = Broker::new("endpoints-busy");
    let topics = create_topics(&broker, 4).await;
    let receiver = Receiver::slow(ANSWER, Arc::new(|_, _| StatusCode::OK)).await;
    let urls = vec![receiver.url("/hook"); TENANTS];
    let expected = register_and_produce(&broker, &topics, &urls, 3).await;
    // The shipped pool bounds.
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    let receivers = [receiver];
    let ids = wait_arrived(&receivers, &expected).await;
    let missing: Vec<&String> = expected.difference(&ids).collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");
    let [receiver] = receivers;
    let at_once = receiver.most_concurrent();
    assert!(at_once >= 20, "only {at_once} attempts at once");

    // Once the last answers are read, the host keeps the connections its
    // rounds took at once, idle until the next round. With at most 8 idle
    // connections per host, as shipped before, the rest were closed after
    // each round and opened again for the next.
    tokio::time::sleep(ANSWER + Duration::from_secs(1)).await;
    let open = connections_to(&HashSet::from([receiver.addr]));
    assert!(
        (20..=TENANTS + 8).contains(&open),
        "{open} connections kept to an endpoint that took {at_once} attempts at once"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_host_names_is_resolved_and_delivered() {
    // Host names go through the resolver (and the destination guard in
    // it); each port is a host of its own to the pool. `localhost` is the
    // one name every machine resolves without DNS.
    const HOSTS: usize = 100;
    raise_fd_limit();
    let broker = Broker::new("endpoints-names");
    let topics = create_topics(&broker, 4).await;
    let mut receivers = Vec::new();
    for _ in 0..HOSTS {
        receivers.push(Receiver::ok().await);
    }
    let urls: Vec<String> = receivers
        .iter()
        .map(|r| format!("http://localhost:{}/hook", r.addr.port()))
        .collect();
    let expected = register_and_produce(&broker, &topics, &urls, 1).await;
    let replica = Replica::start(replica_config(&broker, &[]), &topics).await;
    let ids = wait_arrived(&receivers, &expected).await;
    let missing: Vec<&String> = expected.difference(&ids).collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_api_raise_the_file_descriptor_limit_and_say_so() {
    let broker = Broker::new("fd-limit");
    let dir = tempfile::tempdir().unwrap();
    // The limit is raised once a command is sure to start (a refusal is its
    // only line), so both get topics that are ready and stop at SIGTERM.
    let topics = create_topics(&broker, 1).await;
    let topology = write_topology(dir.path(), &topics, 1);
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    // Started with a low soft limit, as many systems start services, and
    // stopped by one SIGTERM after 10 s: `--foreground`, because otherwise
    // `timeout` signals its process group as well as the command, and a
    // second SIGTERM that arrives after the first was handled is the
    // operator's "exit at once" (status 130).
    let low = 256.min(hard);
    for args in [&["run"][..], &["api", "--listen", "127.0.0.1:0"][..]] {
        let hookline = command(&broker, &topology);
        let program = hookline.get_program().to_owned();
        let mut lowered = std::process::Command::new("sh");
        lowered
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {low} && exec timeout --foreground -s TERM --preserve-status 10 \"$0\" \"$@\""
            ))
            .arg(program)
            .args(args);
        for (key, value) in hookline.get_envs() {
            match value {
                Some(value) => lowered.env(key, value),
                None => lowered.env_remove(key),
            };
        }
        lowered.env("HOOKLINE__API__ADMIN_TOKEN", "an-admin-token-of-16+");
        let (code, _, stderr) = output(lowered, &[]);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("file descriptor limit"))
            .unwrap_or_else(|| panic!("{args:?}: no file descriptor line in {stderr}"));
        assert!(line.contains(&format!("soft_before={low}")), "{line}");
        assert!(line.contains(&format!(" soft={hard}")), "{line}");
        assert!(line.contains(&format!("hard={hard}")), "{line}");
    }
}
