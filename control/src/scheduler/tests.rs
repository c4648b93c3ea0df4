//! Two control nodes on one database fire each scheduled sync exactly once; jobs run under
//! leases, report progress, can be cancelled, and are taken over when their node stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::auth::TenantId;
use crate::crypto::MasterKey;
use crate::events::LocalBus;
use crate::store::StoreSettings;
use crate::store::jobs::{Frequency, JobTrigger};
use crate::store::testing::{Harness, on_both_backends};

const T0: i64 = 1_800_000_000_000;
const MINUTE_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// `(tenant/connector, slot) -> [(job id, node)]`.
type Runs = BTreeMap<(String, Option<i64>), Vec<(String, String)>>;

/// Records every run, on whichever node.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Runs>,
}

struct CountingRunner {
    node: String,
    recorder: Arc<Recorder>,
}

impl JobRunner for CountingRunner {
    fn run(&self, job: SyncJob, control: JobControl) -> RunFuture {
        self.recorder
            .runs
            .lock()
            .unwrap()
            .entry((format!("{}/{}", job.tenant, job.connector), job.slot_ms))
            .or_default()
            .push((job.id.clone(), self.node.clone()));
        Box::pin(async move {
            let progress = JobProgress {
                progress_pct: 100.0,
                records_processed: 7,
                ..JobProgress::default()
            };
            control.report(progress);
            JobOutcome {
                progress,
                error: None,
            }
        })
    }
}

fn node(store: ControlStore, name: &str, recorder: &Arc<Recorder>, bus: &LocalBus) -> Scheduler {
    let mut config = SchedulerConfig::new(name);
    config.max_running = 64;
    Scheduler::new(
        store,
        config,
        Some(Arc::new(CountingRunner {
            node: name.to_string(),
            recorder: recorder.clone(),
        })),
        Arc::new(bus.clone()),
    )
}

on_both_backends! {
    async fn two_nodes_fire_each_scheduled_slot_exactly_once(h) {
        let a_store = h.store.clone();
        let b_store = h.open(MasterKey::generate(1), StoreSettings::default()).await;
        a_store.pin_clock_ms(T0);
        b_store.pin_clock_ms(T0);
        let frequencies = [Frequency::Hourly, Frequency::Daily, Frequency::Weekly];
        let mut schedules = Vec::new();
        for t in ["acme", "globex", "initech"] {
            a_store.create_tenant(&tenant(t), t).await.unwrap();
            for (i, f) in frequencies.iter().enumerate() {
                for k in 0..4 {
                    let connector = format!("{}-{k}", f.as_str());
                    // Staggered first slots, some in the past (a backlog at start-up).
                    let first = T0 + (i as i64 * 7 + k as i64 * 13 - 20) * MINUTE_MS;
                    a_store.set_schedule(&tenant(t), &connector, *f, Some(first)).await.unwrap();
                    schedules.push((format!("{t}/{connector}"), *f, first));
                }
            }
        }
        let recorder = Arc::new(Recorder::default());
        let bus = LocalBus::default();
        let mut events = bus.subscribe();
        let counted = tokio::spawn(async move {
            let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
            loop {
                match events.recv().await {
                    Ok(e) => *kinds.entry(e.kind()).or_default() += 1,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return kinds,
                    Err(e) => panic!("the counter fell behind: {e}"),
                }
            }
        });
        let a = node(a_store.clone(), "node-a", &recorder, &bus);
        let b = node(b_store.clone(), "node-b", &recorder, &bus);

        // Nine days in steps of 7 to 11 minutes; the nodes' clocks differ by up to 10 s (less
        // than the lease, see the module doc), and both tick at once (their own pools, so
        // their statements really interleave).
        let mut now = T0;
        let end = T0 + 9 * 24 * HOUR_MS;
        let mut step = 0i64;
        let (mut claimed_a, mut claimed_b) = (0usize, 0usize);
        while now < end {
            a_store.pin_clock_ms(now);
            b_store.pin_clock_ms(now + (step % 3) * 5_000);
            let (ra, rb) = tokio::join!(a.tick(), b.tick());
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            claimed_a += ra.claimed.len();
            claimed_b += rb.claimed.len();
            tokio::join!(a.wait_idle(), b.wait_idle());
            step += 1;
            now += (7 + step % 5) * MINUTE_MS;
        }

        // Every slot due up to the end fired once — one job, run once, on one node.
        let runs = recorder.runs.lock().unwrap().clone();
        let mut expected_total = 0;
        for (name, f, first) in &schedules {
            let interval = f.interval_ms().unwrap();
            // Slots due by the last tick (which ran at most at `end` on node b's clock).
            let fired: Vec<i64> = runs
                .keys()
                .filter(|(c, _)| c == name)
                .map(|(_, slot)| slot.unwrap())
                .collect();
            assert!(!fired.is_empty(), "{name} never fired");
            for (i, slot) in fired.iter().enumerate() {
                assert_eq!(*slot, first + i as i64 * interval, "{name}: slots out of grid");
            }
            assert!(
                *fired.last().unwrap() + interval > end - 12 * MINUTE_MS,
                "{name}: a due slot did not fire"
            );
            expected_total += fired.len();
        }
        for (slot, ran) in &runs {
            assert_eq!(ran.len(), 1, "{slot:?} ran {} times: {ran:?}", ran.len());
        }
        // Both nodes did part of the work, and no slot was claimed twice.
        assert_eq!(claimed_a + claimed_b, expected_total);
        assert!(claimed_a > 0 && claimed_b > 0, "a: {claimed_a}, b: {claimed_b}");
        let nodes: std::collections::BTreeSet<&str> =
            runs.values().flatten().map(|(_, n)| n.as_str()).collect();
        assert_eq!(nodes.len(), 2, "both nodes ran jobs: {nodes:?}");
        // 12 schedules × 3 tenants; hourly alone gives over 200 slots each over nine days.
        assert!(expected_total > 36 * 9, "{expected_total}");

        // The store agrees: every job completed, started once, one per slot.
        let mut jobs = 0;
        for t in ["acme", "globex", "initech"] {
            for j in a_store.list_jobs(&tenant(t), 1000).await.unwrap() {
                assert_eq!(j.status, JobStatus::Completed, "{j:?}");
                assert_eq!(j.attempts, 1);
                assert_eq!(j.records_processed, 7);
                assert_eq!(j.trigger, JobTrigger::Schedule);
                jobs += 1;
            }
        }
        assert_eq!(jobs, expected_total);

        // And the bus told the story of each: started, completed, metrics.
        drop((a, b, bus));
        let kinds = counted.await.unwrap();
        assert_eq!(kinds.get("sync_started"), Some(&expected_total));
        assert_eq!(kinds.get("sync_completed"), Some(&expected_total));
        assert_eq!(kinds.get("sync_metrics"), Some(&expected_total));
        b_store.close().await;
    }

    async fn a_node_without_a_runner_only_claims(h) {
        let s = &h.store;
        s.pin_clock_ms(T0);
        s.create_tenant(&tenant("acme"), "Acme").await.unwrap();
        s.set_schedule(&tenant("acme"), "sf", Frequency::Hourly, Some(T0)).await.unwrap();
        let claimer = Scheduler::new(s.clone(), SchedulerConfig::new("claimer"), None, Arc::new(LocalBus::default()));
        let r = claimer.tick().await.unwrap();
        assert_eq!(r.claimed.len(), 1);
        assert!(r.started.is_empty());
        let job = s.get_job(&tenant("acme"), &r.claimed[0].id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Pending);
    }
}

/// Waits on the bus for an event matching `pred`, or fails after 10 s.
async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<SyncEvent>,
    pred: impl Fn(&SyncEvent) -> bool,
) -> SyncEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("bus open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

/// A runner that reports progress then waits to be cancelled (or released).
struct SlowRunner {
    release: Arc<tokio::sync::Notify>,
}

impl JobRunner for SlowRunner {
    fn run(&self, _job: SyncJob, mut control: JobControl) -> RunFuture {
        let release = self.release.clone();
        Box::pin(async move {
            let progress = JobProgress {
                progress_pct: 40.0,
                records_processed: 40,
                records_failed: 1,
                records_dead_lettered: 1,
            };
            control.report(progress);
            tokio::select! {
                _ = control.cancelled() => JobOutcome { progress, error: Some("cancelled".into()) },
                _ = release.notified() => JobOutcome { progress, error: Some("vendor_unavailable: 503 from the API".into()) },
            }
        })
    }
}

#[tokio::test]
async fn progress_is_heartbeated_and_cancellation_reaches_the_run() {
    let h = Harness::sqlite(MasterKey::generate(1), StoreSettings::default()).await;
    let s = h.store.clone();
    let acme = tenant("acme");
    s.create_tenant(&acme, "Acme").await.unwrap();
    let bus = LocalBus::default();
    let mut rx = bus.subscribe();
    let mut config = SchedulerConfig::new("n1");
    config.lease = Duration::from_millis(300);
    let release = Arc::new(tokio::sync::Notify::new());
    let sched = Scheduler::new(
        s.clone(),
        config,
        Some(Arc::new(SlowRunner {
            release: release.clone(),
        })),
        Arc::new(bus.clone()),
    );

    // A "sync now" job is started, heartbeats its progress, and stops when cancelled.
    let job = s.sync_now(&acme, "sf").await.unwrap();
    let r = sched.tick().await.unwrap();
    assert_eq!(r.started.len(), 1);
    let p = wait_for(&mut rx, |e| matches!(e, SyncEvent::SyncProgress { .. })).await;
    let SyncEvent::SyncProgress {
        records_processed, ..
    } = p
    else {
        unreachable!()
    };
    assert_eq!(records_processed, 40);
    let stored = s.get_job(&acme, &job.id).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Running);
    assert_eq!(stored.records_processed, 40);
    s.cancel_job(&acme, &job.id).await.unwrap();
    let done = wait_for(&mut rx, |e| matches!(e, SyncEvent::SyncCompleted { .. })).await;
    let SyncEvent::SyncCompleted { status, .. } = done else {
        unreachable!()
    };
    assert_eq!(status, "cancelled");
    sched.wait_idle().await;
    assert_eq!(
        s.get_job(&acme, &job.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );

    // A failing run ends failed, with its classified reason.
    let job = s.sync_now(&acme, "sf").await.unwrap();
    sched.tick().await.unwrap();
    wait_for(&mut rx, |e| matches!(e, SyncEvent::SyncStarted { .. })).await;
    release.notify_waiters();
    // notify_waiters only wakes a waiter already parked: retry until the run ends.
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            release.notify_waiters();
            if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await
                && matches!(e, SyncEvent::SyncCompleted { .. })
            {
                return e;
            }
        }
    })
    .await
    .expect("run ended");
    let SyncEvent::SyncCompleted { status, error, .. } = done else {
        unreachable!()
    };
    assert_eq!(status, "failed");
    assert!(error.unwrap().starts_with("vendor_unavailable"));
    let m = wait_for(&mut rx, |e| matches!(e, SyncEvent::SyncMetrics { .. })).await;
    let SyncEvent::SyncMetrics { failure_rate, .. } = m else {
        unreachable!()
    };
    assert!((failure_rate - 2.0 / 42.0).abs() < 1e-9, "{failure_rate}");
    assert_eq!(
        s.get_job(&acme, &job.id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    h.cleanup().await;
}

/// A run that never ends and never heartbeats successfully: its node "died".
struct StuckRunner;

impl JobRunner for StuckRunner {
    fn run(&self, _job: SyncJob, _control: JobControl) -> RunFuture {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_lapsed_lease_is_taken_over_and_the_old_node_lets_go() {
    let h = Harness::sqlite(MasterKey::generate(1), StoreSettings::default()).await;
    let s = h.store.clone();
    let acme = tenant("acme");
    s.create_tenant(&acme, "Acme").await.unwrap();
    // The dying node's clock stays at T0, so its heartbeats never carry its lease past
    // T0 + 300 ms; the rescuer's clock is a minute later.
    let dying_store = h
        .open(MasterKey::generate(1), StoreSettings::default())
        .await;
    dying_store.pin_clock_ms(T0);
    s.pin_clock_ms(T0 + 60_000);
    let bus = LocalBus::default();
    let mut config = SchedulerConfig::new("dying");
    config.lease = Duration::from_millis(300);
    let dying = Scheduler::new(
        dying_store.clone(),
        config,
        Some(Arc::new(StuckRunner)),
        Arc::new(bus.clone()),
    );
    let job = s.sync_now(&acme, "sf").await.unwrap();
    assert_eq!(dying.tick().await.unwrap().started.len(), 1);

    // Its lease has lapsed by the rescuer's clock: the rescuer takes the job and ends it.
    let recorder = Arc::new(Recorder::default());
    let rescuer = node(s.clone(), "rescuer", &recorder, &bus);
    let r = rescuer.tick().await.unwrap();
    assert_eq!(r.started.len(), 1);
    rescuer.wait_idle().await;
    let done = s.get_job(&acme, &job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.node.as_deref(), Some("rescuer"));
    // The stuck node's next heartbeat learns it lost the lease, and drops its run.
    tokio::time::timeout(Duration::from_secs(10), dying.wait_idle())
        .await
        .expect("the old node let go");
    dying_store.close().await;
    h.cleanup().await;
}
