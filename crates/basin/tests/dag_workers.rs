//! The orchestrator on PostgreSQL with real processes: `basin dag
//! scheduler --metadata` and `basin worker --metadata` sharing one
//! database (a fresh schema per test, so tests run in parallel). Shell
//! tasks append a line to a file, so the file tells exactly what ran, and
//! where (each worker process has its own `WORKER_NAME`, which its tasks
//! inherit). Two workers run every task of a DAG exactly once; a worker
//! killed with SIGKILL in the middle of a long task loses it to the other
//! worker, which finishes the run; a scheduler (with its local worker)
//! killed mid-run is restarted and finishes the run without running its
//! succeeded tasks again; an attempt's log is read from the database
//! on a machine that did not run it.
//!
//! The server comes from `BASIN_TEST_PG_URL` (the test script starts one);
//! without it, `scripts/pg-test-server.sh` starts or reuses a local one,
//! as in basin-sql's tests.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pg_url, psql};

const LIMIT: Duration = Duration::from_secs(120);

/// One test's DAG folder, output file, database schema and processes
/// (killed when the test ends, however it ends).
struct Setup {
    dir: tempfile::TempDir,
    url: String,
    schema: String,
    base: String,
    procs: Vec<Child>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dags")).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("w_{}_{nanos}", std::process::id());
        let base = pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        Setup {
            url: format!("{base}{sep}schema={schema}"),
            dir,
            schema,
            base,
            procs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where tasks append their lines.
    fn out(&self) -> String {
        self.path("out.txt").display().to_string()
    }

    fn dag(&self, id: &str, toml: &str) {
        std::fs::write(self.path(&format!("dags/{id}.toml")), toml).unwrap();
    }

    /// Start `basin ARGS` with the folder, data dir and metadata; its
    /// stderr goes to `<name>.log`. Returns its index in `procs`.
    fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(args)
            .arg("--dags")
            .arg(self.path("dags"))
            .arg("--data-dir")
            .arg(self.path(&format!("data-{name}")))
            .arg("--metadata")
            .arg(&self.url)
            .env("WORKER_NAME", name)
            .env("RUST_LOG", "info,basin_flow=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn basin");
        self.procs.push(child);
        self.procs.len() - 1
    }

    fn worker(&mut self, name: &str) -> usize {
        let args = [
            "worker",
            "--concurrency",
            "2",
            "--heartbeat",
            "200ms",
            "--id",
            name,
        ];
        self.spawn(name, &args)
    }

    /// SIGKILL, and reap.
    fn kill(&mut self, i: usize) {
        self.procs[i].kill().unwrap();
        self.procs[i].wait().unwrap();
    }

    /// `basin ARGS --dags <folder>`: its stdout; it must succeed.
    fn basin(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(args)
            .arg("--dags")
            .arg(self.path("dags"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `basin dag trigger DAG`.
    fn trigger(&self, dag: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(["dag", "trigger", dag, "--dags"])
            .arg(self.path("dags"))
            .args(["--metadata", &self.url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Rows of a query on this test's schema.
    fn query(&self, sql: &str) -> Vec<String> {
        let sql = sql.replace("$s", &self.schema);
        psql(&self.base, &sql).lines().map(str::to_string).collect()
    }

    /// Rows of a query, or nothing while its tables do not exist yet (the
    /// scheduler creates them when it starts, which a test races).
    fn poll(&self, sql: &str) -> Vec<String> {
        let sql = sql.replace("$s", &self.schema);
        let out = Command::new("psql")
            .args([&self.base, "-v", "ON_ERROR_STOP=1", "-qAtF,", "-c", &sql])
            .output()
            .expect("running psql");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("does not exist"), "psql {sql}: {err}");
        }
        text.lines().map(str::to_string).collect()
    }

    /// Wait until `test` holds, failing with the processes' logs after LIMIT.
    fn wait_until(&self, what: &str, test: impl Fn() -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !test() {
            assert!(Instant::now() < deadline, "{what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the DAG's single run to end; its state.
    fn wait_for_run(&self, dag: &str) -> String {
        let sql = format!("SELECT state FROM $s.flow_runs WHERE dag = '{dag}'");
        self.wait_until("the run did not end", || {
            let state = self.poll(&sql);
            state == ["success"] || state == ["failed"]
        });
        self.query(&sql).remove(0)
    }

    fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("out.txt")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.push_str(&format!("--- {}\n{text}\n", e.path().display()));
            }
        }
        out
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Three chains of ten tasks after one root, joined at the end: 32 tasks.
fn many_tasks(out: &str) -> String {
    let line = |id: &str| {
        format!("kind = \"shell\"\ncommand = \"echo {id} $WORKER_NAME >> {out}; sleep 0.1\"\n")
    };
    let mut toml = format!("[tasks.root]\n{}", line("root"));
    for i in 0..30 {
        let up = if i < 3 {
            "root".to_string()
        } else {
            format!("t{}", i - 3)
        };
        toml.push_str(&format!(
            "[tasks.t{i}]\ndepends_on = [\"{up}\"]\n{}",
            line(&format!("t{i}"))
        ));
    }
    toml.push_str(&format!(
        "[tasks.join]\ndepends_on = [\"t27\", \"t28\", \"t29\"]\n{}",
        line("join")
    ));
    toml
}

#[test]
fn two_workers_run_every_task_exactly_once() {
    let mut s = Setup::new();
    s.dag("many", &many_tasks(&s.out()));
    s.spawn(
        "scheduler",
        &["dag", "scheduler", "--tick", "100ms", "--no-local-worker"],
    );
    s.worker("a");
    s.worker("b");
    s.wait_until("both workers heartbeat", || {
        s.poll("SELECT count(*) FROM $s.flow_workers") == ["2"]
    });
    s.trigger("many");
    assert_eq!(s.wait_for_run("many"), "success", "{}", s.logs());
    let mut by_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in s.lines() {
        let (task, worker) = line.split_once(' ').unwrap();
        by_task.entry(task.into()).or_default().push(worker.into());
    }
    assert_eq!(by_task.len(), 32, "{by_task:?}");
    for (task, workers) in &by_task {
        assert_eq!(
            workers.len(),
            1,
            "{task} ran {} times: {workers:?}",
            workers.len()
        );
    }
    let workers: std::collections::BTreeSet<&String> = by_task.values().flatten().collect();
    assert_eq!(workers.len(), 2, "both workers took tasks: {by_task:?}");
    let attempts =
        s.query("SELECT count(*), max(attempts) FROM $s.flow_tasks WHERE state = 'success'");
    assert_eq!(attempts, ["32,1"]);
    let runs = s.basin(&["dag", "runs", "many", "--metadata", &s.url]);
    assert!(runs.contains(" success "), "{runs}");
    let join = runs.lines().find(|l| l.starts_with("join ")).unwrap();
    assert_eq!(join.split_whitespace().collect::<Vec<_>>(), ["join", "S"]);
}

/// A bad --metadata names what is wrong, before anything starts.
#[test]
fn bad_metadata_urls_are_refused_with_the_reason() {
    let s = Setup::new();
    s.dag("x", "[tasks.a]\nkind = \"shell\"\ncommand = \"true\"\n");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(args)
            .arg("--dags")
            .arg(s.path("dags"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["worker", "--metadata", "mysql://u@h/db"]);
    assert!(
        e.contains("--metadata 'mysql://u@h/db': not a PostgreSQL URL"),
        "{e}"
    );
    let e = run(&[
        "dag",
        "scheduler",
        "--metadata",
        "postgres://u:secret@127.0.0.1:1/flow",
    ]);
    assert!(
        e.contains("cannot connect to PostgreSQL at 127.0.0.1:1/flow"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let e = run(&["dag", "pause", "x", "--metadata", "postgres://u@h:port/db"]);
    assert!(e.contains("invalid value for option `port`"), "{e}");
}

#[test]
fn a_killed_workers_task_is_retried_on_the_other_worker() {
    let mut s = Setup::new();
    let o = s.out();
    let toml = format!(
        "[tasks.long]\nkind = \"shell\"\nretries = 2\nretry_delay = \"0s\"\n\
         command = \"echo start $WORKER_NAME >> {o}; sleep 4; echo end $WORKER_NAME >> {o}\"\n\
         [tasks.after]\nkind = \"shell\"\ndepends_on = [\"long\"]\n\
         command = \"echo after $WORKER_NAME >> {o}\"\n"
    );
    s.dag("long", &toml);
    s.spawn(
        "scheduler",
        &[
            "dag",
            "scheduler",
            "--tick",
            "100ms",
            "--no-local-worker",
            "--heartbeat-timeout",
            "2s",
        ],
    );
    let a = s.worker("a");
    let b = s.worker("b");
    s.wait_until("both workers heartbeat", || {
        s.poll("SELECT count(*) FROM $s.flow_workers") == ["2"]
    });
    s.trigger("long");
    s.wait_until("the long task started", || !s.lines().is_empty());
    let first = s.lines()[0].clone();
    let (victim, survivor) = if first == "start a" {
        (a, "b")
    } else {
        (b, "a")
    };
    let victim_name = if survivor == "b" { "a" } else { "b" };
    s.kill(victim);
    assert_eq!(s.wait_for_run("long"), "success", "{}", s.logs());
    assert_eq!(
        s.lines(),
        [
            format!("start {victim_name}"),
            format!("start {survivor}"),
            format!("end {survivor}"),
            format!("after {survivor}"),
        ],
        "{}",
        s.logs()
    );
    let attempts = s.query(
        "SELECT attempt, worker, outcome FROM $s.flow_attempts WHERE task = 'long' ORDER BY attempt",
    );
    assert_eq!(
        attempts,
        [
            format!("1,{victim_name},lost"),
            format!("2,{survivor},success")
        ]
    );
}

#[test]
fn a_killed_scheduler_resumes_without_rerunning_succeeded_tasks() {
    let mut s = Setup::new();
    let o = s.out();
    let toml = format!(
        "[tasks.first]\nkind = \"shell\"\ncommand = \"echo first >> {o}\"\n\
         [tasks.second]\nkind = \"shell\"\ndepends_on = [\"first\"]\nretries = 2\nretry_delay = \"0s\"\n\
         command = \"echo second start >> {o}; sleep 3; echo second end >> {o}\"\n\
         [tasks.third]\nkind = \"shell\"\ndepends_on = [\"second\"]\ncommand = \"echo third >> {o}\"\n"
    );
    s.dag("resume", &toml);
    // The scheduler with its local worker, as `basin up --metadata` runs.
    let args = [
        "dag",
        "scheduler",
        "--tick",
        "100ms",
        "--heartbeat-timeout",
        "2s",
    ];
    let first = s.spawn("scheduler1", &args);
    s.trigger("resume");
    s.wait_until("the second task started", || {
        s.lines().iter().any(|l| l == "second start")
    });
    s.kill(first);
    let ended =
        s.query("SELECT task, state FROM $s.flow_tasks WHERE state = 'success' ORDER BY task");
    assert_eq!(ended, ["first,success"]);
    s.spawn("scheduler2", &args);
    assert_eq!(s.wait_for_run("resume"), "success", "{}", s.logs());
    assert_eq!(
        s.lines(),
        [
            "first",
            "second start",
            "second start",
            "second end",
            "third"
        ],
        "{}",
        s.logs()
    );
    let attempts = s.query("SELECT task, attempts FROM $s.flow_tasks ORDER BY task");
    assert_eq!(attempts, ["first,1", "second,2", "third,1"]);
}

/// `basin dag logs --metadata` reads an attempt's log from the database,
/// wherever the attempt ran: here on a worker with a data dir of its own,
/// read from a folder that never saw the task.
#[test]
fn logs_of_an_attempt_on_another_worker_come_from_the_database() {
    let mut s = Setup::new();
    s.dag(
        "hello",
        "[tasks.say]\nkind = \"shell\"\ncommand = \"echo hello from $WORKER_NAME; echo oops >&2\"\n",
    );
    s.spawn(
        "scheduler",
        &["dag", "scheduler", "--tick", "100ms", "--no-local-worker"],
    );
    s.worker("far");
    s.wait_until("the worker heartbeats", || {
        s.poll("SELECT count(*) FROM $s.flow_workers") == ["1"]
    });
    s.trigger("hello");
    assert_eq!(s.wait_for_run("hello"), "success", "{}", s.logs());
    let run_id = s
        .query("SELECT run_id FROM $s.flow_runs WHERE dag = 'hello'")
        .remove(0);
    let logs = |metadata: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_basin"));
        cmd.args(["dag", "logs", "hello", &run_id, "say", "--data-dir"])
            .arg(s.path("elsewhere"));
        if metadata {
            cmd.args(["--metadata", &s.url]);
        }
        cmd.output().unwrap()
    };
    let out = logs(true);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("hello from far"), "{stdout}");
    assert!(stdout.contains("oops"), "{stdout}");
    assert!(
        stderr.contains("attempt 1 (success, on worker far)"),
        "{stderr}"
    );
    // This machine's data dir has no copy: without --metadata, nothing.
    let out = logs(false);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no log of task say"), "{stderr}");
}
