-- Queues are scoped by clinic: queue `general` of one clinic and `general`
-- of another are two lines, each with its own ticket counter. The day's
-- counters are keyed by clinic too ('' for consultations without one).
UPDATE queue_days SET clinic = '' WHERE clinic IS NULL;
ALTER TABLE queue_days ALTER COLUMN clinic SET DEFAULT '', ALTER COLUMN clinic SET NOT NULL;
ALTER TABLE queue_days DROP CONSTRAINT queue_days_pkey;
ALTER TABLE queue_days ADD PRIMARY KEY (clinic, queue, day);
DROP INDEX queue_days_by_clinic;
