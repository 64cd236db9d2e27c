//! The decisions of one waiting room, without I/O.
//!
//! [`QueueState`] knows the patients waiting in one queue (in check-in
//! order), the patients admitted who have not shown up in their
//! consultation yet, and who watches the queue. It works out positions,
//! ETAs and the view each kind of watcher may see; the
//! [`Queue`](crate::Queue) actor stores, sends and runs the timers.
//!
//! What a watcher sees depends on who they are: a doctor sees every entry of
//! a queue they serve; staff see the entries of their own clinic; a display
//! sees the tickets of its own clinic and never a name, a user id or a room.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use telehub_signaling::{QueueEntry, Role, ServerFrame, UserRef};

use crate::{Identity, Lost, Person, QueueId};

/// One patient in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub room: String,
    pub ticket: String,
    pub clinic: Option<String>,
    pub patient: Person,
    /// When the patient checked in (RFC 3339); the queue's order.
    pub since: String,
    /// Whether nothing is owed before the consultation may start.
    pub paid: bool,
    /// The patient's sessions on this node that checked in and still run.
    pub sessions: Vec<Arc<str>>,
    /// The patient has a session checked in on another node of a cluster.
    pub elsewhere: bool,
}

impl Waiting {
    pub fn online(&self) -> bool {
        !self.sessions.is_empty() || self.elsewhere
    }
}

/// A patient's place: what their `queue` frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub position: u32,
    pub ahead: u32,
    pub eta_s: u64,
}

/// How a watcher may see the queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// Every entry with names: a doctor of the queue, or the clinic backend.
    Full,
    /// Entries of one clinic, with names: staff.
    Clinic(String),
    /// Entries of the listed consultations of one clinic, with names:
    /// staff whose token has a `rooms` claim, which narrows them.
    Listed { clinic: String, rooms: Vec<String> },
    /// Tickets of one clinic only: a display.
    Tickets(String),
}

impl View {
    /// The view a watcher's identity allows, or why it may not watch.
    /// `serves` says whether a doctor serves this queue.
    pub fn of(who: &Identity, serves: bool) -> Result<View, String> {
        match (who.user.role, &who.clinic) {
            (Role::Doctor, _) if serves => Ok(View::Full),
            (Role::Doctor, _) => Err("a doctor may watch only the queues they serve".into()),
            (Role::Staff, Some(clinic)) => Ok(View::staff(clinic, who.rooms.as_deref())),
            (Role::Display, Some(clinic)) => Ok(View::Tickets(clinic.clone())),
            (Role::Staff | Role::Display, None) => Err("watching a queue needs a clinic in the token".into()),
            (Role::Patient, _) => Err("a patient may not watch queues".into()),
        }
    }

    /// What staff of `clinic` see, narrowed to `rooms` if their token
    /// lists some.
    pub fn staff(clinic: &str, rooms: Option<&[String]>) -> View {
        match rooms {
            Some(rooms) => View::Listed { clinic: clinic.to_owned(), rooms: rooms.to_vec() },
            None => View::Clinic(clinic.to_owned()),
        }
    }

    fn shows(&self, entry: &Waiting) -> bool {
        let of = |clinic: &str| entry.clinic.as_deref() == Some(clinic);
        match self {
            View::Full => true,
            View::Clinic(clinic) | View::Tickets(clinic) => of(clinic),
            View::Listed { clinic, rooms } => of(clinic) && rooms.contains(&entry.room),
        }
    }

    /// Whether this view gets `called` when a ticket is admitted.
    pub fn gets_calls(&self) -> bool {
        matches!(self, View::Tickets(_))
    }

    /// The entry as this view may see it.
    fn entry(&self, entry: &Waiting) -> QueueEntry {
        match self {
            View::Tickets(_) => QueueEntry {
                ticket: entry.ticket.clone(),
                room: None,
                patient: None,
                since: entry.since.clone(),
                online: None,
                paid: None,
            },
            View::Full | View::Clinic(_) | View::Listed { .. } => QueueEntry {
                ticket: entry.ticket.clone(),
                room: Some(entry.room.clone()),
                patient: Some(UserRef { id: entry.patient.id.clone(), name: entry.patient.name.clone() }),
                since: entry.since.clone(),
                online: Some(entry.online()),
                paid: Some(entry.paid),
            },
        }
    }
}

/// The state of one queue.
#[derive(Debug)]
pub struct QueueState {
    name: String,
    /// Waiting patients in check-in order.
    waiting: Vec<Waiting>,
    /// Admitted patients who have not joined their consultation yet, by
    /// room: their ticket and clinic, for the displays' `called`.
    admitted: HashMap<String, Waiting>,
    /// Sessions watching, and how each may see the queue.
    watchers: BTreeMap<Arc<str>, View>,
    /// The expected length of one consultation.
    per_consultation: Duration,
}

impl QueueState {
    pub fn new(name: impl Into<String>, per_consultation: Duration) -> Self {
        QueueState {
            name: name.into(),
            waiting: Vec::new(),
            admitted: HashMap::new(),
            watchers: BTreeMap::new(),
            per_consultation,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Somebody waits, or was just admitted: the queue is in use.
    pub fn has_entries(&self) -> bool {
        !self.waiting.is_empty() || !self.admitted.is_empty()
    }

    /// Nobody waits, nobody was just admitted and nobody watches.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.admitted.is_empty() && self.watchers.is_empty()
    }

    pub fn set_per_consultation(&mut self, per_consultation: Duration) {
        self.per_consultation = per_consultation;
    }

    /// Adds a stored entry (at start, or a fresh check-in), in order.
    pub fn add(&mut self, entry: Waiting) {
        let at =
            self.waiting.partition_point(|w| (w.since.as_str(), w.ticket.as_str()) <= (&entry.since, &entry.ticket));
        self.waiting.insert(at, entry);
    }

    /// Adds a stored admitted entry whose patient has not shown up yet.
    pub fn add_admitted(&mut self, entry: Waiting) {
        self.admitted.insert(entry.room.clone(), entry);
    }

    pub fn waiting(&self, room: &str) -> Option<&Waiting> {
        self.waiting.iter().find(|w| w.room == room)
    }

    pub fn is_admitted(&self, room: &str) -> bool {
        self.admitted.contains_key(room)
    }

    /// A session of the patient checked in (again). Returns whether the
    /// entry was offline before, i.e. a grace period ends.
    pub fn attach(&mut self, room: &str, session: Arc<str>) -> bool {
        let Some(entry) = self.waiting.iter_mut().find(|w| w.room == room) else { return false };
        let was_offline = !entry.online();
        if !entry.sessions.contains(&session) {
            entry.sessions.push(session);
        }
        was_offline
    }

    pub fn watch(&mut self, session: Arc<str>, view: View) {
        self.watchers.insert(session, view);
    }

    /// A session ended: it stops watching and leaves the entries it was
    /// checked in to. Returns the rooms whose patients went offline.
    pub fn session_gone(&mut self, session: &str) -> Vec<String> {
        self.watchers.remove(session);
        let mut offline = Vec::new();
        for entry in &mut self.waiting {
            let before = entry.sessions.len();
            entry.sessions.retain(|s| &**s != session);
            if before > 0 && !entry.online() {
                offline.push(entry.room.clone());
            }
        }
        offline
    }

    /// The rooms whose patient has a session checked in on this node.
    pub fn online_here(&self) -> Vec<String> {
        let mut rooms: Vec<String> =
            self.waiting.iter().filter(|w| !w.sessions.is_empty()).map(|w| w.room.clone()).collect();
        rooms.sort();
        rooms
    }

    /// Takes which rooms' patients are online on other nodes. Returns the
    /// rooms whose patient went offline everywhere, and those that came
    /// online (both: entries whose `online` changed).
    pub fn set_elsewhere(&mut self, online: &std::collections::HashSet<String>) -> (Vec<String>, Vec<String>) {
        let (mut went, mut came) = (Vec::new(), Vec::new());
        for entry in &mut self.waiting {
            let before = entry.online();
            entry.elsewhere = online.contains(&entry.room);
            match (before, entry.online()) {
                (true, false) => went.push(entry.room.clone()),
                (false, true) => came.push(entry.room.clone()),
                _ => {}
            }
        }
        (went, came)
    }

    /// Replaces the line with what storage says now (another node changed
    /// it), keeping this node's sessions and what is known of the others.
    /// Returns the waiting rooms that left the line and those that joined it.
    pub fn sync(&mut self, waiting: Vec<Waiting>, admitted: Vec<Waiting>) -> (Vec<String>, Vec<String>) {
        let mut old: HashMap<String, Waiting> = self.waiting.drain(..).map(|w| (w.room.clone(), w)).collect();
        let mut added = Vec::new();
        for mut entry in waiting {
            match old.remove(&entry.room) {
                Some(known) => {
                    entry.sessions = known.sessions;
                    entry.elsewhere = known.elsewhere;
                }
                None => added.push(entry.room.clone()),
            }
            self.add(entry);
        }
        let removed = old.into_keys().collect();
        self.admitted = admitted.into_iter().map(|w| (w.room.clone(), w)).collect();
        (removed, added)
    }

    /// Takes a waiting patient's payment state; returns whether it changed.
    pub fn set_paid(&mut self, room: &str, paid: bool) -> bool {
        let Some(entry) = self.waiting.iter_mut().find(|w| w.room == room) else { return false };
        let changed = entry.paid != paid;
        entry.paid = paid;
        changed
    }

    /// The watchers who see the waiting patient of `room` with names (not
    /// displays): they hear of its payment.
    pub fn payment_watchers(&self, room: &str) -> Vec<&Arc<str>> {
        let Some(entry) = self.waiting(room) else { return Vec::new() };
        self.watchers.iter().filter(|(_, v)| !v.gets_calls() && v.shows(entry)).map(|(s, _)| s).collect()
    }

    /// The displays that hear tickets of `clinic` called.
    pub fn displays_of(&self, clinic: Option<&str>) -> Vec<&Arc<str>> {
        self.watchers
            .iter()
            .filter(|(_, v)| matches!(v, View::Tickets(c) if Some(c.as_str()) == clinic))
            .map(|(s, _)| s)
            .collect()
    }

    /// The sessions of this node checked in for `room`.
    pub fn sessions_for(&self, room: &str) -> Vec<Arc<str>> {
        self.waiting(room).map(|w| w.sessions.clone()).unwrap_or_default()
    }

    /// The checked-in sessions of `room`'s patient, waiting or admitted.
    pub fn sessions_of_entry(&self, room: &str) -> Vec<Arc<str>> {
        self.waiting(room).or_else(|| self.admitted.get(room)).map(|w| w.sessions.clone()).unwrap_or_default()
    }

    /// Takes a patient out of the waiting list (admitted, or gone for good).
    pub fn remove(&mut self, room: &str) -> Option<Waiting> {
        let at = self.waiting.iter().position(|w| w.room == room)?;
        Some(self.waiting.remove(at))
    }

    /// Moves a waiting patient to the admitted ones. Returns the entry.
    pub fn admit(&mut self, room: &str) -> Option<Waiting> {
        let entry = self.remove(room)?;
        self.admitted.insert(room.to_owned(), entry.clone());
        Some(entry)
    }

    /// The admitted patient showed up, or will not any more.
    pub fn settle(&mut self, room: &str) -> Option<Waiting> {
        self.admitted.remove(room)
    }

    /// Every waiting patient's place, in order.
    pub fn places(&self) -> Vec<(&Waiting, Place)> {
        let per = self.per_consultation.as_secs();
        self.waiting
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let ahead = u32::try_from(i).unwrap_or(u32::MAX);
                (entry, Place { position: ahead.saturating_add(1), ahead, eta_s: u64::from(ahead) * per })
            })
            .collect()
    }

    pub fn place_of(&self, room: &str) -> Option<(&Waiting, Place)> {
        self.places().into_iter().find(|(w, _)| w.room == room)
    }

    /// The `queue` frame for a patient.
    pub fn queue_frame(&self, entry: &Waiting, place: Place, reference: Option<String>) -> ServerFrame {
        ServerFrame::Queue {
            reference,
            queue: self.name.clone(),
            room: entry.room.clone(),
            ticket: entry.ticket.clone(),
            position: place.position,
            ahead: place.ahead,
            eta_s: place.eta_s,
        }
    }

    /// The queue as `view` may see it.
    pub fn state_frame(&self, view: &View, reference: Option<String>) -> ServerFrame {
        let entries = self.waiting.iter().filter(|w| view.shows(w)).map(|w| view.entry(w)).collect();
        ServerFrame::QueueState { reference, queue: self.name.clone(), entries }
    }

    /// Every watcher, grouped by view, so each view is serialized once.
    pub fn watchers_by_view(&self) -> BTreeMap<&View, Vec<&Arc<str>>> {
        let mut groups: BTreeMap<&View, Vec<&Arc<str>>> = BTreeMap::new();
        for (session, view) in &self.watchers {
            groups.entry(view).or_default().push(session);
        }
        groups
    }

    /// The sessions that follow the queue here, each with what it would
    /// lose if the queue went away: a watch, or its check-in for a
    /// consultation still waiting. (An admitted patient is told to join
    /// the consultation already and follows the queue no further.)
    pub fn followers(&self, queue: &QueueId) -> Vec<(&Arc<str>, Lost)> {
        let watchers = self.watchers.keys().map(|session| (session, Lost::Watch(queue.clone())));
        let waiting = self
            .waiting
            .iter()
            .flat_map(|entry| entry.sessions.iter().map(|session| (session, Lost::CheckIn(entry.room.clone()))));
        watchers.chain(waiting).collect()
    }

    /// The displays that should hear a ticket of `clinic` called.
    pub fn callers_of(&self, entry: &Waiting) -> Vec<&Arc<str>> {
        self.watchers.iter().filter(|(_, v)| v.gets_calls() && v.shows(entry)).map(|(s, _)| s).collect()
    }
}

/// The average of recent consultation lengths, or `default` without any.
pub fn expected_length(recent: &[Duration], default: Duration) -> Duration {
    if recent.is_empty() {
        return default;
    }
    let total: Duration = recent.iter().sum();
    total / u32::try_from(recent.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use telehub_signaling::UserInfo;

    use super::*;

    fn entry(room: &str, ticket: &str, since: &str, clinic: &str) -> Waiting {
        Waiting {
            room: room.into(),
            ticket: ticket.into(),
            clinic: Some(clinic.into()),
            patient: Person { id: format!("p-{room}"), name: format!("Patient {room}") },
            since: since.into(),
            paid: true,
            sessions: vec![],
            elsewhere: false,
        }
    }

    fn who(role: Role, clinic: Option<&str>) -> Identity {
        Identity {
            user: UserInfo { id: "u".into(), name: "U".into(), role },
            clinic: clinic.map(str::to_owned),
            rooms: None,
        }
    }

    fn queue() -> QueueState {
        let mut q = QueueState::new("q-ana", Duration::from_secs(300));
        q.add(entry("c-2", "A-002", "2026-11-25T09:05:00.000Z", "x"));
        q.add(entry("c-1", "A-001", "2026-11-25T09:00:00.000Z", "x"));
        q.add(entry("c-3", "A-003", "2026-11-25T09:10:00.000Z", "y"));
        q
    }

    #[test]
    fn followers_are_the_watchers_and_the_sessions_of_waiting_patients() {
        let mut q = queue();
        let id = QueueId::new(Some("x"), "q-ana");
        assert_eq!(q.followers(&id), vec![], "nobody online, nobody watching");
        q.attach("c-1", "s-1".into());
        q.attach("c-1", "s-1b".into());
        q.attach("c-3", "s-3".into());
        q.watch("board".into(), View::Tickets("x".into()));
        q.add_admitted(Waiting {
            sessions: vec!["s-4".into()],
            ..entry("c-4", "A-004", "2026-11-25T08:00:00.000Z", "x")
        });
        let followers: Vec<(&str, Lost)> = q.followers(&id).into_iter().map(|(s, l)| (&**s, l)).collect();
        assert_eq!(
            followers,
            [
                ("board", Lost::Watch(id.clone())),
                ("s-1", Lost::CheckIn("c-1".into())),
                ("s-1b", Lost::CheckIn("c-1".into())),
                ("s-3", Lost::CheckIn("c-3".into())),
            ]
        );
    }

    #[test]
    fn places_follow_check_in_order_with_an_eta_per_patient_ahead() {
        let q = queue();
        let places: Vec<(String, Place)> = q.places().into_iter().map(|(w, p)| (w.ticket.clone(), p)).collect();
        assert_eq!(
            places,
            vec![
                ("A-001".into(), Place { position: 1, ahead: 0, eta_s: 0 }),
                ("A-002".into(), Place { position: 2, ahead: 1, eta_s: 300 }),
                ("A-003".into(), Place { position: 3, ahead: 2, eta_s: 600 }),
            ]
        );
    }

    #[test]
    fn admitting_moves_everyone_up() {
        let mut q = queue();
        let admitted = q.admit("c-1").unwrap();
        assert_eq!(admitted.ticket, "A-001");
        assert!(q.is_admitted("c-1"));
        assert_eq!(q.place_of("c-3").unwrap().1, Place { position: 2, ahead: 1, eta_s: 300 });
        assert!(q.admit("c-1").is_none(), "not waiting any more");
        assert_eq!(q.settle("c-1").map(|w| w.ticket), Some("A-001".into()));
    }

    #[test]
    fn a_display_sees_only_its_clinics_tickets() {
        let q = queue();
        let view = View::of(&who(Role::Display, Some("x")), false).unwrap();
        let ServerFrame::QueueState { entries, .. } = q.state_frame(&view, None) else { panic!() };
        assert_eq!(entries.iter().map(|e| e.ticket.as_str()).collect::<Vec<_>>(), ["A-001", "A-002"]);
        let json = serde_json::to_string(&entries).unwrap();
        assert!(!json.contains("Patient") && !json.contains("p-c") && !json.contains("c-1"), "{json}");
    }

    #[test]
    fn staff_see_their_clinic_with_names_and_doctors_see_everything() {
        let q = queue();
        let staff = View::of(&who(Role::Staff, Some("y")), false).unwrap();
        let ServerFrame::QueueState { entries, .. } = q.state_frame(&staff, None) else { panic!() };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].patient.as_ref().unwrap().name, "Patient c-3");
        assert_eq!(entries[0].online, Some(false));
        let doctor = View::of(&who(Role::Doctor, None), true).unwrap();
        let ServerFrame::QueueState { entries, .. } = q.state_frame(&doctor, None) else { panic!() };
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn a_rooms_claim_narrows_staff_to_the_listed_consultations() {
        let mut q = queue();
        let mut narrowed = who(Role::Staff, Some("x"));
        narrowed.rooms = Some(vec!["c-2".into(), "c-3".into()]);
        let view = View::of(&narrowed, false).unwrap();
        let ServerFrame::QueueState { entries, .. } = q.state_frame(&view, None) else { panic!() };
        let rooms: Vec<&str> = entries.iter().map(|e| e.room.as_deref().unwrap()).collect();
        assert_eq!(rooms, ["c-2"], "c-3 is of another clinic, c-1 is not listed");
        q.watch("narrowed".into(), view);
        assert!(q.payment_watchers("c-1").is_empty(), "not told of an unlisted payment");
        assert_eq!(q.payment_watchers("c-2").len(), 1);
    }

    #[test]
    fn who_may_watch() {
        assert!(View::of(&who(Role::Doctor, None), false).is_err());
        assert!(View::of(&who(Role::Staff, None), false).is_err());
        assert!(View::of(&who(Role::Display, None), false).is_err());
        assert!(View::of(&who(Role::Patient, Some("x")), true).is_err());
    }

    #[test]
    fn the_last_session_going_makes_the_patient_offline() {
        let mut q = queue();
        assert!(q.attach("c-2", "s1".into()), "was offline");
        assert!(!q.attach("c-2", "s2".into()));
        assert!(q.session_gone("s1").is_empty());
        assert_eq!(q.session_gone("s2"), vec!["c-2".to_string()]);
        assert!(!q.waiting("c-2").unwrap().online());
    }

    #[test]
    fn a_patient_online_on_another_node_is_online() {
        let mut q = queue();
        q.attach("c-1", "s1".into());
        let elsewhere: std::collections::HashSet<String> = ["c-1".to_owned(), "c-2".to_owned()].into();
        let (went, came) = q.set_elsewhere(&elsewhere);
        assert!(went.is_empty());
        assert_eq!(came, vec!["c-2".to_owned()], "c-1 was online here already");
        assert!(q.session_gone("s1").is_empty(), "still online on the other node");
        let (went, _) = q.set_elsewhere(&Default::default());
        assert_eq!(went, vec!["c-1".to_owned(), "c-2".to_owned()]);
        assert!(q.online_here().is_empty());
    }

    #[test]
    fn a_sync_keeps_this_node_s_sessions() {
        let mut q = queue();
        q.attach("c-2", "s1".into());
        let fresh = vec![
            entry("c-2", "A-002", "2026-11-25T09:05:00.000Z", "x"),
            entry("c-4", "A-004", "2026-11-25T09:20:00.000Z", "x"),
        ];
        let (removed, added) = q.sync(fresh, vec![entry("c-1", "A-001", "2026-11-25T09:00:00.000Z", "x")]);
        let mut removed = removed;
        removed.sort();
        assert_eq!(removed, vec!["c-1".to_owned(), "c-3".to_owned()]);
        assert_eq!(added, vec!["c-4".to_owned()]);
        assert_eq!(q.sessions_for("c-2"), vec![Arc::<str>::from("s1")]);
        assert!(q.is_admitted("c-1"));
        assert_eq!(q.place_of("c-2").unwrap().1.position, 1);
    }

    #[test]
    fn payments_are_told_to_named_watchers_only() {
        let mut q = queue();
        q.watch("d-x".into(), View::Tickets("x".into()));
        q.watch("staff-x".into(), View::Clinic("x".into()));
        q.watch("staff-y".into(), View::Clinic("y".into()));
        q.watch("doctor".into(), View::Full);
        assert!(!q.set_paid("c-1", true), "paid already");
        assert!(q.set_paid("c-1", false));
        let told: Vec<&str> = q.payment_watchers("c-1").iter().map(|s| &***s).collect();
        assert_eq!(told, ["doctor", "staff-x"]);
    }

    #[test]
    fn displays_of_the_clinic_hear_calls() {
        let mut q = queue();
        q.watch("d-x".into(), View::Tickets("x".into()));
        q.watch("d-y".into(), View::Tickets("y".into()));
        q.watch("staff".into(), View::Clinic("x".into()));
        let entry = q.admit("c-1").unwrap();
        assert_eq!(q.callers_of(&entry).iter().map(|s| &***s).collect::<Vec<_>>(), ["d-x"]);
    }

    #[test]
    fn the_expected_length_is_the_recent_average() {
        let d = Duration::from_secs;
        assert_eq!(expected_length(&[], d(600)), d(600));
        assert_eq!(expected_length(&[d(100), d(300)], d(600)), d(200));
    }
}
