//! `ProviderFiles`: upload to the media repository and post an `m.file` event; download
//! through authenticated media, after checking the caller can see the event that posted it.

use async_trait::async_trait;
use futures::TryStreamExt;
use imgate_domain::model::{FileDownload, FileUpload, Message, ProviderSession};
use imgate_domain::ports::{ProviderError, ProviderFiles};
use imgate_domain::{FileId, RoomId};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

use crate::events::{self, bad, text};
use crate::MatrixProvider;

#[async_trait]
impl ProviderFiles for MatrixProvider {
    async fn upload_file(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        file: FileUpload,
    ) -> Result<Message, ProviderError> {
        // A non-member must not leave media behind: check the room first.
        crate::rooms::check_room(room)?;
        self.get_room_membership(session, room).await?;
        let mut url = self.client.url("_matrix/media/v3/upload", &[]);
        url.query_pairs_mut().append_pair("filename", &file.name);
        let request = self
            .client
            .request(Method::POST, url, Some(session))
            .header(CONTENT_TYPE, &file.mime);
        // Synapse refuses an upload without a Content-Length: a body of unknown size is
        // collected first (the gateway caps it at `server.max_upload_bytes`).
        let (request, size) = match file.size {
            Some(size) => (
                request
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(file.body)),
                size,
            ),
            None => {
                let bytes: Vec<bytes::Bytes> =
                    file.body
                        .try_collect()
                        .await
                        .map_err(|err| ProviderError::Invalid {
                            field: "file".into(),
                            message: format!("cannot read the upload: {err}"),
                        })?;
                let body = bytes.concat();
                let size = body.len() as u64;
                (request.body(body), size)
            }
        };
        let answer: Value = self
            .client
            .send(request)
            .await?
            .json()
            .await
            .map_err(|_| bad("the upload's content URI"))?;
        let uri = text(&answer, "content_uri").ok_or_else(|| bad("the upload's content URI"))?;
        let info = json!({"mimetype": file.mime, "size": size});
        let content = json!({
            "msgtype": "m.file",
            "body": file.text.as_deref().filter(|t| !t.trim().is_empty()).unwrap_or(&file.name),
            "filename": file.name,
            "url": uri,
            "info": info,
        });
        self.post(session, room, &content, None).await
    }

    async fn download_file(
        &self,
        session: &ProviderSession,
        file: &FileId,
        _name: &str,
    ) -> Result<FileDownload, ProviderError> {
        let not_found = || ProviderError::NotFound(format!("no file {file}"));
        let (room, event) = events::split_file_id(file).ok_or_else(not_found)?;
        let room = RoomId::parse(room).map_err(|_| not_found())?;
        let raw = self.event(session, &room, event).await?;
        let content = raw.get("content").ok_or_else(not_found)?;
        let (server, media) = text(content, "url")
            .and_then(|uri| uri.strip_prefix("mxc://"))
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(not_found)?;
        let url = self
            .client
            .url("_matrix/client/v1/media/download", &[server, media]);
        let response = self
            .client
            .send(self.client.request(Method::GET, url, Some(session)))
            .await?;
        let mime = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .or_else(|| content.get("info").and_then(|i| text(i, "mimetype")))
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

impl MatrixProvider {
    /// `NotFound` unless the caller is joined to `room`.
    async fn get_room_membership(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        let url = self.client.url(
            "_matrix/client/v3/rooms",
            &[
                room.as_str(),
                "state",
                "m.room.member",
                session.user_id.as_str(),
            ],
        );
        let member = self
            .client
            .call(Method::GET, url, Some(session), None)
            .await
            .map_err(crate::rooms::unseen)?;
        if text(&member, "membership") == Some("join") {
            Ok(())
        } else {
            Err(ProviderError::NotFound(format!("no room {room}")))
        }
    }
}
