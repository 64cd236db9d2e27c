-- Providers' reports on a message that came before the hub recorded the
-- message's reference (Twilio can call back before its answer to the send
-- has been stored). The report waits here and is applied when the send is
-- recorded; reports older than a day are pruned.
CREATE TABLE notification_reports (
    channel      TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    state        TEXT NOT NULL,
    last_error   TEXT,
    reported_at  TEXT NOT NULL,
    PRIMARY KEY (channel, provider_ref)
);
CREATE INDEX notification_reports_age ON notification_reports (reported_at);
