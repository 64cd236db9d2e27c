-- Telehub schema for SQLite, the embedded default.
-- Times are RFC 3339 UTC strings with milliseconds, so they sort as text.

CREATE TABLE consultations (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    clinic        TEXT,
    queue         TEXT NOT NULL,
    scheduled_at  TEXT,
    media_mode    TEXT NOT NULL DEFAULT 'p2p',
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    ended_at      TEXT
);

-- Who takes part in a consultation: its patient and its doctor.
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

-- Chat messages, kept in arrival order (the rowid), so that a batch of
-- messages from many rooms appends to the end of the table and only the
-- (room, seq) index takes writes scattered over many pages. `seq` is gapless
-- per room. Sending is idempotent by (room, sender, client_id): on SQLite
-- the store's single writer enforces that (see src/store/sqlite.rs), because
-- a second scattered index on every insert halved its throughput.
CREATE TABLE messages (
    rowid       INTEGER PRIMARY KEY,
    room        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    client_id   TEXT,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_by_room ON messages (room, seq);

CREATE TABLE read_markers (
    room       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    room    TEXT,
    user_id TEXT,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_room ON audit_log (room, id);
CREATE INDEX audit_by_user ON audit_log (user_id, id);
