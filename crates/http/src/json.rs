//! The JSON body extractor: like actix's, but a value of the wrong type names the field it is
//! in (`members[2]: invalid type…`), which actix's own extractor cannot.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest JSON body accepted, in bytes (app data; 64 KiB when absent).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body is too large (limit {limit} bytes)"))
}

/// Parses `bytes` as `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() && path != "." {
            ApiError::Invalid(format!("{path}: {inner}"))
        } else if inner.is_data() {
            ApiError::Invalid(format!("invalid request body: {inner}"))
        } else {
            ApiError::Invalid(format!("malformed JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::Invalid(format!("malformed JSON: {err}")))?;
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map_or(65_536, |limit| limit.0);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let json = is_json(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::Invalid(
                    "expected a JSON body with Content-Type: application/json".into(),
                ));
            }
            if declared.is_some_and(|length| length > limit) {
                return Err(too_large(limit));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|err| ApiError::Invalid(format!("unreadable request body: {err}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(Json)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        kind: Kind,
        members: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Channel,
    }

    fn error(json: &str) -> String {
        parse::<Body>(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            error(r#"{"kind":"party","members":[]}"#).starts_with("kind: unknown variant `party`")
        );
        assert!(error(r#"{"kind":"channel","members":["a",2]}"#)
            .starts_with("members[1]: invalid type"));
        assert!(error(r#"{"kind":"channel"}"#).contains("missing field `members`"));
        assert!(error(r#"{"kind":"#).starts_with("malformed JSON"));
        assert!(error(r#"{"kind":"channel","members":[]} trailing"#).starts_with("malformed JSON"));
    }
}
