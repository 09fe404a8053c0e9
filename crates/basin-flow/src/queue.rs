//! The queue of task instances in PostgreSQL, shared by schedulers and
//! workers in any number of processes.
//!
//! A task instance (`flow_tasks`) is `pending` until its trigger rule lets
//! it run, then `queued`; a worker claims it (`FOR UPDATE SKIP LOCKED`),
//! which makes it `running`, counts an attempt and stamps a fresh claim
//! token; it ends `success`, `failed`, `upstream_failed` or `skipped`.
//! While it runs, its worker heartbeats by token. A result is recorded only
//! if the worker still holds the token, so a worker whose claim was taken
//! away (it stopped heartbeating and the reaper re-queued the task) cannot
//! overwrite the new attempt: a task instance never runs twice at once as
//! far as the store is concerned. Recording a result, re-queueing a retry
//! and queueing the downstream tasks that the trigger rules now allow
//! happen in one transaction, under a lock on the run's row so that
//! siblings finishing at once see each other; the transaction notifies
//! the installation's channel so idle workers wake at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Transaction;

use crate::dag::Dag;
use crate::error::Result;
use crate::pg::{run_row, sql, PgStore};
use crate::rules::{Decision, TaskState};
use crate::schedule::Interval;
use crate::store::{state_of, RunRow};

/// A task instance claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    pub dag: String,
    pub run_id: String,
    pub task: String,
    /// 1-based; counts every claim, including ones lost with their worker.
    pub attempt: u32,
    /// Proves the claim when heartbeating and recording the result.
    pub token: i64,
    pub interval: Option<Interval>,
    pub params: BTreeMap<String, String>,
    /// Outputs of the run's succeeded tasks.
    pub outputs: BTreeMap<String, String>,
    /// When the instance was first queued (a sensor's timeout counts from it).
    pub queued_at: Option<DateTime<Utc>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(String),
    Failure(String),
    /// A sensor whose condition does not hold yet: queue it again after
    /// this long, without counting the attempt.
    Poke(Duration),
}

/// What [`PgStore::claim_next`] found.
#[derive(Debug)]
pub enum Claimed {
    Task(Box<Claim>),
    /// Nothing is queued and due.
    Nothing,
    /// Queued tasks are due but their pools or `max_active` are full
    /// (wait for a notification), or another claimer is deciding on the
    /// same limit (`contended`: try again soon).
    Held {
        contended: bool,
    },
}

/// Queued task instances looked at per claim.
const CANDIDATES: usize = 16;

/// A queued task instance that a claim looks at.
struct Candidate {
    not_before: DateTime<Utc>,
    dag: String,
    run_id: String,
    task: String,
    pool: Option<String>,
    max_active: Option<i32>,
}

enum Room {
    Yes,
    Full,
    Contended,
}

/// Lock the next queued, due candidate after `after` (in due order).
fn next_candidate(
    tx: &mut Transaction,
    dags: &[String],
    after: Option<&Candidate>,
) -> Result<Option<Candidate>> {
    let (t, d, r, k) = match after {
        Some(c) => (
            Some(c.not_before),
            Some(&c.dag),
            Some(&c.run_id),
            Some(&c.task),
        ),
        None => (None, None, None, None),
    };
    let row = tx
        .query_opt(
            "SELECT not_before, dag, run_id, task, pool, max_active FROM flow_tasks
             WHERE state = 'queued' AND not_before <= clock_timestamp() AND dag = ANY($1)
             AND ($2::timestamptz IS NULL
                  OR (not_before, dag, run_id, task) > ($2, $3::text, $4::text, $5::text))
             ORDER BY not_before, dag, run_id, task LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&dags, &t, &d, &r, &k],
        )
        .map_err(sql)?;
    Ok(row.map(|r| Candidate {
        not_before: r.get(0),
        dag: r.get(1),
        run_id: r.get(2),
        task: r.get(3),
        pool: r.get(4),
        max_active: r.get(5),
    }))
}

/// Whether `c`'s pool and `max_active` have room. Each limit is decided
/// under a transaction-level advisory lock, so two claimers never both
/// take its last slot; one that finds the lock taken reports contention.
fn room(tx: &mut Transaction, channel: &str, c: &Candidate) -> Result<Room> {
    if let Some(pool) = &c.pool {
        let size = tx
            .query_opt("SELECT slots FROM flow_pools WHERE pool = $1", &[pool])
            .map_err(sql)?
            .map(|r| r.get::<_, i32>(0));
        if let Some(size) = size {
            if !try_lock(tx, &format!("{channel}:pool:{pool}"))? {
                return Ok(Room::Contended);
            }
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM flow_tasks WHERE state = 'running' AND pool = $1",
                    &[pool],
                )
                .map_err(sql)?
                .get(0);
            if n >= i64::from(size.max(1)) {
                return Ok(Room::Full);
            }
        }
    }
    if let Some(max) = c.max_active {
        if !try_lock(tx, &format!("{channel}:task:{}.{}", c.dag, c.task))? {
            return Ok(Room::Contended);
        }
        let n: i64 = tx
            .query_one(
                "SELECT count(*) FROM flow_tasks WHERE state = 'running' AND dag = $1 AND task = $2",
                &[&c.dag, &c.task],
            )
            .map_err(sql)?
            .get(0);
        if n >= i64::from(max.max(1)) {
            return Ok(Room::Full);
        }
    }
    Ok(Room::Yes)
}

fn try_lock(tx: &mut Transaction, key: &str) -> Result<bool> {
    let row = tx
        .query_one("SELECT pg_try_advisory_xact_lock(hashtext($1))", &[&key])
        .map_err(sql)?;
    Ok(row.get(0))
}

/// Claim the locked candidate `c` for `worker`: a new attempt and token.
fn take(tx: &mut Transaction, worker: &str, c: &Candidate) -> Result<Claim> {
    let row = tx
        .query_one(
            "UPDATE flow_tasks SET state = 'running', attempts = attempts + 1,
               claim_token = nextval('flow_claims'), worker = $4,
               heartbeat_at = clock_timestamp(), started_at = clock_timestamp()
             WHERE dag = $1 AND run_id = $2 AND task = $3
             RETURNING attempts, claim_token, queued_at",
            &[&c.dag, &c.run_id, &c.task, &worker],
        )
        .map_err(sql)?;
    let (attempt, token): (i32, i64) = (row.get(0), row.get(1));
    tx.execute(
        "INSERT INTO flow_attempts (claim_token, dag, run_id, task, attempt, worker, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())",
        &[&token, &c.dag, &c.run_id, &c.task, &attempt, &worker],
    )
    .map_err(sql)?;
    let run = tx
        .query_one(
            "SELECT dag, run_id, kind, interval_start, interval_end, params, state
             FROM flow_runs WHERE dag = $1 AND run_id = $2",
            &[&c.dag, &c.run_id],
        )
        .map_err(sql)?;
    let run = run_row(&run);
    let outputs = tx
        .query(
            "SELECT task, output FROM flow_tasks WHERE dag = $1 AND run_id = $2
             AND state = 'success' AND output IS NOT NULL",
            &[&c.dag, &c.run_id],
        )
        .map_err(sql)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Claim {
        dag: c.dag.clone(),
        run_id: c.run_id.clone(),
        task: c.task.clone(),
        attempt: attempt as u32,
        token,
        interval: run.interval,
        params: run.params,
        outputs,
        queued_at: row.get(2),
    })
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Lock the run's row (serializing everything that decides downstream
/// tasks of this run); its state, if the run exists.
fn lock_run(tx: &mut Transaction, dag: &str, run_id: &str) -> Result<Option<String>> {
    let row = tx
        .query_opt(
            "SELECT state FROM flow_runs WHERE dag = $1 AND run_id = $2 FOR UPDATE",
            &[&dag, &run_id],
        )
        .map_err(sql)?;
    Ok(row.map(|r| r.get(0)))
}

fn notify(tx: &mut Transaction, channel: &str) -> Result<()> {
    tx.execute("SELECT pg_notify($1, '')", &[&channel])
        .map_err(sql)?;
    Ok(())
}

/// Queue or finish the pending tasks of a run whose trigger rules now
/// decide them, and finish the run when every task is done.
fn propagate(tx: &mut Transaction, dag: &Dag, run_id: &str, channel: &str) -> Result<()> {
    let rows = tx
        .query(
            "SELECT task, state FROM flow_tasks WHERE dag = $1 AND run_id = $2",
            &[&dag.id, &run_id],
        )
        .map_err(sql)?;
    let mut states: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut queued: Vec<String> = Vec::new();
    let mut finished: HashMap<&'static str, Vec<String>> = HashMap::new();
    // Tasks are in dependency order, so one pass settles chains of skips.
    for task in &dag.tasks {
        if states.get(&task.id).map(String::as_str) != Some("pending") {
            continue;
        }
        let upstream: Vec<TaskState> = task
            .depends_on
            .iter()
            .map(|d| state_of(states.get(d).map_or("pending", String::as_str)))
            .collect();
        match task.trigger_rule.decide(&upstream) {
            Decision::Wait => {}
            Decision::Run => {
                queued.push(task.id.clone());
                states.insert(task.id.clone(), "queued".into());
            }
            Decision::Finish(state) => {
                finished
                    .entry(state.name())
                    .or_default()
                    .push(task.id.clone());
                states.insert(task.id.clone(), state.name().into());
            }
        }
    }
    if !queued.is_empty() {
        tx.execute(
            "UPDATE flow_tasks SET state = 'queued', queued_at = clock_timestamp(),
             not_before = clock_timestamp()
             WHERE dag = $1 AND run_id = $2 AND task = ANY($3) AND state = 'pending'",
            &[&dag.id, &run_id, &queued],
        )
        .map_err(sql)?;
        notify(tx, channel)?;
    }
    for (state, tasks) in finished {
        tx.execute(
            "UPDATE flow_tasks SET state = $4, ended_at = clock_timestamp()
             WHERE dag = $1 AND run_id = $2 AND task = ANY($3) AND state = 'pending'",
            &[&dag.id, &run_id, &tasks, &state],
        )
        .map_err(sql)?;
    }
    finish_run_if_done(tx, &dag.id, run_id, &states)
}

fn finish_run_if_done(
    tx: &mut Transaction,
    dag: &str,
    run_id: &str,
    states: &HashMap<String, String>,
) -> Result<()> {
    let all: Vec<TaskState> = states.values().map(|s| state_of(s)).collect();
    if !all.iter().all(TaskState::is_done) {
        return Ok(());
    }
    let ok = all
        .iter()
        .all(|s| matches!(s, TaskState::Success | TaskState::Skipped));
    let state = if ok { "success" } else { "failed" };
    tx.execute(
        "UPDATE flow_runs SET state = $3, ended_at = clock_timestamp()
         WHERE dag = $1 AND run_id = $2 AND state = 'running'",
        &[&dag, &run_id, &state],
    )
    .map_err(sql)?;
    tracing::info!(dag, run = run_id, state, "run finished");
    Ok(())
}

/// Record a failed attempt: queue a retry after `delay` while attempts
/// remain, else fail the task. The claim is dropped either way.
fn record_failure(
    tx: &mut Transaction,
    key: (&str, &str, &str),
    attempts: (i32, i32),
    delay: Duration,
    error: &str,
    channel: &str,
) -> Result<()> {
    let (dag, run_id, task) = key;
    if attempts.0 < attempts.1 {
        tx.execute(
            "UPDATE flow_tasks SET state = 'queued', error = $4, claim_token = NULL,
             not_before = clock_timestamp() + $5::bigint * interval '1 millisecond'
             WHERE dag = $1 AND run_id = $2 AND task = $3",
            &[&dag, &run_id, &task, &error, &millis(delay)],
        )
        .map_err(sql)?;
        notify(tx, channel)?;
    } else {
        tx.execute(
            "UPDATE flow_tasks SET state = 'failed', error = $4, claim_token = NULL,
             ended_at = clock_timestamp()
             WHERE dag = $1 AND run_id = $2 AND task = $3",
            &[&dag, &run_id, &task, &error],
        )
        .map_err(sql)?;
    }
    Ok(())
}

fn end_attempt(tx: &mut Transaction, token: i64, outcome: &str, error: Option<&str>) -> Result<()> {
    tx.execute(
        "UPDATE flow_attempts SET outcome = $2, error = $3, ended_at = clock_timestamp()
         WHERE claim_token = $1",
        &[&token, &outcome, &error],
    )
    .map_err(sql)?;
    Ok(())
}

impl PgStore {
    /// Start a queued run: create its task instances and queue those that
    /// may run now, in one transaction. False if the run was not queued
    /// (another scheduler started it).
    pub fn start_run(&self, dag: &Dag, run: &RunRow) -> Result<bool> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql)?;
        if lock_run(&mut tx, &run.dag, &run.run_id)?.as_deref() != Some("queued") {
            return Ok(false);
        }
        let tasks: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
        let max: Vec<i32> = dag
            .tasks
            .iter()
            .map(|t| t.retry.retries.saturating_add(1).min(i32::MAX as u32) as i32)
            .collect();
        let pools: Vec<Option<String>> = dag.tasks.iter().map(|t| t.pool.clone()).collect();
        let active: Vec<Option<i32>> = dag
            .tasks
            .iter()
            .map(|t| t.max_active.map(|m| m.min(i32::MAX as usize) as i32))
            .collect();
        tx.execute(
            "INSERT INTO flow_tasks (dag, run_id, task, state, max_attempts, pool, max_active)
             SELECT $1, $2, t, 'pending', m, p, a
             FROM unnest($3::text[], $4::int[], $5::text[], $6::int[]) AS u(t, m, p, a)
             ON CONFLICT DO NOTHING",
            &[&run.dag, &run.run_id, &tasks, &max, &pools, &active],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE flow_runs SET state = 'running' WHERE dag = $1 AND run_id = $2",
            &[&run.dag, &run.run_id],
        )
        .map_err(sql)?;
        propagate(&mut tx, dag, &run.run_id, &self.channel)?;
        tx.commit().map_err(sql)?;
        tracing::info!(dag = %run.dag, run = %run.run_id, tasks = tasks.len(), "run started");
        Ok(true)
    }

    /// Claim the queued task instance due first among `dags`, for
    /// `worker`; `None` when none may run now.
    pub fn claim(&self, worker: &str, dags: &[String]) -> Result<Option<Claim>> {
        Ok(match self.claim_next(worker, dags)? {
            Claimed::Task(c) => Some(*c),
            Claimed::Nothing | Claimed::Held { .. } => None,
        })
    }

    /// Claim the queued task instance due first among `dags` whose pool
    /// and `max_active` have room. Candidates are locked one at a time
    /// (`FOR UPDATE SKIP LOCKED`), each in a savepoint that is rolled back,
    /// releasing it, when it may not run.
    pub fn claim_next(&self, worker: &str, dags: &[String]) -> Result<Claimed> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql)?;
        let mut after: Option<Candidate> = None;
        let mut held: Option<bool> = None;
        for _ in 0..CANDIDATES {
            let mut sp = tx.transaction().map_err(sql)?;
            let Some(c) = next_candidate(&mut sp, dags, after.as_ref())? else {
                break;
            };
            match room(&mut sp, &self.channel, &c)? {
                Room::Yes => {
                    let claim = take(&mut sp, worker, &c)?;
                    sp.commit().map_err(sql)?;
                    tx.commit().map_err(sql)?;
                    return Ok(Claimed::Task(Box::new(claim)));
                }
                Room::Full => held = Some(held.unwrap_or(false)),
                Room::Contended => held = Some(true),
            }
            drop(sp);
            after = Some(c);
        }
        tx.commit().map_err(sql)?;
        Ok(match held {
            Some(contended) => Claimed::Held { contended },
            None => Claimed::Nothing,
        })
    }

    /// Size the named pools shared by every worker (a pool not named here
    /// limits nothing).
    pub fn set_pools(&self, pools: &[(String, usize)]) -> Result<()> {
        let mut client = self.client();
        for (pool, slots) in pools {
            let slots = (*slots).min(i32::MAX as usize) as i32;
            client
                .execute(
                    "INSERT INTO flow_pools (pool, slots) VALUES ($1, $2)
                     ON CONFLICT (pool) DO UPDATE SET slots = excluded.slots",
                    &[pool, &slots],
                )
                .map_err(sql)?;
        }
        Ok(())
    }

    /// Heartbeat the claims `tokens` of `worker`; the tokens still held
    /// (a missing one was taken away).
    pub fn heartbeat(&self, worker: &str, tokens: &[i64]) -> Result<Vec<i64>> {
        let mut client = self.client();
        client
            .execute(
                "INSERT INTO flow_workers (worker, started_at, heartbeat_at)
                 VALUES ($1, clock_timestamp(), clock_timestamp())
                 ON CONFLICT (worker) DO UPDATE SET heartbeat_at = clock_timestamp()",
                &[&worker],
            )
            .map_err(sql)?;
        let tokens = tokens.to_vec();
        let rows = client
            .query(
                "UPDATE flow_tasks SET heartbeat_at = clock_timestamp()
                 WHERE claim_token = ANY($1) AND state = 'running' RETURNING claim_token",
                &[&tokens],
            )
            .map_err(sql)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Record how a claimed attempt ended and queue what may run next, in
    /// one transaction. False (nothing recorded) when the claim was taken
    /// away in the meantime.
    pub fn finish(
        &self,
        dag: &Dag,
        claim: &Claim,
        outcome: &Outcome,
        took: Duration,
    ) -> Result<bool> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql)?;
        lock_run(&mut tx, &claim.dag, &claim.run_id)?;
        let held = tx
            .query_opt(
                "SELECT attempts, max_attempts, pool IS NOT NULL OR max_active IS NOT NULL
                 FROM flow_tasks
                 WHERE dag = $1 AND run_id = $2 AND task = $3
                 AND claim_token = $4 AND state = 'running' FOR UPDATE",
                &[&claim.dag, &claim.run_id, &claim.task, &claim.token],
            )
            .map_err(sql)?;
        let Some(held) = held else {
            tracing::warn!(dag = %claim.dag, run = %claim.run_id, task = %claim.task,
                attempt = claim.attempt, "claim was taken away: result ignored");
            return Ok(false);
        };
        let key = (
            claim.dag.as_str(),
            claim.run_id.as_str(),
            claim.task.as_str(),
        );
        tx.execute(
            "UPDATE flow_tasks SET duration_ms = $4 WHERE dag = $1 AND run_id = $2 AND task = $3",
            &[&key.0, &key.1, &key.2, &millis(took)],
        )
        .map_err(sql)?;
        match outcome {
            Outcome::Success(output) => {
                tx.execute(
                    "UPDATE flow_tasks SET state = 'success', output = $4, error = NULL,
                     claim_token = NULL, ended_at = clock_timestamp()
                     WHERE dag = $1 AND run_id = $2 AND task = $3",
                    &[&key.0, &key.1, &key.2, output],
                )
                .map_err(sql)?;
                end_attempt(&mut tx, claim.token, "success", None)?;
            }
            Outcome::Failure(error) => {
                let delay = dag.task(&claim.task).map_or(Duration::ZERO, |t| {
                    t.retry.random_delay_after(claim.attempt)
                });
                let attempts = (held.get(0), held.get(1));
                record_failure(&mut tx, key, attempts, delay, error, &self.channel)?;
                end_attempt(&mut tx, claim.token, "failed", Some(error))?;
            }
            Outcome::Poke(after) => {
                tx.execute(
                    "UPDATE flow_tasks SET state = 'queued', attempts = attempts - 1,
                     claim_token = NULL,
                     not_before = clock_timestamp() + $4::bigint * interval '1 millisecond'
                     WHERE dag = $1 AND run_id = $2 AND task = $3",
                    &[&key.0, &key.1, &key.2, &millis(*after)],
                )
                .map_err(sql)?;
                end_attempt(&mut tx, claim.token, "poked", None)?;
            }
        }
        if held.get::<_, bool>(2) {
            // A slot of its pool or task limit is free: wake held claims.
            notify(&mut tx, &self.channel)?;
        }
        propagate(&mut tx, dag, &claim.run_id, &self.channel)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    /// Take running task instances whose worker has not heartbeat for
    /// `timeout` away from it: retried (the lost attempt counts) or failed.
    /// How many were taken.
    pub fn reap(&self, dags: &HashMap<String, Arc<Dag>>, timeout: Duration) -> Result<usize> {
        let stale = self
            .client()
            .query(
                "SELECT dag, run_id, task, claim_token, worker FROM flow_tasks
                 WHERE state = 'running'
                 AND heartbeat_at < clock_timestamp() - $1::bigint * interval '1 millisecond'",
                &[&millis(timeout)],
            )
            .map_err(sql)?;
        let mut taken = 0;
        for r in &stale {
            let (dag_id, run_id, task): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let (token, worker): (i64, Option<String>) = (r.get(3), r.get(4));
            let worker = worker.unwrap_or_default();
            let dag = dags.get(&dag_id).map(Arc::as_ref);
            if self.reap_one((&dag_id, &run_id, &task), token, &worker, dag, timeout)? {
                taken += 1;
            }
        }
        Ok(taken)
    }

    fn reap_one(
        &self,
        key: (&str, &str, &str),
        token: i64,
        worker: &str,
        dag: Option<&Dag>,
        timeout: Duration,
    ) -> Result<bool> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql)?;
        lock_run(&mut tx, key.0, key.1)?;
        let held = tx
            .query_opt(
                "SELECT attempts, max_attempts FROM flow_tasks
                 WHERE dag = $1 AND run_id = $2 AND task = $3 AND claim_token = $4
                 AND state = 'running'
                 AND heartbeat_at < clock_timestamp() - $5::bigint * interval '1 millisecond'
                 FOR UPDATE",
                &[&key.0, &key.1, &key.2, &token, &millis(timeout)],
            )
            .map_err(sql)?;
        let Some(held) = held else {
            return Ok(false);
        };
        let error = format!("worker {worker} stopped heartbeating");
        let attempt: i32 = held.get(0);
        let delay = dag.and_then(|d| d.task(key.2)).map_or(Duration::ZERO, |t| {
            t.retry.random_delay_after(attempt as u32)
        });
        record_failure(
            &mut tx,
            key,
            (attempt, held.get(1)),
            delay,
            &error,
            &self.channel,
        )?;
        end_attempt(&mut tx, token, "lost", Some(&error))?;
        if let Some(dag) = dag {
            propagate(&mut tx, dag, key.1, &self.channel)?;
        }
        tx.commit().map_err(sql)?;
        tracing::warn!(
            dag = key.0,
            run = key.1,
            task = key.2,
            worker,
            attempt,
            "task taken from a silent worker"
        );
        Ok(true)
    }

    /// How long until the first queued task instance of `dags` is due
    /// (zero if one is due now); `None` when nothing is queued.
    pub fn next_due(&self, dags: &[String]) -> Result<Option<Duration>> {
        let row = self
            .client()
            .query_one(
                "SELECT EXTRACT(EPOCH FROM (min(not_before) - clock_timestamp()))::float8
                 FROM flow_tasks WHERE state = 'queued' AND dag = ANY($1)",
                &[&dags],
            )
            .map_err(sql)?;
        let secs: Option<f64> = row.get(0);
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Keep the log of the attempt holding claim `token` (its worker read
    /// it when the attempt ended), so it can be read from any machine.
    pub fn save_log(&self, token: i64, log: &str) -> Result<()> {
        self.client()
            .execute(
                "UPDATE flow_attempts SET log = $2 WHERE claim_token = $1",
                &[&token, &log],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// An attempt of a task as recorded (the latest unless `attempt`).
    pub fn attempt_log(
        &self,
        (dag, run_id, task): (&str, &str, &str),
        attempt: Option<u32>,
    ) -> Result<Option<AttemptLog>> {
        let attempt = attempt.map(|a| a.min(i32::MAX as u32) as i32);
        let row = self
            .client()
            .query_opt(
                "SELECT attempt, worker, outcome, log FROM flow_attempts
                 WHERE dag = $1 AND run_id = $2 AND task = $3
                 AND ($4::int IS NULL OR attempt = $4)
                 ORDER BY attempt DESC, claim_token DESC LIMIT 1",
                &[&dag, &run_id, &task, &attempt],
            )
            .map_err(sql)?;
        Ok(row.map(|r| AttemptLog {
            attempt: r.get::<_, i32>(0) as u32,
            worker: r.get(1),
            outcome: r.get(2),
            log: r.get(3),
        }))
    }
}

/// One attempt's record and the log its worker stored.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    pub attempt: u32,
    pub worker: String,
    /// `running`, `success`, `failed`, `lost` or `poked`.
    pub outcome: String,
    /// `None` while it runs, or when its executor keeps no log.
    pub log: Option<String>,
}
