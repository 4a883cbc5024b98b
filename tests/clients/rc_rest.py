"""Drives rocketchat-sim with the third-party REST client `rocketchat_API` (PyPI).

Usage: rc_rest.py <server_url> <admin_user> <admin_password>
Prints one `STEP <name>` line per step and a final `RESULT <json>` line; exits non-zero on
the first failed check.
"""

import json
import os
import sys
import tempfile
import uuid

from rocketchat_API.rocketchat import RocketChat
from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketBadStatusCodeException,
)


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)
    print(f"STEP {what}", flush=True)


def main():
    url, admin_user, admin_password = sys.argv[1:4]
    suffix = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice{suffix}", f"bob{suffix}"

    admin = RocketChat(admin_user, admin_password, server_url=url)
    info = admin.info()
    check(info.get("success") is True and "version" in info, "info")

    for name in (alice_name, bob_name):
        created = admin.users_create(f"{name}@example.com", name.title(), "pw-" + name, name)
        check(created["user"]["username"] == name, f"users.create {name}")

    try:
        admin.users_create(f"x{alice_name}@example.com", "Dup", "pw", alice_name)
        check(False, "duplicate users.create rejected")
    except RocketApiException as err:
        check(err.status_code == 400 and err.error_type == "error-field-unavailable", "duplicate users.create rejected")

    alice = RocketChat(alice_name, "pw-" + alice_name, server_url=url)
    bob = RocketChat(bob_name, "pw-" + bob_name, server_url=url)
    me = alice.me()
    check(me["username"] == alice_name, "me")

    general = list(alice.channels_history("GENERAL", count=20))
    joined = [m for m in general if m.get("t") == "uj" and m["u"]["username"] == alice_name]
    check(len(joined) == 1, "users.create joined #general")

    channel = alice.channels_create(f"team-{suffix}", members=[bob_name])
    check(channel["channel"]["t"] == "c" and channel["channel"]["usersCount"] == 2, "channels.create")
    posted = alice.chat_post_message("hello team", room_id=channel["channel"]["_id"])
    check(posted["message"]["msg"] == "hello team", "chat.postMessage")

    dm = alice.dm_create(bob_name)
    rid = dm["room"]["rid"]
    check(rid == "".join(sorted([alice.headers["X-User-Id"], bob.headers["X-User-Id"]])), "dm.create rid")
    again = bob.dm_create(alice_name)
    check(again["room"]["rid"] == rid, "dm.create idempotent")

    sent = alice.chat_send_message({"rid": rid, "msg": "hi bob"})
    check(sent["message"]["msg"] == "hi bob", "chat.sendMessage")
    msg_id = sent["message"]["_id"]

    history = list(bob.dm_history(rid, count=10))
    check(history[0]["_id"] == msg_id, "dm.history")

    sub = bob.subscriptions_get_one(rid)
    check(sub["subscription"]["unread"] == 1 and sub["subscription"]["alert"] is True, "unread counter")
    bob.subscriptions_read(rid)
    sub = bob.subscriptions_get_one(rid)
    check(sub["subscription"]["unread"] == 0, "subscriptions.read")

    edited = alice.chat_update(rid, msg_id, "hi bob (edited)")
    check(edited["message"]["msg"] == "hi bob (edited)" and "editedAt" in edited["message"], "chat.update")

    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(b"file body from python")
        path = f.name
    try:
        media = alice.rooms_media(rid, path)
        file_id = media["file"]["_id"]
        check(media["file"]["url"].startswith(f"/file-upload/{file_id}/"), "rooms.media")
        confirmed = alice.rooms_media_confirm(rid, file_id, msg="a file")
        check(confirmed["message"]["file"]["_id"] == file_id, "rooms.mediaConfirm")
    finally:
        os.unlink(path)

    download = bob.session.get(
        url + media["file"]["url"],
        params={"rc_uid": bob.headers["X-User-Id"], "rc_token": bob.headers["X-Auth-Token"]},
        timeout=10,
    )
    check(download.status_code == 200 and download.content == b"file body from python", "file download")
    anonymous = bob.session.get(url + media["file"]["url"], timeout=10)
    check(anonymous.status_code == 403, "file download needs auth")

    deleted = alice.chat_delete(rid, msg_id)
    check(deleted["_id"] == msg_id, "chat.delete")

    rooms = bob.rooms_get()
    check(any(r["_id"] == rid for r in rooms["update"]), "rooms.get")
    subs = bob.subscriptions_get()
    check(any(s["rid"] == rid for s in subs["update"]), "subscriptions.get")

    bob.logout()
    try:
        bob.me()
        check(False, "token dead after logout")
    except (RocketApiException, RocketBadStatusCodeException) as err:
        # 6.x's 401 body has no `success` key, which this client reports as a bad status
        # rather than an API error; both carry the 401.
        check(err.status_code == 401, "token dead after logout")

    print("RESULT " + json.dumps({"rid": rid, "file_id": file_id, "channel": channel["channel"]["_id"]}), flush=True)


if __name__ == "__main__":
    main()
