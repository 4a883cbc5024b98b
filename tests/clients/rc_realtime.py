"""Drives rocketchat-sim's Realtime API with the third-party client `rocketchat-async` (PyPI).

Usage: rc_realtime.py <ws_url> <http_url> <listener> <listener_pw> <sender> <sender_pw>
The listener logs in over DDP (password digest form), subscribes to #general messages and to
its rooms-changed stream; the sender posts over REST (`rocketchat_API`) and over DDP. Prints
`STEP` lines and a final `RESULT <json>` line; exits non-zero on failure.
"""

import asyncio
import json
import sys

from rocketchat_API.rocketchat import RocketChat as RestClient
from rocketchat_async import RocketChat


def step(what):
    print(f"STEP {what}", flush=True)


async def wait_for(pred, items, what, timeout=5.0):
    deadline = asyncio.get_event_loop().time() + timeout
    while asyncio.get_event_loop().time() < deadline:
        found = [i for i in items if pred(i)]
        if found:
            step(what)
            return found[0]
        await asyncio.sleep(0.02)
    print(f"FAIL {what}: got {items!r}", flush=True)
    sys.exit(1)


async def main():
    ws_url, http_url, listener, listener_pw, sender, sender_pw = sys.argv[1:7]

    rc = RocketChat()
    await rc.start(ws_url, listener, listener_pw)
    step("password login over ddp")

    channels = await rc.get_channels()
    if ("GENERAL", "c") not in channels:
        print(f"FAIL rooms/get: {channels!r}", flush=True)
        sys.exit(1)
    step("rooms/get lists #general")

    messages = []
    changes = []

    def on_message(channel_id, sender_id, msg_id, thread_id, msg, qualifier, unread, repeated):
        messages.append({"rid": channel_id, "sender": sender_id, "id": msg_id, "msg": msg, "t": qualifier})

    def on_change(channel_id, channel_type):
        changes.append({"rid": channel_id, "t": channel_type})

    await rc.subscribe_to_channel_messages("GENERAL", on_message)
    await rc.subscribe_to_channel_changes(on_change)
    await asyncio.sleep(0.2)

    rest = RestClient(sender, sender_pw, server_url=http_url)
    rest.chat_send_message({"rid": "GENERAL", "msg": "from rest"})
    got = await wait_for(lambda m: m["msg"] == "from rest", messages, "rest message arrives over ddp")

    await wait_for(lambda c: c["rid"] == "GENERAL", changes, "rooms-changed for #general")

    await rc.send_message("from ddp", "GENERAL")
    await wait_for(lambda m: m["msg"] == "from ddp", messages, "own ddp message echoed on room stream")
    history = list(rest.channels_history("GENERAL", count=5, max_count=5))
    if not any(m["msg"] == "from ddp" for m in history):
        print("FAIL ddp sendMessage stored", flush=True)
        sys.exit(1)
    step("ddp sendMessage stored")

    await rc.send_typing_event("GENERAL")
    step("typing event accepted")

    dm = rest.dm_create(listener)
    await wait_for(lambda c: c["rid"] == dm["room"]["rid"] and c["t"] == "d", changes, "new dm shows in rooms-changed")

    token = rest.headers["X-Auth-Token"]
    rc2 = RocketChat()
    await rc2.resume(ws_url, sender, token)
    step("resume login over ddp")

    print("RESULT " + json.dumps({"listener_id": rc.user_id, "sender_id": rc2.user_id, "first": got}), flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 30))
