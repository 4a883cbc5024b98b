//! `ProviderRooms`: channel = public room, group = private room, direct = `is_direct` room
//! recorded in both users' `m.direct` account data. Room lists and unread counts come from
//! one filtered `/sync`, which is where Matrix keeps per-user notification counts.

use std::collections::BTreeSet;

use async_trait::async_trait;
use imgate_domain::model::{Message, NewRoom, ProviderSession, Room, RoomKind, UnreadSummary};
use imgate_domain::ports::{ProviderError, ProviderRooms};
use imgate_domain::{RoomId, UserId};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::events::{self, bad, kind_name, learn_names, text, RoomState, KIND_KEY};
use crate::naming;
use crate::MatrixProvider;

/// What a room listing needs from `/sync`: room state, the latest messages, counts.
const LIST_FILTER: &str = r#"{"presence":{"types":[]},"account_data":{"types":[]},"room":{"ephemeral":{"types":[]},"account_data":{"types":[]},"state":{"types":["m.room.create","m.room.name","m.room.join_rules","m.room.member"],"lazy_load_members":false},"timeline":{"limit":20,"types":["m.room.message","m.room.create","m.room.name","m.room.join_rules","m.room.member"]}}}"#;

/// A room id the homeserver could have made; anything else is not found without asking.
pub(crate) fn check_room(room: &RoomId) -> Result<&str, ProviderError> {
    let id = room.as_str();
    // Room version 12 ids are `!` and a hash; older ones add `:server`.
    if id.starts_with('!') && id.len() > 1 {
        Ok(id)
    } else {
        Err(ProviderError::NotFound(format!("no room {room}")))
    }
}

/// Room calls answer 403 for rooms the caller is not in; the contract says not found.
pub(crate) fn unseen(err: ProviderError) -> ProviderError {
    match err {
        ProviderError::Forbidden(text) => ProviderError::NotFound(text),
        other => other,
    }
}

/// One joined room of a `/sync` answer as `me` sees it.
fn room_from_sync(namespace: &str, me: &str, id: RoomId, room: &Value) -> Room {
    let mut state = RoomState::default();
    let last = fold_sync(namespace, &id, room, &mut state);
    let unread = unread_of(room).unwrap_or(0);
    state.room(namespace, id, me, unread, last)
}

/// Applies a room's `/sync` state and timeline to `state`; returns its newest message.
pub(crate) fn fold_sync(
    namespace: &str,
    id: &RoomId,
    room: &Value,
    state: &mut RoomState,
) -> Option<Message> {
    let (state_events, timeline) = (sync_events(room, "state"), sync_events(room, "timeline"));
    state.apply(&state_events);
    state.apply(&timeline);
    let mut names = state.joined.clone();
    learn_names(&timeline, &mut names);
    timeline
        .iter()
        .rev()
        .find_map(|event| events::message(namespace, id, event, &names))
}

/// The events of one section (`state`, `timeline`, `ephemeral`) of a room's `/sync` entry.
pub(crate) fn sync_events(room: &Value, section: &str) -> Vec<Value> {
    room.get(section)
        .and_then(|s| s.get("events"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The caller's notification count in a room's `/sync` entry, when it says.
pub(crate) fn unread_of(room: &Value) -> Option<u64> {
    room.get("unread_notifications")
        .and_then(|u| u.get("notification_count"))
        .and_then(Value::as_u64)
}

impl MatrixProvider {
    /// The caller's joined rooms as one `/sync` (no `since`) shows them.
    pub(crate) async fn joined_rooms(
        &self,
        session: &ProviderSession,
    ) -> Result<Vec<Room>, ProviderError> {
        let mut url = self.client.url("_matrix/client/v3/sync", &[]);
        // Synapse keeps a since-less answer for `sync_response_cache_duration` (2 minutes by
        // default), keyed by the request's parameters; it ignores `timeout` without `since`, so
        // a new value per call is how a listing shows the counts as they are now.
        let fresh = chrono::Utc::now().timestamp_micros().rem_euclid(1 << 30);
        url.query_pairs_mut()
            .append_pair("filter", LIST_FILTER)
            .append_pair("timeout", &fresh.to_string());
        let answer = self
            .client
            .call(Method::GET, url, Some(session), None)
            .await?;
        let joined = answer
            .get("rooms")
            .and_then(|r| r.get("join"))
            .and_then(Value::as_object);
        let mut rooms = Vec::new();
        for (id, room) in joined.into_iter().flatten() {
            let Ok(id) = RoomId::parse(id.as_str()) else {
                continue;
            };
            rooms.push(room_from_sync(
                &self.namespace,
                session.user_id.as_str(),
                id,
                room,
            ));
        }
        rooms.sort_by_key(|room| std::cmp::Reverse(room.updated_at));
        Ok(rooms)
    }

    async fn create(
        &self,
        session: &ProviderSession,
        kind: RoomKind,
        name: Option<&str>,
        members: &[UserId],
    ) -> Result<(RoomId, Vec<String>), ProviderError> {
        let invite: Vec<String> = members
            .iter()
            .map(|m| self.matrix_id(session, m))
            .filter(|m| m.as_str() != session.user_id.as_str())
            .collect();
        for member in &invite {
            self.ensure_user(member).await?;
        }
        let mut body = json!({
            "invite": invite,
            "creation_content": {KIND_KEY: kind_name(kind)},
        });
        match kind {
            RoomKind::Channel => {
                body["preset"] = json!("public_chat");
                body["visibility"] = json!("public");
            }
            RoomKind::Group => body["preset"] = json!("private_chat"),
            RoomKind::Direct => {
                body["preset"] = json!("trusted_private_chat");
                body["is_direct"] = json!(true);
            }
        }
        if let Some(name) = name {
            body["name"] = json!(name);
            // The alias makes names unique as the contract wants (a taken one is a conflict).
            body["room_alias_name"] = json!(format!("{}{}", self.namespace, naming::escape(name)));
        }
        let url = self.client.url("_matrix/client/v3/createRoom", &[]);
        let answer = self
            .client
            .call(Method::POST, url, Some(session), Some(&body))
            .await?;
        let id = text(&answer, "room_id").ok_or_else(|| bad("a room id"))?;
        let id = RoomId::parse(id).map_err(|_| bad("a valid room id"))?;
        for member in &invite {
            self.join_as(member, &id).await?;
        }
        Ok((id, invite))
    }

    /// Fails with `NotFound` unless `matrix_id` is an active account.
    async fn ensure_user(&self, matrix_id: &str) -> Result<(), ProviderError> {
        let url = self.client.url("_matrix/client/v3/profile", &[matrix_id]);
        match self
            .client
            .call(Method::GET, url, Some(&self.admin_session()?), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ProviderError::NotFound(_) | ProviderError::Forbidden(_)) => {
                Err(ProviderError::NotFound(format!("no user {matrix_id}")))
            }
            Err(err) => Err(err),
        }
    }

    /// Joins `matrix_id` to a room it may join (public, or invited to).
    async fn join_as(&self, matrix_id: &str, room: &RoomId) -> Result<(), ProviderError> {
        let member = self.act_as(matrix_id).await?;
        let url = self
            .client
            .url("_matrix/client/v3/rooms", &[room.as_str(), "join"]);
        let joined = self
            .client
            .call(Method::POST, url, Some(&member), Some(&json!({})))
            .await;
        self.done_acting(&member).await;
        joined.map(drop)
    }

    /// The caller's `m.direct` account data: direct room ids by the other member's Matrix id.
    async fn direct_rooms(
        &self,
        session: &ProviderSession,
    ) -> Result<Map<String, Value>, ProviderError> {
        let url = self.client.url(
            "_matrix/client/v3/user",
            &[session.user_id.as_str(), "account_data", "m.direct"],
        );
        match self
            .client
            .call(Method::GET, url, Some(session), None)
            .await
        {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(Map::new()),
            Err(err) => Err(err),
        }
    }

    /// Records `room` as direct with `others` in `session`'s `m.direct`.
    async fn remember_direct(
        &self,
        session: &ProviderSession,
        others: &[String],
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        let mut direct = self.direct_rooms(session).await?;
        for other in others {
            let rooms = direct.entry(other.clone()).or_insert_with(|| json!([]));
            if let Some(rooms) = rooms.as_array_mut() {
                rooms.push(json!(room.as_str()));
            }
        }
        let url = self.client.url(
            "_matrix/client/v3/user",
            &[session.user_id.as_str(), "account_data", "m.direct"],
        );
        self.client
            .call(
                Method::PUT,
                url,
                Some(session),
                Some(&Value::Object(direct)),
            )
            .await
            .map(drop)
    }

    /// Joined members of a room, as Matrix ids.
    async fn joined_members(
        &self,
        session: &ProviderSession,
        room: &str,
    ) -> Result<BTreeSet<String>, ProviderError> {
        let url = self
            .client
            .url("_matrix/client/v3/rooms", &[room, "joined_members"]);
        let answer = self
            .client
            .call(Method::GET, url, Some(session), None)
            .await
            .map_err(unseen)?;
        Ok(answer
            .get("joined")
            .and_then(Value::as_object)
            .map(|joined| joined.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// The newest event of a room, whatever its type.
    async fn latest_event(
        &self,
        session: &ProviderSession,
        room: &str,
    ) -> Result<Option<String>, ProviderError> {
        let mut url = self
            .client
            .url("_matrix/client/v3/rooms", &[room, "messages"]);
        url.query_pairs_mut()
            .append_pair("dir", "b")
            .append_pair("limit", "1");
        let answer = self
            .client
            .call(Method::GET, url, Some(session), None)
            .await
            .map_err(unseen)?;
        Ok(answer
            .get("chunk")
            .and_then(|c| c.get(0))
            .and_then(|e| text(e, "event_id"))
            .map(str::to_owned))
    }
}

#[async_trait]
impl ProviderRooms for MatrixProvider {
    async fn list_rooms(&self, session: &ProviderSession) -> Result<Vec<Room>, ProviderError> {
        let mut rooms = self.joined_rooms(session).await?;
        // Listings carry no member lists, as with Rocket.Chat.
        for room in &mut rooms {
            room.members = None;
        }
        Ok(rooms)
    }

    async fn create_room(
        &self,
        session: &ProviderSession,
        room: &NewRoom,
    ) -> Result<Room, ProviderError> {
        let (id, _) = self
            .create(session, room.kind, Some(&room.name), &room.members)
            .await?;
        self.get_room(session, &id).await
    }

    async fn open_direct(
        &self,
        session: &ProviderSession,
        members: &[UserId],
    ) -> Result<(Room, bool), ProviderError> {
        let me = session.user_id.as_str().to_owned();
        let others: BTreeSet<String> = members
            .iter()
            .map(|m| self.matrix_id(session, m))
            .filter(|m| *m != me)
            .collect();
        let direct = self.direct_rooms(session).await?;
        let candidates: BTreeSet<&str> = others
            .iter()
            .filter_map(|other| direct.get(other)?.as_array())
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut wanted = others.clone();
        wanted.insert(me);
        for candidate in candidates {
            match self.joined_members(session, candidate).await {
                Ok(joined) if joined == wanted => {
                    let id = RoomId::parse(candidate).map_err(|_| bad("a valid room id"))?;
                    return Ok((self.get_room(session, &id).await?, false));
                }
                Ok(_) | Err(ProviderError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let (id, invited) = self
            .create(session, RoomKind::Direct, None, members)
            .await?;
        self.remember_direct(session, &invited, &id).await?;
        for member in &invited {
            let rest: Vec<String> = wanted.iter().filter(|w| *w != member).cloned().collect();
            let own = self.act_as(member).await?;
            let remembered = self.remember_direct(&own, &rest, &id).await;
            self.done_acting(&own).await;
            remembered?;
        }
        Ok((self.get_room(session, &id).await?, true))
    }

    async fn get_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<Room, ProviderError> {
        let id = check_room(room)?;
        let url = self.client.url("_matrix/client/v3/rooms", &[id, "state"]);
        let state_events = self
            .client
            .call(Method::GET, url, Some(session), None)
            .await
            .map_err(unseen)?;
        let mut state = RoomState::default();
        state.apply(
            state_events
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        if !state.joined.contains_key(session.user_id.as_str()) {
            return Err(ProviderError::NotFound(format!("no room {room}")));
        }
        // Unread count and last message are the listing's.
        let listed = self
            .joined_rooms(session)
            .await?
            .into_iter()
            .find(|r| r.id == *room);
        let (unread, last) = match listed {
            Some(listed) => (listed.unread, listed.last_message.map(|m| *m)),
            None => (0, None),
        };
        Ok(state.room(
            &self.namespace,
            room.clone(),
            session.user_id.as_str(),
            unread,
            last,
        ))
    }

    async fn add_members(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        members: &[UserId],
    ) -> Result<(), ProviderError> {
        let id = check_room(room)?;
        let joined = self.joined_members(session, id).await?;
        for member in members {
            let matrix_id = self.matrix_id(session, member);
            if joined.contains(&matrix_id) {
                continue;
            }
            self.ensure_user(&matrix_id).await?;
            let url = self.client.url("_matrix/client/v3/rooms", &[id, "invite"]);
            self.client
                .call(
                    Method::POST,
                    url,
                    Some(session),
                    Some(&json!({"user_id": matrix_id})),
                )
                .await?;
            self.join_as(&matrix_id, room).await?;
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        member: &UserId,
    ) -> Result<(), ProviderError> {
        let id = check_room(room)?;
        let url = self.client.url("_matrix/client/v3/rooms", &[id, "kick"]);
        let body = json!({"user_id": self.matrix_id(session, member)});
        self.client
            .call(Method::POST, url, Some(session), Some(&body))
            .await
            .map(drop)
    }

    async fn leave_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        let id = check_room(room)?;
        let url = self.client.url("_matrix/client/v3/rooms", &[id, "leave"]);
        self.client
            .call(Method::POST, url, Some(session), Some(&json!({})))
            .await
            .map_err(unseen)
            .map(drop)
    }

    async fn mark_read(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError> {
        let id = check_room(room)?;
        let Some(latest) = self.latest_event(session, id).await? else {
            return Ok(());
        };
        let url = self
            .client
            .url("_matrix/client/v3/rooms", &[id, "read_markers"]);
        let body = json!({"m.fully_read": latest, "m.read": latest});
        self.client
            .call(Method::POST, url, Some(session), Some(&body))
            .await
            .map(drop)
    }

    async fn unread(&self, session: &ProviderSession) -> Result<UnreadSummary, ProviderError> {
        let mut summary = UnreadSummary::default();
        for room in self.joined_rooms(session).await? {
            if room.unread > 0 {
                summary.total += room.unread;
                summary.rooms.insert(room.id.to_string(), room.unread);
            }
        }
        Ok(summary)
    }
}
