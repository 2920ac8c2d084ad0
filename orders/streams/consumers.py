"""The WebSocket endpoint `/ws/v1` (contract: shared/spec/api.md, "Streams (v1.1)";
docs/streams.md).

One consumer per connection. Channels dispatches its messages one at a time, so a
subscription's group is joined first, then its snapshot taken and sent, and only then are
the group's messages handled: an update older than the snapshot is dropped, the next one
applied. Book updates carry the engine's per-market number: the snapshot has the number
of the last update it contains; a later gap (a message lost on the way) or another engine
(a restart) makes the consumer send a fresh snapshot instead of a wrong book."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import validate_host
from django.utils.http import is_same_domain
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError

from accounts.api_keys import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, api_key_request_principal
from accounts.authentication import PlatformJWTAuthentication
from accounts.credentials import CREDENTIALS_CLAIM
from accounts.errors import InvalidApiKey
from accounts.selectors import user_still_signed_in
from core.encoding import json_read
from core.errors import ApplicationError
from core.networks import address_in, client_bucket, forwarded_client
from core.text import has_control_characters
from orders.api.serializers import CandleOutput, MarketTradeOutput, OrderOutput, UserTradeOutput
from orders.models import LIVE_STATUSES, Market
from orders.selectors.candles import INTERVALS, candle_list
from orders.selectors.orders import (
    fill_list_for_user,
    order_list_for_user,
    trade_list_for_market,
)
from orders.selectors.tickers import trade_last_id
from orders.sequencer.transport import engine_call
from orders.streams.layer import ANY_CHANNEL
from orders.streams.publish import BOOK_SNAPSHOT, EXPIRES_FIELD, TRADE_FIELD, USER_FIELD, group_of, user_group
from orders.streams.relay import relay_listen
from orders.streams.ticker import market_ticker_at

PUBLIC = ("book", "trades", "ticker", "candles")
PRIVATE = ("orders", "fills")
MAX_CHANNELS = 50
# Snapshots cost the engine (a book is read between two batches): the connections of one
# client address to a web process may ask for SNAPSHOT_BURST of them together, refilled at
# SNAPSHOT_RATE per second; beyond that, `throttled` (_SnapshotBudgets).
SNAPSHOT_BURST = 100
SNAPSHOT_RATE = 5.0
SNAPSHOT_TRADES = 50  # trades and fills in a snapshot, newest first
# A connection's user is read again (still there, still active) before private data is
# subscribed or sent, at most once per this many seconds.
USER_RECHECK_SECONDS = 1.0
SNAPSHOT_CANDLES = 100
# A ticker is refreshed when its window loses a trade, at most this often (_refresh_at).
TICKER_REFRESH_MIN_SECONDS = 5.0
# Orders whose last body sent a connection remembers (not to send the same one again).
SENT_ORDERS_MAX = 10_000
# What an API key signs to authenticate a connection: a GET of the streams' path, no body.
STREAM_PATH = "/ws/v1"

logger = logging.getLogger(__name__)
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455's registry: the server is overloaded, try again later


class StreamError(Exception):
    """An `error` message. `channels`: the subscriptions it concerns (a channel refused or
    dropped), named in the message so that a client subscribed to several can tell which."""

    def __init__(self, code: str, message: str, *, channels: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channels = channels


@dataclass
class Subscription:
    channel: str
    kind: str
    group: str
    market_id: int = 0
    symbol: str = ""
    interval: str = ""
    event: int = 0  # book, ticker: the number of the book's last update in what was sent
    epoch: str = ""
    trade: int = 0  # ticker, candles: the market's last trade in what was sent
    last: dict[str, Any] | None = None  # ticker: the one last sent
    seen: dict[str, str] = field(default_factory=dict)  # orders: updated_at in the snapshot, per id
    sent: dict[str, int] = field(default_factory=dict)  # orders: a digest of the body last sent, per id
    newest: int = 0  # trades: the newest trade id in the snapshot
    newest_by_market: dict[str, int] = field(default_factory=dict)  # fills: the same per market


def _json(data: Any) -> Any:
    return json.loads(json.dumps(data))


def _order_digest(body: dict[str, Any]) -> int:
    """Tells two bodies of an order apart (the same state read twice is the same body)."""
    return hash(json.dumps(body, sort_keys=True))


class _SnapshotBudgets:
    """The snapshot allowance of each client address in this process, which every
    connection from it spends (a token bucket: SNAPSHOT_BURST, refilled at SNAPSHOT_RATE
    per second). It was per connection: a client opening twenty sockets asked the engine
    for twenty times the burst and the rate. The consumers run on the process's event
    loop, one message at a time: no lock. Addresses whose bucket is full again are
    forgotten once there are many (memory bounded by the active ones)."""

    SWEEP_ABOVE = 10_000

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (allowance, when)

    def spend(self, address: str, snapshots: int, *, now: float) -> bool:
        allowance, checked = self.buckets.get(address, (float(SNAPSHOT_BURST), now))
        allowance = min(float(SNAPSHOT_BURST), allowance + (now - checked) * SNAPSHOT_RATE)
        allowed = snapshots <= allowance
        if allowed:
            allowance -= snapshots
        if len(self.buckets) >= self.SWEEP_ABOVE and address not in self.buckets:
            self.sweep(now)
        self.buckets[address] = (allowance, now)
        return allowed

    def sweep(self, now: float) -> None:
        refill = SNAPSHOT_BURST / SNAPSHOT_RATE
        self.buckets = {a: (left, when) for a, (left, when) in self.buckets.items() if now - when < refill}

    def reset(self) -> None:
        """Forget every budget (tests)."""
        self.buckets.clear()


snapshot_budgets = _SnapshotBudgets()


class _OpenConnections:
    """The open connections of each client address in this process, at most
    STREAMS_MAX_CONNECTIONS_PER_ADDRESS: one client opened 400 sockets in two seconds, each
    holding its groups, buffers and a share of every fan-out. Counted per process, as the
    snapshot budgets are (behind a proxy: listed in TRUSTED_PROXIES, or all its clients are
    one address)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def open(self, address: str) -> bool:
        count = self.counts.get(address, 0)
        if count >= settings.STREAMS_MAX_CONNECTIONS_PER_ADDRESS:
            return False
        self.counts[address] = count + 1
        return True

    def close(self, address: str) -> None:
        count = self.counts.pop(address, 0) - 1
        if count > 0:
            self.counts[address] = count

    def reset(self) -> None:
        """Forget every count (tests)."""
        self.counts.clear()


open_connections = _OpenConnections()


def client_address(scope: dict[str, Any]) -> str:
    """The connection's client: the peer, or behind TRUSTED_PROXIES the client their
    X-Forwarded-For names (core.networks.forwarded_client, as core.middleware does for HTTP);
    an IPv6 address by its /64, as the HTTP counts per address (core.networks.client_bucket)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    trusted = settings.TRUSTED_PROXIES
    if not address_in(peer, trusted):
        return client_bucket(peer)
    forwarded_for = dict(scope.get("headers", [])).get(b"x-forwarded-for", b"").decode("latin-1")
    return client_bucket(forwarded_client(peer=peer, forwarded_for=forwarded_for, trusted=trusted))


def _token_user(token: str) -> tuple[int, float, str | None] | None:
    """The user of a valid access token, the moment it expires (leeway included) and its
    password mark."""
    if not token.isascii():  # no JWT; a lone surrogate cannot even be encoded
        return None
    auth = PlatformJWTAuthentication()
    try:
        validated = auth.get_validated_token(token.encode())
        user_id = int(auth.get_user(validated).pk)  # a mark of an older password: refused here
    except (InvalidToken, AuthenticationFailed, TokenError):
        return None
    leeway = validated.get_token_backend().get_leeway().total_seconds()
    mark = validated.get(CREDENTIALS_CLAIM)
    return user_id, float(validated["exp"]) + leeway, mark if isinstance(mark, str) else None


def _api_key_user(key: str, timestamp: str, signature: str) -> tuple[int, int]:
    """The user and the key of an API key's `auth`: its signature of `GET /ws/v1` at
    `timestamp`, checked as a signed request's (accounts.api_keys; its errors raised)."""
    principal = api_key_request_principal(
        method="GET",
        path_with_query=STREAM_PATH,
        body=b"",
        headers={HEADER_KEY: key, HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature},
    )
    if principal is None:
        raise InvalidApiKey()
    return principal.user_id, principal.key_id


def _market_id(symbol: str) -> int | None:
    # No market's symbol has a control character, and the database cannot take some: a NUL
    # (PostgreSQL's DataError) or a lone surrogate from a JSON escape (UnicodeEncodeError).
    if has_control_characters(symbol):
        return None
    return Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()


def _order_bodies(user_id: int, order_ids: list[int]) -> list[dict[str, Any]]:
    """The user's orders among `order_ids`, in that order, read together (an id not the
    user's, or unknown, is left out)."""
    found = {order.pk: order for order in order_list_for_user(user_id=user_id, order_ids=order_ids)}
    return [dict(_json(OrderOutput(found[pk]).data)) for pk in order_ids if pk in found]


def _same_site(scope: dict[str, Any]) -> bool:
    """A page's session counts only from its own origin (no cross-site socket hijacking),
    as Django's CSRF check counts a form's: the Origin names the host and port the socket
    was opened to (its Host header, an allowed host), or is one of CSRF_TRUSTED_ORIGINS.
    With secure cookies (production) only an https page counts: a plain-http page on the
    same host (a network attacker's) would otherwise ride the session on wss. A client
    without an Origin header authenticates with a token."""
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin1")
    if not origin:
        return False
    try:
        parsed = urlsplit(origin)
        hostname = parsed.hostname or ""
    except ValueError:  # not a URL ("http://[": an unclosed IPv6 address), which no browser sends
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS or any(
        is_same_domain(parsed.netloc, trusted.netloc.lstrip("*"))
        for trusted in map(urlsplit, settings.CSRF_TRUSTED_ORIGINS)
        if "*" in trusted.netloc and trusted.scheme == parsed.scheme
    ):
        return True
    if parsed.scheme not in (("https",) if settings.SESSION_COOKIE_SECURE else ("http", "https")):
        return False
    host = headers.get(b"host", b"").decode("latin1").lower()
    return parsed.netloc.lower() == host and validate_host(hostname, settings.ALLOWED_HOSTS)


def _ticker_snapshot(sub: Subscription, book: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """The ticker at a known position: the book's top from the engine's `book` (event
    `sub.event`), the trades up to the market's last one now (`sub.trade`, read first); and
    when its window will have lost a trade."""
    sub.trade = trade_last_id(market_id=sub.market_id)
    best_bid, best_ask = (Decimal(book[side][0]["price"]) if book[side] else None for side in ("bids", "asks"))
    return market_ticker_at(market_id=sub.market_id, symbol=sub.symbol, through=sub.trade, top=(best_bid, best_ask))


def _ticker_refreshed(sub: Subscription, last: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """The ticker last sent (`last`, at `sub`'s position) read again now: the same trades and
    book top, over the window as it is now."""
    best_bid, best_ask = (None if last[side] is None else Decimal(last[side]) for side in ("best_bid", "best_ask"))
    return market_ticker_at(market_id=sub.market_id, symbol=sub.symbol, through=sub.trade, top=(best_bid, best_ask))


def _snapshot_data(sub: Subscription, user_id: int | None) -> tuple[Any, dict[str, str]]:
    """Everything but the book and the ticker, from the database, in the REST API's shapes."""
    if sub.kind == "trades":
        trades = MarketTradeOutput(trade_list_for_market(market_id=sub.market_id, limit=SNAPSHOT_TRADES), many=True)
        return trades.data, {}
    if sub.kind == "candles":
        # At a known position, the market's last trade now (read first): a candle update of a
        # batch at or before it is in the snapshot already (StreamConsumer.stream_data).
        sub.trade = trade_last_id(market_id=sub.market_id)
        candles = candle_list(market_id=sub.market_id, interval=sub.interval, limit=SNAPSHOT_CANDLES, last_id=sub.trade)
        return CandleOutput(candles, many=True).data, {}
    if user_id is None:
        return [], {}
    if sub.kind == "orders":
        live = order_list_for_user(user_id=user_id, statuses=[s.value for s in LIVE_STATUSES]).order_by("-id")
        orders = OrderOutput(live, many=True).data
        return orders, {row["id"]: row["updated_at"] for row in orders}
    # Newest first, as GET /api/trades: without the selector's ORDER BY the plan chose the order.
    fills = UserTradeOutput(fill_list_for_user(user_id=user_id, limit=SNAPSHOT_TRADES), many=True).data
    return fills, {}


class StreamConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.user_id: int | None = None
        self.user_expires: float | None = None  # a token's expiry; None: a page's session
        self.session_key: str | None = None  # a page's session, read again with the user
        self.credentials_mark: str | None = None  # a token's password mark, compared again with the user
        self.api_key_id: int | None = None  # an API key's, read again with the user
        self.user_checked = 0.0  # when the user was last found active (time.monotonic())
        self.subscriptions: dict[str, Subscription] = {}
        self.sequences: dict[str, int] = defaultdict(int)
        self.ticker_timers: dict[str, asyncio.TimerHandle] = {}  # _refresh_at
        self.ticker_tasks: set[asyncio.Task[None]] = set()
        self.address = client_address(self.scope)
        self.counted = open_connections.open(self.address)
        if not self.counted:
            logger.warning("stream connection refused: too many from one address", extra={"address": self.address})
            await self.close(code=CLOSE_TRY_AGAIN_LATER)  # before accepting: the handshake is refused
            return
        try:
            user = self.scope.get("user")
            if user is not None and user.is_authenticated and _same_site(self.scope):
                self.user_id = int(user.pk)
                self.session_key = self.scope["session"].session_key
            await relay_listen()
            await self.accept()
        except BaseException:
            # A connection that fails before it is accepted gets no disconnect: its place is
            # given back here, or a relay outage would use up the address's places for good.
            open_connections.close(self.address)
            self.counted = False
            raise

    async def disconnect(self, code: int) -> None:
        for timer in self.ticker_timers.values():
            timer.cancel()
        self.ticker_timers.clear()
        if self.counted:
            open_connections.close(self.address)
        for group in {sub.group for sub in self.subscriptions.values()}:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- client messages ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json_read(text_data) if text_data is not None else None
        except ValueError:
            message = None
        try:
            if not isinstance(message, dict) or not isinstance(message.get("op"), str):
                raise StreamError("malformed_message", 'Send a JSON object with an "op".')
            op = message["op"]
            if op == "ping":
                await self._send({"op": "pong"})
            elif op == "auth":
                await self._auth(message)
            elif op in ("subscribe", "unsubscribe"):
                channels = message.get("channels")
                if (
                    not isinstance(channels, list)
                    or not channels
                    or len(channels) > MAX_CHANNELS
                    or not all(isinstance(c, str) and len(c) <= 100 for c in channels)
                ):
                    raise StreamError("malformed_message", f'"channels" must be a list of 1 to {MAX_CHANNELS} names.')
                if op == "subscribe":
                    self._spend(len(set(channels)))
                    await self._subscribe(list(dict.fromkeys(channels)))
                else:
                    await self._unsubscribe(channels)
            else:
                raise StreamError("malformed_message", f"Unknown op {op[:40]!r}.")
        except StreamError as error:
            await self._error(error)

    def _spend(self, snapshots: int) -> None:
        if not snapshot_budgets.spend(self.address, snapshots, now=time.monotonic()):
            raise StreamError("throttled", "Too many subscriptions; wait a few seconds.")

    async def _auth(self, message: dict[str, Any]) -> None:
        """A JWT access token (`token`), or an API key's signature (`key`, `timestamp`,
        `signature`: docs/streams.md)."""
        api_key_id: int | None = None
        expires: float | None = None
        mark: str | None = None
        if "key" in message:
            user_id, api_key_id = await self._api_key_auth(message)
        else:
            token = message.get("token")
            if not isinstance(token, str) or not token or len(token) > 4096:
                raise StreamError("malformed_message", '"token" must be a JWT access token.')
            found = await database_sync_to_async(_token_user)(token)
            if found is None:
                raise StreamError("invalid_token", "The token is invalid or expired.")
            user_id, expires, mark = found
        if self.user_id is not None and user_id != self.user_id:  # another user: drop the previous one's
            await self._unsubscribe([name for name in self.subscriptions if name in PRIVATE])
        self.user_id, self.user_expires, self.user_checked = user_id, expires, time.monotonic()
        self.session_key, self.credentials_mark, self.api_key_id = None, mark, api_key_id

    async def _api_key_auth(self, message: dict[str, Any]) -> tuple[int, int]:
        """The user and the key of a signed `auth`; the REST API's codes when refused
        (invalid_api_key, invalid_signature, signature_expired, replayed_request)."""
        fields = [message.get(name) for name in ("key", "timestamp", "signature")]
        if not all(isinstance(value, str) and 0 < len(value) <= 200 for value in fields):
            raise StreamError(
                "malformed_message", '"key", "timestamp" and "signature" must be an API key\'s signature of GET /ws/v1.'
            )
        key, timestamp, signature = (str(value) for value in fields)
        try:
            found: tuple[int, int] = await database_sync_to_async(_api_key_user)(key, timestamp, signature)
        except ApplicationError as error:
            raise StreamError(error.code, error.message) from None
        return found

    async def _user_valid(self) -> bool:
        """Whether the connection's user may still see private data: its token has not
        expired, the user still exists and is active, and a page's session still signs it in
        (read again at most every USER_RECHECK_SECONDS: a logout or a password change ends it).
        If not, the private channels are dropped, the connection is
        anonymous again and the client is told (`invalid_token`)."""
        if self.user_id is None:
            return False
        valid = self.user_expires is None or time.time() < self.user_expires
        if valid and time.monotonic() - self.user_checked >= USER_RECHECK_SECONDS:
            valid = await database_sync_to_async(user_still_signed_in)(
                user_id=self.user_id,
                session_key=self.session_key,
                credentials_mark=self.credentials_mark,
                api_key_id=self.api_key_id,
            )
            self.user_checked = time.monotonic()
        if not valid:
            dropped = [name for name in self.subscriptions if name in PRIVATE]
            await self._unsubscribe(dropped)
            self.user_id = self.user_expires = self.session_key = self.credentials_mark = self.api_key_id = None
            await self._error(
                StreamError(
                    "invalid_token",
                    "The token expired, the API key was deleted or the account is no longer active: private"
                    " channels are closed; authenticate again.",
                    channels=dropped or None,
                )
            )
        return valid

    async def _subscribe(self, names: list[str]) -> None:
        accepted: list[Subscription] = []
        for name in names:
            try:
                sub = await self._parse(name)
            except StreamError as error:
                error.channels = [name]
                await self._error(error)
                continue
            total = len(self.subscriptions) + (name not in self.subscriptions)
            if total > MAX_CHANNELS:
                refused = StreamError("too_many_channels", f"At most {MAX_CHANNELS} channels.", channels=[name])
                await self._error(refused)
                continue
            await self.channel_layer.group_add(sub.group, self.channel_name)  # before the snapshot
            self.subscriptions[name] = sub
            accepted.append(sub)
        if accepted:
            await self._send({"op": "subscribed", "channels": [sub.channel for sub in accepted]})
        for sub in accepted:
            await self._snapshot(sub)

    async def _unsubscribe(self, names: list[str]) -> None:
        for name in names:
            timer = self.ticker_timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            sub = self.subscriptions.pop(name, None)
            if sub is not None and all(other.group != sub.group for other in self.subscriptions.values()):
                await self.channel_layer.group_discard(sub.group, self.channel_name)

    async def _parse(self, name: str) -> Subscription:
        kind, separator, rest = name.partition(":")
        if kind in PRIVATE:
            # `orders` and `fills` exactly: `orders:` named a subscription the user's messages
            # never reach (they are delivered to `orders` / `fills`): subscribed, then silent.
            if separator:
                raise StreamError("unknown_channel", f"Unknown channel {name[:100]!r}.")
            if self.user_id is None or not await self._user_valid():
                raise StreamError("auth_required", f"Channel {name!r} needs authentication.")
            return Subscription(channel=name, kind=kind, group=user_group(self.user_id))
        symbol, separator, interval = rest.partition(":")
        # `candles:{symbol}:{interval}`, the others `{kind}:{symbol}` exactly: `trades:ETH-USDT:`
        # named a group nothing is published to (subscribed, then silent).
        candles = kind == "candles"
        if kind not in PUBLIC or not symbol or (candles and not interval) or (not candles and separator):
            raise StreamError("unknown_channel", f"Unknown channel {name[:100]!r}.")
        if interval and interval not in INTERVALS:
            raise StreamError("unknown_channel", f"Unknown interval {interval[:20]!r}: {', '.join(INTERVALS)}.")
        market_id = await database_sync_to_async(_market_id)(symbol)
        if market_id is None:
            raise StreamError("market_not_found", f"No market {symbol[:40]!r}.")
        return Subscription(
            channel=name, kind=kind, group=group_of(name), market_id=market_id, symbol=symbol, interval=interval
        )

    async def _snapshot(self, sub: Subscription) -> None:
        if sub.kind in ("book", "ticker"):
            # The ticker's book top from the engine too, with its event number: an update of a
            # batch before it, still queued, must not bring back an older best bid or ask.
            symbol = sub.symbol
            command = {"op": BOOK_SNAPSHOT, "market": symbol, **({"top": True} if sub.kind == "ticker" else {})}
            answer = await sync_to_async(engine_call)(command, market=symbol)
            if "error" in answer:
                await self._unsubscribe([sub.channel])
                error = answer["error"]
                await self._error(StreamError(error["code"], error["message"], channels=[sub.channel]))
                return
            sub.event, sub.epoch = int(answer["event"]), str(answer["epoch"])
            data = answer["book"]
            if sub.kind == "ticker":
                data, expires = await database_sync_to_async(_ticker_snapshot)(sub, data)
                sub.last = data
                self._refresh_at(sub, expires)
            await self._data(sub.channel, "snapshot", data)
            return
        data, sub.seen = await database_sync_to_async(_snapshot_data)(sub, self.user_id)
        data = _json(data)
        if sub.kind == "orders":
            sub.sent = {row["id"]: _order_digest(row) for row in data}
        elif sub.kind == "trades":
            sub.newest = max((int(row["id"]) for row in data), default=0)
        elif sub.kind == "fills":
            sub.newest_by_market = {}
            for row in data:
                market, trade_id = row["market"], int(row["trade_id"])
                sub.newest_by_market[market] = max(sub.newest_by_market.get(market, 0), trade_id)
        await self._data(sub.channel, "snapshot", data)

    # --- messages from the engine (channel layer) ---------------------------------------

    async def stream_book(self, message: dict[str, Any]) -> None:
        sub = self.subscriptions.get(message["channel"])
        if sub is None:
            return
        event = int(message["event"])
        if message["epoch"] != sub.epoch or event > sub.event + 1:  # a gap, or another engine
            await self._snapshot(sub)
        elif event == sub.event + 1:
            sub.event = event
            await self._data(sub.channel, "update", message["data"])

    def _someone_elses(self, message: dict[str, Any]) -> bool:
        """A private message queued for the user this connection was signed in as before
        (leaving a group keeps what it had queued). One without a user (an engine of the
        previous version) is taken as the present user's."""
        return message.get(USER_FIELD, self.user_id) != self.user_id

    async def stream_data(self, message: dict[str, Any]) -> None:
        sub = self.subscriptions.get(message["channel"])
        if sub is None or (sub.kind in PRIVATE and (self._someone_elses(message) or not await self._user_valid())):
            return
        data = message["data"]
        if sub.kind in ("ticker", "candles") and TRADE_FIELD in message:
            if not await self._newer(sub, message):
                return
            if sub.kind == "ticker":
                sub.last = data
                self._refresh_at(sub, message.get(EXPIRES_FIELD))
        elif sub.kind == "trades":
            # A market's trade ids grow in the order its engine commits them: one at or before
            # the snapshot's newest is in it, or older than all of it (a batch of more trades
            # than the snapshot holds, committed before the snapshot was read).
            if int(data["id"]) <= sub.newest:
                return
        elif sub.kind == "fills":
            # As for trades, per market: the markets of other engines number their trades
            # from the same sequence in their own commits' order, so a fill of a market
            # the snapshot does not show may have a lower id and still be new.
            if int(data["trade_id"]) <= sub.newest_by_market.get(data["market"], 0):
                return
        elif sub.kind == "orders":
            known = sub.seen.get(data["id"])
            if known and datetime.fromisoformat(data["updated_at"]) < datetime.fromisoformat(known):
                return
            # The order is read when its notice is handled: an earlier notice may read a later
            # batch's state, which the later notice would read and send again. The body last
            # sent of each order is remembered (a digest; its snapshot's too), and the same
            # body is not sent twice. Compared whole, not by updated_at: a clock stepped back
            # must not hide a change.
            digest = _order_digest(data)
            if sub.sent.pop(data["id"], None) == digest:
                sub.sent[data["id"]] = digest
                return
            sub.sent[data["id"]] = digest  # last: the least recently sent go first
            while len(sub.sent) > SENT_ORDERS_MAX:  # duplicates come close together
                del sub.sent[next(iter(sub.sent))]
        await self._data(sub.channel, "update", data)

    async def _newer(self, sub: Subscription, message: dict[str, Any]) -> bool:
        """Whether a candle or ticker update shows a state after the one last sent (and is
        now the last). The snapshot is read after the subscription's group was joined: the
        updates of batches committed before it was read may come after it, and sent they
        moved the client's ticker or candle back (an older last price, volume, best bid).
        A candle is newer with a later trade; a ticker with a later trade or book update and
        neither earlier (a batch's book update can come before the snapshot's last trade)."""
        trade = int(message[TRADE_FIELD])
        if sub.kind == "candles":
            if trade <= sub.trade:
                return False
            sub.trade = trade
            return True
        if message["epoch"] != sub.epoch:  # another engine: its numbers say nothing of ours
            await self._snapshot(sub)
            return False
        event = int(message["event"])
        if event < sub.event or trade < sub.trade or (event, trade) == (sub.event, sub.trade):
            return False
        sub.event, sub.trade = event, trade
        return True

    def _refresh_at(self, sub: Subscription, expires: float | None) -> None:
        """Refresh the ticker when its window will have lost a trade (not sooner than
        TICKER_REFRESH_MIN_SECONDS after the last one sent: a busy market's updates come
        sooner, each putting it off). A quiet market's ticker otherwise kept, until its next
        batch, trades GET .../ticker no longer counted."""
        timer = self.ticker_timers.pop(sub.channel, None)
        if timer is not None:
            timer.cancel()
        if expires is None:
            return
        delay = max(TICKER_REFRESH_MIN_SECONDS, float(expires) - time.time())
        loop = asyncio.get_running_loop()
        self.ticker_timers[sub.channel] = loop.call_later(delay, self._ticker_due, sub.channel)

    def _ticker_due(self, channel: str) -> None:
        """Through the connection's own channel: handled in turn with the engine's messages."""
        self.ticker_timers.pop(channel, None)
        self.ticker_tasks.add(task := asyncio.ensure_future(self._ask_refresh(channel)))
        task.add_done_callback(self.ticker_tasks.discard)

    async def _ask_refresh(self, channel: str) -> None:
        try:
            await self.channel_layer.send(self.channel_name, {"type": "stream.ticker_due", "channel": channel})
        except ChannelFull:  # the connection is behind: try again later
            if channel in self.subscriptions and channel not in self.ticker_timers:
                loop = asyncio.get_running_loop()
                self.ticker_timers[channel] = loop.call_later(TICKER_REFRESH_MIN_SECONDS, self._ticker_due, channel)

    async def stream_ticker_due(self, message: dict[str, Any]) -> None:
        """A ticker whose window has lost a trade since it was sent, read again at the same
        position (the same trades and book top; a later update, if any, is newer still)."""
        sub = self.subscriptions.get(message["channel"])
        if sub is None or sub.kind != "ticker" or sub.last is None:
            return
        data, expires = await database_sync_to_async(_ticker_refreshed)(sub, sub.last)
        if data != sub.last:
            sub.last = data
            await self._data(sub.channel, "update", data)
        self._refresh_at(sub, expires)

    async def stream_lost(self, message: dict[str, Any]) -> None:
        """Messages of these channels were lost on the way (orders.streams.layer: a full
        queue, a message that waited too long): they are numbered, so the client sees the
        gap, and a fresh snapshot follows. A loss of unknown channels (ANY_CHANNEL) is one
        lost message on each channel of the connection."""
        lost = dict(message["lost"])
        if lost.pop(ANY_CHANNEL, 0):
            for name in self.subscriptions:
                lost[name] = lost.get(name, 0) + 1
        for channel, count in lost.items():
            sub = self.subscriptions.get(channel)
            if sub is None or (sub.kind in PRIVATE and not await self._user_valid()):
                continue
            self.sequences[channel] += int(count)
            await self._snapshot(sub)

    async def stream_gap(self, message: dict[str, Any]) -> None:
        """Batches were lost between the engine and this process (orders.streams.relay):
        which of this connection's channels they concerned is unknown, so each gets a gap
        and a fresh snapshot."""
        await self.stream_lost({"lost": {ANY_CHANNEL: 1}})

    async def stream_orders(self, message: dict[str, Any]) -> None:
        """Orders of this user changed in one batch: their whole bodies, read now together
        (at least those states), sent in the batch's order."""
        sub = self.subscriptions.get("orders")
        if sub is None or self.user_id is None or self._someone_elses(message) or not await self._user_valid():
            return
        ids = [int(order_id) for order_id in message["ids"]]
        for data in await database_sync_to_async(_order_bodies)(self.user_id, ids):
            await self.stream_data({"channel": "orders", "data": data})

    async def stream_order(self, message: dict[str, Any]) -> None:
        """One order (what an engine of the previous version publishes)."""
        await self.stream_orders({"ids": [message["id"]]})

    # --- sending ------------------------------------------------------------------------

    async def _data(self, channel: str, kind: str, data: Any) -> None:
        self.sequences[channel] += 1
        await self._send({"channel": channel, "type": kind, "sequence": self.sequences[channel], "data": data})

    async def _error(self, error: StreamError) -> None:
        message: dict[str, Any] = {"op": "error", "code": error.code, "message": error.message}
        if error.channels:
            message["channels"] = error.channels
        await self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))
