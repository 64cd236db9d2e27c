//! What a notification says, in English and Indonesian.
//!
//! The language is the patient's locale (its primary subtag: `id`,
//! `id-ID` → Indonesian); anything else gets English. SMS texts stay short
//! enough for a couple of segments with the link; emails say the same with
//! a subject line.

use crate::store::{Channel, NotifyKind};

/// The languages there are texts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Indonesian,
}

impl Language {
    /// The language of a BCP 47 locale tag.
    pub fn of(locale: &str) -> Language {
        let primary = locale.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        if primary == "id" || primary == "in" { Language::Indonesian } else { Language::English }
    }
}

/// The facts a text is made from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub patient: &'a str,
    pub doctor: &'a str,
    /// Where the patient joins the consultation.
    pub link: &'a str,
    /// When the consultation is scheduled, for reminders (RFC 3339).
    pub scheduled_at: Option<&'a str>,
    /// What was paid, for receipts: amount in the smallest unit, currency.
    pub paid: Option<(i64, &'a str)>,
}

/// A rendered notification: the subject (emails only) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// Renders `kind` for `channel` in `language`.
pub fn render(kind: NotifyKind, channel: Channel, language: Language, facts: &Facts<'_>) -> Rendered {
    use Language::*;
    use NotifyKind::*;
    let (patient, doctor, link) = (facts.patient, facts.doctor, facts.link);
    let when = facts.scheduled_at.map(readable_time).unwrap_or_default();
    let paid = facts.paid.map(|(amount, currency)| money(amount, currency)).unwrap_or_default();
    let (subject, sms, email) = match (kind, language) {
        (CallIn, English) => (
            "Your doctor is ready for you".to_owned(),
            format!("Telehub: {doctor} is ready for you now. Join your consultation: {link}"),
            format!(
                "Hello {patient},\n\n{doctor} is ready for you now. Join your consultation here:\n{link}\n\n\
                 The link is for you alone; please do not share it."
            ),
        ),
        (CallIn, Indonesian) => (
            "Dokter Anda sudah siap".to_owned(),
            format!("Telehub: {doctor} sudah siap menerima Anda. Masuk ke konsultasi: {link}"),
            format!(
                "Halo {patient},\n\n{doctor} sudah siap menerima Anda sekarang. Masuk ke konsultasi di sini:\n\
                 {link}\n\nTautan ini khusus untuk Anda; mohon jangan dibagikan."
            ),
        ),
        (Reminder, English) => (
            "Reminder: your consultation".to_owned(),
            format!("Telehub: your consultation with {doctor} is at {when}. Join here: {link}"),
            format!(
                "Hello {patient},\n\nThis is a reminder of your consultation with {doctor} at {when}.\n\
                 When it is time, join here:\n{link}"
            ),
        ),
        (Reminder, Indonesian) => (
            "Pengingat: konsultasi Anda".to_owned(),
            format!("Telehub: konsultasi Anda dengan {doctor} pada {when}. Masuk di sini: {link}"),
            format!(
                "Halo {patient},\n\nIni pengingat untuk konsultasi Anda dengan {doctor} pada {when}.\n\
                 Jika sudah waktunya, masuk di sini:\n{link}"
            ),
        ),
        (Receipt, English) => (
            "Payment received".to_owned(),
            format!("Telehub: we received your payment of {paid}. Thank you."),
            format!(
                "Hello {patient},\n\nWe received your payment of {paid} for your consultation with {doctor}. \
                 Thank you.\n\nYour consultation:\n{link}"
            ),
        ),
        (Receipt, Indonesian) => (
            "Pembayaran diterima".to_owned(),
            format!("Telehub: pembayaran Anda sebesar {paid} telah kami terima. Terima kasih."),
            format!(
                "Halo {patient},\n\nPembayaran Anda sebesar {paid} untuk konsultasi dengan {doctor} telah kami \
                 terima. Terima kasih.\n\nKonsultasi Anda:\n{link}"
            ),
        ),
    };
    match channel {
        Channel::Sms => Rendered { subject: String::new(), body: sms },
        Channel::Email => Rendered { subject, body: email },
    }
}

/// `2026-12-01T10:00:00.000Z` as `2026-12-01 10:00 UTC`.
fn readable_time(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(at) => at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => at.to_owned(),
    }
}

/// Currencies that Stripe counts in whole units.
const ZERO_DECIMAL: [&str; 16] =
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];

/// An amount in the currency's smallest unit, as Stripe counts it, for
/// people: `IDR 1500.00`, `JPY 500`.
fn money(amount: i64, currency: &str) -> String {
    let code = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) {
        format!("{code} {amount}")
    } else {
        format!("{code} {}.{:02}", amount / 100, (amount % 100).abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            patient: "Budi",
            doctor: "Dr Ana",
            link: "https://hub.example/patient?room=c-1#token=t",
            scheduled_at: Some("2026-12-01T10:00:00.000Z"),
            paid: Some((15_000_000, "idr")),
        }
    }

    #[test]
    fn the_locale_picks_the_language() {
        assert_eq!(Language::of("id"), Language::Indonesian);
        assert_eq!(Language::of("id-ID"), Language::Indonesian);
        assert_eq!(Language::of("ID_id"), Language::Indonesian);
        assert_eq!(Language::of("en-US"), Language::English);
        assert_eq!(Language::of("fr"), Language::English, "no French texts: English");
        assert_eq!(Language::of(""), Language::English);
    }

    #[test]
    fn every_text_carries_its_facts() {
        for language in [Language::English, Language::Indonesian] {
            let call = render(NotifyKind::CallIn, Channel::Sms, language, &facts());
            assert!(call.body.contains("Dr Ana") && call.body.contains(facts().link), "{call:?}");
            assert!(call.subject.is_empty(), "an SMS has no subject");
            let mail = render(NotifyKind::CallIn, Channel::Email, language, &facts());
            assert!(mail.body.contains("Budi") && mail.body.contains(facts().link) && !mail.subject.is_empty());
            let reminder = render(NotifyKind::Reminder, Channel::Email, language, &facts());
            assert!(reminder.body.contains("2026-12-01 10:00 UTC"), "{reminder:?}");
            let receipt = render(NotifyKind::Receipt, Channel::Email, language, &facts());
            assert!(receipt.body.contains("IDR 150000.00"), "{receipt:?}");
        }
        let id = render(NotifyKind::CallIn, Channel::Email, Language::Indonesian, &facts());
        assert_eq!(id.subject, "Dokter Anda sudah siap");
        assert!(id.body.contains("sudah siap"));
    }

    #[test]
    fn amounts_follow_stripes_units() {
        assert_eq!(money(1999, "usd"), "USD 19.99");
        assert_eq!(money(500, "jpy"), "JPY 500");
        assert_eq!(money(5, "eur"), "EUR 0.05");
    }
}
