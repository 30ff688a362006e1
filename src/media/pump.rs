//! The media pump: a thread per core, each owning a share of the lines (the gateway's calls,
//! or the load generator's phones), reading what arrived and sending every line's frame on
//! one 20 ms schedule, at real-time priority when asked and stepping down at capacity.

use crate::limits::Overload;
use crate::media::player::PTIME;
use crate::media::poll::{RecvBatch, SocketSet};
use crate::media::realtime::{Lateness, Realtime, Starvation};
use crate::media::rtp::MAX_RTP_PACKET;
use crate::metrics::Metrics;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tracing::warn;

/// Packets read from a socket by one system call.
pub const RECV_BATCH: usize = 8;

/// The receive buffers of one pump thread.
pub type Batch = RecvBatch<RECV_BATCH, MAX_RTP_PACKET>;

/// How many 20 ms frames one tick may catch up after the thread was late; the rest of a
/// longer stall is skipped.
pub const MAX_CATCH_UP_FRAMES: u64 = 5;

/// RTP packets a thread's lines sent, received, and dropped as from another source in one
/// tick, added to the process counters once per tick rather than per packet.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub received: u64,
    pub foreign: u64,
}

/// A line the pump drives: its socket is watched, what arrived is read when it is ready, and
/// a frame is sent for every tick due. Each wakes its own task when it has news for it.
pub trait Pumped: Send + Sync + Sized + 'static {
    /// Adds the line's socket to `set` (the thread that owns the line).
    fn watch(self: &Arc<Self>, set: &mut SocketSet<Self>) -> std::io::Result<()>;
    /// Reads what arrived on the line's socket at tick `tick`.
    fn receive(&self, batch: &mut Batch, tick: u64, tally: &mut Tally);
    /// Sends the frames of `ticks` (more than one after a stall).
    fn send(&self, ticks: RangeInclusive<u64>, tally: &mut Tally);
    /// Whether the line's task is done with it (the pump then drops it).
    fn ended(&self) -> bool;
    /// Marks the line done.
    fn end(&self);
}

/// How the pump runs.
#[derive(Debug, Clone, Copy)]
pub struct PumpSettings {
    /// Thread names are `{name}-{i}`.
    pub name: &'static str,
    /// Threads (at least one).
    pub threads: usize,
    /// SCHED_RR priority of the threads; 0: normal scheduling.
    pub realtime_priority: u8,
}

/// The media pump. Every 20 ms a thread reads the packets that arrived on its lines' sockets
/// (one epoll query, one `recvmmsg` per socket that has any) and sends each line's frame, in
/// the same order every time, so a line's packets leave at a steady offset within the period.
/// No task wakes to send or to read a packet: only when a line has news for it.
pub struct MediaPump<L: Pumped> {
    shards: Vec<Arc<Shard<L>>>,
    next: AtomicUsize,
    /// Tick n is due at `epoch + n × 20 ms`, on every thread.
    epoch: Instant,
    /// Signs that work at normal priority is short of CPU, for the real-time media threads.
    pub starvation: Arc<Starvation>,
    /// Whether the media threads were asked to run at real-time priority.
    pub realtime: bool,
}

/// Lines handed to one pump thread, waiting for its next tick.
struct Shard<L> {
    added: Mutex<Vec<Arc<L>>>,
}

impl<L: Pumped> std::fmt::Debug for MediaPump<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPump")
            .field("threads", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Ends a line's part in the pump when its task ends, however it ends.
pub struct Registration<L: Pumped>(Arc<L>);

impl<L: Pumped> Drop for Registration<L> {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl<L: Pumped> MediaPump<L> {
    /// Starts the pump's threads, of its own so that the 20 ms schedule does not wait behind
    /// the async runtime's tasks (see `Realtime` for their priority). They count into
    /// `metrics`, report lateness to `overload`, and stop when the pump is dropped.
    pub fn start(
        settings: PumpSettings,
        metrics: Arc<Metrics>,
        overload: Arc<Overload>,
    ) -> std::io::Result<MediaPump<L>> {
        let epoch = Instant::now();
        let starvation = Arc::new(Starvation::new(metrics.clone()));
        let mut shards = Vec::new();
        for i in 0..settings.threads.max(1) {
            let shard = Arc::new(Shard {
                added: Mutex::new(Vec::new()),
            });
            let thread = PumpThread {
                shard: Arc::downgrade(&shard),
                lines: SocketSet::new()?,
                schedule: Schedule { epoch, last: None },
                metrics: metrics.clone(),
                overload: overload.clone(),
                starvation: starvation.clone(),
            };
            let priority = settings.realtime_priority;
            std::thread::Builder::new()
                .name(format!("{}-{i}", settings.name))
                .spawn(move || thread.run(priority))?;
            shards.push(shard);
        }
        Ok(MediaPump {
            shards,
            next: AtomicUsize::new(0),
            epoch,
            starvation,
            realtime: settings.realtime_priority > 0,
        })
    }

    /// Hands a line to the next thread, round robin; it is driven until the returned
    /// registration is dropped.
    pub fn add(&self, line: &Arc<L>) -> Registration<L> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        match self.shards[i].added.lock() {
            Ok(mut a) => a.push(line.clone()),
            Err(p) => p.into_inner().push(line.clone()),
        }
        Registration(line.clone())
    }

    /// The tick due now.
    pub fn tick(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() / PTIME.as_nanos()) as u64
    }
}

/// One thread's place on the pump's schedule.
#[derive(Debug)]
struct Schedule {
    epoch: Instant,
    /// The last tick done.
    last: Option<u64>,
}

/// What one wake-up of a thread has to do.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    /// The ticks to send (at most `MAX_CATCH_UP_FRAMES`).
    ticks: RangeInclusive<u64>,
    /// Ticks since the last one done (more than one: the thread was late).
    gap: u64,
    /// How late the first tick due is.
    late: Duration,
}

impl Schedule {
    fn at(&self, tick: u64) -> Instant {
        self.epoch + PTIME * tick as u32
    }

    /// The ticks due at `now`, if any.
    fn due(&mut self, now: Instant) -> Option<Due> {
        let now_tick =
            (now.saturating_duration_since(self.epoch).as_nanos() / PTIME.as_nanos()) as u64;
        let first_due = self.last.map_or(now_tick, |l| l + 1);
        if now_tick < first_due {
            return None;
        }
        let gap = now_tick + 1 - first_due;
        let first = first_due.max(now_tick + 1 - gap.min(MAX_CATCH_UP_FRAMES));
        self.last = Some(now_tick);
        Some(Due {
            ticks: first..=now_tick,
            gap,
            late: now.saturating_duration_since(self.at(first_due)),
        })
    }

    /// When the next tick is due.
    fn next(&self) -> Instant {
        self.at(self.last.map_or(0, |l| l + 1))
    }
}

/// What one pump thread owns.
struct PumpThread<L> {
    shard: Weak<Shard<L>>,
    lines: SocketSet<L>,
    schedule: Schedule,
    metrics: Arc<Metrics>,
    overload: Arc<Overload>,
    starvation: Arc<Starvation>,
}

impl<L: Pumped> PumpThread<L> {
    /// Every 20 ms: read what arrived, then send a frame for every line.
    fn run(mut self, realtime_priority: u8) {
        let mut realtime = Realtime::start(realtime_priority);
        let mut last_sign = self.starvation.last();
        if realtime.on() {
            self.metrics
                .media_realtime_threads
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut added = Vec::new();
        let mut batch = Batch::default();
        let mut lateness = Lateness::new(Instant::now());
        loop {
            let now = Instant::now();
            let next = self.schedule.next();
            if next > now {
                std::thread::sleep(next - now);
            }
            let tick_start = Instant::now();
            let Some(due) = self.schedule.due(tick_start) else {
                continue;
            };
            if lateness.tick(due.late, tick_start) {
                self.overload.behind(tick_start);
            }
            if due.gap > 1 {
                self.metrics
                    .media_late_ticks
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .media_max_stall_ticks
                    .fetch_max(due.gap, Ordering::Relaxed);
            }
            let Some(shard) = self.shard.upgrade() else {
                break;
            };
            match shard.added.lock() {
                Ok(mut a) => std::mem::swap(&mut *a, &mut added),
                Err(p) => std::mem::swap(&mut *p.into_inner(), &mut added),
            }
            drop(shard);
            for line in added.drain(..) {
                if let Err(e) = line.watch(&mut self.lines) {
                    warn!(error = %e, "cannot watch an RTP socket: what arrives on it is not read");
                }
            }
            let mut tally = Tally::default();
            let tick = *due.ticks.end();
            self.lines
                .for_each_ready(|line| line.receive(&mut batch, tick, &mut tally));
            self.lines.retain(|line| {
                if line.ended() {
                    return false;
                }
                line.send(due.ticks.clone(), &mut tally);
                true
            });
            self.count(&tally);
            if realtime.priority() > 0 {
                self.starvation.check_heartbeat();
            }
            let sign = self.starvation.last();
            let starved = (sign != last_sign).then_some(&*self.starvation);
            last_sign = sign;
            match realtime.after_tick(tick_start.elapsed(), starved) {
                Some(true) => self
                    .metrics
                    .media_realtime_threads
                    .fetch_add(1, Ordering::Relaxed),
                Some(false) => self
                    .metrics
                    .media_realtime_threads
                    .fetch_sub(1, Ordering::Relaxed),
                None => 0,
            };
        }
    }

    fn count(&self, tally: &Tally) {
        let m = &self.metrics;
        for (n, counter) in [
            (tally.sent, &m.rtp_out),
            (tally.received, &m.rtp_in),
            (tally.foreign, &m.rtp_foreign),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ticks_catch_up_a_few_frames_then_skip() {
        let t0 = Instant::now();
        let mut s = Schedule {
            epoch: t0,
            last: None,
        };
        // The first wake-up: tick 0, on time; the next is a period later.
        let d = s.due(t0).unwrap();
        assert_eq!((d.ticks, d.gap, d.late), (0..=0, 1, Duration::ZERO));
        assert_eq!(s.next(), t0 + PTIME);
        // Woken early: nothing due.
        assert_eq!(s.due(t0 + PTIME / 2), None);
        // Woken 2.5 periods after tick 1 was due: ticks 1 to 3, back on the schedule.
        let d = s.due(t0 + PTIME * 7 / 2).unwrap();
        assert_eq!((d.ticks, d.gap, d.late), (1..=3, 3, PTIME * 5 / 2));
        assert_eq!(s.next(), t0 + PTIME * 4);
        // A long stall: at most MAX_CATCH_UP_FRAMES, the rest skipped.
        let d = s.due(t0 + PTIME * 44).unwrap();
        assert_eq!(d.ticks, 40..=44);
        assert_eq!(d.gap, 41);
        assert_eq!(s.next(), t0 + PTIME * 45);
    }
}
