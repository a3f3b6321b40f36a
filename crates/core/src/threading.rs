//! Which case an inbound message belongs to.

use crate::CaseStatus;

/// What the store knows about one of the customer's recent cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseCandidate {
    pub id: i64,
    pub status: CaseStatus,
    /// Microseconds since the epoch of the case's last change.
    pub updated_at_us: i64,
}

/// The threading decision for one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// Append to this case, which is open or pending.
    Append(i64),
    /// Append to this resolved case and open it again.
    Reopen(i64),
    /// Start a new case.
    New,
}

/// Picks the case for an inbound message: the newest open or pending case of the customer;
/// failing that, the newest resolved case changed within `reopen_window_us`; otherwise a new
/// case. Closed cases are never re-opened. `candidates` may come in any order.
pub fn choose_case(candidates: &[CaseCandidate], now_us: i64, reopen_window_us: i64) -> Threading {
    let newest = |pred: &dyn Fn(&CaseCandidate) -> bool| {
        candidates.iter().filter(|c| pred(c)).max_by_key(|c| (c.updated_at_us, c.id)).map(|c| c.id)
    };
    if let Some(id) = newest(&|c| c.status.is_active()) {
        return Threading::Append(id);
    }
    if let Some(id) = newest(&|c| c.status == CaseStatus::Resolved && now_us - c.updated_at_us <= reopen_window_us) {
        return Threading::Reopen(id);
    }
    Threading::New
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn c(id: i64, status: CaseStatus, hours_ago: i64) -> CaseCandidate {
        CaseCandidate { id, status, updated_at_us: 100 * HOUR - hours_ago * HOUR }
    }

    #[test]
    fn threading_prefers_active_then_recently_resolved_then_new() {
        let now = 100 * HOUR;
        let window = 72 * HOUR;
        let table: &[(&[CaseCandidate], Threading)] = &[
            (&[], Threading::New),
            (&[c(1, CaseStatus::Open, 5)], Threading::Append(1)),
            (&[c(1, CaseStatus::Open, 5), c(2, CaseStatus::Pending, 1)], Threading::Append(2)),
            (&[c(1, CaseStatus::Resolved, 1), c(2, CaseStatus::Open, 50)], Threading::Append(2)),
            (&[c(1, CaseStatus::Resolved, 10)], Threading::Reopen(1)),
            (&[c(1, CaseStatus::Resolved, 80)], Threading::New),
            (&[c(1, CaseStatus::Closed, 1)], Threading::New),
        ];
        for (cands, want) in table {
            assert_eq!(choose_case(cands, now, window), *want, "{cands:?}");
        }
    }
}
