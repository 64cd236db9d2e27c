//! Payments: what a Stripe webhook or a confirmed bank transfer does to a
//! consultation.
//!
//! A consultation with a price starts `unpaid`, and its patient cannot be
//! admitted until it is `paid` (or staff override). Payments reach the hub
//! two ways: Stripe tells it through a signed webhook, or staff confirm a
//! bank transfer through the API. Either becomes a [`NewPayment`]; the store
//! records it and says whether the consultation's state changed
//! ([`Store::record_payment`](crate::store::Store::record_payment)), and if
//! it did, the room and its queue's watchers hear at once.
//!
//! The webhook's signature is checked here, over the raw body, as Stripe
//! documents it: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where
//! each `v1` is an HMAC-SHA256 of `"{t}.{body}"` keyed with the endpoint's
//! secret; any matching `v1` will do, compared in constant time, and the
//! timestamp must be within five minutes.

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use telehub_signaling::{PaymentStatus, format_time};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::{NewPayment, Price, TxStatus};

/// How far a webhook's timestamp may be from now.
pub const TOLERANCE_S: i64 = 300;

/// Why a webhook signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no t= or no v1=")]
    Malformed,
    #[error("the signature's timestamp is more than {TOLERANCE_S} s away from now")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Checks a Stripe webhook's signature header over the raw body.
pub fn verify_stripe(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v1)) => signatures.push(v1),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // `abs_diff`: a timestamp far from now (even i64::MIN) is stale, never an overflow.
    if now.abs_diff(timestamp) > TOLERANCE_S.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let matches =
        signatures.iter().filter_map(|v1| hex::decode(v1).ok()).any(|v1| mac.clone().verify_slice(&v1).is_ok());
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// What a verified Stripe event asks of the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum StripeAction {
    /// Record this payment.
    Record(NewPayment),
    /// Nothing to do, and why.
    Ignore(String),
}

/// Reads a verified Stripe event. The consultation is the Checkout
/// Session's `client_reference_id`, or a PaymentIntent's
/// `metadata.consultation`; a Checkout Session is recorded under its
/// PaymentIntent when it has one, so that the session and the intent's own
/// events are one transaction.
pub fn read_stripe_event(event: &Value) -> Result<(String, StripeAction), String> {
    let id = event["id"].as_str().ok_or("the event has no id")?.to_owned();
    let kind = event["type"].as_str().ok_or("the event has no type")?;
    let object = &event["data"]["object"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let action = match kind {
        "checkout.session.completed" => {
            if object["payment_status"].as_str() != Some("paid") {
                StripeAction::Ignore(format!("checkout session not paid ({})", object["payment_status"]))
            } else {
                let room = text(&object["client_reference_id"]).ok_or("the session has no client_reference_id")?;
                let reference =
                    text(&object["payment_intent"]).or_else(|| text(&object["id"])).ok_or("the session has no id")?;
                let amount = object["amount_total"].as_i64().ok_or("the session has no amount_total")?;
                let currency = text(&object["currency"]).ok_or("the session has no currency")?;
                StripeAction::Record(payment(room, reference, amount, currency, TxStatus::Succeeded))
            }
        }
        "payment_intent.succeeded" | "payment_intent.payment_failed" => {
            let Some(room) = text(&object["metadata"]["consultation"]) else {
                return Ok((id, StripeAction::Ignore("the intent has no metadata.consultation".into())));
            };
            let reference = text(&object["id"]).ok_or("the intent has no id")?;
            let amount = object["amount_received"]
                .as_i64()
                .filter(|a| *a > 0)
                .or_else(|| object["amount"].as_i64())
                .ok_or("the intent has no amount")?;
            let currency = text(&object["currency"]).ok_or("the intent has no currency")?;
            let status = if kind == "payment_intent.succeeded" { TxStatus::Succeeded } else { TxStatus::Failed };
            StripeAction::Record(payment(room, reference, amount, currency, status))
        }
        other => StripeAction::Ignore(format!("{other} is not an event the hub acts on")),
    };
    Ok((id, action))
}

fn payment(room: String, reference: String, amount: i64, currency: String, status: TxStatus) -> NewPayment {
    NewPayment {
        room,
        provider: "stripe".into(),
        reference,
        price: Price { amount, currency: currency.to_ascii_lowercase() },
        status,
        at: format_time(Utc::now()),
    }
}

/// Records a payment; when the consultation's state changed, tells its room
/// and its queue's watchers. Returns the new state, if it changed.
pub async fn apply(app: &AppState, payment: NewPayment) -> Result<Option<PaymentStatus>, ApiError> {
    let room = payment.room.clone();
    let change = app.store.record_payment(payment).await?;
    if let Some(status) = change {
        app.rooms.payment(&room, status).await?;
    }
    Ok(change)
}

/// Stripe's API, for Checkout Sessions, PaymentIntents and refunds.
///
/// Requests are async-stripe's typed builders (so the form encoding, the
/// auth and the idempotency key are Stripe's), read back into the few
/// fields the hub uses: the full typed objects insist on every field Stripe
/// documents, which stand-ins and older API versions do not all send.
pub struct StripeApi {
    client: stripe::Client,
    timeout: std::time::Duration,
}

/// How long a call to Stripe may take before it is given up (the client
/// has no timeout of its own). Every call carries an idempotency key, so
/// trying again after a timeout makes nothing twice.
pub const STRIPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A Checkout Session: where to send the patient.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Checkout {
    pub id: String,
    pub url: Option<String>,
}

/// A PaymentIntent, for Stripe Elements on the clinic's own page.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Intent {
    pub id: String,
    pub client_secret: Option<String>,
}

/// A refund.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Refund {
    pub id: String,
    pub status: Option<String>,
}

/// Why Stripe could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("Stripe: {0}")]
pub struct StripeFailure(String);

impl StripeApi {
    /// A client for `secret_key` at `base` (`https://api.stripe.com`, or a
    /// stand-in).
    pub fn new(secret_key: &str, base: &str) -> anyhow::Result<StripeApi> {
        Self::with_timeout(secret_key, base, STRIPE_TIMEOUT)
    }

    /// The same with another bound on each call.
    pub fn with_timeout(secret_key: &str, base: &str, timeout: std::time::Duration) -> anyhow::Result<StripeApi> {
        let client = stripe::ClientBuilder::new(secret_key)
            .url(base.trim_end_matches('/'))
            .build()
            .map_err(|err| anyhow::anyhow!("cannot make a Stripe client: {err}"))?;
        Ok(StripeApi { client, timeout })
    }

    /// Waits for a call to Stripe, giving up after the timeout.
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StripeFailure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|err| StripeFailure(err.to_string())),
            Err(_) => Err(StripeFailure(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    fn currency(price: &Price) -> Result<stripe_types::Currency, StripeFailure> {
        price
            .currency
            .parse()
            .map_err(|_| StripeFailure(format!("Stripe does not know the currency {}", price.currency)))
    }

    /// The same key for every attempt to make the same object: a retried
    /// call returns the first object instead of making a second.
    fn key(what: &str, room: &str, price: &Price) -> Result<stripe::IdempotencyKey, StripeFailure> {
        stripe::IdempotencyKey::new(format!("telehub-{what}-{room}-{}-{}", price.amount, price.currency))
            .map_err(|err| StripeFailure(err.to_string()))
    }

    /// A Checkout Session for the consultation's price; its
    /// `client_reference_id` is the consultation, which the
    /// `checkout.session.completed` webhook names.
    pub async fn checkout(
        &self,
        room: &str,
        item: &str,
        price: &Price,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<Checkout, StripeFailure> {
        use stripe::StripeRequest;
        use stripe_checkout::checkout_session::{
            CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData, ProductData,
        };
        let mut data = CreateCheckoutSessionLineItemsPriceData::new(Self::currency(price)?);
        data.unit_amount = Some(price.amount);
        data.product_data = Some(ProductData::new(item));
        let mut line = CreateCheckoutSessionLineItems::new();
        line.price_data = Some(data);
        line.quantity = Some(1);
        let create = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Payment)
            .client_reference_id(room)
            .line_items(vec![line])
            .success_url(success_url)
            .cancel_url(cancel_url);
        let request = create.build().customize::<Checkout>();
        let request =
            request.request_strategy(stripe::RequestStrategy::Idempotent(Self::key("checkout", room, price)?));
        self.bounded(request.send(&self.client)).await
    }

    /// A PaymentIntent for the consultation's price, naming it in
    /// `metadata.consultation` for the webhooks.
    pub async fn intent(&self, room: &str, price: &Price) -> Result<Intent, StripeFailure> {
        use stripe::StripeRequest;
        let metadata = std::collections::HashMap::from([("consultation".to_owned(), room.to_owned())]);
        let create = stripe_core::payment_intent::CreatePaymentIntent::new(price.amount, Self::currency(price)?)
            .metadata(metadata);
        let request = create.build().customize::<Intent>();
        let request = request.request_strategy(stripe::RequestStrategy::Idempotent(Self::key("intent", room, price)?));
        self.bounded(request.send(&self.client)).await
    }

    /// Refunds a PaymentIntent in full.
    pub async fn refund(&self, room: &str, intent: &str) -> Result<Refund, StripeFailure> {
        use stripe::StripeRequest;
        let create = stripe_core::refund::CreateRefund::new().payment_intent(intent);
        let key = stripe::IdempotencyKey::new(format!("telehub-refund-{room}-{intent}"))
            .map_err(|err| StripeFailure(err.to_string()))?;
        let request = create.build().customize::<Refund>().request_strategy(stripe::RequestStrategy::Idempotent(key));
        self.bounded(request.send(&self.client)).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_signature_over_the_raw_body_is_accepted_with_any_v1() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let good = sign(SECRET, 1_000, body);
        let header = format!("t=1000,v1={good}");
        assert_eq!(verify_stripe(SECRET, Some(&header), body, 1_100), Ok(()));
        // Stripe sends several v1 while a secret is rolled: any may match.
        let header = format!("t=1000,v1={},v1={good},v0=abc", "00".repeat(32));
        assert_eq!(verify_stripe(SECRET, Some(&header), body, 1_000), Ok(()));
    }

    #[test]
    fn tampered_bodies_other_secrets_and_old_timestamps_are_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let header = format!("t=1000,v1={}", sign(SECRET, 1_000, body));
        assert_eq!(verify_stripe(SECRET, Some(&header), br#"{"id":"evt_2"}"#, 1_000), Err(SignatureError::Mismatch));
        assert_eq!(verify_stripe("whsec_other", Some(&header), body, 1_000), Err(SignatureError::Mismatch));
        assert_eq!(verify_stripe(SECRET, Some(&header), body, 1_301), Err(SignatureError::Stale));
        assert_eq!(verify_stripe(SECRET, Some(&header), body, 699), Err(SignatureError::Stale));
        assert_eq!(verify_stripe(SECRET, None, body, 1_000), Err(SignatureError::Missing));
        assert_eq!(verify_stripe(SECRET, Some("v1=abc"), body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify_stripe(SECRET, Some("t=1000"), body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify_stripe(SECRET, Some("t=1000,v1=zz"), body, 1_000), Err(SignatureError::Mismatch));
        // Timestamps at the ends of the range are stale, not an overflow.
        for t in [i64::MIN, i64::MAX] {
            assert_eq!(verify_stripe(SECRET, Some(&format!("t={t},v1=00")), body, 1_000), Err(SignatureError::Stale));
        }
        assert_eq!(verify_stripe(SECRET, Some("t=-5,v1=00"), body, i64::MAX), Err(SignatureError::Stale));
    }

    #[test]
    fn checkout_sessions_count_only_when_paid_and_under_their_intent() {
        let event = |status: &str| {
            json!({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {
                "id": "cs_1", "payment_status": status, "client_reference_id": "c-1",
                "payment_intent": "pi_1", "amount_total": 15000, "currency": "IDR"}}})
        };
        let (id, action) = read_stripe_event(&event("paid")).unwrap();
        assert_eq!(id, "evt_1");
        let StripeAction::Record(p) = action else { panic!("{action:?}") };
        assert_eq!((p.room.as_str(), p.reference.as_str(), p.status), ("c-1", "pi_1", TxStatus::Succeeded));
        assert_eq!(p.price, Price { amount: 15000, currency: "idr".into() });
        assert!(matches!(read_stripe_event(&event("unpaid")).unwrap().1, StripeAction::Ignore(_)));
    }

    #[tokio::test]
    async fn a_stripe_that_never_answers_is_given_up() {
        // Accepts connections and reads, but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                sockets.push(socket);
            }
        });
        let api = StripeApi::with_timeout("sk_test_x", &base, std::time::Duration::from_millis(200)).unwrap();
        let err = api.refund("c-1", "pi_1").await.unwrap_err();
        assert!(err.to_string().contains("no answer within 200 ms"), "{err}");
        held.abort();
    }

    #[test]
    fn payment_intents_name_their_consultation_in_metadata() {
        let intent = |kind: &str, metadata: Value| {
            json!({"id": "evt_2", "type": kind, "data": {"object": {
                "id": "pi_2", "amount": 5000, "amount_received": 0, "currency": "usd", "metadata": metadata}}})
        };
        let (_, action) =
            read_stripe_event(&intent("payment_intent.payment_failed", json!({"consultation": "c-2"}))).unwrap();
        let StripeAction::Record(p) = action else { panic!("{action:?}") };
        assert_eq!((p.status, p.price.amount), (TxStatus::Failed, 5000));
        let (_, action) = read_stripe_event(&intent("payment_intent.succeeded", json!({}))).unwrap();
        assert!(matches!(action, StripeAction::Ignore(_)));
        let (_, action) = read_stripe_event(&json!({"id": "evt_3", "type": "customer.created"})).unwrap();
        assert!(matches!(action, StripeAction::Ignore(_)));
        assert!(read_stripe_event(&json!({"type": "x"})).is_err());
    }
}
