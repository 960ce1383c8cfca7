//! Checks recorded watch streams against etcd's six watch guarantees and prev_kv correctness.
//!
//! A watcher's log is a list of sessions (one per stream it opened; after a break it resumes
//! from the last revision it saw + 1 on another member). The sessions are stitched into one
//! stream and compared with a reference history: every event for the watched prefix, in
//! revision order, taken at the end from a watch from revision 1 on a healthy member.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use proto::etcdserverpb::WatchResponse;
use proto::mvccpb;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub kv: Kv,
    pub prev_kv: Option<Kv>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// One WatchResponse as recorded by a watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The header revision.
    pub revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub events: Vec<Event>,
}

impl Response {
    /// A progress notification: no events, not a create/cancel acknowledgement.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled && self.compact_revision == 0
    }
}

/// One watch stream, from creation to its end or break.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub endpoint: String,
    pub start_revision: i64,
    pub responses: Vec<Response>,
}

/// Everything one watcher saw.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub name: String,
    pub prefix: String,
    pub prev_kv: bool,
    pub sessions: Vec<Session>,
}

impl WatchLog {
    /// The highest revision the watcher knows it has seen everything up to (events or progress).
    pub fn last_revision(&self) -> i64 {
        last_observed(self.sessions.iter().flat_map(|s| &s.responses))
    }

    /// Where a watch resumes after a break: the revision after the last delivered event, as
    /// etcd's Resumable guarantee states it (progress notifications are checked separately, so a
    /// wrong one cannot also hide events from the resumed stream).
    pub fn resume_revision(&self) -> i64 {
        let last_event = self
            .sessions
            .iter()
            .flat_map(|s| &s.responses)
            .flat_map(|r| &r.events)
            .map(Event::revision)
            .max();
        match (last_event, self.sessions.first()) {
            (Some(rev), _) => rev + 1,
            (None, Some(first)) => first.start_revision,
            (None, None) => 1,
        }
    }
}

fn last_observed<'a>(responses: impl Iterator<Item = &'a Response>) -> i64 {
    responses
        .map(|r| {
            if r.is_progress() {
                r.revision
            } else {
                r.events.last().map_or(0, Event::revision)
            }
        })
        .max()
        .unwrap_or(0)
}

fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl From<&mvccpb::KeyValue> for Kv {
    fn from(kv: &mvccpb::KeyValue) -> Self {
        Kv {
            key: string(&kv.key),
            value: string(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

impl From<&mvccpb::Event> for Event {
    fn from(e: &mvccpb::Event) -> Self {
        let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 {
            Kind::Delete
        } else {
            Kind::Put
        };
        Event {
            kind,
            kv: e.kv.as_ref().map(Kv::from).unwrap_or_else(|| Kv {
                key: String::new(),
                value: String::new(),
                create_revision: 0,
                mod_revision: 0,
                version: 0,
            }),
            prev_kv: e.prev_kv.as_ref().map(Kv::from),
        }
    }
}

impl From<&WatchResponse> for Response {
    fn from(r: &WatchResponse) -> Self {
        Response {
            revision: r.header.as_ref().map_or(0, |h| h.revision),
            created: r.created,
            canceled: r.canceled,
            compact_revision: r.compact_revision,
            events: r.events.iter().map(Event::from).collect(),
        }
    }
}

/// Which guarantee a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Guarantee {
    Ordered,
    Unique,
    Reliable,
    Atomic,
    Resumable,
    Bookmarkable,
    PrevKv,
    /// Stream-level problems: cancellations, header revisions behind their events.
    Stream,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub guarantee: Guarantee,
    pub detail: String,
}

/// The outcome of checking one watcher: empty when every guarantee held.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
}

impl Report {
    fn add(&mut self, guarantee: Guarantee, detail: String) {
        // Keep reports readable: a broken stream tends to break the same rule many times.
        if self
            .violations
            .iter()
            .filter(|v| v.guarantee == guarantee)
            .count()
            < 5
        {
            self.violations.push(Violation { guarantee, detail });
        }
    }

    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn broken(&self) -> HashSet<Guarantee> {
        self.violations.iter().map(|v| v.guarantee).collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for v in &self.violations {
            let _ = writeln!(out, "{:?}: {}", v.guarantee, v.detail);
        }
        out
    }
}

/// Checks the reference history itself: revisions non-decreasing, and each key's versions
/// consistent (create_revision kept, version counting up, reset after a delete).
pub fn check_reference(reference: &[Event]) -> Result<(), String> {
    let mut last: HashMap<&str, &Event> = HashMap::new();
    let mut rev = 0;
    for e in reference {
        if e.revision() < rev {
            return Err(format!("reference goes backwards at {e:?}"));
        }
        rev = e.revision();
        let prev = last.get(e.kv.key.as_str()).filter(|p| p.kind == Kind::Put);
        if e.kind == Kind::Put {
            let (create, version) = prev.map_or((e.revision(), 1), |p| {
                (p.kv.create_revision, p.kv.version + 1)
            });
            if e.kv.create_revision != create || e.kv.version != version {
                return Err(format!(
                    "reference event has wrong create_revision/version: {e:?} after {prev:?}"
                ));
            }
        }
        last.insert(e.kv.key.as_str(), e);
    }
    Ok(())
}

/// Checks one watcher's log against the reference history. `through` is the revision the
/// watcher was required to reach (the store's final revision), if any.
pub fn check(log: &WatchLog, reference: &[Event], through: Option<i64>) -> Report {
    let mut report = Report::default();
    let reference: Vec<&Event> = reference
        .iter()
        .filter(|e| e.kv.key.starts_with(&log.prefix))
        .collect();
    let mut per_revision: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for e in &reference {
        per_revision.entry(e.revision()).or_default().push(e);
    }

    // Stitch the sessions, checking each resumes exactly where the previous one stopped.
    let Some(first) = log.sessions.first() else {
        report.add(
            Guarantee::Stream,
            format!("{}: no sessions recorded", log.name),
        );
        return report;
    };
    let start = first.start_revision.max(1);
    let mut stream: Vec<(usize, &Event)> = Vec::new();
    let mut progress: Vec<(usize, i64)> = Vec::new();
    let mut resume_at = first.start_revision;
    let mut response_index = 0;
    for (s, session) in log.sessions.iter().enumerate() {
        if s > 0 && session.start_revision != resume_at {
            report.add(
                Guarantee::Resumable,
                format!(
                    "{}: session {s} on {} started at {} but the last event seen makes it {resume_at}",
                    log.name, session.endpoint, session.start_revision
                ),
            );
        }
        for response in &session.responses {
            response_index += 1;
            if response.canceled || response.compact_revision != 0 {
                report.add(
                    Guarantee::Stream,
                    format!(
                        "{}: watch canceled on {} (compact_revision {})",
                        log.name, session.endpoint, response.compact_revision
                    ),
                );
            }
            if let Some(e) = response
                .events
                .iter()
                .find(|e| e.revision() > response.revision)
            {
                report.add(
                    Guarantee::Stream,
                    format!(
                        "{}: event at {} in a response with header revision {}",
                        log.name,
                        e.revision(),
                        response.revision
                    ),
                );
            }
            if let Some(e) = response
                .events
                .iter()
                .find(|e| e.revision() < session.start_revision)
            {
                report.add(
                    Guarantee::Resumable,
                    format!(
                        "{}: session {s} started at {} delivered an event at {}",
                        log.name,
                        session.start_revision,
                        e.revision()
                    ),
                );
            }
            if let Some(e) = response
                .events
                .iter()
                .find(|e| !e.kv.key.starts_with(&log.prefix))
            {
                report.add(
                    Guarantee::Stream,
                    format!("{}: event outside the prefix: {e:?}", log.name),
                );
            }
            // Atomic: every revision in a response is complete in that response.
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for e in &response.events {
                *counts.entry(e.revision()).or_default() += 1;
            }
            for (rev, n) in counts {
                let want = per_revision.get(&rev).map_or(0, Vec::len);
                if n != want {
                    report.add(
                        Guarantee::Atomic,
                        format!("{}: response {response_index} has {n} of the {want} events at revision {rev}", log.name),
                    );
                }
            }
            if response.is_progress() {
                progress.push((stream.len(), response.revision));
            }
            stream.extend(response.events.iter().map(|e| (response_index, e)));
        }
        if let Some(last) = session
            .responses
            .iter()
            .flat_map(|r| &r.events)
            .map(Event::revision)
            .max()
        {
            resume_at = resume_at.max(last + 1);
        }
    }

    // Ordered and Unique over the stitched stream.
    let mut last_rev = 0;
    let mut keys_at: HashSet<(i64, &str)> = HashSet::new();
    let mut position_in_revision: HashMap<i64, usize> = HashMap::new();
    for (_, e) in &stream {
        let rev = e.revision();
        if rev < last_rev {
            report.add(
                Guarantee::Ordered,
                format!("{}: event at {rev} after an event at {last_rev}", log.name),
            );
        }
        last_rev = last_rev.max(rev);
        if !keys_at.insert((rev, e.kv.key.as_str())) {
            report.add(
                Guarantee::Unique,
                format!(
                    "{}: key {} at revision {rev} delivered twice",
                    log.name, e.kv.key
                ),
            );
            continue;
        }
        let pos = position_in_revision.entry(rev).or_default();
        if let Some(expected) = per_revision.get(&rev).and_then(|v| v.get(*pos)) {
            if expected.kv.key != e.kv.key {
                report.add(
                    Guarantee::Ordered,
                    format!(
                        "{}: at revision {rev} key {} delivered where {} was expected",
                        log.name, e.kv.key, expected.kv.key
                    ),
                );
            }
        }
        *pos += 1;
    }
    let mut last_bookmark = 0;
    for &(_, rev) in &progress {
        if rev < last_bookmark {
            report.add(
                Guarantee::Ordered,
                format!(
                    "{}: progress notification at {rev} after one at {last_bookmark}",
                    log.name
                ),
            );
        }
        last_bookmark = last_bookmark.max(rev);
    }

    // Reliable: the stitched stream is exactly the reference between the start and the end.
    let delivered: HashSet<(i64, &str)> = keys_at;
    let end = last_observed(log.sessions.iter().flat_map(|s| &s.responses));
    let window: Vec<&&Event> = reference
        .iter()
        .filter(|e| e.revision() >= start && e.revision() <= end)
        .collect();
    for e in &window {
        if !delivered.contains(&(e.revision(), e.kv.key.as_str())) {
            report.add(
                Guarantee::Reliable,
                format!(
                    "{}: missed key {} at revision {} (watched {start}..={end})",
                    log.name,
                    e.kv.key,
                    e.revision()
                ),
            );
        }
    }
    let by_rev_key: HashMap<(i64, &str), &Event> = reference
        .iter()
        .map(|e| ((e.revision(), e.kv.key.as_str()), *e))
        .collect();
    for (_, e) in &stream {
        match by_rev_key.get(&(e.revision(), e.kv.key.as_str())) {
            None => report.add(
                Guarantee::Reliable,
                format!(
                    "{}: delivered an event the store's history does not have: {e:?}",
                    log.name
                ),
            ),
            Some(r) if r.kind != e.kind || r.kv != e.kv => report.add(
                Guarantee::Reliable,
                format!("{}: delivered {e:?} but the history has {r:?}", log.name),
            ),
            Some(_) => {}
        }
    }
    if let Some(through) = through {
        if end < through {
            report.add(
                Guarantee::Reliable,
                format!("{}: only saw through {end}, expected {through}", log.name),
            );
        }
    }

    // Bookmarkable: a progress notification at R comes after every event <= R and before any.
    for &(pos, rev) in &progress {
        let before = stream[..pos]
            .iter()
            .filter(|(_, e)| e.revision() >= start && e.revision() <= rev)
            .count();
        let want = reference
            .iter()
            .filter(|e| e.revision() >= start && e.revision() <= rev)
            .count();
        if before < want {
            report.add(
                Guarantee::Bookmarkable,
                format!("{}: progress notification at {rev} after only {before} of {want} events up to it", log.name),
            );
        }
        if let Some((_, late)) = stream[pos..].iter().find(|(_, e)| e.revision() <= rev) {
            report.add(
                Guarantee::Bookmarkable,
                format!(
                    "{}: event at {} delivered after a progress notification at {rev}",
                    log.name,
                    late.revision()
                ),
            );
        }
    }

    // prev_kv: the key's previous version in the history, absent after a delete or creation.
    if log.prev_kv {
        let mut previous: HashMap<&str, &Event> = HashMap::new();
        let mut expected_prev: HashMap<(i64, &str), Option<&Kv>> = HashMap::new();
        for e in &reference {
            let prev = previous
                .get(e.kv.key.as_str())
                .filter(|p| p.kind == Kind::Put)
                .map(|p| &p.kv);
            expected_prev.insert((e.revision(), e.kv.key.as_str()), prev);
            previous.insert(e.kv.key.as_str(), e);
        }
        for (_, e) in &stream {
            if let Some(want) = expected_prev.get(&(e.revision(), e.kv.key.as_str())) {
                if e.prev_kv.as_ref() != *want {
                    report.add(
                        Guarantee::PrevKv,
                        format!(
                            "{}: event {e:?} has prev_kv {:?}, history says {want:?}",
                            log.name, e.prev_kv
                        ),
                    );
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: i64, rev: i64, version: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: rev,
            version,
        }
    }

    /// The reference: /p/a created at 2, /p/b at 3, a txn at 4 touching a and b, b deleted at 5,
    /// /p/a written at 6, and a key outside the prefix at 7.
    fn reference() -> Vec<Event> {
        let a2 = kv("/p/a", "a2", 2, 2, 1);
        let b3 = kv("/p/b", "b3", 3, 3, 1);
        let a4 = kv("/p/a", "a4", 2, 4, 2);
        let b4 = kv("/p/b", "b4", 3, 4, 2);
        let a6 = kv("/p/a", "a6", 2, 6, 3);
        vec![
            Event {
                kind: Kind::Put,
                kv: a2.clone(),
                prev_kv: None,
            },
            Event {
                kind: Kind::Put,
                kv: b3.clone(),
                prev_kv: None,
            },
            Event {
                kind: Kind::Put,
                kv: a4.clone(),
                prev_kv: Some(a2),
            },
            Event {
                kind: Kind::Put,
                kv: b4.clone(),
                prev_kv: Some(b3),
            },
            Event {
                kind: Kind::Delete,
                kv: kv("/p/b", "", 0, 5, 0),
                prev_kv: Some(b4),
            },
            Event {
                kind: Kind::Put,
                kv: a6,
                prev_kv: Some(a4),
            },
            Event {
                kind: Kind::Put,
                kv: kv("/q/x", "x", 7, 7, 1),
                prev_kv: None,
            },
        ]
    }

    fn events(revs: &[(i64, &str)]) -> Vec<Event> {
        let r = reference();
        revs.iter()
            .map(|&(rev, key)| {
                r.iter()
                    .find(|e| e.revision() == rev && e.kv.key == key)
                    .expect("in reference")
                    .clone()
            })
            .collect()
    }

    fn resp(revision: i64, evs: &[(i64, &str)]) -> Response {
        Response {
            revision,
            events: events(evs),
            ..Response::default()
        }
    }

    fn created(revision: i64) -> Response {
        Response {
            revision,
            created: true,
            ..Response::default()
        }
    }

    fn progress(revision: i64) -> Response {
        Response {
            revision,
            ..Response::default()
        }
    }

    fn session(start: i64, responses: Vec<Response>) -> Session {
        Session {
            endpoint: "e".into(),
            start_revision: start,
            responses,
        }
    }

    fn log(sessions: Vec<Session>) -> WatchLog {
        WatchLog {
            name: "w".into(),
            prefix: "/p/".into(),
            prev_kv: true,
            sessions,
        }
    }

    fn broken(l: &WatchLog) -> HashSet<Guarantee> {
        check(l, &reference(), Some(6)).broken()
    }

    fn all_in_one_go() -> WatchLog {
        log(vec![session(
            1,
            vec![
                created(1),
                resp(3, &[(2, "/p/a"), (3, "/p/b")]),
                progress(3),
                resp(4, &[(4, "/p/a"), (4, "/p/b")]),
                resp(6, &[(5, "/p/b")]),
                resp(6, &[(6, "/p/a")]),
                progress(7),
            ],
        )])
    }

    #[test]
    fn reference_history_is_self_consistent() {
        assert_eq!(check_reference(&reference()), Ok(()));
        let mut bad = reference();
        bad[2].kv.version = 5;
        assert!(check_reference(&bad).is_err());
    }

    #[test]
    fn complete_stream_passes_every_guarantee() {
        let report = check(&all_in_one_go(), &reference(), Some(6));
        assert!(report.is_ok(), "{}", report.render());
    }

    #[test]
    fn stream_resumed_after_a_break_passes_when_stitched_exactly() {
        let l = log(vec![
            session(1, vec![created(1), resp(3, &[(2, "/p/a"), (3, "/p/b")])]),
            session(
                4,
                vec![
                    created(3),
                    resp(4, &[(4, "/p/a"), (4, "/p/b")]),
                    progress(4),
                ],
            ),
            session(5, vec![created(6), resp(6, &[(5, "/p/b"), (6, "/p/a")])]),
        ]);
        let report = check(&l, &reference(), Some(6));
        assert!(report.is_ok(), "{}", report.render());
    }

    #[test]
    fn events_out_of_revision_order_break_ordered() {
        let l = log(vec![session(
            1,
            vec![resp(
                6,
                &[
                    (2, "/p/a"),
                    (4, "/p/a"),
                    (4, "/p/b"),
                    (3, "/p/b"),
                    (5, "/p/b"),
                    (6, "/p/a"),
                ],
            )],
        )]);
        assert!(broken(&l).contains(&Guarantee::Ordered));
    }

    #[test]
    fn txn_events_out_of_request_order_break_ordered() {
        let l = log(vec![session(
            1,
            vec![resp(
                6,
                &[
                    (2, "/p/a"),
                    (3, "/p/b"),
                    (4, "/p/b"),
                    (4, "/p/a"),
                    (5, "/p/b"),
                    (6, "/p/a"),
                ],
            )],
        )]);
        assert_eq!(broken(&l), HashSet::from([Guarantee::Ordered]));
    }

    #[test]
    fn duplicated_event_breaks_unique() {
        let l = log(vec![session(
            1,
            vec![
                resp(3, &[(2, "/p/a"), (3, "/p/b")]),
                resp(3, &[(3, "/p/b")]),
                resp(6, &[(4, "/p/a"), (4, "/p/b"), (5, "/p/b"), (6, "/p/a")]),
            ],
        )]);
        assert!(broken(&l).contains(&Guarantee::Unique));
    }

    #[test]
    fn gap_in_the_stream_breaks_reliable() {
        let l = log(vec![session(
            1,
            vec![
                resp(3, &[(2, "/p/a"), (3, "/p/b")]),
                resp(6, &[(5, "/p/b"), (6, "/p/a")]),
            ],
        )]);
        assert_eq!(broken(&l), HashSet::from([Guarantee::Reliable]));
    }

    #[test]
    fn event_that_never_happened_breaks_reliable() {
        let mut l = all_in_one_go();
        l.sessions[0].responses[5].events[0].kv.value = "forged".into();
        assert!(broken(&l).contains(&Guarantee::Reliable));
    }

    #[test]
    fn stream_that_stops_early_breaks_reliable() {
        let l = log(vec![session(1, vec![resp(3, &[(2, "/p/a"), (3, "/p/b")])])]);
        assert_eq!(broken(&l), HashSet::from([Guarantee::Reliable]));
    }

    #[test]
    fn revision_split_across_responses_breaks_atomic() {
        let l = log(vec![session(
            1,
            vec![
                resp(4, &[(2, "/p/a"), (3, "/p/b"), (4, "/p/a")]),
                resp(6, &[(4, "/p/b"), (5, "/p/b"), (6, "/p/a")]),
            ],
        )]);
        assert_eq!(broken(&l), HashSet::from([Guarantee::Atomic]));
    }

    #[test]
    fn resumed_watch_that_replays_old_events_breaks_resumable() {
        let l = log(vec![
            session(
                1,
                vec![resp(
                    4,
                    &[(2, "/p/a"), (3, "/p/b"), (4, "/p/a"), (4, "/p/b")],
                )],
            ),
            session(
                5,
                vec![resp(
                    6,
                    &[(4, "/p/a"), (4, "/p/b"), (5, "/p/b"), (6, "/p/a")],
                )],
            ),
        ]);
        let b = broken(&l);
        assert!(
            b.contains(&Guarantee::Resumable) && b.contains(&Guarantee::Unique),
            "{b:?}"
        );
    }

    #[test]
    fn resumed_watch_from_the_wrong_revision_breaks_resumable() {
        let l = log(vec![
            session(1, vec![resp(3, &[(2, "/p/a"), (3, "/p/b")])]),
            session(5, vec![resp(6, &[(5, "/p/b"), (6, "/p/a")])]),
        ]);
        let b = broken(&l);
        assert!(
            b.contains(&Guarantee::Resumable) && b.contains(&Guarantee::Reliable),
            "{b:?}"
        );
    }

    #[test]
    fn progress_notification_ahead_of_its_events_breaks_bookmarkable() {
        let l = log(vec![session(
            1,
            vec![
                resp(3, &[(2, "/p/a"), (3, "/p/b")]),
                progress(5),
                resp(6, &[(4, "/p/a"), (4, "/p/b"), (5, "/p/b"), (6, "/p/a")]),
            ],
        )]);
        assert!(broken(&l).contains(&Guarantee::Bookmarkable));
    }

    #[test]
    fn wrong_prev_kv_is_detected() {
        let mut l = all_in_one_go();
        l.sessions[0].responses[3].events[0].prev_kv = None;
        assert_eq!(broken(&l), HashSet::from([Guarantee::PrevKv]));
        let mut l = all_in_one_go();
        l.sessions[0].responses[1].events[0].prev_kv = Some(kv("/p/a", "ghost", 1, 1, 1));
        assert_eq!(broken(&l), HashSet::from([Guarantee::PrevKv]));
    }

    #[test]
    fn canceled_watch_is_reported() {
        let mut l = all_in_one_go();
        l.sessions[0].responses.push(Response {
            revision: 7,
            canceled: true,
            compact_revision: 3,
            ..Response::default()
        });
        assert!(broken(&l).contains(&Guarantee::Stream));
    }
}
