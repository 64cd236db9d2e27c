-- Telehub schema for PostgreSQL, the store of a cluster. It has the tables
-- of the SQLite schema (migrations/sqlite), with two differences that come
-- from several nodes writing at once:
-- - each consultation keeps its last `seq`, and a writer takes the next
--   numbers under that row's lock, inside the transaction that stores the
--   messages: numbers are gapless and unique whichever node writes;
-- - idempotency is a unique index on (room, sender_id, client_id), since no
--   node's memory sees every write.
-- Times are RFC 3339 UTC strings with milliseconds, as in SQLite, so that
-- both stores read and write them alike; they sort correctly as text.

CREATE TABLE consultations (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    clinic        TEXT,
    queue         TEXT NOT NULL,
    scheduled_at  TEXT,
    media_mode    TEXT NOT NULL DEFAULT 'p2p',
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    ended_at      TEXT,
    last_seq      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX consultations_by_queue ON consultations (queue, ended_at);

CREATE TABLE members (
    consultation_id TEXT NOT NULL REFERENCES consultations (id),
    role            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    phone           TEXT,
    email           TEXT,
    PRIMARY KEY (consultation_id, role)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE messages (
    room        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    client_id   TEXT,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (room, sender_id, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE read_markers (
    room       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT NOT NULL,
    room    TEXT,
    user_id TEXT,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_room ON audit_log (room, id);
CREATE INDEX audit_by_user ON audit_log (user_id, id);

-- The waiting room (see migrations/sqlite/20261125000002_waiting_room.sql).
CREATE TABLE queue_entries (
    room          TEXT PRIMARY KEY REFERENCES consultations (id),
    queue         TEXT NOT NULL,
    ticket        TEXT NOT NULL,
    state         TEXT NOT NULL,
    checked_in_at TEXT NOT NULL,
    changed_at    TEXT NOT NULL
);
CREATE INDEX queue_entries_by_queue ON queue_entries (queue, state);

CREATE TABLE queue_days (
    queue  TEXT NOT NULL,
    day    TEXT NOT NULL,
    clinic TEXT,
    letter TEXT NOT NULL,
    last   INTEGER NOT NULL,
    PRIMARY KEY (queue, day)
);
CREATE INDEX queue_days_by_clinic ON queue_days (clinic, day);
