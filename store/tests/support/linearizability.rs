//! Linearizability checker for single-key etcd operations: WGL search per key plus revision checks.
//!
//! The model is one register per key holding `(value, mod_revision)`. Every operation touches one
//! key, so the history is partitioned by key (linearizability is compositional) and each part is
//! searched with the Wing & Gong / Lowe algorithm, memoising `(linearized set, state)` as Porcupine
//! does. An operation that failed or timed out is indeterminate: it stays pending until the end of
//! the history and its output is unknown, so the search may place it anywhere after its call,
//! including "after everything", which is the same as never having happened.
//!
//! etcd's revisions make the check stronger than a plain register: a put returns the revision it
//! created, a read returns the value's `mod_revision` and the header revision it was served at.
//! [`check_revisions`] verifies those across keys (unique write revisions, revisions that respect
//! real time, reads that reflect every known write up to their header revision).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A point on the history's global logical clock.
pub type Time = u64;

/// A shared logical clock: every invoke and every return takes a distinct, increasing tick, so the
/// real-time order between operations of different clients is exact.
#[derive(Clone, Debug, Default)]
pub struct Clock(Arc<AtomicU64>);

impl Clock {
    pub fn tick(&self) -> Time {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Put {
        value: String,
    },
    Get,
    Delete,
    /// `Txn(if mod_revision(key) == expected then put(value) else get(key))`.
    CasRevision {
        expected: i64,
        value: String,
    },
    /// `Txn(if value(key) == expected then put(value) else get(key))`.
    CasValue {
        expected: String,
        value: String,
    },
}

/// A key's value as a read saw it; `value == None` means absent (`mod_revision` is then 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub value: Option<String>,
    pub mod_revision: i64,
}

/// What the client got back. `revision` is always the response header's revision; for a
/// successful write that is the revision the write created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Put {
        revision: i64,
    },
    Get {
        observed: Observed,
        revision: i64,
    },
    Delete {
        deleted: bool,
        revision: i64,
    },
    Cas {
        succeeded: bool,
        revision: i64,
        current: Option<Observed>,
    },
    /// The operation failed or timed out: it may or may not have taken effect.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub call: Time,
    /// `None` when the outcome is unknown (the operation is pending until the end).
    pub ret: Option<Time>,
    pub output: Output,
}

impl Operation {
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none() || self.output == Output::Unknown
    }

    /// The revision this operation took effect at or was served at, when known.
    pub fn revision(&self) -> Option<i64> {
        match self.output {
            Output::Put { revision }
            | Output::Get { revision, .. }
            | Output::Delete { revision, .. }
            | Output::Cas { revision, .. } => Some(revision),
            Output::Unknown => None,
        }
    }

    /// The revision of a write that is known to have taken effect.
    pub fn write_revision(&self) -> Option<i64> {
        match self.output {
            Output::Put { revision } => Some(revision),
            Output::Delete {
                deleted: true,
                revision,
            } => Some(revision),
            Output::Cas {
                succeeded: true,
                revision,
                ..
            } => Some(revision),
            _ => None,
        }
    }

    /// The value a known-successful write left in the key (`None` for a delete).
    fn written_value(&self) -> Option<Option<&str>> {
        self.write_revision()?;
        match &self.input {
            Input::Put { value }
            | Input::CasRevision { value, .. }
            | Input::CasValue { value, .. } => Some(Some(value.as_str())),
            Input::Delete => Some(None),
            Input::Get => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or_else(|| "?".to_string(), |r| r.to_string());
        write!(
            f,
            "client {} [{}..{}] {} {:?} -> {:?}",
            self.client, self.call, ret, self.key, self.input, self.output
        )
    }
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists; the message names the key and the stuck operations.
    Violation(String),
    /// The search ran out of its step budget before deciding.
    Unknown(String),
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        *self == Verdict::Linearizable
    }
}

/// Default search budget per key (steps of the WGL loop).
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// Checks the whole history: revision consistency first, then the WGL search key by key.
pub fn check(history: &[Operation]) -> Verdict {
    check_with_budget(history, DEFAULT_BUDGET)
}

pub fn check_with_budget(history: &[Operation], budget: u64) -> Verdict {
    if let Err(e) = check_revisions(history) {
        return Verdict::Violation(e);
    }
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        // A read whose answer never arrived constrains nothing.
        if op.input == Input::Get && op.is_indeterminate() {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut unknown = None;
    for (key, ops) in by_key {
        match check_key(&ops, budget) {
            Verdict::Linearizable => {}
            Verdict::Violation(e) => return Verdict::Violation(format!("key {key}: {e}")),
            Verdict::Unknown(e) => unknown = Some(format!("key {key}: {e}")),
        }
    }
    unknown.map_or(Verdict::Linearizable, Verdict::Unknown)
}

/// Cross-key checks that only need revisions: every known write has its own revision; an
/// operation that started after another finished never sees a lower revision (and a write gets a
/// strictly higher one); a read's value is the newest known write at or below its header revision.
pub fn check_revisions(history: &[Operation]) -> Result<(), String> {
    let mut writes: HashMap<i64, &Operation> = HashMap::new();
    for op in history {
        if let Some(rev) = op.write_revision() {
            if let Some(other) = writes.insert(rev, op) {
                return Err(format!("two writes at revision {rev}: {other} and {op}"));
            }
        }
    }

    let mut completed: Vec<&Operation> = history.iter().filter(|o| !o.is_indeterminate()).collect();
    let mut by_return = completed.clone();
    by_return.sort_by_key(|o| o.ret);
    completed.sort_by_key(|o| o.call);
    let mut returned = 0;
    let mut floor: Option<&Operation> = None;
    for op in &completed {
        while returned < by_return.len() && by_return[returned].ret < Some(op.call) {
            let done = by_return[returned];
            if floor.is_none_or(|f| done.revision() > f.revision()) {
                floor = Some(done);
            }
            returned += 1;
        }
        if let (Some(before), Some(rev)) = (floor, op.revision()) {
            let before_rev = before.revision().unwrap_or(0);
            if rev < before_rev || (op.write_revision().is_some() && rev == before_rev) {
                return Err(format!(
                    "revision went backwards in real time: {before} finished before {op} started"
                ));
            }
        }
    }

    let mut key_writes: HashMap<&str, BTreeMap<i64, &Operation>> = HashMap::new();
    for (rev, op) in &writes {
        key_writes
            .entry(op.key.as_str())
            .or_default()
            .insert(*rev, op);
    }
    let empty = BTreeMap::new();
    for op in history {
        let (observed, header) = match &op.output {
            Output::Get { observed, revision } => (observed, *revision),
            Output::Cas {
                current: Some(observed),
                revision,
                ..
            } => (observed, *revision),
            _ => continue,
        };
        if observed.mod_revision > header {
            return Err(format!("read newer than its own header revision: {op}"));
        }
        let writes = key_writes.get(op.key.as_str()).unwrap_or(&empty);
        if let Some(value) = &observed.value {
            if let Some(w) = writes.get(&observed.mod_revision) {
                if w.written_value() != Some(Some(value.as_str())) {
                    return Err(format!(
                        "read a value the write at its mod_revision did not write: {op}; write {w}"
                    ));
                }
            }
            let newer = if observed.mod_revision < header {
                writes.range(observed.mod_revision + 1..=header).next()
            } else {
                None
            };
            if let Some((_, newer)) = newer {
                return Err(format!("stale read: {op} misses {newer}"));
            }
        }
    }
    Ok(())
}

/// What is known about a register's mod_revision.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Rev {
    Exact(i64),
    /// Written by an indeterminate operation: some revision above this one.
    Above(i64),
}

impl Rev {
    fn floor(self) -> i64 {
        match self {
            Rev::Exact(r) | Rev::Above(r) => r,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    /// Interned value, `None` when the key is absent.
    value: Option<u32>,
    rev: Rev,
}

impl State {
    fn initial() -> Self {
        State {
            value: None,
            rev: Rev::Exact(0),
        }
    }

    /// The states consistent with reading `observed`, refining an unknown revision.
    fn observe(&self, value: Option<u32>, mod_revision: i64) -> Option<State> {
        if value != self.value {
            return None;
        }
        if value.is_none() {
            return Some(self.clone());
        }
        match self.rev {
            Rev::Exact(r) if r == mod_revision => Some(self.clone()),
            Rev::Above(l) if mod_revision > l => Some(State {
                value,
                rev: Rev::Exact(mod_revision),
            }),
            _ => None,
        }
    }

    /// The mod_revision a compare sees: 0 for an absent key.
    fn compare_rev(&self) -> Rev {
        if self.value.is_none() {
            Rev::Exact(0)
        } else {
            self.rev
        }
    }
}

/// Interned operation, ready for the model.
#[derive(Clone, Debug)]
enum Step {
    Put { value: u32 },
    Delete,
    CasRevision { expected: i64, value: u32 },
    CasValue { expected: u32, value: u32 },
    Get,
}

fn step(state: &State, op: &Step, output: &InternedOutput) -> Vec<State> {
    let floor = state.rev.floor();
    let written = |value: Option<u32>, rev: i64| -> Vec<State> {
        if rev > floor {
            vec![State {
                value,
                rev: Rev::Exact(rev),
            }]
        } else {
            vec![]
        }
    };
    let unknown = |value: Option<u32>| State {
        value,
        rev: Rev::Above(floor),
    };
    match (op, output) {
        (
            Step::Get,
            InternedOutput::Read {
                value,
                mod_revision,
            },
        ) => state.observe(*value, *mod_revision).into_iter().collect(),
        (Step::Get, _) => vec![state.clone()],
        (Step::Put { value }, InternedOutput::Write { revision }) => {
            written(Some(*value), *revision)
        }
        (Step::Put { value }, InternedOutput::Unknown) => vec![unknown(Some(*value))],
        (
            Step::Delete,
            InternedOutput::Delete {
                deleted: true,
                revision,
            },
        ) => {
            if state.value.is_some() {
                written(None, *revision)
            } else {
                vec![]
            }
        }
        (Step::Delete, InternedOutput::Delete { deleted: false, .. }) => {
            if state.value.is_none() {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Step::Delete, _) => {
            if state.value.is_some() {
                vec![unknown(None)]
            } else {
                vec![state.clone()]
            }
        }
        (Step::CasRevision { .. } | Step::CasValue { .. }, output) => cas(state, op, output, floor),
        _ => vec![],
    }
}

fn cas(state: &State, op: &Step, output: &InternedOutput, floor: i64) -> Vec<State> {
    // Which states make the compare succeed (refined) and can it fail.
    let (success, can_fail): (Option<State>, bool) = match op {
        Step::CasRevision { expected, .. } => match state.compare_rev() {
            Rev::Exact(r) => ((r == *expected).then(|| state.clone()), r != *expected),
            Rev::Above(l) => (
                (*expected > l).then_some(State {
                    value: state.value,
                    rev: Rev::Exact(*expected),
                }),
                true,
            ),
        },
        Step::CasValue { expected, .. } => {
            let holds = state.value == Some(*expected);
            (holds.then(|| state.clone()), !holds)
        }
        _ => (None, false),
    };
    let value = match op {
        Step::CasRevision { value, .. } | Step::CasValue { value, .. } => *value,
        _ => return vec![],
    };
    match output {
        // The header revision of a successful single-put Txn is the put's revision.
        InternedOutput::Cas {
            succeeded: true,
            revision,
            ..
        } => match success {
            Some(s) if *revision > s.rev.floor().max(floor) => {
                vec![State {
                    value: Some(value),
                    rev: Rev::Exact(*revision),
                }]
            }
            _ => vec![],
        },
        InternedOutput::Cas {
            succeeded: false,
            current,
            ..
        } => {
            if !can_fail {
                return vec![];
            }
            match current {
                Some((v, m)) => state.observe(*v, *m).into_iter().collect(),
                None => vec![state.clone()],
            }
        }
        InternedOutput::Unknown => {
            let mut out = Vec::new();
            if let Some(s) = success {
                out.push(State {
                    value: Some(value),
                    rev: Rev::Above(s.rev.floor().max(floor)),
                });
            }
            if can_fail {
                out.push(state.clone());
            }
            out
        }
        _ => vec![],
    }
}

#[derive(Clone, Debug)]
enum InternedOutput {
    Write {
        revision: i64,
    },
    Read {
        value: Option<u32>,
        mod_revision: i64,
    },
    Delete {
        deleted: bool,
        revision: i64,
    },
    Cas {
        succeeded: bool,
        revision: i64,
        current: Option<(Option<u32>, i64)>,
    },
    Unknown,
}

#[derive(Default)]
struct Interner(HashMap<String, u32>);

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        let next = u32::try_from(self.0.len()).expect("fewer than 2^32 distinct values");
        *self.0.entry(s.to_string()).or_insert(next)
    }
}

fn intern(op: &Operation, values: &mut Interner) -> (Step, InternedOutput) {
    let step = match &op.input {
        Input::Put { value } => Step::Put {
            value: values.id(value),
        },
        Input::Get => Step::Get,
        Input::Delete => Step::Delete,
        Input::CasRevision { expected, value } => Step::CasRevision {
            expected: *expected,
            value: values.id(value),
        },
        Input::CasValue { expected, value } => Step::CasValue {
            expected: values.id(expected),
            value: values.id(value),
        },
    };
    let mut observed = |o: &Observed| (o.value.as_deref().map(|v| values.id(v)), o.mod_revision);
    let output = if op.is_indeterminate() {
        InternedOutput::Unknown
    } else {
        match &op.output {
            Output::Put { revision } => InternedOutput::Write {
                revision: *revision,
            },
            Output::Get { observed: o, .. } => {
                let (value, mod_revision) = observed(o);
                InternedOutput::Read {
                    value,
                    mod_revision,
                }
            }
            Output::Delete { deleted, revision } => InternedOutput::Delete {
                deleted: *deleted,
                revision: *revision,
            },
            Output::Cas {
                succeeded,
                revision,
                current,
            } => {
                let current = current.as_ref().map(&mut observed);
                InternedOutput::Cas {
                    succeeded: *succeeded,
                    revision: *revision,
                    current,
                }
            }
            Output::Unknown => InternedOutput::Unknown,
        }
    };
    (step, output)
}

const NIL: usize = usize::MAX;

struct Node {
    op: usize,
    call: bool,
    partner: usize,
    prev: usize,
    next: usize,
}

struct List(Vec<Node>);

impl List {
    fn lift(&mut self, call: usize) {
        let ret = self.0[call].partner;
        for n in [call, ret] {
            let (prev, next) = (self.0[n].prev, self.0[n].next);
            self.0[prev].next = next;
            if next != NIL {
                self.0[next].prev = prev;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.0[call].partner;
        for n in [ret, call] {
            let (prev, next) = (self.0[n].prev, self.0[n].next);
            self.0[prev].next = n;
            if next != NIL {
                self.0[next].prev = n;
            }
        }
    }
}

/// WGL search over the operations of one key.
fn check_key(ops: &[&Operation], budget: u64) -> Verdict {
    let mut values = Interner::default();
    let model: Vec<(Step, InternedOutput)> = ops.iter().map(|op| intern(op, &mut values)).collect();

    // Events in time order; indeterminate operations return "at infinity". On equal times calls
    // sort first, which treats the operations as concurrent (the permissive reading).
    let mut events: Vec<(Time, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, true, i));
        let ret = if op.is_indeterminate() {
            Time::MAX
        } else {
            op.ret.unwrap_or(Time::MAX)
        };
        events.push((ret, false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));

    let mut nodes = vec![Node {
        op: NIL,
        call: false,
        partner: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut call_node = vec![NIL; ops.len()];
    for (idx, &(_, is_call, op)) in events.iter().enumerate() {
        let n = idx + 1;
        nodes.push(Node {
            op,
            call: is_call,
            partner: NIL,
            prev: n - 1,
            next: if idx + 1 < events.len() { n + 1 } else { NIL },
        });
        if is_call {
            call_node[op] = n;
        } else {
            let c = call_node[op];
            nodes[c].partner = n;
            nodes[n].partner = c;
        }
    }
    nodes[0].next = if events.is_empty() { NIL } else { 1 };
    let mut list = List(nodes);

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = State::initial();
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State, usize)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut entry = list.0[0].next;
    let mut first_alternative = 0;
    let mut steps = 0u64;

    while list.0[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown(format!(
                "search exceeded {budget} steps over {} operations",
                ops.len()
            ));
        }
        if entry == NIL {
            // Cannot happen: every remaining call is followed by its return.
            return Verdict::Unknown("search ran off the end of the history".to_string());
        }
        let node = &list.0[entry];
        let op = node.op;
        if node.call {
            let (s, o) = &model[op];
            let mut advanced = false;
            for (k, next) in step(&state, s, o)
                .into_iter()
                .enumerate()
                .skip(first_alternative)
            {
                let mut bits = linearized.clone();
                bits[op / 64] |= 1 << (op % 64);
                if cache.insert((bits.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next), k));
                    linearized = bits;
                    list.lift(entry);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|&(n, _, _)| list.0[n].op).collect();
                    }
                    entry = list.0[0].next;
                    advanced = true;
                    break;
                }
            }
            first_alternative = 0;
            if !advanced {
                entry = list.0[entry].next;
            }
        } else {
            // The earliest pending return: its operation could not be linearized before it.
            let Some((call, previous, k)) = stack.pop() else {
                return Verdict::Violation(explain(ops, &best, list.0[entry].op));
            };
            state = previous;
            let op = list.0[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            list.unlift(call);
            entry = call;
            first_alternative = k + 1;
        }
    }
    Verdict::Linearizable
}

fn explain(ops: &[&Operation], best: &[usize], stuck: usize) -> String {
    let mut msg = format!(
        "not linearizable; longest linearizable prefix has {} of {} operations",
        best.len(),
        ops.len()
    );
    let tail = best.len().saturating_sub(8);
    for &i in &best[tail..] {
        msg.push_str(&format!("\n  linearized: {}", ops[i]));
    }
    msg.push_str(&format!(
        "\n  cannot place before it returns: {}",
        ops[stuck]
    ));
    let placed: HashSet<usize> = best.iter().copied().collect();
    let mut pending: Vec<usize> = (0..ops.len()).filter(|i| !placed.contains(i)).collect();
    pending.sort_by_key(|&i| ops[i].call);
    for &i in pending.iter().take(8) {
        msg.push_str(&format!("\n  not linearized: {}", ops[i]));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds histories by hand: `(client, call, ret, input, output)` on key "k".
    fn op(client: usize, call: Time, ret: Option<Time>, input: Input, output: Output) -> Operation {
        Operation {
            client,
            key: "k".to_string(),
            input,
            call,
            ret,
            output,
        }
    }

    fn put(client: usize, call: Time, ret: Time, value: &str, revision: i64) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Put {
                value: value.into(),
            },
            Output::Put { revision },
        )
    }

    fn put_unknown(client: usize, call: Time, value: &str) -> Operation {
        op(
            client,
            call,
            None,
            Input::Put {
                value: value.into(),
            },
            Output::Unknown,
        )
    }

    fn get(
        client: usize,
        call: Time,
        ret: Time,
        value: Option<&str>,
        mod_revision: i64,
        revision: i64,
    ) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Get,
            Output::Get {
                observed: Observed {
                    value: value.map(Into::into),
                    mod_revision,
                },
                revision,
            },
        )
    }

    fn cas(
        client: usize,
        call: Time,
        ret: Time,
        expected: i64,
        value: &str,
        out: Output,
    ) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::CasRevision {
                expected,
                value: value.into(),
            },
            out,
        )
    }

    #[test]
    fn sequential_puts_and_reads_are_linearizable() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            get(1, 3, 4, Some("a"), 2, 2),
            put(0, 5, 6, "b", 3),
            get(1, 7, 8, Some("b"), 3, 3),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        // The put of "b" overlaps both reads: one sees "a", the later one "b".
        let h = vec![
            put(0, 1, 2, "a", 2),
            put(0, 3, 10, "b", 3),
            get(1, 4, 5, Some("a"), 2, 2),
            get(2, 6, 7, Some("b"), 3, 3),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_completed_write_is_rejected() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            put(0, 3, 4, "b", 3),
            get(1, 5, 6, Some("a"), 2, 2),
        ];
        assert!(
            matches!(check(&h), Verdict::Violation(_)),
            "{:?}",
            check(&h)
        );
    }

    #[test]
    fn stale_read_is_rejected_by_the_register_search_alone() {
        // Without the revision checks the WGL search must still catch it.
        let h = [
            put(0, 1, 2, "a", 2),
            put(0, 3, 4, "b", 3),
            get(1, 5, 6, Some("a"), 2, 3),
        ];
        let ops: Vec<&Operation> = h.iter().collect();
        assert!(matches!(
            check_key(&ops, DEFAULT_BUDGET),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn read_going_back_in_time_is_rejected() {
        // Two sequential reads during a long write: new value then old value.
        let h = vec![
            put(0, 1, 2, "a", 2),
            put(0, 3, 20, "b", 3),
            get(1, 4, 5, Some("b"), 3, 3),
            get(1, 6, 7, Some("a"), 2, 3),
        ];
        assert!(matches!(check(&h), Verdict::Violation(_)));
        let ops: Vec<&Operation> = h.iter().collect();
        assert!(matches!(
            check_key(&ops, DEFAULT_BUDGET),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn lost_write_is_rejected() {
        // "b" was acknowledged, yet a later read still sees "a" and a CAS against "a" succeeds.
        let h = vec![
            put(0, 1, 2, "a", 2),
            put(1, 3, 4, "b", 3),
            cas(
                2,
                5,
                6,
                2,
                "c",
                Output::Cas {
                    succeeded: true,
                    revision: 4,
                    current: None,
                },
            ),
        ];
        assert!(matches!(check(&h), Verdict::Violation(_)));
        let ops: Vec<&Operation> = h.iter().collect();
        assert!(matches!(
            check_key(&ops, DEFAULT_BUDGET),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn read_of_a_value_never_written_is_rejected() {
        let h = vec![put(0, 1, 2, "a", 2), get(1, 3, 4, Some("zzz"), 2, 2)];
        assert!(matches!(check(&h), Verdict::Violation(_)));
        let h = vec![put(0, 1, 2, "a", 2), get(1, 3, 4, Some("zzz"), 7, 7)];
        assert!(matches!(check(&h), Verdict::Violation(_)));
    }

    #[test]
    fn indeterminate_write_that_later_becomes_visible_is_linearizable() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            put_unknown(1, 3, "b"),
            get(2, 10, 11, Some("b"), 3, 3),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn indeterminate_write_that_never_happened_is_linearizable() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            put_unknown(1, 3, "b"),
            get(2, 10, 11, Some("a"), 2, 2),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn indeterminate_write_cannot_take_effect_before_it_was_invoked() {
        let h = vec![get(0, 1, 2, Some("b"), 2, 2), put_unknown(1, 3, "b")];
        assert!(matches!(check(&h), Verdict::Violation(_)));
    }

    #[test]
    fn indeterminate_write_cannot_flicker_in_and_out() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            put_unknown(1, 3, "b"),
            get(2, 10, 11, Some("b"), 3, 3),
            get(2, 12, 13, Some("a"), 2, 3),
        ];
        assert!(matches!(check(&h), Verdict::Violation(_)));
    }

    #[test]
    fn compare_and_swap_on_mod_revision_follows_the_register() {
        let ok = vec![
            put(0, 1, 2, "a", 2),
            cas(
                1,
                3,
                4,
                2,
                "b",
                Output::Cas {
                    succeeded: true,
                    revision: 3,
                    current: None,
                },
            ),
            cas(
                2,
                5,
                6,
                2,
                "c",
                Output::Cas {
                    succeeded: false,
                    revision: 3,
                    current: Some(Observed {
                        value: Some("b".into()),
                        mod_revision: 3,
                    }),
                },
            ),
        ];
        assert_eq!(check(&ok), Verdict::Linearizable);
        // Two CASes from the same expected revision cannot both succeed.
        let bad = vec![
            put(0, 1, 2, "a", 2),
            cas(
                1,
                3,
                6,
                2,
                "b",
                Output::Cas {
                    succeeded: true,
                    revision: 3,
                    current: None,
                },
            ),
            cas(
                2,
                4,
                7,
                2,
                "c",
                Output::Cas {
                    succeeded: true,
                    revision: 4,
                    current: None,
                },
            ),
        ];
        assert!(matches!(check(&bad), Verdict::Violation(_)));
    }

    #[test]
    fn indeterminate_compare_and_swap_may_go_either_way() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            op(
                1,
                3,
                None,
                Input::CasRevision {
                    expected: 2,
                    value: "b".into(),
                },
                Output::Unknown,
            ),
            get(2, 10, 11, Some("b"), 3, 3),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
        let h = vec![
            put(0, 1, 2, "a", 2),
            op(
                1,
                3,
                None,
                Input::CasValue {
                    expected: "a".into(),
                    value: "b".into(),
                },
                Output::Unknown,
            ),
            get(2, 10, 11, Some("a"), 2, 2),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn deletes_make_the_key_absent() {
        let h = vec![
            put(0, 1, 2, "a", 2),
            op(
                0,
                3,
                Some(4),
                Input::Delete,
                Output::Delete {
                    deleted: true,
                    revision: 3,
                },
            ),
            get(1, 5, 6, None, 0, 3),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
        let h = vec![
            put(0, 1, 2, "a", 2),
            op(
                0,
                3,
                Some(4),
                Input::Delete,
                Output::Delete {
                    deleted: true,
                    revision: 3,
                },
            ),
            get(1, 5, 6, Some("a"), 2, 3),
        ];
        assert!(matches!(check(&h), Verdict::Violation(_)));
    }

    #[test]
    fn revisions_that_go_backwards_across_keys_are_rejected() {
        let mut other = put(1, 3, 4, "x", 2);
        other.key = "other".into();
        let h = vec![put(0, 1, 2, "a", 3), other];
        assert!(matches!(check(&h), Verdict::Violation(_)));
    }

    #[test]
    fn search_that_exceeds_its_budget_reports_unknown() {
        let mut h = Vec::new();
        for c in 0..12 {
            h.push(put(
                c,
                c as Time + 1,
                100 + c as Time,
                &format!("v{c}"),
                c as i64 + 2,
            ));
        }
        h.push(get(20, 200, 201, Some("v11"), 13, 13));
        assert!(matches!(check_with_budget(&h, 5), Verdict::Unknown(_)));
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_clients_are_checked_quickly() {
        // 400 operations from 8 clients, each put overlapping its neighbours, all consistent.
        let mut h = Vec::new();
        let mut t = 1;
        let mut rev = 1;
        for round in 0..50 {
            for c in 0..8 {
                rev += 1;
                h.push(put(c, t, t + 3, &format!("r{round}c{c}"), rev));
                t += 1;
            }
            t += 3;
        }
        let started = std::time::Instant::now();
        assert_eq!(check(&h), Verdict::Linearizable);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
