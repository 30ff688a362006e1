//! The real `agentgw` binary at its capacity: real-time media and stepping down, refusing
//! calls while the media threads are behind, and the load generator's runs and warnings.

#[path = "support/daemon.rs"]
mod daemon;
mod support;

use daemon::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this process may put a thread at real-time priority (root, CAP_SYS_NICE or an
/// RLIMIT_RTPRIO): tried on a thread of its own.
fn realtime_permitted() -> bool {
    std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends right after.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) == 0 }
    })
    .join()
    .unwrap()
}

/// `realtime_permitted()`, said loudly when not, for a test that `needs` real-time priority
/// (`needs`: what for); in CI, which runs as root, its absence fails the test.
fn realtime_or_say_so(needs: &str) -> bool {
    if realtime_permitted() {
        return true;
    }
    support::not_checked_loudly(&format!(
        "this user may not use real-time priority, which the test needs: {needs}"
    ));
    false
}

/// The scheduling policy and real-time priority of each of `pid`'s threads named `prefix*`
/// (fields 41 and 40 of /proc/PID/task/TID/stat; the name is read from `comm`).
fn thread_scheduling(pid: u32, prefix: &str) -> Vec<(u32, u32)> {
    let mut out = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
        // After the ")" closing the name: field 3 on, so field N is at N - 3.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        out.push((
            fields[41 - 3].parse().unwrap(),
            fields[40 - 3].parse().unwrap(),
        ));
    }
    out
}

/// The CI smoke run of the load generator: a few hundred complete logins against the real
/// binary; any call that does not end logged in fails it (the figures are for BENCHMARKS.md,
/// not for CI).
#[test]
fn load_smoke_run_every_call_logs_in() {
    // With three media threads at real-time priority (SCHED_RR 5).
    let d = Daemon::start_with(
        "[login]\nalready_logged_on = \"replace\"\n[log]\nfilter = \"warn\"\n\
         [media]\nthreads = 3\nrealtime_priority = 5\n",
        &[],
    );
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media.len(), 3, "{media:?}");
    // The async runtime: `[sip] threads` unset, half the cores (at least one).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The runtime's blocking pool (sqlx runs its file operations there) names its threads as
    // the workers and keeps one 10 s after its last task: wait for those to go.
    let expected = (cores / 2).max(1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut workers = thread_scheduling(d.child.id(), "tokio-rt-worker");
    while workers.len() != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        workers = thread_scheduling(d.child.id(), "tokio-rt-worker");
    }
    assert_eq!(workers.len(), expected, "{workers:?}");
    if realtime_permitted() {
        // Each thread sets its own scheduling as it starts.
        let rr = (libc::SCHED_RR as u32, 5);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut media = media;
        while !media.iter().all(|&p| p == rr) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            media = thread_scheduling(d.child.id(), "agentgw-media-");
        }
        assert!(media.iter().all(|&p| p == rr), "{media:?}");
        let (_, metrics) = d.http("GET", "/metrics", Some(&d.token()));
        assert!(
            metrics.contains("agentgw_media_realtime_threads 3"),
            "{metrics}"
        );
    } else {
        support::not_checked_loudly(
            "this user may not use real-time priority: the media threads' real-time priority (only the fallback to normal scheduling is checked)",
        );
        assert!(media.iter().all(|&p| p == (0, 0)), "{media:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("agents.csv");
    std::fs::write(&csv, "number,passcode\n1001,1234\n1002,2345\n1003,3456\n").unwrap();
    let json = dir.path().join("summary.json");
    let out = Command::new(load_bin())
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["--calls", "200", "--rate", "50", "--type-ahead", "--csv"])
        .arg(&csv)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["outcomes"]["logged-in"], 200, "{summary}");
    assert_eq!(summary["setup"]["count"], 200);
    assert_eq!(summary["rtp_lost"], 0, "{summary}");
}

/// What the systemd unit gives by default (`RestrictRealtime=yes`, no `LimitRTPRIO=`, no
/// capabilities, a system user): `realtime_priority` set but not permitted is a warning, not
/// a failure; the media threads run at normal priority and every call logs in. Run as
/// `nobody` with no capabilities when the tests run as root (CI), with RLIMIT_RTPRIO 0 either
/// way.
#[test]
fn real_time_media_not_permitted_runs_at_normal_priority_and_logs_in() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut wrap = vec!["prlimit", "--rtprio=0:0"];
    if root {
        wrap.extend([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
    }
    for tool in ["prlimit", "setpriv"] {
        if Command::new(tool).arg("--version").output().is_err() {
            support::not_checked_loudly(&format!(
                "{tool} (util-linux) is missing: a gateway without real-time permission"
            ));
            return;
        }
    }
    // nobody must be able to run the binary where it was built (not under a private home).
    if root
        && !Command::new(wrap[2])
            .args(&wrap[3..])
            .args(["test", "-x", BIN])
            .status()
            .is_ok_and(|s| s.success())
    {
        support::not_checked_loudly(&format!(
            "user nobody cannot run {BIN} (a directory above it is private): a gateway without real-time permission"
        ));
        return;
    }
    let d = Daemon::start_wrapped(
        "",
        "[login]\nalready_logged_on = \"replace\"\n[media]\nthreads = 2\nrealtime_priority = 5\n",
        &[],
        &wrap,
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    if root {
        assert!(status.contains("Uid:\t65534\t"), "{status}");
    }
    // Each media thread tries as it starts; give them the time to.
    std::thread::sleep(Duration::from_millis(300));
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media.len(), 2, "{media:?}");
    if media.iter().any(|&p| p != (0, 0)) {
        // A user with CAP_SYS_NICE of its own (not root, so not dropped above).
        support::not_checked_loudly(&format!(
            "this user has real-time priority without RLIMIT_RTPRIO: {media:?}"
        ));
        return;
    }
    assert_eq!(d.metric("agentgw_media_realtime_threads"), 0);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let out = Command::new(load_bin())
        .arg(format!("127.0.0.1:{}", d.port))
        .args([
            "--calls",
            "20",
            "--rate",
            "20",
            "--type-ahead",
            "--agents",
            "1001-1001",
            "--passcode",
            "1234",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["outcomes"]["logged-in"], 20, "{summary}");
    assert_eq!(summary["rtp_lost"], 0, "{summary}");
}

/// The TIDs of `pid`'s threads named `prefix*`.
fn thread_ids(pid: u32, prefix: &str) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// Pins thread `tid` (0: the calling thread) to CPU 0.
fn pin_to_cpu0(tid: i32) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; the kernel reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity({tid}): {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn real_time_media_steps_down_while_sip_is_starved_and_comes_back() {
    if !realtime_or_say_so("the real-time guard, starving the gateway's async runtime") {
        return;
    }
    let d = Daemon::start_with(
        "[log]\nfilter = \"warn\"\n[media]\nthreads = 1\nrealtime_priority = 5\n",
        &[],
    );
    let wait_for = |d: &Daemon, name: &str, want: u64, within: Duration| {
        let deadline = Instant::now() + within;
        while d.metric(name) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(d.metric(name), want, "{name} after {within:?}");
    };
    wait_for(
        &d,
        "agentgw_media_realtime_threads",
        1,
        Duration::from_secs(5),
    );
    // (No check that an idle gateway gives no sign: the other tests of this binary run
    // daemons beside this one, and a heartbeat 100 ms late on a busy 2-core box is a sign.)

    let signs_before = d.metric("agentgw_media_starvation_signs_total");
    // Starve the async runtime: its worker pinned to CPU 0, where a real-time busy loop
    // (SCHED_FIFO 1, below the media thread's 5) runs for 800 ms.
    let workers = thread_ids(d.child.id(), "tokio-rt-worker");
    assert!(!workers.is_empty());
    for &tid in &workers {
        pin_to_cpu0(tid);
    }
    let pid = d.child.id();
    let during = std::thread::spawn(move || {
        pin_to_cpu0(0);
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends after the loop.
        let r =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        assert_eq!(r, 0);
        let start = Instant::now();
        // The media thread's scheduling after 500 ms, with the runtime still starved.
        let mut during = None;
        while start.elapsed() < Duration::from_millis(800) {
            if during.is_none() && start.elapsed() > Duration::from_millis(500) {
                during = Some(thread_scheduling(pid, "agentgw-media-"));
            }
            std::hint::spin_loop();
        }
        during.unwrap()
    })
    .join()
    .unwrap();
    // The media thread saw the heartbeat overdue and stepped down while the runtime could
    // not run to say so...
    assert_eq!(during, vec![(0, 0)], "still real-time while SIP starved");
    assert!(d.metric("agentgw_media_starvation_signs_total") > signs_before);
    assert_eq!(d.metric("agentgw_media_realtime_threads"), 0);
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media, vec![(0, 0)]);
    // ...and takes real time again after 5 s of calm (up to 10 s more if the busy machine
    // gave another sign meanwhile: the calm time doubles).
    wait_for(
        &d,
        "agentgw_media_realtime_threads",
        1,
        Duration::from_secs(25),
    );
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media, vec![(libc::SCHED_RR as u32, 5)]);
}

#[test]
fn new_calls_get_503_while_the_media_threads_are_behind_with_refuse_when_overloaded() {
    if !realtime_or_say_so("the overload refusal, holding the media thread back") {
        return;
    }
    let d = Daemon::start_with_sip(
        "refuse_when_overloaded = true\n",
        "[log]\nfilter = \"warn\"\n[media]\nthreads = 1\n",
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    // A call answered at once while the media thread keeps time (another daemon of this
    // binary may be busy beside it: wait for the gauge first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric("agentgw_overloaded") != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(p.call().await, 200);
        p.hangup().await;
    });
    // Hold the media thread back: pinned to CPU 0, where a real-time busy loop runs for
    // 1.5 s (the kernel may lend it the other core's real-time time, so the media thread
    // may not run at all meanwhile); SIP and this test run on the other core. When the
    // loop ends, the media thread's next tick is 1.5 s late: it is behind, and new calls
    // are refused for 2 s from then.
    for tid in thread_ids(d.child.id(), "agentgw-media-") {
        pin_to_cpu0(tid);
    }
    std::thread::spawn(|| {
        pin_to_cpu0(0);
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends after the loop.
        let r =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        assert_eq!(r, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            std::hint::spin_loop();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let during = rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        let status = p.call().await;
        let retry = p
            .invite_response
            .as_ref()
            .and_then(|r| r.header("Retry-After").map(String::from));
        if status == 200 {
            p.hangup().await;
        }
        (status, retry)
    });
    assert_eq!(
        during,
        (503, Some("2".to_string())),
        "a new call while behind"
    );
    assert!(d.metric("agentgw_calls_refused_overloaded_total") >= 1);
    // Back in time: answered again once the 2 s hold has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = rt.block_on(async {
        loop {
            let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
            if p.call().await == 200 {
                p.hangup().await;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(
        answered,
        "calls answered again after the media thread caught up"
    );
    assert_eq!(d.metric("agentgw_overloaded"), 0);
}

#[test]
fn the_load_generator_says_when_it_fell_behind() {
    let d = Daemon::start_with(
        "[login]\nalready_logged_on = \"replace\"\n[log]\nfilter = \"warn\"\n",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let load = Command::new(load_bin())
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["--calls", "20", "--rate", "10", "--type-ahead"])
        .args(["--agents", "1001-1001", "--passcode", "1234"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped for 400 ms in the middle of the run, as a starved generator would be.
    std::thread::sleep(Duration::from_millis(800));
    let pid = load.id() as i32;
    // SAFETY: signals to our own child process.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGSTOP), 0);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(libc::kill(pid, libc::SIGCONT), 0);
    }
    let out = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stall = summary["generator_max_stall_ms"].as_u64().unwrap();
    assert!(stall >= 300, "{summary}");
    assert!(summary["generator_late_ticks"].as_u64().unwrap() >= 1);
    assert!(stdout.contains("THE GENERATOR FELL BEHIND"), "{stdout}");
}
