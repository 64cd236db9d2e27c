-- Who ended a consultation (a user, or the hub for a no-show), so that a
-- node that catches up with an end it did not hear of can say who it was.
ALTER TABLE consultations ADD COLUMN ended_by_id TEXT;
ALTER TABLE consultations ADD COLUMN ended_by_name TEXT;
