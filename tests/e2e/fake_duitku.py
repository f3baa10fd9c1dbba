"""A fake Duitku: a real HTTP server (hypercorn on port 0) with the inquiry endpoint, plus
callbacks sent the way Duitku sends them (form-encoded fields, signed)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from lumiku.payments.duitku import callback_signature, md5_hex

MERCHANT = "D1234"
API_KEY = "fake-duitku-api-key-7f3a9c"


@attrs.define
class FakeDuitku:
    """`mode`: "ok" answers statusCode 00; "error" HTTP 500; "refuse" statusCode 01;
    "hang" never answers. `inquiries` records every JSON body received."""

    mode: str = "ok"
    inquiries: list[dict[str, Any]] = attrs.field(factory=list)
    paths: list[str] = attrs.field(factory=list)
    base_url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.paths.append(scope["path"])
        data = json.loads(body or b"{}")
        self.inquiries.append(data)
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "error":
            await _reply(send, 500, {"Message": "internal error"})
            return
        if self.mode == "refuse":
            await _reply(send, 200, {"statusCode": "01", "statusMessage": "Merchant not found"})
            return
        reference = "DS" + md5_hex(data.get("merchantOrderId", ""))[:14].upper()
        await _reply(
            send,
            200,
            {
                "merchantCode": data.get("merchantCode"),
                "reference": reference,
                "paymentUrl": f"https://pay.example.test/redirect?ref={reference}",
                "vaNumber": "",
                "amount": str(data.get("paymentAmount")),
                "statusCode": "00",
                "statusMessage": "SUCCESS",
            },
        )

    @staticmethod
    def callback_fields(
        order_id: str,
        amount: int | str,
        result_code: str = "00",
        *,
        merchant: str = MERCHANT,
        key: str = API_KEY,
        signature: str | None = None,
    ) -> dict[str, str]:
        """The form fields of a Duitku callback, signed unless `signature` is given."""
        amount = str(amount)
        return {
            "merchantCode": merchant,
            "amount": amount,
            "merchantOrderId": order_id,
            "productDetail": "Lumiku credits",
            "additionalParam": "",
            "paymentCode": "VC",
            "resultCode": result_code,
            "merchantUserId": "",
            "reference": "DSREF0001",
            "signature": signature or callback_signature(merchant, amount, order_id, key),
            "publisherOrderId": "PUB-1",
            "spUserHash": "",
            "settlementDate": "2026-12-04",
            "issuerCode": "",
        }


async def _reply(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def running_fake_duitku(mode: str = "ok") -> AsyncIterator[FakeDuitku]:
    fake = FakeDuitku(mode)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(
                fake, config, shutdown_trigger=stop.wait, task_status=task_status
            )  # type: ignore[arg-type]
        )
        fake.base_url = f"{binds[0]}/webapi/api/merchant"
        yield fake
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 2


async def post_callback(
    client: httpx.AsyncClient, fields: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST the fields form-encoded, as Duitku does."""
    return await client.post("/api/payment/duitku/callback", data=fields, headers=headers or {})


async def _serve_forever(port: int) -> None:
    """Serve a fake Duitku on 127.0.0.1:`port` until killed (the fuzz run's Duitku)."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    await serve(FakeDuitku(), config)  # type: ignore[arg-type]


if __name__ == "__main__":
    import sys

    trio.run(_serve_forever, int(sys.argv[1]))
