//! The media threads' real-time scheduling (`[media] realtime_priority`) and the signs that
//! tell them to step down: their own load, the rest of the gateway short of CPU
//! (`Starvation`), and the lateness that makes the gateway overloaded (`Lateness`).

use crate::media::player::PTIME;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Signs that the work at normal priority (the async runtime's SIP and call tasks, the
/// hashing threads, the store) is not getting the CPU: the media threads at real-time
/// priority see each sign once and step down (see `Realtime`): a media thread's own tick can
/// stay under its 15 ms limit while SIP and the hash wait behind it. (It does not make real
/// time safe past the machine's capacity: BENCHMARKS.md, the 300/s storm.)
#[derive(Debug)]
pub struct Starvation {
    start: Instant,
    /// Milliseconds since `start` at the last sign, plus one (0: none yet).
    last: AtomicU64,
    /// Milliseconds since `start` at the runtime's last heartbeat, plus one (0: none yet),
    /// and the last heartbeat already reported as overdue.
    beat: AtomicU64,
    beat_reported: AtomicU64,
    /// What the last sign was (`SIGN_RUNTIME` or `SIGN_CHECK`) and by how much, for the log.
    last_what: AtomicU8,
    last_late_ms: AtomicU64,
    /// Counts the signs (`agentgw_media_starvation_signs_total`).
    metrics: Arc<Metrics>,
}

/// The kinds of sign.
pub const SIGN_RUNTIME: u8 = 0;
pub const SIGN_CHECK: u8 = 1;

/// The async runtime is starved when its heartbeat (every `HEARTBEAT`) runs later than this.
pub const RUNTIME_LATE: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(50);
/// A login check (the store and the hash) taking longer than this is a sign too: the caller
/// has been waiting for the result since the last key (two seconds of silence after the
/// last key is where a caller starts to think the line is dead).
pub const CHECK_SLOW: Duration = Duration::from_secs(2);

impl Starvation {
    pub fn new(metrics: Arc<Metrics>) -> Starvation {
        Starvation {
            start: Instant::now(),
            last: Default::default(),
            beat: Default::default(),
            beat_reported: Default::default(),
            last_what: Default::default(),
            last_late_ms: Default::default(),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Records a sign: `what` (`SIGN_RUNTIME`, `SIGN_CHECK`) was `late`.
    pub fn sign(&self, what: u8, late: Duration) {
        self.last_what.store(what, Ordering::Relaxed);
        self.last_late_ms
            .store(late.as_millis() as u64, Ordering::Relaxed);
        self.last.store(self.now_ms(), Ordering::Relaxed);
        self.metrics
            .media_starvation_signs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The last sign, for the log.
    fn describe(&self) -> String {
        let late = self.last_late_ms.load(Ordering::Relaxed);
        match self.last_what.load(Ordering::Relaxed) {
            SIGN_RUNTIME => format!("the async runtime was {late} ms late"),
            _ => format!("a login check took {late} ms"),
        }
    }

    /// The runtime's heartbeat ran.
    fn beat(&self) {
        self.beat.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Called by the media threads every tick: while the runtime is starved its heartbeat
    /// cannot run to say so, so an overdue heartbeat is a sign too (once per heartbeat).
    pub fn check_heartbeat(&self) {
        let beat = self.beat.load(Ordering::Relaxed);
        if beat == 0 {
            return;
        }
        let overdue =
            Duration::from_millis(self.now_ms().saturating_sub(beat)).saturating_sub(HEARTBEAT);
        if overdue >= RUNTIME_LATE && self.beat_reported.swap(beat, Ordering::Relaxed) != beat {
            self.sign(SIGN_RUNTIME, overdue);
        }
    }

    /// The last sign (0: none); a new value means a new sign.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

/// The async runtime's heartbeat: a sign of starvation whenever it wakes `RUNTIME_LATE` or
/// more after it asked to (and the media threads give one when it is that overdue). Runs
/// while the gateway runs (only when media is real-time).
pub async fn watch_runtime(starvation: Arc<Starvation>) {
    let mut due = tokio::time::Instant::now() + HEARTBEAT;
    loop {
        starvation.beat();
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        let late = now.saturating_duration_since(due);
        if late >= RUNTIME_LATE {
            starvation.sign(SIGN_RUNTIME, late);
        }
        due = now + HEARTBEAT;
    }
}

/// A media thread's real-time scheduling (`[media] realtime_priority`). At SCHED_RR the
/// thread's 20 ms burst of sends is not cut into by other work on the machine, which is what
/// keeps each call's packets 20 ms apart (BENCHMARKS.md: 2,000 held lines, p99 deviation
/// 6.5-8.3 ms → 1.3-1.6 ms). But a real-time thread that has more to do than the period
/// allows would starve everything else (SIP, the store: new calls would fail), so a thread
/// busy for more than three quarters of every period for `OVERLOAD_TICKS` goes back to normal
/// scheduling, and so does a thread that sees a sign of `Starvation` (the rest of the gateway
/// short of CPU while the media threads are not). It takes real time again after
/// `CALM_TICKS` under half busy with no sign, and twice as many each time it had to step down
/// again within `STABLE_TICKS` of taking it (up to `MAX_CALM_TICKS`), so that a gateway at its
/// capacity does not swing in and out of real time every few seconds.
pub struct Realtime {
    priority: u8,
    on: bool,
    busy_ticks: u32,
    calm_ticks: u32,
    /// Calm ticks needed before taking real time again.
    calm_needed: u32,
    /// Ticks at real time since it last took it.
    ticks_on: u32,
    /// Whether it has stepped down before.
    stepped_down: bool,
}

/// Ticks (0.5 s) more than three quarters busy before a media thread gives up real-time
/// priority.
const OVERLOAD_TICKS: u32 = 25;
/// Ticks (5 s) under half busy before it takes it again.
const CALM_TICKS: u32 = 250;
/// Ticks (60 s) at real time after which a step-down starts the calm time afresh.
const STABLE_TICKS: u32 = 3000;
/// The longest calm time (5 min 20 s).
const MAX_CALM_TICKS: u32 = CALM_TICKS * 64;

/// Why a media thread left real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepDown {
    /// Its own tick took most of the period.
    Busy,
    /// The rest of the gateway was short of CPU.
    Starved,
}

impl Realtime {
    pub fn start(priority: u8) -> Realtime {
        let mut rt = Realtime::new(priority, false);
        if priority > 0 {
            match set_scheduling(priority) {
                Ok(()) => rt.on = true,
                Err(e) => {
                    rt.priority = 0;
                    warn!(error = %e, priority, "cannot give the media thread real-time priority (needs CAP_SYS_NICE, or LimitRTPRIO= and RestrictRealtime=no under systemd); it runs at normal priority");
                }
            }
        }
        rt
    }

    fn new(priority: u8, on: bool) -> Realtime {
        Realtime {
            priority,
            on,
            busy_ticks: 0,
            calm_ticks: 0,
            calm_needed: CALM_TICKS,
            ticks_on: 0,
            stepped_down: false,
        }
    }

    /// Whether the thread runs at real-time priority now.
    pub fn on(&self) -> bool {
        self.on
    }

    /// The priority asked for (0: normal scheduling, or real time could not be had).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// After each tick: how long its work took, and whether a sign of starvation came in
    /// since the last tick. Returns whether the thread changed to real time (`Some(true)`)
    /// or left it (`Some(false)`).
    pub fn after_tick(&mut self, work: Duration, starved: Option<&Starvation>) -> Option<bool> {
        match self.decide(work, starved.is_some()) {
            Some(Err(why)) if set_scheduling(0).is_ok() => {
                self.on = false;
                let calm_s = self.calm_needed / 50;
                match why {
                    StepDown::Busy => warn!(
                        calm_s,
                        "a media thread was busy for more than 15 ms of every 20 ms for 0.5 s: it leaves real-time priority so that SIP and the store keep running (the gateway is at its capacity)"
                    ),
                    StepDown::Starved => warn!(
                        calm_s,
                        sign = starved.map(Starvation::describe).unwrap_or_default(),
                        "SIP or the login checks are short of CPU: a media thread leaves real-time priority (the gateway is at its capacity)"
                    ),
                }
                Some(false)
            }
            Some(Ok(())) if set_scheduling(self.priority).is_ok() => {
                self.on = true;
                info!("a media thread is back at real-time priority");
                Some(true)
            }
            _ => None,
        }
    }

    /// Whether to leave (`Some(Err(why))`) or take again (`Some(Ok(()))`) real-time priority
    /// after a tick whose work took `work`, `starved` if a sign came in since the last tick.
    fn decide(&mut self, work: Duration, starved: bool) -> Option<Result<(), StepDown>> {
        if self.priority == 0 {
            return None;
        }
        let (busy, calm) = (work > PTIME * 3 / 4, work < PTIME / 2 && !starved);
        self.busy_ticks = if busy { self.busy_ticks + 1 } else { 0 };
        self.calm_ticks = if calm { self.calm_ticks + 1 } else { 0 };
        if self.on {
            self.ticks_on = self.ticks_on.saturating_add(1);
            let why = if starved {
                StepDown::Starved
            } else if self.busy_ticks >= OVERLOAD_TICKS {
                StepDown::Busy
            } else {
                return None;
            };
            self.calm_needed = match self.stepped_down && self.ticks_on < STABLE_TICKS {
                true => (self.calm_needed * 2).min(MAX_CALM_TICKS),
                false => CALM_TICKS,
            };
            self.stepped_down = true;
            self.calm_ticks = 0;
            Some(Err(why))
        } else if self.calm_ticks >= self.calm_needed {
            self.ticks_on = 0;
            Some(Ok(()))
        } else {
            None
        }
    }
}

/// Lateness of a media thread's ticks that makes the gateway "behind" (`Overload`): this
/// much within one `LATENESS_WINDOW`, counting only ticks a whole period or more late. A
/// one-off stall shorter than this (another process, a page fault) is not overload.
const OVERLOAD_LATENESS: Duration = Duration::from_millis(100);
const LATENESS_WINDOW: Duration = Duration::from_secs(1);

/// One media thread's lateness within the current window, for `Overload`.
#[derive(Debug)]
pub struct Lateness {
    window_start: Instant,
    late: Duration,
}

impl Lateness {
    pub fn new(now: Instant) -> Lateness {
        Lateness {
            window_start: now,
            late: Duration::ZERO,
        }
    }

    /// A tick that started `late` after its time, at `now`: whether the thread is behind.
    pub fn tick(&mut self, late: Duration, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= LATENESS_WINDOW {
            self.window_start = now;
            self.late = Duration::ZERO;
        }
        if late >= crate::media::player::PTIME {
            self.late += late;
        }
        self.late >= OVERLOAD_LATENESS
    }
}

/// Puts the calling thread at SCHED_RR `priority`, or back to normal scheduling for 0.
fn set_scheduling(priority: u8) -> std::io::Result<()> {
    let (policy, priority) = match priority {
        0 => (libc::SCHED_OTHER, 0),
        p => (libc::SCHED_RR, i32::from(p)),
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is the calling thread, and `param` lives across the call.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
    match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lateness_is_overload_past_100_ms_of_late_ticks_within_a_second() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Jitter under a period never counts; a one-off 60 ms stall is not overload.
        let mut l = Lateness::new(t0);
        assert!(!(0..40).any(|i| l.tick(ms(15), t0 + ms(20 * i))));
        assert!(!l.tick(ms(60), t0 + ms(820)));
        // Ticks a period late, again and again within the second: overload at 100 ms.
        assert!(!l.tick(ms(20), t0 + ms(840)));
        assert!(l.tick(ms(20), t0 + ms(860)));
        // A new second starts from nothing.
        assert!(!l.tick(ms(20), t0 + ms(1900)));
        // One stall of 150 ms: overload at once.
        let mut l = Lateness::new(t0);
        assert!(l.tick(ms(150), t0 + ms(200)));
    }
    use super::*;

    /// Feeds `n` ticks of `work` to `rt`: the first `n - 1` must decide nothing; returns the
    /// decision of the last.
    fn ticks(rt: &mut Realtime, n: u32, work: Duration) -> Option<Result<(), StepDown>> {
        for _ in 0..n - 1 {
            assert_eq!(rt.decide(work, false), None);
        }
        rt.decide(work, false)
    }

    #[test]
    fn a_real_time_media_thread_steps_down_when_overloaded_and_back_when_calm() {
        let mut rt = Realtime::new(10, true);
        let (busy, light, middling) = (PTIME * 9 / 10, PTIME / 10, PTIME * 6 / 10);
        // Busy ticks with a normal one among them: the count starts over.
        assert_eq!(ticks(&mut rt, OVERLOAD_TICKS - 1, busy), None);
        assert_eq!(rt.decide(middling, false), None);
        assert_eq!(ticks(&mut rt, OVERLOAD_TICKS - 1, busy), None);
        assert_eq!(
            rt.decide(busy, false),
            Some(Err(StepDown::Busy)),
            "0.5 s over 3/4 busy"
        );
        rt.on = false;
        assert_eq!(
            ticks(&mut rt, CALM_TICKS, light),
            Some(Ok(())),
            "5 s under half"
        );
        // Normal scheduling asked for: never anything to do.
        let mut off = Realtime::new(0, false);
        assert!((0..CALM_TICKS * 2).all(|_| off.decide(light, true).is_none()));
    }

    #[test]
    fn a_real_time_media_thread_steps_down_when_the_rest_of_the_gateway_starves() {
        let light = PTIME / 10;
        let mut rt = Realtime::new(10, true);
        assert_eq!(rt.decide(light, false), None);
        // Its own ticks are light, but SIP or the checks are late: at once.
        assert_eq!(rt.decide(light, true), Some(Err(StepDown::Starved)));
        rt.on = false;
        // A sign while at normal priority starts the calm time over.
        assert_eq!(ticks(&mut rt, CALM_TICKS - 10, light), None);
        assert_eq!(rt.decide(light, true), None);
        assert_eq!(ticks(&mut rt, CALM_TICKS, light), Some(Ok(())));
        rt.on = true;
        // Starved again soon after: twice the calm time, then four times.
        for (n, calm) in [(1, CALM_TICKS * 2), (2, CALM_TICKS * 4)] {
            assert_eq!(ticks(&mut rt, 100, light), None);
            assert_eq!(
                rt.decide(light, true),
                Some(Err(StepDown::Starved)),
                "step-down {n}"
            );
            rt.on = false;
            assert_eq!(
                ticks(&mut rt, calm, light),
                Some(Ok(())),
                "back after {calm} ticks"
            );
            rt.on = true;
        }
        // A minute at real time: the next step-down waits the first calm time again.
        assert_eq!(ticks(&mut rt, STABLE_TICKS, light), None);
        assert_eq!(rt.decide(light, true), Some(Err(StepDown::Starved)));
        rt.on = false;
        assert_eq!(ticks(&mut rt, CALM_TICKS, light), Some(Ok(())));
    }

    #[test]
    fn starvation_signs_are_new_values() {
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let s = Starvation::new(metrics.clone());
        assert_eq!(s.last(), 0);
        s.sign(SIGN_RUNTIME, Duration::from_millis(150));
        let first = s.last();
        assert_eq!(s.describe(), "the async runtime was 150 ms late");
        assert_ne!(first, 0);
        std::thread::sleep(Duration::from_millis(2));
        s.sign(SIGN_CHECK, Duration::from_millis(1500));
        assert_ne!(s.last(), first);
        assert_eq!(s.describe(), "a login check took 1500 ms");
        let signs = &metrics.media_starvation_signs;
        assert_eq!(signs.load(Ordering::Relaxed), 2);
        // The heartbeat: no sign before the first beat, none while it is on time, one when
        // it is overdue (however many times the media threads look), and a new one for the
        // next overdue beat.
        let before = s.last();
        s.check_heartbeat();
        s.beat();
        s.check_heartbeat();
        assert_eq!(s.last(), before);
        std::thread::sleep(HEARTBEAT + RUNTIME_LATE + Duration::from_millis(20));
        s.check_heartbeat();
        let overdue = s.last();
        assert_ne!(overdue, before);
        assert!(s.describe().starts_with("the async runtime was "));
        s.check_heartbeat();
        assert_eq!(s.last(), overdue);
        s.beat();
        std::thread::sleep(HEARTBEAT + RUNTIME_LATE + Duration::from_millis(20));
        s.check_heartbeat();
        assert_ne!(s.last(), overdue);
        assert_eq!(signs.load(Ordering::Relaxed), 4);
    }
}
