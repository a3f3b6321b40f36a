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

/// A subject as threading compares it: reply and forward markers (`Re:`, `AW:`, `WG:`,
/// `Fwd:`, `FW:`, `SV:`, `VS:`, `Antw:`, also numbered like `Re[2]:`) and bracketed tags
/// (`[Ticket #123]`, `[EXTERN]`) removed from the front as often as they repeat, case folded,
/// white space collapsed. Compared only among one customer's cases.
pub fn subject_key(subject: &str) -> String {
    const MARKERS: &[&str] = &["re", "aw", "wg", "fwd", "fw", "sv", "vs", "antw", "antwort", "tr", "rif"];
    let mut s = subject.trim();
    loop {
        let before = s;
        if let Some(rest) = s.strip_prefix('[') {
            if let Some(end) = rest.find(']') {
                s = rest[end + 1..].trim_start();
            }
        }
        if let Some(colon) = s.find(':') {
            let head = s[..colon].trim().to_lowercase();
            let word = head.split('[').next().unwrap_or("").trim();
            if MARKERS.contains(&word) && head.len() <= word.len() + 4 {
                s = s[colon + 1..].trim_start();
            }
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Threading for an answer to a message Kontor does not know (an unknown `In-Reply-To`: a
/// newsletter, another system's mail): among the customer's cases that `choose_case` could
/// take, only one whose subject matches (`subject_key`, non-empty) — else a new case, so an
/// answer never joins an unrelated case.
pub fn choose_case_for_answer(
    candidates: &[(CaseCandidate, Option<String>)],
    subject: Option<&str>,
    now_us: i64,
    reopen_window_us: i64,
) -> Threading {
    let key = subject.map(subject_key).unwrap_or_default();
    if key.is_empty() {
        return Threading::New;
    }
    let matching: Vec<CaseCandidate> = candidates
        .iter()
        .filter(|(_, s)| s.as_deref().map(subject_key).is_some_and(|k| k == key))
        .map(|(c, _)| *c)
        .collect();
    choose_case(&matching, now_us, reopen_window_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_compare_without_reply_markers_and_tags() {
        for (subject, key) in [
            ("Re: Rechnung", "rechnung"),
            ("AW: WG: Re: Rechnung", "rechnung"),
            ("Re[2]: Rechnung März", "rechnung märz"),
            ("[Ticket #4711] AW:  Zähler   defekt", "zähler defekt"),
            ("Fwd: [EXTERN] Umzug", "umzug"),
            ("Rechnung: Frage", "rechnung: frage"),
            ("", ""),
        ] {
            assert_eq!(subject_key(subject), key, "{subject}");
        }
    }

    #[test]
    fn an_answer_to_an_unknown_mail_joins_only_a_case_with_its_subject() {
        const HOUR: i64 = 3_600_000_000;
        let now = 100 * HOUR;
        let open =
            |id, hours_ago| CaseCandidate { id, status: CaseStatus::Open, updated_at_us: now - hours_ago * HOUR };
        let cands = vec![(open(1, 50), Some("Rechnung".to_string())), (open(2, 1), Some("Umzug".to_string()))];
        assert_eq!(choose_case_for_answer(&cands, Some("AW: Rechnung"), now, 72 * HOUR), Threading::Append(1));
        assert_eq!(choose_case_for_answer(&cands, Some("Re: Newsletter März"), now, 72 * HOUR), Threading::New);
        assert_eq!(choose_case_for_answer(&cands, None, now, 72 * HOUR), Threading::New);
    }

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
