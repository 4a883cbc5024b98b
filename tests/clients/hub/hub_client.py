"""Drives imgate's hub with the Python SignalR clients, unmodified.

Usage: hub_client.py signalrcore|pysignalr|pysignalr+msgpack, with HUB_URL and HUB_TOKEN in
the environment (+msgpack: pysignalr with its MessagePack hub protocol).
Speaks the same line protocol as hub-client.js: JSON events on stdout (connected, recv,
result, closed), JSON commands on stdin ({"cmd":"invoke","tag","method","args"}, send, stop).
"""

import asyncio
import json
import os
import sys
import threading
import uuid

TARGETS = [
    "getRoomMessageNotification",
    "getRoomSubscriptionChangedNotification",
    "messageDeleted",
    "typing",
]
HOST_TARGET = "notify"
lock = threading.Lock()


def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def run_signalrcore(url, token):
    from signalrcore.hub_connection_builder import HubConnectionBuilder

    # signalrcore negotiates without a version (v0) and connects with ?id=<connectionId>.
    hub = (
        HubConnectionBuilder()
        .with_url(url, options={"access_token_factory": lambda: token})
        .build()
    )
    opened = threading.Event()
    hub.on_open(lambda: (opened.set(), out({"event": "connected"})))
    hub.on_close(lambda: out({"event": "closed"}))
    pending = {}

    def on_error(message):
        tag = pending.pop(message.invocation_id, None)
        out({"event": "result", "tag": tag, "ok": False, "error": message.error})

    hub.on_error(on_error)
    for target in TARGETS:
        hub.on(target, lambda args, target=target: out({"event": "recv", "target": target, "arg": args[0]}))
    # A host target of the tests: every argument, as the host pushed them.
    hub.on(HOST_TARGET, lambda args: out({"event": "recv", "target": HOST_TARGET, "args": args}))
    hub.start()
    if not opened.wait(10):
        out({"event": "start_failed", "error": "no open within 10 s"})
        os._exit(2)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command["cmd"] in ("invoke", "send"):
            tag = command.get("tag")

            def on_done(message, tag=tag):
                pending.pop(message.invocation_id, None)
                out({"event": "result", "tag": tag, "ok": True, "value": message.result})

            # Register the tag before sending: the completion may arrive on the socket
            # thread before send() returns.
            invocation_id = str(uuid.uuid4())
            pending[invocation_id] = tag
            hub.send(command["method"], command.get("args", []), on_done, invocation_id=invocation_id)
        elif command["cmd"] == "stop":
            break
    hub.stop()
    out({"event": "stopped"})
    os._exit(0)


async def run_pysignalr(url, token, messagepack=False):
    from pysignalr.client import SignalRClient
    from pysignalr.protocol.json import JSONProtocol
    from pysignalr.protocol.messagepack import MessagepackProtocol

    # pysignalr sends no token on its first connect even with access_token_factory, so the
    # header is given explicitly (see the hub's docs).
    client = SignalRClient(
        url,
        protocol=MessagepackProtocol() if messagepack else JSONProtocol(),
        headers={"Authorization": f"Bearer {token}"},
        access_token_factory=lambda: token,
    )

    async def on_open():
        out({"event": "connected"})

    async def on_close():
        out({"event": "closed"})

    async def on_error(message):
        # The completion can beat the bookkeeping after send(); commands run one at a time,
        # so the latest tag is the one being answered.
        tag = tags.pop(message.invocation_id, latest["tag"])
        out({"event": "result", "tag": tag, "ok": False, "error": message.error})

    tags = {}
    latest = {"tag": None}
    client.on_open(on_open)
    client.on_close(on_close)
    client.on_error(on_error)
    for target in TARGETS:
        async def handler(args, target=target):
            out({"event": "recv", "target": target, "arg": args[0]})

        client.on(target, handler)

    async def host_handler(args):
        out({"event": "recv", "target": HOST_TARGET, "args": args})

    client.on(HOST_TARGET, host_handler)

    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(client.run())

    async def commands():
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            command = json.loads(line)
            if command["cmd"] == "invoke":
                tag = command.get("tag")
                latest["tag"] = tag

                async def on_done(message, tag=tag):
                    if not message.error:
                        out({"event": "result", "tag": tag, "ok": True, "value": message.result})

                # The invocation id is made inside send; remember the tag by wrapping.
                before = set(client._invocation_handlers)
                await client.send(command["method"], command.get("args", []), on_done)
                for invocation_id in set(client._invocation_handlers) - before:
                    tags[invocation_id] = tag
            elif command["cmd"] == "send":
                await client.send(command["method"], command.get("args", []))
                out({"event": "sent", "tag": command.get("tag")})
            elif command["cmd"] == "stop":
                break
        out({"event": "stopped"})
        os._exit(0)

    await asyncio.gather(runner, commands())


def main():
    lib = sys.argv[1]
    url, token = os.environ["HUB_URL"], os.environ["HUB_TOKEN"]
    if lib == "signalrcore":
        run_signalrcore(url, token)
    elif lib in ("pysignalr", "pysignalr+msgpack"):
        asyncio.run(run_pysignalr(url, token, messagepack=lib.endswith("+msgpack")))
    else:
        sys.exit(f"unknown client library {lib}")


if __name__ == "__main__":
    main()
