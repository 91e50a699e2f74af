//! Transition tests of the lifecycle machine, with paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

const STOP: Duration = Duration::from_millis(300);
const START: Duration = Duration::from_secs(10);

fn settings(policy: RestartPolicy) -> Settings {
    Settings {
        restart: RestartConfig {
            policy,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
            burst: 5,
            window: Duration::from_secs(300),
        },
        health_failures: 3,
        start_timeout: START,
        stop_timeout: STOP,
    }
}

fn fixed_jitter(j: f64) -> Jitter {
    Arc::new(move || j)
}

fn machine(policy: RestartPolicy) -> Machine {
    Machine::new(settings(policy), true, fixed_jitter(0.0))
}

fn now() -> Instant {
    Instant::now()
}

/// Drives a fresh machine to `state` through ordinary events.
fn in_state(state: ServerState, policy: RestartPolicy) -> Machine {
    let mut m = machine(policy);
    match state {
        ServerState::Disabled => return Machine::new(settings(policy), false, fixed_jitter(0.0)),
        ServerState::Stopped => return m,
        _ => {}
    }
    m.next(Event::Start, now());
    if state == ServerState::Failed {
        m.next(
            Event::SpawnFailed {
                reason: "port 5010 is in use by another process".into(),
                retry: false,
            },
            now(),
        );
        return m;
    }
    m.next(Event::Spawned, now());
    match state {
        ServerState::Starting => {}
        ServerState::Running => {
            m.next(Event::ProbeOk, now());
        }
        ServerState::Stopping => {
            m.next(Event::Stop, now());
        }
        ServerState::Backoff => {
            m.next(Event::Exited(Exit::Code(1)), now());
        }
        _ => unreachable!(),
    }
    assert_eq!(m.state(), state);
    m
}

// Every state: the metrics export one series per state of this same list.
use crate::metrics::STATES as ALL_STATES;

fn all_events() -> Vec<Event> {
    vec![
        Event::Start,
        Event::Stop,
        Event::Restart,
        Event::Enable,
        Event::Disable,
        Event::ConfigChanged { restart: false },
        Event::ConfigChanged { restart: true },
        Event::Spawned,
        Event::SpawnFailed {
            reason: "r".into(),
            retry: true,
        },
        Event::SpawnFailed {
            reason: "r".into(),
            retry: false,
        },
        Event::Exited(Exit::Code(0)),
        Event::Exited(Exit::Code(1)),
        Event::Exited(Exit::Signal(9)),
        Event::ProbeOk,
        Event::StartTimeout,
        Event::LivenessOk,
        Event::LivenessFailed { reason: "r".into() },
        Event::StopTimeout,
        Event::BackoffElapsed,
    ]
}

/// The expected (state, actions) of every event in every state, for policy on-failure.
fn expected(state: ServerState, event: &Event) -> (ServerState, Vec<Action>) {
    use Action as A;
    use Event as E;
    use ServerState as S;
    let terminate = A::Terminate { timeout: STOP };
    let stop = || (S::Stopping, vec![A::StopProbes, terminate.clone()]);
    let backoff1 = A::ScheduleBackoff(Duration::from_secs(1));
    match (state, event) {
        (S::Stopped | S::Failed, E::Start | E::Restart) => (S::Starting, vec![A::Spawn]),
        (S::Backoff, E::Start | E::Restart) => (S::Starting, vec![A::CancelBackoff, A::Spawn]),
        (S::Starting | S::Running, E::Restart | E::Stop | E::Disable) => stop(),
        (S::Starting | S::Running, E::ConfigChanged { restart: true }) => stop(),
        (S::Backoff, E::Stop) => (S::Stopped, vec![A::CancelBackoff]),
        (S::Backoff, E::Disable) => (S::Disabled, vec![A::CancelBackoff]),
        (S::Failed, E::Stop) => (S::Stopped, vec![]),
        (S::Stopped | S::Failed, E::Disable) => (S::Disabled, vec![]),
        (S::Disabled, E::Enable) => (S::Starting, vec![A::Spawn]),
        (S::Failed, E::ConfigChanged { .. }) => (S::Starting, vec![A::Spawn]),
        (S::Backoff, E::ConfigChanged { restart: true }) => {
            (S::Starting, vec![A::CancelBackoff, A::Spawn])
        }
        (S::Starting, E::Spawned) => (S::Starting, vec![A::StartReadiness { timeout: START }]),
        (S::Stopping, E::Spawned) => (S::Stopping, vec![terminate]),
        (S::Starting, E::SpawnFailed { retry: false, .. }) => (S::Failed, vec![A::StopProbes]),
        (S::Starting, E::SpawnFailed { retry: true, .. }) => {
            (S::Backoff, vec![A::StopProbes, backoff1])
        }
        (S::Stopping, E::SpawnFailed { .. }) => (S::Stopped, vec![]),
        (S::Starting, E::ProbeOk) => (S::Running, vec![A::StartLiveness]),
        (S::Starting, E::StartTimeout) => stop(),
        (S::Starting, E::Exited(_)) => (S::Backoff, vec![A::StopProbes, A::KillGroup, backoff1]),
        (S::Running, E::Exited(Exit::Code(0))) => (S::Stopped, vec![A::StopProbes, A::KillGroup]),
        (S::Running, E::Exited(_)) => (S::Backoff, vec![A::StopProbes, A::KillGroup, backoff1]),
        (S::Stopping, E::Exited(_)) => (S::Stopped, vec![A::KillGroup]),
        (S::Stopping, E::StopTimeout) => (S::Stopping, vec![A::Kill]),
        (S::Backoff, E::BackoffElapsed) => (S::Starting, vec![A::Spawn]),
        // The first liveness failure of three changes nothing.
        (state, _) => (state, vec![]),
    }
}

#[tokio::test(start_paused = true)]
async fn every_event_in_every_state() {
    // `unreachable` belongs to remote servers, which have no lifecycle machine.
    for state in ALL_STATES
        .into_iter()
        .filter(|state| *state != ServerState::Unreachable)
    {
        for event in all_events() {
            let mut m = in_state(state, RestartPolicy::OnFailure);
            let actions = m.next(event.clone(), now());
            let (want_state, want_actions) = expected(state, &event);
            assert_eq!(
                (m.state(), &actions),
                (want_state, &want_actions),
                "{state} + {event:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_curve_doubles_up_to_max_with_bounded_jitter() {
    let restart = settings(RestartPolicy::OnFailure).restart;
    let secs = |n, j| Machine::backoff_delay(&restart, n, j).as_secs_f64();
    assert_eq!(secs(1, 0.0), 1.0);
    assert_eq!(secs(2, 0.0), 2.0);
    assert_eq!(secs(3, 0.0), 4.0);
    assert_eq!(secs(7, 0.0), 60.0);
    assert_eq!(secs(100, 0.0), 60.0);
    assert!((secs(3, 0.999_999) - 4.8).abs() < 1e-3);
    assert!((secs(100, 0.999_999) - 72.0).abs() < 1e-3);
    assert!((secs(1, 0.5) - 1.1).abs() < 1e-9);

    // Through the machine: each crash after a short run schedules the next step of the curve.
    let mut m = Machine::new(
        Settings {
            restart: RestartConfig {
                burst: 0,
                ..restart.clone()
            },
            ..settings(RestartPolicy::OnFailure)
        },
        true,
        fixed_jitter(0.5),
    );
    m.next(Event::Start, now());
    let mut delays = vec![];
    for _ in 0..8 {
        m.next(Event::Spawned, now());
        m.next(Event::ProbeOk, now());
        advance(Duration::from_secs(1)).await;
        let actions = m.next(Event::Exited(Exit::Signal(9)), now());
        let Some(Action::ScheduleBackoff(delay)) = actions.last().cloned() else {
            panic!("no backoff in {actions:?}");
        };
        delays.push(delay.as_millis());
        advance(delay).await;
        m.next(Event::BackoffElapsed, now());
    }
    assert_eq!(
        delays,
        vec![1100, 2200, 4400, 8800, 17600, 35200, 66000, 66000]
    );
    assert_eq!(m.restarts(), 8);
}

#[tokio::test(start_paused = true)]
async fn random_jitter_stays_within_twenty_percent() {
    let restart = settings(RestartPolicy::OnFailure).restart;
    let jitter = random_jitter();
    for n in 1..10 {
        let base = Machine::backoff_delay(&restart, n, 0.0);
        let delay = Machine::backoff_delay(&restart, n, jitter());
        assert!(
            delay >= base && delay <= base.mul_f64(1.2),
            "{delay:?} vs {base:?}"
        );
    }
}

/// Runs `run`, crashes, waits out the backoff and returns its whole seconds.
async fn crash_after(m: &mut Machine, run: Duration) -> u64 {
    m.next(Event::Spawned, now());
    m.next(Event::ProbeOk, now());
    advance(run).await;
    let actions = m.next(Event::Exited(Exit::Code(2)), now());
    let Some(Action::ScheduleBackoff(delay)) = actions.last().cloned() else {
        panic!("no backoff in {actions:?}");
    };
    advance(delay).await;
    m.next(Event::BackoffElapsed, now());
    delay.as_secs()
}

#[tokio::test(start_paused = true)]
async fn the_attempt_counter_resets_after_reset_after_of_running() {
    let mut m = Machine::new(
        Settings {
            restart: RestartConfig {
                burst: 0,
                ..settings(RestartPolicy::OnFailure).restart
            },
            ..settings(RestartPolicy::OnFailure)
        },
        true,
        fixed_jitter(0.0),
    );
    m.next(Event::Start, now());
    assert_eq!(crash_after(&mut m, Duration::from_secs(1)).await, 1);
    assert_eq!(crash_after(&mut m, Duration::from_secs(1)).await, 2);
    assert_eq!(crash_after(&mut m, Duration::from_secs(29)).await, 4);
    // 30 s of continuous running: back to the start of the curve.
    assert_eq!(crash_after(&mut m, Duration::from_secs(30)).await, 1);
    assert_eq!(crash_after(&mut m, Duration::from_secs(1)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn burst_failures_within_window_park_the_server() {
    let mut m = machine(RestartPolicy::OnFailure);
    m.next(Event::Start, now());
    for i in 0..4 {
        let actions = m.next(Event::Exited(Exit::Code(1)), now());
        assert_eq!(m.state(), ServerState::Backoff, "failure {i}: {actions:?}");
        advance(Duration::from_secs(10)).await;
        m.next(Event::BackoffElapsed, now());
    }
    let actions = m.next(Event::Exited(Exit::Code(1)), now());
    assert_eq!(m.state(), ServerState::Failed);
    assert_eq!(actions, vec![Action::StopProbes, Action::KillGroup]);
    let error = m.last_error().unwrap();
    assert!(
        error.starts_with("crash loop: 5 failures within 5m"),
        "{error}"
    );
    assert!(error.contains("exit code 1"), "{error}");
    // Parked: timers do nothing, an operator start revives it with fresh counters.
    assert!(m.next(Event::BackoffElapsed, now()).is_empty());
    assert_eq!(m.next(Event::Start, now()), vec![Action::Spawn]);
    let actions = m.next(Event::Exited(Exit::Code(1)), now());
    assert_eq!(
        actions.last(),
        Some(&Action::ScheduleBackoff(Duration::from_secs(1)))
    );
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_do_not_count() {
    let mut m = machine(RestartPolicy::OnFailure);
    m.next(Event::Start, now());
    for _ in 0..20 {
        m.next(Event::Exited(Exit::Code(1)), now());
        assert_eq!(m.state(), ServerState::Backoff);
        // 5 failures within 300 s never happen at one failure every 76 s.
        advance(Duration::from_secs(76)).await;
        m.next(Event::BackoffElapsed, now());
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_during_a_failed_probe_parks_after_the_stop() {
    let mut m = machine(RestartPolicy::OnFailure);
    m.next(Event::Start, now());
    for _ in 0..4 {
        m.next(Event::Exited(Exit::Code(1)), now());
        m.next(Event::BackoffElapsed, now());
    }
    m.next(Event::Spawned, now());
    let actions = m.next(Event::StartTimeout, now());
    assert_eq!(
        actions,
        vec![Action::StopProbes, Action::Terminate { timeout: STOP }]
    );
    assert_eq!(m.state(), ServerState::Stopping);
    assert_eq!(
        m.next(Event::Exited(Exit::Signal(15)), now()),
        vec![Action::KillGroup]
    );
    assert_eq!(m.state(), ServerState::Failed);
}

#[tokio::test(start_paused = true)]
async fn policies_decide_what_a_clean_exit_and_a_crash_do() {
    let run = |policy, exit| {
        let mut m = in_state(ServerState::Running, policy);
        m.next(Event::Exited(exit), now());
        m.state()
    };
    use RestartPolicy::*;
    assert_eq!(run(OnFailure, Exit::Code(0)), ServerState::Stopped);
    assert_eq!(run(OnFailure, Exit::Code(3)), ServerState::Backoff);
    assert_eq!(run(OnFailure, Exit::Signal(9)), ServerState::Backoff);
    assert_eq!(run(Always, Exit::Code(0)), ServerState::Backoff);
    assert_eq!(run(Always, Exit::Code(3)), ServerState::Backoff);
    assert_eq!(run(Never, Exit::Code(0)), ServerState::Stopped);
    assert_eq!(run(Never, Exit::Code(3)), ServerState::Failed);
    assert_eq!(run(Never, Exit::Signal(9)), ServerState::Failed);

    let mut m = in_state(ServerState::Running, Never);
    for _ in 0..3 {
        m.next(
            Event::LivenessFailed {
                reason: "timeout".into(),
            },
            now(),
        );
    }
    assert_eq!(m.state(), ServerState::Stopping);
    m.next(Event::Exited(Exit::Signal(15)), now());
    assert_eq!(m.state(), ServerState::Failed);
}

#[tokio::test(start_paused = true)]
async fn liveness_failures_must_come_in_a_row() {
    let mut m = in_state(ServerState::Running, RestartPolicy::OnFailure);
    let fail = || Event::LivenessFailed {
        reason: "no answer".into(),
    };
    assert!(m.next(fail(), now()).is_empty());
    assert!(m.next(fail(), now()).is_empty());
    assert!(m.next(Event::LivenessOk, now()).is_empty());
    assert!(m.next(fail(), now()).is_empty());
    assert!(m.next(fail(), now()).is_empty());
    let actions = m.next(fail(), now());
    assert_eq!(
        actions,
        vec![Action::StopProbes, Action::Terminate { timeout: STOP }]
    );
    assert_eq!(
        m.last_error(),
        Some("3 liveness probes failed in a row: no answer")
    );
    let actions = m.next(Event::Exited(Exit::Signal(15)), now());
    assert_eq!(
        actions,
        vec![
            Action::KillGroup,
            Action::ScheduleBackoff(Duration::from_secs(1))
        ]
    );
    assert_eq!(m.state(), ServerState::Backoff);
}

#[tokio::test(start_paused = true)]
async fn an_operator_stop_never_restarts() {
    for state in [ServerState::Starting, ServerState::Running] {
        let mut m = in_state(state, RestartPolicy::Always);
        m.next(Event::Stop, now());
        m.next(Event::StopTimeout, now());
        m.next(Event::Exited(Exit::Signal(9)), now());
        assert_eq!(m.state(), ServerState::Stopped);
        assert!(m.next(Event::BackoffElapsed, now()).is_empty());
        assert_eq!(m.state(), ServerState::Stopped);
    }
}

#[tokio::test(start_paused = true)]
async fn restart_respawns_after_the_exit_and_counts() {
    let mut m = in_state(ServerState::Running, RestartPolicy::OnFailure);
    assert_eq!(m.restarts(), 0);
    m.next(Event::Restart, now());
    assert_eq!(m.state(), ServerState::Stopping);
    let actions = m.next(Event::Exited(Exit::Signal(15)), now());
    assert_eq!(actions, vec![Action::KillGroup, Action::Spawn]);
    assert_eq!(m.state(), ServerState::Starting);
    assert_eq!(m.restarts(), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_during_stopping_change_where_it_ends() {
    let end = |events: &[Event]| {
        let mut m = in_state(ServerState::Stopping, RestartPolicy::OnFailure);
        for event in events {
            m.next(event.clone(), now());
        }
        m.next(Event::Exited(Exit::Code(0)), now());
        m.state()
    };
    assert_eq!(end(&[]), ServerState::Stopped);
    assert_eq!(end(&[Event::Start]), ServerState::Starting);
    assert_eq!(end(&[Event::Restart, Event::Stop]), ServerState::Stopped);
    assert_eq!(end(&[Event::Disable]), ServerState::Disabled);
    // A plain stop is not turned into a start by a config change.
    assert_eq!(
        end(&[Event::ConfigChanged { restart: true }]),
        ServerState::Stopped
    );
}

#[tokio::test(start_paused = true)]
async fn a_config_change_while_stopping_after_a_failure_respawns_at_once() {
    let mut m = in_state(ServerState::Running, RestartPolicy::OnFailure);
    for _ in 0..3 {
        m.next(Event::LivenessFailed { reason: "x".into() }, now());
    }
    assert_eq!(m.state(), ServerState::Stopping);
    m.next(Event::ConfigChanged { restart: true }, now());
    let actions = m.next(Event::Exited(Exit::Code(0)), now());
    assert_eq!(actions, vec![Action::KillGroup, Action::Spawn]);
}

#[tokio::test(start_paused = true)]
async fn a_port_conflict_parks_without_a_crash_loop() {
    let mut m = machine(RestartPolicy::Always);
    m.next(Event::Start, now());
    let actions = m.next(
        Event::SpawnFailed {
            reason: "port 5010 is in use by another process".into(),
            retry: false,
        },
        now(),
    );
    assert_eq!(actions, vec![Action::StopProbes]);
    assert_eq!(m.state(), ServerState::Failed);
    assert_eq!(
        m.last_error(),
        Some("port 5010 is in use by another process")
    );
}

#[tokio::test(start_paused = true)]
async fn exit_descriptions() {
    assert_eq!(Exit::Code(1).to_string(), "exit code 1");
    assert_eq!(Exit::Signal(9).to_string(), "killed by signal SIGKILL");
    assert_eq!(Exit::Signal(15).to_string(), "killed by signal SIGTERM");
}

/// A wall-clock jump (NTP step, `date -s`) cannot shorten or stretch backoff, timeouts or the
/// crash window: the machine is driven only by the monotonic `tokio::time::Instant` it is
/// handed, never by `SystemTime`. This pins that signature; the supervisor's timers
/// (`sleep_until` on the same Instant) follow from it.
#[test]
fn the_machine_runs_on_monotonic_time() {
    let next: fn(&mut Machine, Event, tokio::time::Instant) -> Vec<Action> = Machine::next;
    let mut m = machine(RestartPolicy::OnFailure);
    let now = Instant::now();
    next(&mut m, Event::Start, now);
    next(&mut m, Event::Spawned, now);
    next(&mut m, Event::ProbeOk, now);
    let actions = next(&mut m, Event::Exited(Exit::Code(1)), now);
    assert!(
        actions.contains(&Action::ScheduleBackoff(Duration::from_secs(1))),
        "{actions:?}"
    );
}
