//! The operations HTTP API (feature `ops`, docs/operations.md) over real HTTP on both layers:
//! liveness, readiness (503 naming what is down), Prometheus metrics read by a Prometheus parser,
//! the outbox's dead letters listed, shown and replayed onto their topic, and the bearer-token
//! rules of the mutating endpoints.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use eventbus::ops::{self, Ops};
use eventbus::{Database, EventBus, KafkaConfig, OutboxConfig};
use eventbus_tests::{OrderPlaced, Petstore};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request (`Connection: close`): the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, None, None).await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, token, body).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The API of `bus` on a free loopback port.
async fn start<S: eventbus::Service>(bus: EventBus<S>, ops: Ops) -> SocketAddr {
    let listening = ops::bind("127.0.0.1:0".parse().unwrap(), ops::router(bus, ops))
        .await
        .unwrap();
    let addr = listening.local_addr().unwrap();
    tokio::spawn(listening.run());
    addr
}

/// Moves every waiting row of the layer's outbox to its dead table, as the relay does after
/// `max_attempts`.
async fn kill_all(layer: &support::Layer) {
    let t = &layer.table;
    let cols = "event_id, topic, partition_key, event_type, version, headers, payload, created_at";
    let insert = format!(
        "INSERT INTO {t}_dead (id, {cols}, attempts, last_error, shard) \
         SELECT id, {cols}, 3, 'broker said no', shard FROM {t}"
    );
    let delete = format!("DELETE FROM {t}");
    match layer.store.database() {
        Database::Sqlite(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(delete))
                .execute(&pool)
                .await
                .unwrap();
        }
        Database::Postgres(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(delete))
                .execute(&pool)
                .await
                .unwrap();
        }
        Database::Url(_) => unreachable!("a layer's store has a pool"),
    }
}

/// The audit table's rows: (reason, last error).
async fn audit(layer: &support::Layer) -> Vec<(String, String)> {
    let query = format!(
        "SELECT reason, last_error FROM {}_discarded ORDER BY id",
        layer.table
    );
    match layer.store.database() {
        Database::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(query))
            .fetch_all(&pool)
            .await
            .unwrap(),
        Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(query))
            .fetch_all(&pool)
            .await
            .unwrap(),
        Database::Url(_) => unreachable!("a layer's store has a pool"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_outbox_dead_letters_over_http() {
    for layer in support::layers().await {
        let name = layer.name;
        let bus = EventBus::builder(Petstore)
            .database(layer.store.database())
            .kafka(layer.kafka.clone())
            .outbox(OutboxConfig {
                table: layer.table.clone(),
                ..OutboxConfig::default()
            })
            .without_relay()
            .build()
            .await
            .unwrap();
        let addr = start(bus.clone(), Ops::new().token("s3cret")).await;

        let (status, body) = get_json(addr, "/health/live").await;
        assert_eq!((status, &body["live"]), (200, &json!(true)), "{name}");

        // A bus built after the API (which installed the Prometheus recorder) has its publishes
        // counted and timed there.
        let writer = EventBus::builder(Petstore)
            .database(layer.store.database())
            .kafka(layer.kafka.clone())
            .outbox(OutboxConfig {
                table: layer.table.clone(),
                ..OutboxConfig::default()
            })
            .without_relay()
            .build()
            .await
            .unwrap();
        for order in OrderPlaced::numbered(3) {
            writer.publish(&order).await.unwrap();
        }
        kill_all(&layer).await;

        let (status, ready) = get_json(addr, "/health/ready").await;
        assert_eq!(status, 200, "{name}: {ready}");
        assert_eq!(ready["ready"], json!(true));
        assert_eq!(ready["kafka"]["up"], json!(true));
        assert_eq!(ready["database"]["up"], json!(true));
        assert_eq!(ready["backlog"]["dead"], json!(3), "{name}: {ready}");

        // The readiness check set the outbox gauges; the exposition parses.
        let (status, text) = http(addr, "GET", "/metrics", None, None).await;
        assert_eq!(status, 200, "{name}: {text}");
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let dead = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "eventbus_outbox_dead"
                    && s.labels.get("table") == Some(layer.table.as_str())
            })
            .unwrap_or_else(|| panic!("{name}: no eventbus_outbox_dead in\n{text}"));
        assert!(
            matches!(dead.value, prometheus_parse::Value::Gauge(v) if v == 3.0),
            "{name}: {:?}",
            dead.value
        );
        // Publish latency is a histogram (buckets aggregate across instances; the alert rules in
        // deploy/prometheus take quantiles of it).
        let timed = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "eventbus_publish_duration_seconds"
                    && s.labels.get("mode") == Some("transactional")
            })
            .unwrap_or_else(|| panic!("{name}: no eventbus_publish_duration_seconds in\n{text}"));
        let prometheus_parse::Value::Histogram(buckets) = &timed.value else {
            panic!("{name}: not a histogram: {:?}", timed.value)
        };
        let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
        assert!(total >= 3.0, "{name}: {buckets:?}");

        // Listed, filtered, paged.
        let (status, list) = get_json(addr, "/dead-letters/outbox").await;
        assert_eq!(status, 200, "{name}: {list}");
        let all = list["dead_letters"].as_array().unwrap().clone();
        assert_eq!(all.len(), 3, "{name}: {list}");
        assert_eq!(list["next"], Value::Null);
        let topic = all[0]["topic"].as_str().unwrap().to_owned();
        let event_type = all[0]["event_type"].as_str().unwrap().to_owned();
        let (_, page) = get_json(addr, "/dead-letters/outbox?limit=2").await;
        assert_eq!(page["dead_letters"].as_array().unwrap().len(), 2);
        let next = page["next"].as_str().unwrap();
        assert_eq!(next, all[1]["id"].as_str().unwrap());
        let (_, rest) = get_json(addr, &format!("/dead-letters/outbox?limit=2&after={next}")).await;
        assert_eq!(
            rest["dead_letters"].as_array().unwrap()[0]["id"],
            all[2]["id"]
        );
        assert_eq!(rest["next"], Value::Null);
        let (_, none) = get_json(addr, "/dead-letters/outbox?event_type=no.such.type").await;
        assert!(none["dead_letters"].as_array().unwrap().is_empty());
        let (_, same) = get_json(
            addr,
            &format!("/dead-letters/outbox?event_type={event_type}&topic={topic}"),
        )
        .await;
        assert_eq!(same["dead_letters"].as_array().unwrap().len(), 3);

        // Shown.
        let first = all[0]["id"].as_str().unwrap().to_owned();
        let (status, shown) = get_json(addr, &format!("/dead-letters/outbox/{first}")).await;
        assert_eq!(status, 200, "{name}: {shown}");
        assert_eq!(shown["attempts"], json!(3));
        assert_eq!(shown["error"], json!("broker said no"));
        assert_eq!(shown["headers"]["ce_id"], json!(first), "{name}: {shown}");
        assert!(shown["payload"].is_object(), "{name}: {shown}");
        assert!(shown["dead_for_secs"].as_f64().unwrap() >= 0.0, "{shown}");
        let (_, old) = get_json(addr, "/dead-letters/outbox?older_than_secs=3600").await;
        assert!(old["dead_letters"].as_array().unwrap().is_empty(), "{old}");
        let (_, recent) = get_json(addr, "/dead-letters/outbox?older_than_secs=0").await;
        assert_eq!(recent["dead_letters"].as_array().unwrap().len(), 3);
        let (status, _) =
            get_json(addr, &format!("/dead-letters/outbox/{}", uuid::Uuid::nil())).await;
        assert_eq!(status, 404);

        // Mutations: refused without the token or with a wrong one.
        let one = format!("/dead-letters/outbox/{first}/replay");
        for token in [None, Some("wrong"), Some("s3cret2"), Some("")] {
            let (status, body) = post_json(addr, &one, token, None).await;
            assert_eq!(status, 401, "{name}: {token:?}: {body}");
        }
        let (status, body) = post_json(
            addr,
            "/dead-letters/outbox/replay",
            Some("s3cret"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 400, "a set replay names its filter: {body}");

        // Discarded: gone from the dead letters, kept with its reason in the audit table.
        let (status, extra) = {
            bus.publish_all(&OrderPlaced::numbered(1)).await.unwrap();
            kill_all(&layer).await;
            get_json(addr, "/dead-letters/outbox").await
        };
        assert_eq!(status, 200);
        let doomed = extra["dead_letters"].as_array().unwrap()[3]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let discard = format!("/dead-letters/outbox/{doomed}/discard");
        let reason = json!({ "reason": "a test order, never to be sent" });
        let (status, _) = post_json(addr, &discard, None, Some(reason.clone())).await;
        assert_eq!(status, 401);
        let (status, body) = post_json(addr, &discard, Some("s3cret"), Some(json!({}))).await;
        assert_eq!(status, 400, "a discard gives its reason: {body}");
        let (status, body) = post_json(addr, &discard, Some("s3cret"), Some(reason.clone())).await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, _) = get_json(addr, &format!("/dead-letters/outbox/{doomed}")).await;
        assert_eq!(status, 404);
        let (status, _) = post_json(addr, &discard, Some("s3cret"), Some(reason)).await;
        assert_eq!(status, 404, "discarded once");
        assert_eq!(
            audit(&layer).await,
            vec![(
                "a test order, never to be sent".to_owned(),
                "broker said no".to_owned()
            )],
            "{name}"
        );

        // Replayed: one by id, then the rest by filter; a relay delivers them to their topic.
        let reader = support::Reader::at_end(&layer.kafka, &topic).await;
        let (status, body) = post_json(addr, &one, Some("s3cret"), None).await;
        assert_eq!(
            (status, &body["replayed"]),
            (200, &json!(1)),
            "{name}: {body}"
        );
        let (status, _) = post_json(addr, &one, Some("s3cret"), None).await;
        assert_eq!(status, 404, "{name}: no longer dead");
        let (status, body) = post_json(
            addr,
            "/dead-letters/outbox/replay",
            Some("s3cret"),
            Some(json!({ "event_type": event_type })),
        )
        .await;
        assert_eq!(
            (status, &body["replayed"]),
            (200, &json!(2)),
            "{name}: {body}"
        );
        let (_, list) = get_json(addr, "/dead-letters/outbox").await;
        assert!(
            list["dead_letters"].as_array().unwrap().is_empty(),
            "{list}"
        );

        let relaying = support::transactional_bus(&layer).await;
        let ids: Vec<String> = all
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        let records = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(30), |got| {
                ids.iter()
                    .all(|id| got.iter().any(|r| r.envelope().id.to_string() == *id))
            })
        });
        for id in &ids {
            assert!(
                records.iter().any(|r| r.envelope().id.to_string() == *id),
                "{name}: {id} arrives on {topic}"
            );
        }
        relaying.shutdown().await;
        bus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_api_is_read_only() {
    let layer = support::embedded().await;
    let bus = support::transactional_bus(&layer).await;
    let addr = start(bus.clone(), Ops::new()).await;
    let (status, _) = get_json(addr, "/dead-letters/outbox").await;
    assert_eq!(status, 200);
    for path in [
        format!("/dead-letters/outbox/{}/replay", uuid::Uuid::nil()),
        format!("/dead-letters/outbox/{}/discard", uuid::Uuid::nil()),
        "/dead-letters/outbox/replay".to_owned(),
    ] {
        let (status, body) =
            post_json(addr, &path, Some("anything"), Some(json!({"reason": "x"}))).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("EVENTBUS_OPS_TOKEN"),
            "says how to enable them: {body}"
        );
    }
    // The token is never shown.
    let shown = format!("{:?}", Ops::new().token("hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_makes_the_instance_unready() {
    let bus = EventBus::builder(Petstore)
        .kafka(KafkaConfig::new("127.0.0.1:1"))
        .direct()
        .kafka_check(None)
        .build()
        .await
        .unwrap();
    let addr = start(
        bus.clone(),
        Ops::new().health_timeout(Duration::from_secs(1)),
    )
    .await;
    let (status, _) = get_json(addr, "/health/live").await;
    assert_eq!(status, 200);
    let (status, body) = get_json(addr, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], json!(false));
    assert_eq!(body["down"], json!(["kafka"]));
    assert!(
        body["kafka"]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "{body}"
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_dead_letter_topic_is_listed_and_replayed() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    for layer in support::layers().await {
        let name = layer.name;
        let run = uuid::Uuid::now_v7().simple().to_string();
        let original = format!("eventbus.tests.ops-orig-{run}");
        let dlq = format!("{original}.dlq");
        let reader = support::Reader::at_end(&layer.kafka, &original).await;
        let _dlq_reader = support::Reader::at_end(&layer.kafka, &dlq).await;
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", layer.kafka.bootstrap_servers.join(","))
            .create()
            .unwrap();
        let ids = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
        for id in &ids {
            let id = id.to_string();
            let headers = [
                ("ce_id", id.as_str()),
                ("ce_type", "petstore.order.placed"),
                (eventbus::dlq::ORIGINAL_TOPIC, original.as_str()),
                (eventbus::dlq::ERROR, "handler failed"),
                (eventbus::dlq::ATTEMPTS, "5"),
                (eventbus::dlq::FAILED_IN, "orders::on_placed"),
                (eventbus::dlq::GROUP, "orders"),
            ]
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
            producer
                .send(
                    FutureRecord::to(&dlq)
                        .key("order-1")
                        .payload("{}")
                        .headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
        let bus = support::direct_bus(&layer).await;
        let addr = start(bus.clone(), Ops::new().token("s3cret")).await;

        let (status, list) = get_json(addr, &format!("/dead-letters/topics/{dlq}")).await;
        assert_eq!(status, 200, "{name}: {list}");
        let letters = list["dead_letters"].as_array().unwrap();
        assert_eq!(letters.len(), 2, "{name}: {list}");
        let listed: Vec<&str> = letters.iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert!(listed.contains(&ids[0].to_string().as_str()), "{list}");
        let first = letters
            .iter()
            .find(|l| l["id"] == json!(ids[0].to_string()))
            .unwrap();
        assert_eq!(first["original_topic"], json!(original));
        assert_eq!(first["error"], json!("handler failed"));
        assert_eq!(first["attempts"], json!(5));
        assert_eq!(first["group"], json!("orders"));

        let replay = format!("/dead-letters/topics/{dlq}/replay");
        let one = json!({ "ids": [ids[0]] });
        let (status, _) = post_json(addr, &replay, None, Some(one.clone())).await;
        assert_eq!(status, 401);
        let (status, _) = post_json(addr, &replay, Some("s3cret"), Some(json!({}))).await;
        assert_eq!(status, 400);
        let (status, body) = post_json(addr, &replay, Some("s3cret"), Some(one)).await;
        assert_eq!(
            (status, &body["replayed"]),
            (200, &json!(1)),
            "{name}: {body}"
        );
        let records = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(30), |got| !got.is_empty())
        });
        assert_eq!(records.len(), 1, "{name}");
        assert_eq!(
            records[0].header("ce_id").as_deref(),
            Some(ids[0].to_string().as_str())
        );
        assert!(
            records[0].header(eventbus::dlq::ERROR).is_none(),
            "the dead-letter headers are stripped"
        );
        bus.shutdown().await;
    }
}

/// The samples of `metric` in a Prometheus scrape whose labels include `labels`.
fn samples(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect()
}

/// A relay that dead-letters an event the producer refuses (too large) and a consumer whose
/// handler refuses another: each dead letter is announced once with its class, the listings
/// filter by class, and `/metrics` shows the dead-letter counters and gauges by class (the dead
/// table's, from the relay; the dead-letter topic's, counted by the API) and the consumer's lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_by_class_and_consumer_lag_in_metrics() {
    use eventbus::dlq::{self, DeadLettered, ErrorClass};
    use eventbus_tests::{Blob, BlobTopic};
    // The global recorder first, so the counters of the bus and consumer built below record.
    drop(ops::router(EventBus::testing(Petstore), Ops::new()));
    for layer in support::layers().await {
        let name = layer.name;
        let run = uuid::Uuid::now_v7().simple().to_string();
        let notices = support::Reader::at_end(&layer.kafka, DeadLettered::TOPIC).await;
        let dlq_topic = format!("{}.dlq", Blob::TOPIC);
        let _dlq_reader = support::Reader::at_end(&layer.kafka, &dlq_topic).await;
        let relayed: std::sync::Arc<std::sync::Mutex<Vec<DeadLettered>>> = Default::default();
        let hook = std::sync::Arc::clone(&relayed);
        // The producer refuses records over 2,000 bytes (MSG_SIZE_TOO_LARGE): the relay
        // dead-letters at the first attempt.
        let bus = EventBus::builder(Petstore)
            .database(layer.store.database())
            .kafka(
                layer
                    .kafka
                    .clone()
                    .with_property("message.max.bytes", "2000"),
            )
            .outbox(OutboxConfig {
                table: layer.table.clone(),
                poll_interval: Duration::from_millis(100),
                max_attempts: 1,
                ..OutboxConfig::default()
            })
            .on_dead_letter(move |n| hook.lock().unwrap().push(n.clone()))
            .build()
            .await
            .unwrap();
        let group = format!("ops-lag-{run}");
        let r = run.clone();
        let consumer = bus
            .consumer(&group)
            .subscribe::<BlobTopic>()
            .retry(eventbus::RetryPolicy::none())
            .on::<Blob, _>(move |b: Blob| {
                let refuse = b.key == format!("{r}-refused");
                async move {
                    if refuse {
                        Err("refused by the handler".to_owned())
                    } else {
                        Ok(())
                    }
                }
            })
            .start()
            .await
            .unwrap();
        assert!(consumer.ready(Duration::from_secs(30)).await, "{name}");
        let addr = start(bus.clone(), Ops::new().token("s3cret")).await;

        let big = bus
            .publish(&Blob {
                key: format!("{run}-big"),
                data: "x".repeat(4_000),
            })
            .await
            .unwrap();
        let refused = bus
            .publish(&Blob {
                key: format!("{run}-refused"),
                data: "ok".into(),
            })
            .await
            .unwrap();
        let stats = consumer.stats();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while stats.dead_lettered() < 1 || relayed.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{name}: both dead");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // One notification each, with its class.
        let (big_id, refused_id) = (big.event_id.to_string(), refused.event_id.to_string());
        let mut announced = tokio::task::block_in_place(|| {
            support::notifications_of(&notices, &[&big_id, &refused_id])
        });
        let (of_big, of_refused) = (announced.remove(0), announced.remove(0));
        assert_eq!(of_big.len(), 1, "{name}: {of_big:?}");
        assert_eq!(of_big[0].class, ErrorClass::BrokerRefused, "{name}");
        assert_eq!(of_big[0].service.as_deref(), Some("petstore"));
        assert_eq!(
            *relayed.lock().unwrap(),
            of_big,
            "{name}: the builder's hook"
        );
        assert_eq!(of_refused.len(), 1, "{name}: {of_refused:?}");
        assert_eq!(of_refused[0].class, ErrorClass::Handler, "{name}");
        assert_eq!(of_refused[0].group.as_deref(), Some(group.as_str()));

        // The listings show the class and filter by it.
        let (_, list) = get_json(addr, "/dead-letters/outbox?class=broker_refused").await;
        let listed = list["dead_letters"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{name}: {list}");
        assert_eq!(listed[0]["class"], json!("broker_refused"));
        assert_eq!(listed[0]["id"], json!(big_id));
        let (_, none) = get_json(addr, "/dead-letters/outbox?class=handler").await;
        assert!(
            none["dead_letters"].as_array().unwrap().is_empty(),
            "{none}"
        );
        let (status, topic) = get_json(
            addr,
            &format!("/dead-letters/topics/{dlq_topic}?class=handler&limit=1000"),
        )
        .await;
        assert_eq!(status, 200, "{name}: {topic}");
        let letters = topic["dead_letters"].as_array().unwrap();
        assert!(
            letters.iter().any(|l| l["id"] == json!(refused_id)),
            "{name}: {topic}"
        );
        assert!(letters.iter().all(|l| l["class"] == json!("handler")));

        // `/metrics`: counters and gauges by class, the lag per partition.
        let table = layer.table.as_str();
        let consumed = Blob::TOPIC;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let scrape = loop {
            let (status, text) = http(addr, "GET", "/metrics", None, None).await;
            assert_eq!(status, 200, "{name}: {text}");
            let scrape =
                prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
            let table_gauge = samples(
                &scrape,
                "eventbus_dead_letters",
                &[("table", table), ("class", "broker_refused")],
            );
            let lag = samples(
                &scrape,
                "eventbus_consumer_lag",
                &[("group", &group), ("topic", consumed)],
            );
            if table_gauge == [1.0] && !lag.is_empty() {
                break scrape;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the dead table's gauge and the lag in\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(
            samples(
                &scrape,
                "eventbus_relay_dead_lettered_total",
                &[("table", table), ("class", "broker_refused")]
            ),
            [1.0],
            "{name}"
        );
        assert_eq!(
            samples(
                &scrape,
                "eventbus_relay_dead_lettered_total",
                &[("table", table), ("class", "handler")]
            ),
            [0.0],
            "{name}: every class is exported"
        );
        assert_eq!(
            samples(
                &scrape,
                "eventbus_consumer_dead_lettered_total",
                &[("group", &group), ("class", "handler")]
            ),
            [1.0],
            "{name}"
        );
        let age = samples(
            &scrape,
            "eventbus_dead_letter_oldest_age_seconds",
            &[("table", table), ("class", "broker_refused")],
        );
        assert!(age.len() == 1 && age[0] >= 0.0, "{name}: {age:?}");
        // The consumer's dead-letter topic, counted on scrape (other tests write to it too).
        let in_topic = samples(
            &scrape,
            "eventbus_dead_letters",
            &[("topic", &dlq_topic), ("class", "handler")],
        );
        assert!(
            in_topic.len() == 1 && in_topic[0] >= 1.0,
            "{name}: {in_topic:?}"
        );
        let topic_age = samples(
            &scrape,
            "eventbus_dead_letter_oldest_age_seconds",
            &[("topic", &dlq_topic), ("class", "handler")],
        );
        assert_eq!(topic_age.len(), 1, "{name}");
        let lag = samples(
            &scrape,
            "eventbus_consumer_lag",
            &[("group", &group), ("topic", consumed)],
        );
        assert!(lag.iter().all(|l| *l >= 0.0), "{name}: {lag:?}");
        assert_eq!(dlq::ErrorClass::ALL.len(), 6);

        consumer.shutdown().await;
        bus.shutdown().await;
    }
}
