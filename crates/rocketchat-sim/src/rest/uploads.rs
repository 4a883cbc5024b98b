//! File uploads: `rooms.media`, `rooms.mediaConfirm` and `rooms.upload`.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::{Call, Reply};
use crate::error::ApiError;
use crate::ids::random_id;
use crate::model::{date, Dates, Upload};
use crate::store::Store;

fn upload_room(st: &Store, call: &Call) -> Result<String, ApiError> {
    let rid = call.params.first().cloned().ok_or(ApiError::NotFound)?;
    let room = st.room(&rid).ok_or(ApiError::Forbidden)?;
    if !room.members.contains(call.me()?) {
        return Err(ApiError::Forbidden);
    }
    Ok(rid)
}

fn store_upload(st: &mut Store, call: &Call, rid: &str) -> Result<String, ApiError> {
    let file = call
        .file
        .as_ref()
        .ok_or_else(|| ApiError::meteor("invalid-field", ""))?;
    let id = random_id();
    st.uploads.insert(
        id.clone(),
        Upload {
            id: id.clone(),
            name: file.name.clone(),
            content_type: file.content_type.clone(),
            data: file.data.clone(),
            rid: rid.into(),
            uid: call.me()?.into(),
            uploaded_at: Utc::now(),
            confirmed: false,
        },
    );
    Ok(id)
}

pub(super) fn rooms_media(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    let id = store_upload(st, call, &rid)?;
    let url = st.uploads[&id].path();
    Ok(Reply::Ok(json!({"file": {"_id": id, "url": url}})))
}

fn confirm_upload(
    st: &mut Store,
    call: &Call,
    rid: &str,
    file_id: &str,
    fields: &Map<String, Value>,
) -> Result<String, ApiError> {
    let me = call.me()?.to_string();
    let up = st
        .uploads
        .get_mut(file_id)
        .filter(|u| u.rid == rid && u.uid == me)
        .ok_or_else(|| ApiError::meteor("invalid-file", "Invalid file"))?;
    up.confirmed = true;
    let up = up.clone();
    let description = fields
        .get("description")
        .and_then(Value::as_str)
        .map(String::from);
    let text = fields
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let tmid = fields
        .get("tmid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let path = up.path();
    let file = json!({"_id": up.id, "name": up.name, "type": up.content_type, "size": up.data.len(), "format": up.name.rsplit_once('.').map(|(_, e)| e.to_uppercase()).unwrap_or_default()});
    let mut attachment = json!({
        "ts": date(up.uploaded_at, Dates::Iso), "title": up.name, "title_link": path,
        "title_link_download": true, "type": "file",
    });
    if let Some(d) = &description {
        attachment["description"] = json!(d);
    }
    if up.content_type.starts_with("image/") {
        attachment["image_url"] = json!(path);
        attachment["image_type"] = json!(up.content_type);
        attachment["image_size"] = json!(up.data.len());
    }
    let mut extra = Map::new();
    extra.insert("file".into(), file.clone());
    extra.insert("files".into(), json!([file]));
    extra.insert("attachments".into(), json!([attachment]));
    st.send_message(&me, rid, &text, None, tmid, extra)
}

pub(super) fn rooms_media_confirm(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    let file_id = call.params.get(1).cloned().ok_or(ApiError::NotFound)?;
    let id = confirm_upload(st, call, &rid, &file_id, &call.body)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&id].to_json(Dates::Iso)}),
    ))
}

pub(super) fn rooms_upload(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    if call.file.is_none() {
        return Err(ApiError::Failure("File required".into()));
    }
    let file_id = store_upload(st, call, &rid)?;
    let id = confirm_upload(st, call, &rid, &file_id, &call.body)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&id].to_json(Dates::Iso)}),
    ))
}
