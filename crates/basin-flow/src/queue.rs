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
        tx.execute(
            "INSERT INTO flow_tasks (dag, run_id, task, state, max_attempts)
             SELECT $1, $2, t, 'pending', m FROM unnest($3::text[], $4::int[]) AS u(t, m)
             ON CONFLICT DO NOTHING",
            &[&run.dag, &run.run_id, &tasks, &max],
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

    /// Claim the queued task instance due first among `dags`, for `worker`.
    pub fn claim(&self, worker: &str, dags: &[String]) -> Result<Option<Claim>> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql)?;
        let row = tx
            .query_opt(
                "WITH c AS (
                   SELECT dag, run_id, task FROM flow_tasks
                   WHERE state = 'queued' AND not_before <= clock_timestamp() AND dag = ANY($2)
                   ORDER BY not_before LIMIT 1 FOR UPDATE SKIP LOCKED)
                 UPDATE flow_tasks t SET state = 'running', attempts = t.attempts + 1,
                   claim_token = nextval('flow_claims'), worker = $1,
                   heartbeat_at = clock_timestamp(), started_at = clock_timestamp()
                 FROM c WHERE t.dag = c.dag AND t.run_id = c.run_id AND t.task = c.task
                 RETURNING t.dag, t.run_id, t.task, t.attempts, t.claim_token, t.queued_at",
                &[&worker, &dags],
            )
            .map_err(sql)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (dag, run_id, task): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let attempt: i32 = row.get(3);
        let token: i64 = row.get(4);
        tx.execute(
            "INSERT INTO flow_attempts (claim_token, dag, run_id, task, attempt, worker, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())",
            &[&token, &dag, &run_id, &task, &attempt, &worker],
        )
        .map_err(sql)?;
        let run = tx
            .query_one(
                "SELECT dag, run_id, kind, interval_start, interval_end, params, state
                 FROM flow_runs WHERE dag = $1 AND run_id = $2",
                &[&dag, &run_id],
            )
            .map_err(sql)?;
        let run = run_row(&run);
        let outputs = tx
            .query(
                "SELECT task, output FROM flow_tasks WHERE dag = $1 AND run_id = $2
                 AND state = 'success' AND output IS NOT NULL",
                &[&dag, &run_id],
            )
            .map_err(sql)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().map_err(sql)?;
        Ok(Some(Claim {
            dag,
            run_id,
            task,
            attempt: attempt as u32,
            token,
            interval: run.interval,
            params: run.params,
            outputs,
            queued_at: row.get(5),
        }))
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
                "SELECT attempts, max_attempts FROM flow_tasks
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
}
