-- The waiting room: one entry per consultation whose patient checked in.
-- `state` is waiting, admitted, seen, left or no_show (see EntryState in
-- actors/src/store.rs). A patient who checks in again after leaving gets a
-- new ticket and goes to the back of the line.
CREATE TABLE queue_entries (
    room          TEXT PRIMARY KEY REFERENCES consultations (id),
    queue         TEXT NOT NULL,
    ticket        TEXT NOT NULL,
    state         TEXT NOT NULL,
    checked_in_at TEXT NOT NULL,
    changed_at    TEXT NOT NULL
);
CREATE INDEX queue_entries_by_queue ON queue_entries (queue, state);

-- Ticket numbers per queue and day: `A-012` is the twelfth check-in of the
-- day in the clinic's first queue of that day (letters go by the order in
-- which a clinic's queues first take a ticket that day).
CREATE TABLE queue_days (
    queue  TEXT NOT NULL,
    day    TEXT NOT NULL,
    clinic TEXT,
    letter TEXT NOT NULL,
    last   INTEGER NOT NULL,
    PRIMARY KEY (queue, day)
);
CREATE INDEX queue_days_by_clinic ON queue_days (clinic, day);

-- ETAs average the lengths of a queue's recent consultations.
CREATE INDEX consultations_by_queue ON consultations (queue, ended_at);
