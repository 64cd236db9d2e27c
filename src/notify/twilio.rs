//! SMS through Twilio's Messages API, and the check of its status
//! callbacks.
//!
//! There is no maintained Rust SDK, and the API needed is one form POST:
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP Basic
//! `sid:token` and the fields `To`, `From` (or `MessagingServiceSid`),
//! `Body` and `StatusCallback`. Twilio answers 201 with the message's
//! `sid`, or an error `{"code", "message", "more_info", "status"}`.
//!
//! Twilio signs each callback with `X-Twilio-Signature`: base64 of an
//! HMAC-SHA1, keyed with the auth token, of the URL Twilio called followed
//! by every form parameter, sorted by name, as name and value.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;

use super::SendError;

/// Twilio error codes that no retry can fix: the number is invalid, not a
/// mobile, unreachable or opted out, or the account may not send there.
const PERMANENT: [i64; 9] = [21211, 21214, 21217, 21408, 21610, 21612, 21614, 21606, 21659];

/// A Twilio account that sends SMS.
pub struct Twilio {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: String,
    from: String,
    status_callback: String,
}

/// What Twilio says of a message it took.
#[derive(Debug, Deserialize)]
struct Created {
    sid: String,
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct Refusal {
    code: Option<i64>,
    message: Option<String>,
}

impl Twilio {
    /// `status_callback` is where Twilio reports on each message.
    pub fn new(
        api_base: &str,
        account_sid: &str,
        auth_token: &str,
        from: &str,
        status_callback: String,
    ) -> anyhow::Result<Twilio> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        let messages_url =
            format!("{}/2010-04-01/Accounts/{account_sid}/Messages.json", api_base.trim_end_matches('/'));
        Ok(Twilio {
            http,
            messages_url,
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
            status_callback,
        })
    }

    /// Sends `body` to `to` (E.164); returns Twilio's message SID.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        // A Messaging Service picks the sender itself.
        let from_field = if self.from.starts_with("MG") { "MessagingServiceSid" } else { "From" };
        let form =
            [("To", to), (from_field, self.from.as_str()), ("Body", body), ("StatusCallback", &self.status_callback)];
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|err| SendError::transient(format!("Twilio unreachable: {err}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str::<Created>(&text)
                .map(|created| created.sid)
                .map_err(|err| SendError::transient(format!("Twilio answered {status} without a sid: {err}")));
        }
        let refusal: Refusal = serde_json::from_str(&text).unwrap_or(Refusal { code: None, message: None });
        let error = format!(
            "Twilio {} {}: {}",
            status.as_u16(),
            refusal.code.map(|c| c.to_string()).unwrap_or_default(),
            refusal.message.as_deref().unwrap_or(text.trim())
        );
        // Rate limits and Twilio's own failures pass; a refusal of this
        // message (a bad number, an opt-out) will not.
        let retry = status.as_u16() == 429 || status.is_server_error() || refusal.code == Some(20429);
        let permanent = refusal.code.is_some_and(|c| PERMANENT.contains(&c)) || (status.is_client_error() && !retry);
        Err(if permanent { SendError::permanent(error) } else { SendError::transient(error) })
    }
}

/// The `X-Twilio-Signature` of a request to `url` with form `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    // By name, then value; a repeated name and value counts once, as in
    // Twilio's own helper libraries.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` signs a request to `url` with `params`. Twilio may sign
/// the URL with or without the scheme's default port, so both are tried;
/// the comparison takes the same time wherever the strings differ.
pub fn verify(auth_token: &str, header: Option<&str>, url: &str, params: &[(String, String)]) -> bool {
    let Some(header) = header else { return false };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else { return false };
    url_variants(url).iter().any(|url| {
        let expected = base64::engine::general_purpose::STANDARD
            .decode(signature(auth_token, url, params))
            .expect("our own base64");
        constant_time_eq(&expected, &given)
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `url` as given, and with its scheme's default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        let Some(rest) = url.strip_prefix(scheme) else { continue };
        let (host, path) = rest.find(['/', '?']).map_or((rest, ""), |i| rest.split_at(i));
        match host.strip_suffix(port) {
            Some(bare) => variants.push(format!("{scheme}{bare}{path}")),
            None if !host.contains(':') => variants.push(format!("{scheme}{host}{port}{path}")),
            None => {}
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Twilio's published example of request validation.
    fn example() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn matches_twilios_published_example() {
        assert_eq!(signature("12345", URL, &example()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let mut shuffled = example();
        shuffled.reverse();
        assert!(verify("12345", Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="), URL, &shuffled), "order does not matter");
    }

    #[test]
    fn repeated_parameters_sort_by_value_and_count_once() {
        let repeated = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(signature("12345", URL, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn forgeries_fail() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let mut tampered = example();
        tampered[2].1 = "9999".into();
        assert!(!verify("12345", Some(good), URL, &tampered));
        assert!(!verify("54321", Some(good), URL, &example()), "another token");
        assert!(!verify("12345", Some(good), &format!("{URL}&x=1"), &example()), "another URL");
        assert!(!verify("12345", None, URL, &example()));
        assert!(!verify("12345", Some("not base64 !"), URL, &example()));
    }

    #[test]
    fn the_default_port_may_be_in_the_signed_url_or_not() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed = signature("12345", with_port, &example());
        assert!(verify("12345", Some(&signed), URL, &example()), "signed with :443, checked without");
        let signed = signature("12345", URL, &example());
        assert!(verify("12345", Some(&signed), with_port, &example()), "signed without, checked with");
        assert_eq!(url_variants("http://h:8080/x"), vec!["http://h:8080/x".to_owned()], "other ports stay");
    }
}
