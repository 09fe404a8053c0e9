//! Task states and trigger rules: when a task whose upstreams have (partly)
//! finished runs, is skipped, or fails for its upstreams, as in Airflow.

/// The state of one task instance in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Running,
    /// Waiting to retry.
    UpForRetry,
    Success,
    Failed,
    /// Not run: its upstreams failed (for its trigger rule).
    UpstreamFailed,
    /// Not run: its trigger rule said so (e.g. nothing failed for one_failed).
    Skipped,
}

impl TaskState {
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }

    fn failed(&self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }

    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
        }
    }
}

/// When a task may run, given its upstreams' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerRule {
    /// Every upstream succeeded.
    AllSuccess,
    /// Every upstream finished, whatever its state.
    AllDone,
    /// At least one upstream failed (runs as soon as one does).
    OneFailed,
    /// At least one upstream succeeded (runs as soon as one does).
    OneSuccess,
    /// No upstream failed (skipped ones are fine).
    NoneFailed,
}

/// What to do with a task now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    Wait,
    /// Finish it without running, in this state.
    Finish(TaskState),
}

impl TriggerRule {
    pub fn parse(text: &str) -> Option<TriggerRule> {
        Some(match text {
            "all_success" => TriggerRule::AllSuccess,
            "all_done" => TriggerRule::AllDone,
            "one_failed" => TriggerRule::OneFailed,
            "one_success" => TriggerRule::OneSuccess,
            "none_failed" => TriggerRule::NoneFailed,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::NoneFailed => "none_failed",
        }
    }

    /// The decision for a task whose upstreams are in `upstream` states (a
    /// task without upstreams runs).
    pub fn decide(&self, upstream: &[TaskState]) -> Decision {
        let all_done = upstream.iter().all(TaskState::is_done);
        let any_failed = upstream.iter().any(TaskState::failed);
        let any_success = upstream.contains(&TaskState::Success);
        let any_skipped = upstream.contains(&TaskState::Skipped);
        match self {
            TriggerRule::AllSuccess if any_failed => Decision::Finish(TaskState::UpstreamFailed),
            TriggerRule::AllSuccess if !all_done => Decision::Wait,
            TriggerRule::AllSuccess if any_skipped => Decision::Finish(TaskState::Skipped),
            TriggerRule::AllSuccess => Decision::Run,
            TriggerRule::AllDone if all_done => Decision::Run,
            TriggerRule::OneFailed if any_failed => Decision::Run,
            TriggerRule::OneFailed if all_done => Decision::Finish(TaskState::Skipped),
            TriggerRule::OneSuccess if any_success => Decision::Run,
            TriggerRule::OneSuccess if all_done && upstream.is_empty() => Decision::Run,
            TriggerRule::OneSuccess if all_done && any_failed => {
                Decision::Finish(TaskState::UpstreamFailed)
            }
            TriggerRule::OneSuccess if all_done => Decision::Finish(TaskState::Skipped),
            TriggerRule::NoneFailed if any_failed => Decision::Finish(TaskState::UpstreamFailed),
            TriggerRule::NoneFailed if all_done => Decision::Run,
            _ => Decision::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::TaskState::*;
    use super::TriggerRule::*;
    use super::*;

    #[test]
    fn rules_decide_as_airflow_does() {
        let cases: &[(TriggerRule, &[TaskState], Decision)] = &[
            (AllSuccess, &[], Run),
            (AllSuccess, &[Success, Success], Run),
            (AllSuccess, &[Success, Running], Wait),
            (AllSuccess, &[Running, Failed], Finish(UpstreamFailed)),
            (AllSuccess, &[Success, Skipped], Finish(Skipped)),
            (AllDone, &[Failed, Running], Wait),
            (AllDone, &[Failed, Skipped], Run),
            (OneFailed, &[Running, Failed], Run),
            (OneFailed, &[Success, Success], Finish(Skipped)),
            (OneFailed, &[Success, UpForRetry], Wait),
            (OneSuccess, &[Pending, Success], Run),
            (OneSuccess, &[Failed, Failed], Finish(UpstreamFailed)),
            (OneSuccess, &[Skipped, Skipped], Finish(Skipped)),
            (NoneFailed, &[Success, Skipped], Run),
            (
                NoneFailed,
                &[Success, UpstreamFailed],
                Finish(UpstreamFailed),
            ),
            (NoneFailed, &[Success, Running], Wait),
        ];
        for (rule, upstream, want) in cases {
            assert_eq!(rule.decide(upstream), *want, "{rule:?} with {upstream:?}");
        }
    }
}
