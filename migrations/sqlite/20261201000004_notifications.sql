-- Notifications: SMS and email that call a patient in, remind them of a
-- scheduled consultation, or confirm a payment.
--
-- A patient's locale (a BCP 47 tag such as `id` or `en-US`) picks the
-- language of what they are sent.
ALTER TABLE members ADD COLUMN locale TEXT;

-- The outbox. A row is written in the same transaction as the event that
-- causes it (an admission, a scheduled consultation, a payment), then sent
-- by a worker. `state`: pending (due at `due_at`), sending (claimed by
-- `claimed_by` until `lease_until`), sent, delivered, undelivered, failed
-- (after `max_attempts` tries or a permanent refusal; `last_error` says
-- why) or skipped (no longer relevant when it came due). `dedup` makes the
-- same notification of the same event impossible to queue twice.
-- `provider_ref` is Twilio's message SID or the email's Message-ID.
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    room         TEXT NOT NULL REFERENCES consultations (id),
    kind         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    locale       TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    due_at       TEXT NOT NULL,
    lease_until  TEXT,
    claimed_by   TEXT,
    last_error   TEXT,
    provider_ref TEXT,
    dedup        TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    sent_at      TEXT
);
CREATE INDEX notifications_due ON notifications (state, due_at);
CREATE INDEX notifications_by_room ON notifications (room, created_at);
CREATE INDEX notifications_by_ref ON notifications (provider_ref);
