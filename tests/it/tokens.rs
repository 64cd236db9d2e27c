//! Asymmetric client tokens: RS256 and ES256 with a configured public key.
//! The keys in tests/fixtures are test keys made for these tests only.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn claims() -> serde_json::Value {
    json!({"sub": "u1", "name": "Ana", "role": "doctor", "exp": chrono::Utc::now().timestamp() + 600})
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_public_key_only() {
    for (alg, algorithm, key) in [("RS256", Algorithm::RS256, "rs256"), ("ES256", Algorithm::ES256, "es256")] {
        let public = fixture(&format!("{key}-public.pem"));
        let app = spawn_app_with(|s| {
            s.jwt_algorithm = alg.into();
            s.jwt_public_key = Some(public.clone());
            s.jwt_secret = None;
        })
        .await;
        let private = std::fs::read(fixture(&format!("{key}-private.pem"))).unwrap();
        let encoding = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let good = jsonwebtoken::encode(&Header::new(algorithm), &claims(), &encoding).unwrap();
        let client = Client::connect(&app, &good).await;
        assert!(client.session.starts_with("s_"), "{alg}");
        // An HS256 token is refused, whatever its secret, even the public
        // key's own text (the classic algorithm-confusion attack).
        let public_text = std::fs::read_to_string(&public).unwrap();
        for secret in [SECRET, public_text.as_str()] {
            let confused = token_with(claims(), secret);
            let (status, body) = refused_upgrade(&app.ws_url(&confused)).await;
            assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{alg}");
        }
        // The hub cannot sign tokens without a private key.
        let (status, body) = app.post("/v1/tokens", json!({"sub": "u", "name": "U", "role": "patient"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{alg}");
        app.stop().await;
    }
}
