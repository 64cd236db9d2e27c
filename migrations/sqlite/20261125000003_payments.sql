-- Payments. A consultation with a price has payment_amount (in the
-- currency's smallest unit, as Stripe counts), payment_currency (ISO 4217,
-- lowercase) and payment_status: unpaid, paid or refunded. Without a price
-- all three are NULL and nothing is owed.
ALTER TABLE consultations ADD COLUMN payment_amount INTEGER;
ALTER TABLE consultations ADD COLUMN payment_currency TEXT;
ALTER TABLE consultations ADD COLUMN payment_status TEXT;

-- Every payment attempt or confirmation, by provider and the provider's
-- reference (a Stripe PaymentIntent or Checkout Session id, a bank
-- transfer's reference). status: pending, succeeded, failed or refunded; it
-- never moves back from succeeded except to refunded.
CREATE TABLE payment_transactions (
    id         TEXT PRIMARY KEY,
    room       TEXT NOT NULL REFERENCES consultations (id),
    provider   TEXT NOT NULL,
    reference  TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    currency   TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (provider, reference)
);
CREATE INDEX payment_transactions_by_room ON payment_transactions (room);

-- Webhook deliveries already handled, so that a redelivery changes nothing.
CREATE TABLE webhook_events (
    provider    TEXT NOT NULL,
    id          TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, id)
);
