//! File upload (multipart, streamed to the provider) and download (proxied with the caller's
//! credentials).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use imgate_domain::model::{FileUpload, Message, MAX_TEXT_CHARS};
use imgate_domain::services::ChatService;
use imgate_domain::FileId;
use tokio::sync::mpsc;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

use crate::auth::EndUser;
use crate::error::{ApiError, ErrorBody};
use crate::params::{self, Id};

/// Upload settings.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// The largest file accepted, in bytes.
    pub max_file_bytes: u64,
}

/// The multipart form of an upload, for the OpenAPI document: what [`upload`] reads.
pub struct UploadForm;

impl utoipa::PartialSchema for UploadForm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "text",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MAX_TEXT_CHARS))
                    .description(Some(format!(
                        "Posted with the file, at most {MAX_TEXT_CHARS} characters; only white \
                         space counts as none. It must come before `file`."
                    ))),
            )
            .property(
                "file",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                    .description(Some(
                        "The file, with a filename; its Content-Type is kept (application/octet-stream when absent).",
                    )),
            )
            .required("file")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for UploadForm {}

/// Chunks in flight between the client's upload and the provider's; small, so a slow provider
/// slows the client rather than filling memory.
const PIPE_CHUNKS: usize = 8;

/// Uploads a file into a room and posts it as a message. Multipart fields: `text` (optional,
/// must come before the file) and `file`.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/files", operation_id = "uploadFile", tag = "files", security(("bearer" = [])),
    params(("roomId" = Id, Path)),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "fields `text` (optional, first) and `file`"),
    responses((status = 201, body = Message),
        (status = 413, description = "The file is over `server.max_upload_bytes`", body = ErrorBody),
        (status = 503, description = "The provider is unavailable, or it renewed the caller's session during the upload: send the file again", body = ErrorBody)))]
pub async fn upload(
    user: EndUser,
    chat: web::Data<ChatService>,
    limits: web::Data<UploadLimits>,
    path: web::Path<String>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    let mut text: Option<String> = None;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|err| ApiError::Invalid(format!("malformed multipart body: {err}")))?;
        match field.name() {
            Some("text") => {
                let mut raw = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|err| ApiError::Invalid(format!("text: {err}")))?;
                    raw.extend_from_slice(&chunk);
                    if raw.len() > MAX_TEXT_CHARS * 4 {
                        return Err(ApiError::Invalid(format!(
                            "text: must be at most {MAX_TEXT_CHARS} characters"
                        )));
                    }
                }
                let value = String::from_utf8(raw)
                    .map_err(|_| ApiError::Invalid("text: not UTF-8".into()))?;
                if !value.trim().is_empty() {
                    text = Some(value);
                }
            }
            Some("file") => {
                let name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(str::to_owned)
                    .filter(|n| !n.trim().is_empty())
                    .ok_or_else(|| ApiError::Invalid("file: the part needs a filename".into()))?;
                let mime = field
                    .content_type()
                    .map(|m| m.essence_str().to_owned())
                    .unwrap_or_else(|| "application/octet-stream".into());
                let too_large = Arc::new(AtomicBool::new(false));
                let body = pipe(field, limits.max_file_bytes, too_large.clone());
                let upload = FileUpload {
                    name,
                    mime,
                    size: None,
                    body,
                    text,
                };
                let result = chat.upload(&user.id, &room, upload).await;
                if too_large.load(Ordering::Acquire) {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "file: larger than the limit of {} bytes",
                        limits.max_file_bytes
                    )));
                }
                return Ok(HttpResponse::Created().json(result?));
            }
            Some(other) => {
                return Err(ApiError::Invalid(format!(
                    "unknown multipart field `{other}`; expected `text` then `file`"
                )))
            }
            None => return Err(ApiError::Invalid("multipart part without a name".into())),
        }
    }
    Err(ApiError::Invalid(
        "file: missing (send a multipart field named `file`)".into(),
    ))
}

/// Moves the client's bytes to a `Send` stream for the provider client, counting them: the
/// multipart field lives on this worker thread, the provider upload may not.
fn pipe(
    mut field: actix_multipart::Field,
    limit: u64,
    too_large: Arc<AtomicBool>,
) -> imgate_domain::model::ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE_CHUNKS);
    actix_web::rt::spawn(async move {
        let mut total: u64 = 0;
        while let Some(chunk) = field.next().await {
            let item = match chunk {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    if total > limit {
                        too_large.store(true, Ordering::Release);
                        Err(std::io::Error::other("file too large"))
                    } else {
                        Ok(chunk)
                    }
                }
                Err(err) => Err(std::io::Error::other(err.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Downloads a file through the gateway, with the caller's provider credentials.
#[utoipa::path(get, path = "/api/v1/files/{fileId}/{name}", operation_id = "downloadFile", tag = "files", security(("bearer" = [])),
    params(("fileId" = Id, Path), ("name" = String, Path, min_length = 1, description = "The file's name, as in `file.url`")),
    responses((status = 200, description = "The file's bytes", content_type = "*/*")))]
pub async fn download(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (file, name) = path.into_inner();
    let file = FileId::parse(file).map_err(|err| ApiError::Invalid(format!("fileId: {err}")))?;
    let download = chat.download(&user.id, &file, &name).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(download.mime)
        .insert_header(header::ContentDisposition::attachment(name))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if let Some(size) = download.size {
        response.no_chunking(size);
    }
    Ok(response.streaming(download.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_text_before_file_as_the_upload_reads_them() {
        // Generated clients send the parts in the schema's order; `text` after the file would
        // reach the handler once the file was posted already.
        let schema =
            serde_json::to_string(&<UploadForm as utoipa::PartialSchema>::schema()).unwrap();
        let properties = &schema[schema.find("\"properties\"").unwrap()..];
        let position = |name: &str| properties.find(&format!("\"{name}\":")).unwrap();
        assert!(position("text") < position("file"), "{schema}");
    }
}
