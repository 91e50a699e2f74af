//! The audit log writer: records reach the file (0640, one JSON line each) and followers,
//! and the reader gives them back.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mcpd_protocol::AuditDecision;

use super::*;
use crate::config::Rotation;

fn logs(dir: &std::path::Path, rotation: Rotation) -> LogsConfig {
    LogsConfig {
        dir: dir.join("logs"),
        rotation,
        keep: 3,
        buffer_lines: 10,
        audit: true,
    }
}

fn record(tool: &str) -> AuditRecord {
    let (time, ts) = now();
    AuditRecord {
        time,
        ts,
        server: "db".into(),
        member: None,
        tool: tool.into(),
        subject: None,
        client_id: None,
        scopes: Vec::new(),
        decision: AuditDecision::Deny,
        status: 403,
        error_code: None,
        is_error: None,
        duration_ms: 0.25,
        request_id: Some("\"a\"".into()),
        caller: "127.0.0.1:40000".into(),
        via: "gateway".into(),
        arguments: None,
    }
}

#[tokio::test]
async fn records_reach_the_file_and_followers_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let dropped = Counter::default();
    let log = AuditLog::new(&logs(dir.path(), Rotation::Never), dropped.clone());
    let mut follower = log.subscribe();
    log.record(&record("drop_table"));
    log.record(&record("del\u{1b}te\n"));
    log.flush(Duration::from_secs(5)).await;

    let path = dir.path().join("logs/audit.log");
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(
        !written.contains('\u{1b}'),
        "controls are JSON escapes: {written}"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let first: AuditRecord = serde_json::from_str(&follower.recv().await.unwrap()).unwrap();
    assert_eq!(first, record_like(&first, "drop_table"));
    let second: AuditRecord = serde_json::from_str(&follower.recv().await.unwrap()).unwrap();
    assert_eq!(second.tool, "del\u{1b}te\n");

    let back = read_backlog(&log.config().dir, &AuditFilter::default(), 10);
    assert_eq!(back, written.lines().collect::<Vec<_>>());
    assert_eq!((log.dropped(), dropped.get()), (0, 0));
}

/// `record(tool)` with the time of `seen`.
fn record_like(seen: &AuditRecord, tool: &str) -> AuditRecord {
    AuditRecord {
        time: seen.time.clone(),
        ts: seen.ts,
        ..record(tool)
    }
}

#[tokio::test]
async fn a_rotated_log_is_named_by_its_period_0640_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::new(&logs(dir.path(), Rotation::Daily), Counter::default());
    log.record(&record("t"));
    log.flush(Duration::from_secs(5)).await;
    // `audit.<day>.log`.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("audit.20")
            && name.ends_with(".log")
            && name.len() == "audit.2026-11-29.log".len(),
        "{name}"
    );
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let back = read_backlog(&log.config().dir, &AuditFilter::default(), 10);
    assert_eq!(back.len(), 1);
}

#[tokio::test]
async fn close_returns_once_every_queued_record_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::new(&logs(dir.path(), Rotation::Never), Counter::default());
    for i in 0..1000 {
        log.record(&record(&format!("t{i}")));
    }
    log.close(Duration::from_secs(60)).await;
    let written = std::fs::read_to_string(dir.path().join("logs/audit.log")).unwrap();
    assert_eq!(written.lines().count(), 1000);
    assert!(written.lines().last().unwrap().contains("\"t999\""));
    // Closed: a record made now is counted as dropped, not lost silently.
    log.record(&record("late"));
    assert_eq!(log.dropped(), 1);
}

#[test]
fn the_queue_bounds_the_bytes_of_records_with_large_arguments() {
    let queue = queue::Queue::default();
    let bound = queue::Bound {
        records: usize::MAX,
        bytes: 3 << 20,
    };
    let large = |i: usize| {
        writer::Job::Record(Box::new(AuditRecord {
            arguments: Some("x".repeat(1 << 20)),
            ..record(&format!("t{i}"))
        }))
    };
    assert!(queue.push_record(large(0), bound));
    assert!(queue.push_record(large(1), bound));
    assert!(
        !queue.push_record(large(2), bound),
        "a third MiB passes 3 MiB"
    );
    assert!(queue.push_record(writer::Job::Record(Box::new(record("small"))), bound));
    let mut batch = Vec::new();
    queue.take(&mut batch);
    assert_eq!(batch.len(), 3);
    assert!(queue.push_record(large(3), bound), "room again once taken");
}

/// A log whose thread writes only for a flush or at the end, and whose workers' writes are
/// slow from `slow_write` on.
fn log_for_workers(dir: &std::path::Path, slow_write: Duration) -> Arc<AuditLog> {
    let options = Options {
        window: Duration::from_secs(24 * 3600),
        slow_write,
    };
    AuditLog::with_options(
        &logs(dir, Rotation::Never),
        AuditCounters::default(),
        options,
    )
}

fn lines_written(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("logs/audit.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn record_batch(log: &AuditLog, records: usize) {
    for i in 0..records {
        log.record(&record(&format!("t{i}")));
    }
}

#[tokio::test]
async fn a_worker_about_to_sleep_writes_a_batch_itself_and_leaves_less_to_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_for_workers(dir.path(), Duration::from_secs(3600));
    record_batch(&log, writer::WORKER_BATCH - 1);
    log.on_worker_park();
    assert_eq!(log.batches_written(), (0, 0), "less than a batch waits");
    assert_eq!(lines_written(dir.path()), 0);

    log.record(&record("last"));
    log.on_worker_park();
    assert_eq!(log.batches_written(), (1, 0));
    assert_eq!(
        lines_written(dir.path()),
        writer::WORKER_BATCH,
        "written before the worker sleeps"
    );
    log.on_worker_park();
    assert_eq!(log.batches_written(), (1, 0), "nothing left to write");

    log.record(&record("alone"));
    log.flush(Duration::from_secs(60)).await;
    assert_eq!(
        log.batches_written(),
        (1, 1),
        "the thread wrote what was left"
    );
    let written = std::fs::read_to_string(dir.path().join("logs/audit.log")).unwrap();
    let tools: Vec<String> = written
        .lines()
        .map(|line| serde_json::from_str::<AuditRecord>(line).unwrap().tool)
        .collect();
    let mut expected: Vec<String> = (0..writer::WORKER_BATCH - 1)
        .map(|i| format!("t{i}"))
        .collect();
    expected.extend(["last".to_string(), "alone".to_string()]);
    assert_eq!(tools, expected, "every record, in the order made");
}

#[tokio::test]
async fn a_slow_worker_write_leaves_writing_to_the_thread_until_one_of_its_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    // Every write is slow.
    let log = log_for_workers(dir.path(), Duration::ZERO);
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    assert_eq!(log.batches_written(), (1, 0));
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    assert_eq!(log.batches_written(), (1, 0), "workers no longer write");
    log.flush(Duration::from_secs(60)).await;
    assert_eq!(log.batches_written(), (1, 1));
    assert_eq!(lines_written(dir.path()), 2 * writer::WORKER_BATCH);
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    assert_eq!(
        log.batches_written(),
        (1, 1),
        "the thread's write was slow too"
    );
    log.close(Duration::from_secs(60)).await;
    assert_eq!(lines_written(dir.path()), 3 * writer::WORKER_BATCH);

    // No write is slow: once the thread has written, workers write again.
    let dir = tempfile::tempdir().unwrap();
    let log = log_for_workers(dir.path(), Duration::from_secs(3600));
    log.output.as_ref().unwrap().pause_workers();
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    assert_eq!(log.batches_written(), (0, 0), "paused");
    log.flush(Duration::from_secs(60)).await;
    assert_eq!(log.batches_written(), (0, 1));
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    assert_eq!(
        log.batches_written(),
        (1, 1),
        "a fast write resumed the workers"
    );
    assert_eq!(lines_written(dir.path()), 2 * writer::WORKER_BATCH);
}

#[tokio::test]
async fn records_no_worker_writes_reach_the_file_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::with_options(
        &logs(dir.path(), Rotation::Never),
        AuditCounters::default(),
        Options {
            window: Duration::from_millis(1),
            slow_write: writer::SLOW_WRITE,
        },
    );
    let mut follower = log.subscribe();
    log.record(&record("quiet"));
    // No flush and no worker: the thread writes it once its window is over.
    let seen: AuditRecord = serde_json::from_str(&follower.recv().await.unwrap()).unwrap();
    assert_eq!(seen.tool, "quiet");
    log.flush(Duration::from_secs(60)).await;
    assert_eq!(lines_written(dir.path()), 1);
    assert_eq!(log.batches_written().0, 0, "no worker wrote");
}

#[tokio::test]
async fn records_the_file_does_not_take_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = logs(dir.path(), Rotation::Never);
    // A directory where the file should be: it can be neither created nor written.
    std::fs::create_dir_all(config.dir.join("audit.log")).unwrap();
    let dropped = Counter::default();
    let log = AuditLog::new(&config, dropped.clone());
    record_batch(&log, 3);
    log.flush(Duration::from_secs(60)).await;
    assert_eq!((log.dropped(), dropped.get()), (3, 3));
    // Every later batch too, whoever writes it.
    record_batch(&log, writer::WORKER_BATCH);
    log.on_worker_park();
    log.flush(Duration::from_secs(60)).await;
    assert_eq!(log.dropped(), 3 + writer::WORKER_BATCH as u64);
}
