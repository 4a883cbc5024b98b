//! `ProviderRooms`: rooms, membership and unread state as the calling user.

use std::collections::HashMap;

use async_trait::async_trait;
use imgate_domain::model::{NewRoom, ProviderSession, Room, RoomKind, UnreadSummary};
use imgate_domain::ports::{ProviderError, ProviderRooms};
use imgate_domain::{RoomId, UserId};
use serde_json::{json, Value};

use crate::documents::read;
use crate::mapping::{self, bad, room_kind, text};
use crate::naming::username_for;
use crate::RocketChatProvider;

/// The REST endpoint family of a room kind.
pub(crate) fn family(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Channel => "channels",
        RoomKind::Group => "groups",
        RoomKind::Direct => "im",
    }
}

fn list<'a>(answer: &'a Value, key: &str) -> Result<&'a Vec<Value>, ProviderError> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(&format!("a `{key}` list")))
}

fn room_not_found(room: &RoomId) -> ProviderError {
    ProviderError::NotFound(format!("no room {room}"))
}

impl RocketChatProvider {
    /// The room's kind, from memory or `rooms.info`.
    pub(crate) async fn kind_of(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<RoomKind, ProviderError> {
        if let Some(kind) = self.room_kinds.get(room) {
            return Ok(kind);
        }
        let doc = self.room_doc(session, room).await?;
        let kind = text(&doc, "t")
            .and_then(room_kind)
            .ok_or_else(|| room_not_found(room))?;
        self.room_kinds.insert(room.clone(), kind);
        Ok(kind)
    }

    async fn room_doc(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<Value, ProviderError> {
        let answer = self
            .rest
            .get("rooms.info", Some(session), &[("roomId", room.to_string())])
            .await
            .map_err(|err| match err {
                ProviderError::NotFound(_) | ProviderError::Forbidden(_) => room_not_found(room),
                other => other,
            })?;
        answer
            .get("room")
            .cloned()
            .ok_or_else(|| room_not_found(room))
    }

    async fn membership(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        action: &'static str,
        member: &UserId,
    ) -> Result<(), ProviderError> {
        let kind = self.kind_of(session, room).await?;
        let endpoint = match (kind, action) {
            (RoomKind::Channel, "invite") => "channels.invite",
            (RoomKind::Group, "invite") => "groups.invite",
            (RoomKind::Channel, _) => "channels.kick",
            (RoomKind::Group, _) => "groups.kick",
            (RoomKind::Direct, _) => {
                return Err(ProviderError::Invalid {
                    field: "roomId".into(),
                    message: "direct rooms have fixed members".into(),
                })
            }
        };
        let body = json!({"roomId": room.as_str(), "username": username_for(member)});
        self.rest
            .post(endpoint, Some(session), &body, &[])
            .await
            .map(drop)
            .map_err(|err| match err {
                ProviderError::NotFound(message) if message.contains("user") => {
                    ProviderError::NotFound(format!("no user {member}"))
                }
                other => other,
            })
    }
}

#[async_trait]
impl ProviderRooms for RocketChatProvider {
    async fn list_rooms(&self, session: &ProviderSession) -> Result<Vec<Room>, ProviderError> {
        let (subscriptions, rooms) = futures::try_join!(
            self.rest.get("subscriptions.get", Some(session), &[]),
            self.rest.get("rooms.get", Some(session), &[]),
        )?;
        let rooms: HashMap<&str, &Value> = list(&rooms, "update")?
            .iter()
            .filter_map(|room| Some((text(room, "_id")?, room)))
            .collect();
        let mut out: Vec<Room> = list(&subscriptions, "update")?
            .iter()
            .filter_map(|sub| {
                let doc = text(sub, "rid").and_then(|rid| rooms.get(rid).copied());
                mapping::subscribed_room(&read(sub), doc.map(read).as_ref())
            })
            .collect();
        for room in &out {
            self.room_kinds.insert(room.id.clone(), room.kind);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        Ok(out)
    }

    async fn create_room(
        &self,
        session: &ProviderSession,
        new: &NewRoom,
    ) -> Result<Room, ProviderError> {
        let (endpoint, key) = match new.kind {
            RoomKind::Channel => ("channels.create", "channel"),
            RoomKind::Group => ("groups.create", "group"),
            RoomKind::Direct => {
                return Err(ProviderError::Invalid {
                    field: "kind".into(),
                    message: "direct rooms are opened with /rooms/direct".into(),
                })
            }
        };
        let members: Vec<String> = new.members.iter().map(username_for).collect();
        let body = json!({"name": new.name, "members": members});
        let answer = self
            .rest
            .post(endpoint, Some(session), &body, &[])
            .await
            .map_err(|err| match err {
                ProviderError::Invalid { message, .. } => ProviderError::Invalid {
                    field: "name".into(),
                    message,
                },
                ProviderError::Conflict(_) => {
                    ProviderError::Conflict(format!("a room named {:?} exists already", new.name))
                }
                other => other,
            })?;
        let created = answer.get(key).ok_or_else(|| bad("the created room"))?;
        let mut room = mapping::room(&read(created))?;
        self.room_kinds.insert(room.id.clone(), room.kind);
        room.members = Some(new.members.clone());
        Ok(room)
    }

    async fn open_direct(
        &self,
        session: &ProviderSession,
        members: &[UserId],
    ) -> Result<(Room, bool), ProviderError> {
        let usernames: Vec<String> = members.iter().map(username_for).collect();
        let body = match usernames.as_slice() {
            [one] => json!({"username": one}),
            many => json!({"usernames": many.join(",")}),
        };
        let answer = self
            .rest
            .post("im.create", Some(session), &body, &[])
            .await?;
        let doc = answer.get("room").ok_or_else(|| bad("the direct room"))?;
        let created = doc
            .get("inserted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let id = text(doc, "_id")
            .or_else(|| text(doc, "rid"))
            .ok_or_else(|| bad("a room id"))?;
        let id = RoomId::parse(id).map_err(|_| bad("a valid room id"))?;
        self.room_kinds.insert(id.clone(), RoomKind::Direct);
        let mut room = self.get_room(session, &id).await?;
        room.members = Some(members.to_vec());
        Ok((room, created))
    }

    async fn get_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<Room, ProviderError> {
        let query = [("roomId", room.to_string())];
        let (doc, subscription) = futures::try_join!(
            self.room_doc(session, room),
            self.rest.get("subscriptions.getOne", Some(session), &query),
        )?;
        let found = match subscription.get("subscription").filter(|s| s.is_object()) {
            Some(sub) => mapping::subscribed_room(&read(sub), Some(&read(&doc)))
                .ok_or_else(|| room_not_found(room))?,
            None => mapping::room(&read(&doc))?,
        };
        self.room_kinds.insert(found.id.clone(), found.kind);
        Ok(found)
    }

    async fn add_members(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        members: &[UserId],
    ) -> Result<(), ProviderError> {
        for member in members {
            self.membership(session, room, "invite", member).await?;
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        member: &UserId,
    ) -> Result<(), ProviderError> {
        self.membership(session, room, "kick", member).await
    }

    async fn leave_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        let endpoint = match self.kind_of(session, room).await? {
            RoomKind::Channel => "channels.leave",
            RoomKind::Group => "groups.leave",
            RoomKind::Direct => {
                return Err(ProviderError::Invalid {
                    field: "roomId".into(),
                    message: "direct rooms cannot be left".into(),
                })
            }
        };
        self.rest
            .post(
                endpoint,
                Some(session),
                &json!({"roomId": room.as_str()}),
                &[],
            )
            .await
            .map(drop)
    }

    async fn mark_read(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        self.rest
            .post(
                "subscriptions.read",
                Some(session),
                &json!({"rid": room.as_str()}),
                &[],
            )
            .await
            .map(drop)
            .map_err(|err| match err {
                ProviderError::NotFound(_) | ProviderError::Invalid { .. } => room_not_found(room),
                other => other,
            })
    }

    async fn unread(&self, session: &ProviderSession) -> Result<UnreadSummary, ProviderError> {
        let answer = self
            .rest
            .get("subscriptions.get", Some(session), &[])
            .await?;
        let mut summary = UnreadSummary::default();
        for sub in list(&answer, "update")? {
            let (Some(rid), Some(n)) =
                (text(sub, "rid"), sub.get("unread").and_then(Value::as_u64))
            else {
                continue;
            };
            if n > 0 && text(sub, "t").and_then(room_kind).is_some() {
                summary.total += n;
                summary.rooms.insert(rid.to_owned(), n);
            }
        }
        Ok(summary)
    }
}
