//! The run's integrity verdict: whether the checker saw lost, duplicated
//! or reordered messages that the workload does not allow. A failing
//! verdict makes the exit code [`EXIT_INTEGRITY`], so a benchmark script
//! cannot publish numbers of a run that dropped messages without noticing.
//!
//! What a workload allows:
//! - nothing, by default: an ordinary run over a healthy broker delivers
//!   every message once, in order per consumer;
//! - with `--reconnect` (fault injection: connections are cut), redeliveries
//!   after a lost consumer (duplicates, reorders) and the loss of publishes
//!   that were never confirmed; a *confirmed* message lost still fails;
//! - what `--allow` names explicitly (`loss`, `duplicates`, `reorder`),
//!   for workloads that drop on purpose (a length-limited queue).

use crate::stats::Summary;

/// The exit code of a run whose verdict failed (1 is an error that ended
/// the run, 2 a bad command line).
pub const EXIT_INTEGRITY: i32 = 3;

/// What `--allow` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Allow {
    /// Messages sent that no consumer received (`lost`).
    Loss,
    /// Messages received more than once.
    Duplicates,
    /// Messages a consumer received after a later one of the same producer.
    Reorder,
}

/// The failures of `s`, in words; empty when the run passed.
pub fn judge(s: &Summary, reconnect: bool, allow: &[Allow]) -> Vec<String> {
    let allows = |a: Allow| allow.contains(&a);
    let mut out = Vec::new();
    if s.lost_confirmed > 0 && !allows(Allow::Loss) {
        out.push(format!("{} confirmed messages were never received", s.lost_confirmed));
    }
    if s.lost > 0 && !allows(Allow::Loss) && !reconnect {
        out.push(format!("{} messages lost (sent, never received)", s.lost));
    }
    if s.duplicates > 0 && !allows(Allow::Duplicates) && !reconnect {
        out.push(format!("{} messages duplicated", s.duplicates));
    }
    if s.reordered > 0 && !allows(Allow::Reorder) && !reconnect {
        out.push(format!("{} messages reordered", s.reordered));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lost: u64, duplicates: u64, reordered: u64, lost_confirmed: u64) -> Summary {
        Summary { lost, duplicates, reordered, lost_confirmed, ..Default::default() }
    }

    #[test]
    fn a_clean_run_passes_and_each_fault_fails() {
        assert!(judge(&run(0, 0, 0, 0), false, &[]).is_empty());
        assert_eq!(judge(&run(5, 0, 0, 0), false, &[]), vec!["5 messages lost (sent, never received)"]);
        assert_eq!(judge(&run(0, 2, 0, 0), false, &[]), vec!["2 messages duplicated"]);
        assert_eq!(judge(&run(0, 0, 3, 0), false, &[]), vec!["3 messages reordered"]);
        assert_eq!(judge(&run(4, 1, 1, 4), false, &[]).len(), 4);
    }

    #[test]
    fn reconnect_allows_redelivery_and_unconfirmed_loss_only() {
        assert!(judge(&run(7, 3, 2, 0), true, &[]).is_empty());
        assert_eq!(judge(&run(7, 3, 2, 1), true, &[]), vec!["1 confirmed messages were never received"]);
    }

    #[test]
    fn allow_names_what_the_workload_drops_on_purpose() {
        assert!(judge(&run(9, 0, 0, 9), false, &[Allow::Loss]).is_empty());
        assert_eq!(judge(&run(9, 1, 0, 0), false, &[Allow::Loss]), vec!["1 messages duplicated"]);
        assert!(judge(&run(0, 1, 1, 0), false, &[Allow::Duplicates, Allow::Reorder]).is_empty());
    }
}
