//! `ProviderFiles`: uploads streamed to Rocket.Chat, downloads streamed back.

use async_trait::async_trait;
use futures::TryStreamExt;
use imgate_domain::model::{FileDownload, FileUpload, Message, ProviderSession};
use imgate_domain::ports::{ProviderError, ProviderFiles};
use imgate_domain::{FileId, RoomId};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::json;

use crate::documents::read;
use crate::mapping::{self, bad, text};
use crate::rest::{classify, transport_error};
use crate::RocketChatProvider;

fn file_part(file: FileUpload) -> Result<(Part, Option<String>), ProviderError> {
    let body = reqwest::Body::wrap_stream(file.body);
    let part = match file.size {
        Some(size) => Part::stream_with_length(body, size),
        None => Part::stream(body),
    }
    .file_name(file.name)
    .mime_str(&file.mime)
    .map_err(|_| ProviderError::Invalid {
        field: "file".into(),
        message: format!("not a MIME type: {}", file.mime),
    })?;
    Ok((part, file.text))
}

#[async_trait]
impl ProviderFiles for RocketChatProvider {
    async fn upload_file(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        file: FileUpload,
    ) -> Result<Message, ProviderError> {
        let version = self.known_version().await?;
        let (part, text_body) = file_part(file)?;
        if !version.uses_media_endpoints() {
            let mut form = Form::new().part("file", part);
            if let Some(text_body) = text_body {
                form = form.text("msg", text_body);
            }
            let request = self
                .rest
                .request(
                    Method::POST,
                    &format!("/api/v1/rooms.upload/{room}"),
                    Some(session),
                )
                .multipart(form);
            let answer = self.rest.send("rooms.upload", request).await?;
            return mapping::message(&read(
                answer
                    .get("message")
                    .ok_or_else(|| bad("the file message"))?,
            ));
        }
        let request = self
            .rest
            .request(
                Method::POST,
                &format!("/api/v1/rooms.media/{room}"),
                Some(session),
            )
            .multipart(Form::new().part("file", part));
        let uploaded = self.rest.send("rooms.media", request).await?;
        let file_id = uploaded
            .get("file")
            .and_then(|f| text(f, "_id"))
            .ok_or_else(|| bad("the uploaded file id"))?;
        let confirm = self
            .rest
            .request(
                Method::POST,
                &format!("/api/v1/rooms.mediaConfirm/{room}/{file_id}"),
                Some(session),
            )
            .json(&json!({"msg": text_body.unwrap_or_default()}));
        let answer = self.rest.send("rooms.mediaConfirm", confirm).await?;
        mapping::message(&read(
            answer
                .get("message")
                .ok_or_else(|| bad("the file message"))?,
        ))
    }

    async fn download_file(
        &self,
        session: &ProviderSession,
        file: &FileId,
        name: &str,
    ) -> Result<FileDownload, ProviderError> {
        let name_segment: String = url::form_urlencoded::byte_serialize(name.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        // The file route reads the session from cookies on older servers, headers on newer ones.
        let request = self
            .rest
            .request(
                Method::GET,
                &format!("/file-upload/{file}/{name_segment}"),
                Some(session),
            )
            .header(
                reqwest::header::COOKIE,
                format!(
                    "rc_uid={}; rc_token={}",
                    session.user_id,
                    session.token.expose()
                ),
            );
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            return Err(match classify("file-upload", status, &headers, &body) {
                Err(
                    err @ (ProviderError::SessionExpired
                    | ProviderError::RateLimited { .. }
                    | ProviderError::Unavailable(_)
                    | ProviderError::BadResponse(_)),
                ) => err,
                _ => ProviderError::NotFound(format!("no file {file}")),
            });
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let size = response.content_length();
        let body = response.bytes_stream().map_err(std::io::Error::other);
        Ok(FileDownload {
            mime,
            size,
            body: Box::pin(body),
        })
    }
}
