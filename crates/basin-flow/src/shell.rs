//! Shell tasks: `sh -c command` with the task's env and working folder,
//! killed at its timeout. The task's output is what it writes to the file
//! named by `$BASIN_TASK_OUTPUT` (at most 64 KiB; empty if it writes
//! nothing); downstream tasks read it as `{{ outputs.<task> }}`. Its
//! stdout and stderr go to the attempt's log. On Linux the shell is killed
//! when the worker thread running it dies (`PR_SET_PDEATHSIG`), so a
//! worker killed with SIGKILL leaves no task behind to run on beside the
//! attempt that replaces it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::run::Attempt;

const MAX_OUTPUT: u64 = 64 * 1024;

/// Run a shell task's attempt; logs go under `logs` (if given).
pub fn run_shell(attempt: &Attempt, logs: Option<&Path>) -> Result<String, String> {
    let command = attempt
        .fields
        .get("command")
        .ok_or("a shell task needs command")?;
    // Beside the log when there is a log folder (no scratch folder to make
    // and remove per attempt), else in a scratch folder.
    let (scratch, log_file) = match logs {
        Some(dir) => (None, log_path(dir, attempt)),
        None => {
            let dir = tempfile_dir()?;
            let log = dir.join("log");
            (Some(dir), log)
        }
    };
    let output_file = log_file.with_extension("out");
    if let Some(parent) = log_file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let log =
        std::fs::File::create(&log_file).map_err(|e| format!("{}: {e}", log_file.display()))?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(&attempt.env)
        .env("BASIN_TASK_OUTPUT", &output_file)
        .env("BASIN_DAG", attempt.dag)
        .env("BASIN_RUN_ID", attempt.run_id)
        .env("BASIN_TASK", &attempt.task.id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    if let Some(cwd) = attempt.fields.get("cwd") {
        cmd.current_dir(cwd);
    }
    die_with_parent(&mut cmd);
    let outcome = wait(&mut cmd, attempt.task.timeout, attempt.cancel.as_deref());
    let result = match outcome {
        Ok(()) => Ok(read_output(&output_file)),
        Err(e) => Err(format!("{e}; log: {}", tail(&log_file))),
    };
    match &scratch {
        Some(dir) => drop(std::fs::remove_dir_all(dir)),
        None => drop(std::fs::remove_file(&output_file)),
    }
    result
}

/// Have the child killed when the thread that started it dies.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl(2) and getppid(2), both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl took effect: init adopted us.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the worker exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Run to the end, or kill it at `timeout` or when `cancel` is set.
fn wait(
    cmd: &mut Command,
    timeout: Option<Duration>,
    cancel: Option<&AtomicBool>,
) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    let mut exit = ExitWatch::new(&child);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return match status.code() {
                Some(0) => Ok(()),
                Some(code) => Err(format!("exited with status {code}")),
                None => Err("killed by a signal".into()),
            };
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cancelled: this worker's claim on the task was taken away".into());
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {:?}", timeout.expect("checked")));
        }
        exit.wait(CHECK_EVERY);
    }
}

/// How often a running command's timeout and cancellation are checked.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Waits for a child to exit, waking the moment it does: a pidfd polled
/// for readability on Linux (5.3+), else short sleeps that lengthen, so a
/// quick command costs no fixed poll interval.
struct ExitWatch {
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
    nap: Duration,
}

impl ExitWatch {
    fn new(child: &std::process::Child) -> ExitWatch {
        ExitWatch {
            #[cfg(target_os = "linux")]
            pidfd: pidfd_open(child.id()),
            nap: Duration::from_micros(500),
        }
    }

    /// Return when the child may have exited, or after at most `most`.
    fn wait(&mut self, most: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.pidfd {
            use std::os::fd::AsRawFd;
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a timeout or EINTR just returns.
            unsafe { libc::poll(&mut p, 1, most.as_millis() as libc::c_int) };
            return;
        }
        std::thread::sleep(self.nap.min(most));
        self.nap = (self.nap * 2).min(most);
    }
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is an fd this process now owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Where the log of attempt `a` is written under `dir`.
pub fn log_path(dir: &Path, a: &Attempt) -> PathBuf {
    log_dir(dir, a.dag, a.run_id).join(format!("{}.{}.log", a.task.id, a.number))
}

/// The folder of a run's task logs under `dir`: `<dag>/<run id>/`, and
/// each attempt's log is `<task>.<attempt>.log` in it.
pub fn log_dir(dir: &Path, dag: &str, run_id: &str) -> PathBuf {
    dir.join(dag).join(run_id.replace([':', '/'], "_"))
}

/// The last `max` bytes of the log at `path` (cut at a character
/// boundary), `None` if there is none.
pub fn log_tail(path: &Path, max: usize) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let mut from = bytes.len().saturating_sub(max);
    while from < bytes.len() && (bytes[from] & 0xC0) == 0x80 {
        from += 1;
    }
    Some(String::from_utf8_lossy(&bytes[from..]).into_owned())
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "basin-task-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn read_output(path: &Path) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = file.take(MAX_OUTPUT).read_to_string(&mut text);
    text.trim_end().to_string()
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    tail.join(" | ")
}
