-- Queues are scoped by clinic: queue `general` of one clinic and `general`
-- of another are two lines, each with its own ticket counter. The day's
-- counters are keyed by clinic too ('' for consultations without one).
CREATE TABLE queue_days_next (
    clinic TEXT NOT NULL DEFAULT '',
    queue  TEXT NOT NULL,
    day    TEXT NOT NULL,
    letter TEXT NOT NULL,
    last   INTEGER NOT NULL,
    PRIMARY KEY (clinic, queue, day)
);
INSERT INTO queue_days_next (clinic, queue, day, letter, last)
    SELECT COALESCE(clinic, ''), queue, day, letter, last FROM queue_days;
DROP TABLE queue_days;
ALTER TABLE queue_days_next RENAME TO queue_days;
