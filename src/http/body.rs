//! Request bodies that actix-web's own extractors would not answer with the
//! API's errors: an optional JSON body, and a raw body under the API's size
//! limit.

use std::future::{Future, ready};
use std::pin::Pin;

use actix_web::dev::JsonBody;
use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use telehub_signaling::ErrorCode;

use super::MAX_BODY;
use super::error::{ApiError, body_error};

type Pending<T, E> = Pin<Box<dyn Future<Output = Result<T, E>>>>;

/// A JSON body that may be left out. A request without a body gives
/// `None`; a body that is there is read like [`Json`], so malformed JSON,
/// a wrong content type or an unknown field is still `400` (not `None`,
/// which is what `Option<Json<T>>` would make of any error).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = Pending<Self, Self::Error>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let headers = req.headers();
        let empty = match headers.get(CONTENT_LENGTH) {
            Some(length) => length.as_bytes() == b"0",
            None => !headers.contains_key(TRANSFER_ENCODING),
        };
        if empty {
            return Box::pin(ready(Ok(OptionalJson(None))));
        }
        // Read here rather than through `Json`, whose errors pass the
        // authenticated routes' handler: this body is for public routes.
        let json = JsonBody::<T>::new(req, payload, None, true).limit(MAX_BODY);
        Box::pin(async move { Ok(OptionalJson(Some(json.await.map_err(body_error)?))) })
    }
}

/// The body as bytes, at most [`MAX_BODY`] of them: over that it is `413`
/// `too_large` in the API's error shape, like a JSON body.
pub struct RawBody(pub Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pending<Self, Self::Error>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let too_large = || ApiError::new(ErrorCode::TooLarge, format!("body over {MAX_BODY} bytes"));
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY) {
            return Box::pin(ready(Err(too_large())));
        }
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|err| ApiError::bad_request(format!("reading the body: {err}")))?;
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(RawBody(body.freeze()))
        })
    }
}
