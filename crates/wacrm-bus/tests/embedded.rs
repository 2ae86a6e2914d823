//! The embedded bus and the consumer runner: durable, ordered, at-least-once, dead letters.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use support::embedded::{config, drain};
use tokio_util::sync::CancellationToken;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::{ConsumerRunner, Handled, Handler, HandlerError, LingerMode, RunnerConfig};
use wacrm_bus::{cloudevents, BusError, EventBus, OutboundRecord, Record, Subscription, Topics};

fn record(topic: &str, key: &str, n: usize) -> OutboundRecord {
    OutboundRecord {
        topic: topic.into(),
        key: key.into(),
        headers: vec![("n".into(), n.to_string())],
        payload: format!("{n}").into_bytes(),
    }
}

#[tokio::test]
async fn concurrent_publishes_are_all_durable_and_ordered_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let mut tasks = Vec::new();
    for producer in 0..20 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                bus.publish(vec![record("t", &format!("k{producer}"), i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(bus);
    // Reopen: everything confirmed is there.
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    let mut sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    let records = drain(&mut sub, 1000).await;
    assert_eq!(records.len(), 1000);
    for producer in 0..20 {
        let key = format!("k{producer}");
        let seq: Vec<usize> = records
            .iter()
            .filter(|r| r.key == key)
            .map(|r| {
                String::from_utf8(r.payload.clone())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(seq, (0..50).collect::<Vec<_>>(), "order of {key}");
    }
    assert!(records.windows(2).all(|w| w[0].offset + 1 == w[1].offset));
}

#[tokio::test]
async fn a_group_resumes_from_its_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    bus.publish((0..10).map(|i| record("t", "k", i)).collect())
        .await
        .unwrap();
    let mut sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    let first = drain(&mut sub, 10).await;
    sub.commit(&first[..4]).await.unwrap();
    assert_eq!(sub.lag().await.unwrap(), 6);
    // Uncommitted records come again after a restart of the member…
    drop(sub);
    let mut sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    let again = drain(&mut sub, 6).await;
    assert_eq!(again[0].offset, 4);
    // …and after rewind.
    sub.rewind().await.unwrap();
    let again = drain(&mut sub, 6).await;
    assert_eq!(again[0].offset, 4);
    // Another group starts from the beginning.
    let mut other = bus.subscribe("h", &["t".into()]).await.unwrap();
    assert_eq!(drain(&mut other, 10).await[0].offset, 0);
}

#[tokio::test]
async fn one_member_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    let _sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    assert!(bus.subscribe("g", &["t".into()]).await.is_err());
}

#[tokio::test]
async fn poll_wakes_up_on_publish() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let mut sub = bus.subscribe("g", &["t".into()]).await.unwrap();
    let publisher = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        publisher.publish(vec![record("t", "k", 1)]).await.unwrap();
    });
    let got = sub.poll(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(bus.check().await.is_ok());
}

/// Fails transiently twice, rejects payload "bad" permanently, records everything it applied.
struct Flaky {
    applied: Arc<Mutex<Vec<String>>>,
    transient_left: usize,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        if self.transient_left > 0 {
            self.transient_left -= 1;
            return Err(HandlerError::Retryable("database restarting".into()));
        }
        if let Some(index) = records.iter().position(|r| r.payload == b"bad") {
            return Err(HandlerError::Permanent {
                index,
                reason: "payload is bad".into(),
            });
        }
        let mut applied = self.applied.lock().unwrap();
        let mut handled = Handled::default();
        for (i, r) in records.iter().enumerate() {
            if r.payload == b"ugly" {
                handled.dead_letters.push((i, "payload is ugly".into()));
            } else {
                applied.push(String::from_utf8_lossy(&r.payload).into_owned());
            }
        }
        Ok(handled)
    }
}

#[tokio::test]
async fn runner_retries_transient_errors_and_dead_letters_bad_records() {
    retries_and_dead_letters(Placement::SharedRuntime).await;
}

#[tokio::test]
async fn a_runner_on_its_own_thread_retries_and_dead_letters_too() {
    retries_and_dead_letters(Placement::OwnThread).await;
}

/// Where a test runs its runner.
#[derive(Clone, Copy)]
enum Placement {
    SharedRuntime,
    OwnThread,
}

async fn retries_and_dead_letters(placement: Placement) {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let payloads = ["a", "b", "bad", "c", "ugly", "d"];
    bus.publish(
        payloads
            .iter()
            .map(|p| OutboundRecord {
                topic: topics.conversations.clone(),
                key: "k".into(),
                headers: vec![],
                payload: p.as_bytes().to_vec(),
            })
            .collect(),
    )
    .await
    .unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new("g");
    cfg.initial_backoff = Duration::from_millis(5);
    cfg.poll_wait = Duration::from_millis(50);
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        cfg,
        Flaky {
            applied: applied.clone(),
            transient_left: 2,
        },
    );
    let sub = bus
        .subscribe("g", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = match placement {
        Placement::SharedRuntime => tokio::spawn(runner.run(sub, shutdown.clone())),
        Placement::OwnThread => tokio::spawn(runner.run_on_own_thread(sub, shutdown.clone())),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while applied.lock().unwrap().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runner did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*applied.lock().unwrap(), vec!["a", "b", "c", "d"]);

    // The bad record is on the dead-letter topic with its origin, and the group committed past it.
    let mut dlq = bus
        .subscribe("inspector", std::slice::from_ref(&topics.dead_letters))
        .await
        .unwrap();
    let dead = drain(&mut dlq, 2).await;
    assert_eq!(dead[0].payload, b"bad");
    assert_eq!(
        dead[1].payload, b"ugly",
        "a record the handler itself named is dead-lettered too"
    );
    assert_eq!(
        dead[1].header(cloudevents::DLQ_REASON),
        Some("payload is ugly")
    );
    assert_eq!(dead[0].header(cloudevents::DLQ_OFFSET), Some("2"));
    assert_eq!(dead[0].header(cloudevents::DLQ_GROUP), Some("g"));
    assert_eq!(
        dead[0].header(cloudevents::DLQ_REASON),
        Some("payload is bad")
    );
    let mut again = bus
        .subscribe("g", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    assert_eq!(again.lag().await.unwrap(), 0);
}

#[tokio::test]
async fn one_process_owns_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&config(&dir)).unwrap();
    let second = EmbeddedBus::open(&config(&dir));
    assert!(matches!(second, Err(wacrm_bus::BusError::Unavailable(_))));
    drop(bus);
    assert!(
        EmbeddedBus::open(&config(&dir)).is_ok(),
        "the lock goes with the owner"
    );
}

/// Records the size of every batch it is handed.
struct Batches(Arc<Mutex<Vec<usize>>>);

#[async_trait]
impl Handler for Batches {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        self.0.lock().unwrap().push(records.len());
        Ok(Handled::default())
    }
}

/// Waits until the handler was handed at least `records`, failing after `within`.
async fn handled_within(batches: &Mutex<Vec<usize>>, records: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while batches.lock().unwrap().iter().sum::<usize>() < records {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} handled within {within:?}",
            batches.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn publish_one(bus: &Arc<dyn EventBus>, topics: &Topics, n: usize) {
    bus.publish(vec![record(&topics.conversations, "k", n)])
        .await
        .unwrap();
}

/// A subscription that counts the polls that returned records: the consumer's wake-ups.
struct CountedPolls {
    inner: Box<dyn Subscription>,
    fruitful: Arc<AtomicUsize>,
}

#[async_trait]
impl Subscription for CountedPolls {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let records = self.inner.poll(max, wait).await?;
        if !records.is_empty() {
            self.fruitful.fetch_add(1, Ordering::SeqCst);
        }
        Ok(records)
    }
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        self.inner.commit(records).await
    }
    async fn rewind(&mut self) -> Result<(), BusError> {
        self.inner.rewind().await
    }
    async fn lag(&mut self) -> Result<i64, BusError> {
        self.inner.lag().await
    }
    async fn pause(&mut self) -> Result<(), BusError> {
        self.inner.pause().await
    }
    async fn resume(&mut self) -> Result<(), BusError> {
        self.inner.resume().await
    }
    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.inner.close().await
    }
}

/// A runner with a linger over the conversations topic.
struct Lingering {
    /// The sizes of the batches it handled.
    batches: Arc<Mutex<Vec<usize>>>,
    /// Polls that returned records.
    fruitful_polls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Result<(), wacrm_bus::runner::RunnerError>>,
}

async fn lingering_runner(
    bus: &Arc<dyn EventBus>,
    topics: &Topics,
    linger: Duration,
    target: usize,
    mode: LingerMode,
    shutdown: &CancellationToken,
) -> Lingering {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new("lingering");
    cfg.linger = linger;
    cfg.linger_target = target;
    cfg.linger_mode = mode;
    cfg.poll_wait = Duration::from_millis(50);
    let runner = ConsumerRunner::new(bus.clone(), topics.clone(), cfg, Batches(batches.clone()));
    let fruitful_polls = Arc::new(AtomicUsize::new(0));
    let sub = Box::new(CountedPolls {
        inner: bus
            .subscribe("lingering", std::slice::from_ref(&topics.conversations))
            .await
            .unwrap(),
        fruitful: fruitful_polls.clone(),
    });
    Lingering {
        batches,
        fruitful_polls,
        task: tokio::spawn(runner.run(sub, shutdown.clone())),
    }
}

#[tokio::test]
async fn linger_gathers_records_that_arrive_while_a_batch_is_young() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let shutdown = CancellationToken::new();
    let Lingering { batches, task, .. } = lingering_runner(
        &bus,
        &topics,
        Duration::from_secs(3),
        100,
        LingerMode::UntilTarget,
        &shutdown,
    )
    .await;
    publish_one(&bus, &topics, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_one(&bus, &topics, 2).await;
    handled_within(&batches, 1, Duration::from_secs(10)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        *batches.lock().unwrap(),
        vec![2],
        "one batch of both records"
    );
}

#[tokio::test]
async fn records_that_already_waited_out_the_linger_are_not_held_again() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let linger = Duration::from_millis(1500);
    // Records stored before the consumer came (as behind a slow batch) are already old.
    publish_one(&bus, &topics, 1).await;
    tokio::time::sleep(linger).await;
    let shutdown = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let Lingering { batches, task, .. } =
        lingering_runner(&bus, &topics, linger, 100, LingerMode::Sleep, &shutdown).await;
    handled_within(&batches, 1, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(
        waited < linger,
        "an old record was held for another linger ({waited:?})"
    );
}

#[tokio::test]
async fn lingering_stops_once_the_batch_fills_one_downstream_call() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let shutdown = CancellationToken::new();
    let Lingering { batches, task, .. } = lingering_runner(
        &bus,
        &topics,
        Duration::from_secs(30),
        3,
        LingerMode::UntilTarget,
        &shutdown,
    )
    .await;
    for n in 0..7 {
        publish_one(&bus, &topics, n).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well before the 30-second linger.
    handled_within(&batches, 6, Duration::from_secs(20)).await;
    // The seventh record is lingering: shutdown ends that at once.
    let stopping = tokio::time::Instant::now();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited for the linger ({:?})",
        stopping.elapsed()
    );
    let batches = batches.lock().unwrap();
    assert_eq!(batches[..2], [3, 3], "{batches:?}");
}

#[tokio::test]
async fn a_sleeping_linger_wakes_once_and_takes_everything_that_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let shutdown = CancellationToken::new();
    let linger = Duration::from_millis(1500);
    let Lingering {
        batches,
        fruitful_polls,
        task,
    } = lingering_runner(
        &bus,
        &topics,
        linger,
        usize::MAX,
        LingerMode::Sleep,
        &shutdown,
    )
    .await;
    let started = tokio::time::Instant::now();
    for n in 0..5 {
        publish_one(&bus, &topics, n).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handled_within(&batches, 5, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= linger,
        "handled before the linger was out ({:?})",
        started.elapsed()
    );
    // The poll that started the batch and the one after the sleep, not one per append.
    assert_eq!(fruitful_polls.load(Ordering::SeqCst), 2);
    // The next record lingers for 30 s: shutdown handles it at once.
    publish_one(&bus, &topics, 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::time::Instant::now();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "shutdown waited for the linger ({:?})",
        stopping.elapsed()
    );
    assert_eq!(*batches.lock().unwrap(), vec![5, 1], "one batch per linger");
}

#[tokio::test]
async fn a_sleeping_linger_does_not_hold_a_full_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    // A backlog, as when the consumer is behind: fresh records, more than one batch of them.
    for n in 0..7 {
        publish_one(&bus, &topics, n).await;
    }
    let shutdown = CancellationToken::new();
    let Lingering { batches, task, .. } = lingering_runner(
        &bus,
        &topics,
        Duration::from_secs(30),
        3,
        LingerMode::Sleep,
        &shutdown,
    )
    .await;
    // Well before the 30-second linger: a batch polled at its target or above goes at once,
    // whole.
    handled_within(&batches, 7, Duration::from_secs(10)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*batches.lock().unwrap(), vec![7]);
}

#[test]
fn the_runner_reports_records_batches_and_their_times_per_group() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    // A runtime on this thread, so the runner's task records into this test's recorder.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
            let topics = Topics::default();
            bus.publish(
                (0..3)
                    .map(|n| record(&topics.conversations, "k", n))
                    .collect(),
            )
            .await
            .unwrap();
            let shutdown = CancellationToken::new();
            let Lingering { batches, task, .. } = lingering_runner(
                &bus,
                &topics,
                Duration::ZERO,
                usize::MAX,
                LingerMode::UntilTarget,
                &shutdown,
            )
            .await;
            handled_within(&batches, 3, Duration::from_secs(10)).await;
            shutdown.cancel();
            task.await.unwrap().unwrap();
        })
    });
    let text = metrics.render();
    for expected in [
        r#"wacrm_consumer_records_total{group="lingering"} 3"#,
        r#"wacrm_consumer_batch_records_sum{group="lingering"} 3"#,
        r#"wacrm_consumer_batch_records_count{group="lingering"} 1"#,
        r#"wacrm_consumer_handle_seconds_count{group="lingering"} 1"#,
        r#"wacrm_consumer_commit_seconds_count{group="lingering"} 1"#,
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
}

/// Records the name of the thread each batch was handled on.
struct ThreadNames(Arc<Mutex<Vec<Option<String>>>>);

#[async_trait]
impl Handler for ThreadNames {
    async fn handle(&mut self, _records: &[Record]) -> Result<Handled, HandlerError> {
        let name = std::thread::current().name().map(str::to_owned);
        self.0.lock().unwrap().push(name);
        Ok(Handled::default())
    }
}

#[tokio::test]
async fn a_runner_on_its_own_thread_handles_commits_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    let names = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new("threaded");
    cfg.poll_wait = Duration::from_millis(50);
    let runner = ConsumerRunner::new(bus.clone(), topics.clone(), cfg, ThreadNames(names.clone()));
    let sub = bus
        .subscribe("threaded", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run_on_own_thread(sub, shutdown.clone()));
    publish_one(&bus, &topics, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while names.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        *names.lock().unwrap(),
        vec![Some("threaded-runner".to_owned())]
    );
    // It committed what it handled: the group has nothing left to read.
    let mut again = bus
        .subscribe("threaded", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    assert_eq!(again.lag().await.unwrap(), 0);
}

/// A handler with a bug.
struct Panics;

#[async_trait]
impl Handler for Panics {
    async fn handle(&mut self, _records: &[Record]) -> Result<Handled, HandlerError> {
        panic!("a bug in the handler")
    }
}

#[tokio::test]
async fn a_runner_whose_thread_panics_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&config(&dir)).unwrap());
    let topics = Topics::default();
    publish_one(&bus, &topics, 1).await;
    let runner = ConsumerRunner::new(
        bus.clone(),
        topics.clone(),
        RunnerConfig::new("buggy"),
        Panics,
    );
    let sub = bus
        .subscribe("buggy", std::slice::from_ref(&topics.conversations))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        runner.run_on_own_thread(sub, CancellationToken::new()),
    )
    .await
    .expect("the runner's end was not reported");
    match outcome {
        Err(wacrm_bus::runner::RunnerError::Fatal { group, reason }) => {
            assert_eq!(group, "buggy");
            assert!(reason.contains("panicked"), "{reason}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}
