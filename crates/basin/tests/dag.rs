//! `basin dag list|show|test` end to end: DAG files in a folder, a run of
//! SQL and shell tasks with templates and task outputs, and clear errors
//! for invalid files.

mod common;

use std::time::Duration;

use common::run_basin;

const LIMIT: Duration = Duration::from_secs(120);

const DAG: &str = r#"
description = "Counts of a test table"
schedule = "0 0 * * *"
timezone = "UTC"

[params]
label = "base"

[tasks.create]
kind = "sql"
sql = "CREATE TABLE IF NOT EXISTS lake.runs (day VARCHAR, label VARCHAR)"

[tasks.insert]
kind = "sql"
depends_on = ["create"]
sql = "INSERT INTO lake.runs VALUES ('{{ ds }}', '{{ params.label }}')"

[tasks.count]
kind = "sql"
depends_on = ["insert"]
sql = "SELECT count(*) FROM lake.runs WHERE day = '{{ ds }}'"

[tasks.report]
kind = "shell"
depends_on = ["count"]
command = "echo '{{ ds }} {{ outputs.count }} {{ params.label }}' > {{ params.out }}"

[tasks.on_failure]
kind = "shell"
depends_on = ["report"]
trigger_rule = "one_failed"
command = "echo failed"
"#;

#[test]
fn dag_test_runs_sql_and_shell_tasks_with_templates() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("counts.toml"), DAG).unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("report.txt");
    let dags_arg = dags.to_str().unwrap();
    let list = run_basin("", &["dag", "list", "--dags", dags_arg], None, LIMIT);
    assert!(list.success, "{}", list.stderr);
    assert!(
        list.stdout.contains("counts") && list.stdout.contains("0 0 * * * UTC"),
        "{}",
        list.stdout
    );
    let show = run_basin(
        "",
        &["dag", "show", "counts", "--dags", dags_arg],
        None,
        LIMIT,
    );
    assert!(show.stdout.contains("insert ──► count"), "{}", show.stdout);
    for _ in 0..2 {
        let test = run_basin(
            "",
            &[
                "dag",
                "test",
                "counts",
                "--dags",
                dags_arg,
                "--data-dir",
                data.to_str().unwrap(),
                "--date",
                "2026-03-05T12:00:00Z",
                "-p",
                &format!("out={}", out.display()),
                "-p",
                "label=override",
            ],
            None,
            LIMIT,
        );
        assert!(test.success, "{}\n{}", test.stdout, test.stderr);
        assert!(
            test.stdout.contains("on_failure") && test.stdout.contains("skipped"),
            "{}",
            test.stdout
        );
    }
    // Two runs of the same interval: the count task saw 1, then 2 rows.
    let written = std::fs::read_to_string(&out).unwrap();
    let logs = run_basin(
        "",
        &[
            "dag",
            "logs",
            "counts",
            "test__2026-03-05T12:00:00",
            "count",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
        LIMIT,
    );
    assert!(logs.success, "{}", logs.stderr);
    assert!(
        logs.stdout.contains("WHERE day = '2026-03-04'") && logs.stdout.contains("-- success: 2"),
        "{}",
        logs.stdout
    );
    // The run at noon on 5 March covers the interval of 4 March.
    assert_eq!(written.trim(), "2026-03-04 2 override");
}

#[test]
fn a_failing_task_fails_the_run_and_invalid_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("broken.toml"),
        "[tasks.a]\nkind = \"shell\"\ncommand = \"exit 3\"\n[tasks.b]\nkind = \"shell\"\ncommand = \"true\"\ndepends_on = [\"a\"]\n",
    )
    .unwrap();
    let dags_arg = dags.to_str().unwrap();
    let data = dir.path().join("data");
    let test = run_basin(
        "",
        &[
            "dag",
            "test",
            "broken",
            "--dags",
            dags_arg,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
        LIMIT,
    );
    assert!(!test.success);
    assert!(
        test.stdout.contains("exited with status 3"),
        "{}",
        test.stdout
    );
    assert!(test.stdout.contains("upstream_failed"), "{}", test.stdout);

    std::fs::write(
        dags.join("typo.toml"),
        "[tasks.a]\nkind = \"shell\"\ncommand = \"true\"\ndepends_on = [\"nope\"]\n",
    )
    .unwrap();
    let list = run_basin("", &["dag", "list", "--dags", dags_arg], None, LIMIT);
    assert!(!list.success);
    assert!(
        list.stderr
            .contains("typo.toml:4: task 'a': depends_on 'nope'"),
        "{}",
        list.stderr
    );
}

/// The scheduler is killed with SIGKILL while a run's second task runs;
/// restarted, it resumes the run without running the first task again.
#[test]
fn a_killed_scheduler_resumes_runs_without_rerunning_finished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let counter = dir.path().join("counter.txt");
    let marker = dir.path().join("started");
    let allow = dir.path().join("allow");
    std::fs::write(
        dags.join("resume.toml"),
        format!(
            "[tasks.first]\nkind = \"shell\"\ncommand = \"echo first >> {c}\"\n\
             [tasks.second]\nkind = \"shell\"\ndepends_on = [\"first\"]\n\
             command = \"touch {m}; if [ ! -f {a} ]; then sleep 30; exit 1; fi; echo second >> {c}\"\n",
            c = counter.display(),
            m = marker.display(),
            a = allow.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let state = |cmd: &str| -> Vec<String> {
        vec![
            "dag".into(),
            cmd.into(),
            "resume".into(),
            "--dags".into(),
            dags.to_str().unwrap().into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
        ]
    };
    let trigger = state("trigger");
    let trigger: Vec<&str> = trigger.iter().map(String::as_str).collect();
    assert!(run_basin("", &trigger, None, LIMIT).success);
    let scheduler = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(["dag", "scheduler", "--tick", "100ms", "--dags"])
            .arg(&dags)
            .arg("--data-dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = scheduler();
    let deadline = std::time::Instant::now() + LIMIT;
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the second task never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    std::fs::write(&allow, "").unwrap();
    let mut second = scheduler();
    let runs = state("runs");
    let runs: Vec<&str> = runs.iter().map(String::as_str).collect();
    loop {
        let out = run_basin("", &runs, None, LIMIT);
        let done = |l: &&str| l.contains("manual__") && l.contains(" success ");
        if out.stdout.lines().any(|l| done(&l)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", out.stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let ran = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["first", "second"]);
}

/// A DAG with `on_update = ["lake.events"]` runs when an INSERT commits a
/// new version of that lake table.
#[test]
fn a_lake_table_update_triggers_its_dag() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let data = dir.path().join("data");
    let sql = |statement: &str| {
        let out = run_basin(
            "",
            &["sql", "--data-dir", data.to_str().unwrap(), statement],
            None,
            LIMIT,
        );
        assert!(out.success, "{}", out.stderr);
    };
    sql("CREATE TABLE lake.events (id BIGINT)");
    sql("INSERT INTO lake.events VALUES (1)");
    std::fs::write(
        dags.join("on_events.toml"),
        "on_update = [\"lake.events\"]\n[tasks.count]\nkind = \"sql\"\nsql = \"SELECT count(*) FROM lake.events\"\n",
    )
    .unwrap();
    let mut scheduler = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["dag", "scheduler", "--tick", "100ms", "--dags"])
        .arg(&dags)
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runs = [
        "dag",
        "runs",
        "on_events",
        "--dags",
        dags.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let deadline = std::time::Instant::now() + LIMIT;
    // The scheduler notes the version it first sees, then reacts to updates.
    while !run_basin("", &runs, None, LIMIT)
        .stdout
        .contains("on_update lake.events: version 1 seen")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler never looked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sql("INSERT INTO lake.events VALUES (2), (3)");
    let out = loop {
        let out = run_basin("", &runs, None, LIMIT);
        let done = |l: &&str| l.contains("dataset__lake.events@") && l.contains(" success ");
        if out.stdout.lines().any(|l| done(&l)) {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "{}", out.stdout);
        std::thread::sleep(Duration::from_millis(100));
    };
    scheduler.kill().unwrap();
    scheduler.wait().unwrap();
    let dataset_runs = out
        .stdout
        .lines()
        .filter(|l| l.contains("dataset__"))
        .count();
    assert_eq!(dataset_runs, 1, "{}", out.stdout);
}

/// `basin up` runs the scheduler over its DAG folder: a triggered run of a
/// DAG there runs on the node.
#[test]
fn basin_up_schedules_the_dags_of_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let done = dir.path().join("done.txt");
    std::fs::write(
        dags.join("ping.toml"),
        format!(
            "[tasks.ping]\nkind = \"shell\"\ncommand = \"echo {{{{ params.word }}}} > {}\"\n",
            done.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--dags")
        .arg(&dags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let trigger = [
        "dag",
        "trigger",
        "ping",
        "--dags",
        dags.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "-p",
        "word=pong",
    ];
    let queued = run_basin("", &trigger, None, LIMIT);
    assert!(queued.success, "{}", queued.stderr);
    let deadline = std::time::Instant::now() + LIMIT;
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never ran the DAG"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.kill().unwrap();
    node.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), "pong");
}

/// Pipeline tasks with `mode = "deploy"` and `"restart"` hand a stream
/// pipeline to the `basin up` node of the data dir (none runs here, so the
/// deployment waits for one); an unknown mode is refused where it is.
#[test]
fn pipeline_tasks_deploy_and_restart_stream_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let pipeline = dir.path().join("clicks_per_minute.sql");
    std::fs::write(
        &pipeline,
        "CREATE EXTERNAL TABLE clicks (page VARCHAR, ts TIMESTAMP, \
         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) STORED AS TOPIC LOCATION 'clicks';\n\
         CREATE TABLE IF NOT EXISTS lake.per_minute (page VARCHAR, minute TIMESTAMP, n BIGINT);\n\
         INSERT INTO lake.per_minute SELECT page, window_start, count(*) \
         FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
         GROUP BY page, window_start, window_end;\n",
    )
    .unwrap();
    let file = pipeline.display();
    std::fs::write(
        dags.join("ship.toml"),
        format!(
            "[tasks.deploy]\nkind = \"pipeline\"\nmode = \"deploy\"\nfile = \"{file}\"\n\
             [tasks.restart]\nkind = \"pipeline\"\nmode = \"restart\"\nfile = \"{file}\"\ndepends_on = [\"deploy\"]\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let dags_arg = dags.to_str().unwrap();
    let args = ["dag", "test", "ship", "--dags", dags_arg, "--data-dir"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(data.to_str().unwrap());
    let test = run_basin("", &args, None, LIMIT);
    assert!(test.success, "{}{}", test.stdout, test.stderr);
    assert!(
        test.stdout.contains("deployed clicks_per_minute"),
        "{}",
        test.stdout
    );
    assert!(
        test.stdout.contains("restarted clicks_per_minute"),
        "{}",
        test.stdout
    );
    let saved = std::fs::read_to_string(data.join("deployments/clicks_per_minute.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["generation"], 2, "{saved}");
    assert_eq!(saved["running"], true, "{saved}");

    std::fs::write(
        dags.join("ship.toml"),
        format!("[tasks.deploy]\nkind = \"pipeline\"\nmode = \"launch\"\nfile = \"{file}\"\n"),
    )
    .unwrap();
    let list = run_basin("", &["dag", "list", "--dags", dags_arg], None, LIMIT);
    assert!(!list.success);
    let refused = "task 'deploy': mode 'launch' is not one of batch, deploy, restart";
    assert!(list.stderr.contains("ship.toml:"), "{}", list.stderr);
    assert!(list.stderr.contains(refused), "{}", list.stderr);
}

#[test]
fn a_train_task_registers_a_version_each_run_and_later_tasks_score_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let data = dir.path().join("data");
    let trips = dir.path().join("trips.parquet");
    let gen = [
        "gen",
        "taxi",
        "--rows",
        "3000",
        "--days",
        "2",
        "--out",
        trips.to_str().unwrap(),
    ];
    assert!(run_basin("", &gen, None, LIMIT).success);
    let dag = format!(
        r#"
[tasks.features]
kind = "sql"
sql = """
CREATE EXTERNAL TABLE IF NOT EXISTS trips STORED AS PARQUET LOCATION '{}';
CREATE OR REPLACE TABLE lake.features AS
SELECT tpep_pickup_datetime AS pickup_ts, trip_distance, "RatecodeID" AS rate_code, fare_amount
FROM trips WHERE fare_amount BETWEEN 2.5 AND 250 AND trip_distance > 0
"""

[tasks.train]
kind = "train"
depends_on = ["features"]
sql = """CREATE MODEL fare_model OPTIONS (label = 'fare_amount', time_column = 'pickup_ts',
  validation = '1 day', stage = 'production', iterations = 20)
AS SELECT * FROM lake.features"""

[tasks.score]
kind = "sql"
depends_on = ["train"]
sql = "SELECT predict_version('fare_model') * 1000000 + count(*) FROM lake.features WHERE predict('fare_model', trip_distance, rate_code) > 0"

[tasks.not_a_model]
kind = "train"
depends_on = ["score"]
sql = "SELECT 1"
"#,
        trips.display()
    );
    std::fs::write(dags.join("retrain.toml"), dag).unwrap();
    let dags_arg = dags.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    for (i, date) in ["2026-03-05T00:00:00Z", "2026-03-06T00:00:00Z"]
        .iter()
        .enumerate()
    {
        let args = [
            "dag",
            "test",
            "retrain",
            "--dags",
            dags_arg,
            "--data-dir",
            data_arg,
            "--date",
            date,
        ];
        let run = run_basin("", &args, None, LIMIT);
        // The last task is refused, so the run fails after the others succeed.
        assert!(!run.success, "{}", run.stdout);
        let logs = |task: &str| {
            let run_id = format!("test__{}", &date[..19]);
            let args = [
                "dag",
                "logs",
                "retrain",
                &run_id,
                task,
                "--data-dir",
                data_arg,
            ];
            run_basin("", &args, None, LIMIT).stdout
        };
        let version = i + 1;
        let train = logs("train");
        assert!(
            train.contains(&format!(
                "-- success: model fare_model version {version} (production)"
            )),
            "{train}"
        );
        let score = logs("score");
        let scored: u64 = score
            .split("-- success: ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(scored / 1_000_000, version as u64, "{score}");
        assert!(!scored.is_multiple_of(1_000_000), "{score}");
        let refused = logs("not_a_model");
        assert!(
            refused.contains("needs a CREATE MODEL statement"),
            "{refused}"
        );
    }
}
