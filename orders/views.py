"""Server-rendered trading pages: markets, the trade screen, order history, wallet.

Views are thin: forms check the input, services place and cancel, selectors read.
What is here is presentation only: figures arranged for the templates (the book as
a ladder with depth, a ticker from hourly candles) and which templates make each page's
live regions (core.pages renders them and answers the polls)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import trigger_client_event

from accounts.error_text import CSRF_FAILED, error_sentence
from accounts.errors import SessionExpired
from accounts.views import form_address, page_login_required, page_user, safe_next
from core.errors import ApplicationError, ServiceUnavailable
from core.pages import HistoryPaginator, LiveRegion, live_regions_render, live_regions_response
from core.text import path_id
from orders.errors import OrderNotFound
from orders.forms import MarketFilterForm, OrderFilterForm, OrderForm
from orders.models import LIVE_STATUSES, RESTING_STATUSES, Market, Order, OrderSide, OrderStatus, SelfTradePrevention
from orders.selectors.book import BookLevel, order_book_get
from orders.selectors.markets import market_get, market_list
from orders.selectors.orders import (
    UserFill,
    fill_list_for_user,
    order_average_price,
    order_get_for_user,
    order_list_for_user,
    order_open_list_for_user,
    order_own_liquidity_skipped,
    trade_list_for_market,
    trade_list_for_user,
    trade_user_fill,
)
from orders.selectors.tickers import ticker_list
from orders.selectors.wallets import wallet_balance_get, wallet_list_for_user
from orders.services.orders import order_cancel, order_place_from_ticket, orders_cancel_all

BOOK_DEPTH = 14
RECENT_TRADES = 24
OPEN_ORDERS = 50
LATEST_FILLS = 20
HISTORY_PAGE_SIZE = 25
HUNDRED = Decimal(100)

# --- presentation helpers ------------------------------------------------------------


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True)
class Formats:
    """floatformat arguments for one market: grouped for reading, raw for inputs."""

    price: str
    price_raw: str
    quantity: str
    quantity_raw: str

    @classmethod
    def of(cls, market: Market) -> Formats:
        price, quantity = _places(market.price_tick), _places(market.quantity_step)
        return cls(price=f"{price}g", price_raw=str(price), quantity=f"{quantity}g", quantity_raw=str(quantity))


@dataclass(frozen=True, slots=True)
class Ticker:
    """A market's 24-hour ticker as the API answers it (orders.selectors.tickers), with the
    page's formats."""

    market: Market
    fmt: Formats
    last_price: Decimal | None
    open_24h: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal
    change_pct: Decimal | None

    @property
    def price(self) -> Decimal:
        return self.last_price if self.last_price is not None else self.market.reference_price

    @property
    def trend(self) -> str:
        change = self.change_pct
        return "flat" if not change else ("up" if change > 0 else "down")


def _tickers(markets: list[Market]) -> list[Ticker]:
    """The markets' tickers, read as GET /api/tickers reads them (the page showed the last 24
    hourly candles with trades instead: days old on a quiet market, other figures than the
    API's for the same window)."""
    return [
        Ticker(
            market=market,
            fmt=Formats.of(market),
            last_price=found.last_price,
            open_24h=found.open_24h,
            high_24h=found.high_24h,
            low_24h=found.low_24h,
            volume_24h=found.volume_24h,
            change_pct=found.change_24h_percent,
        )
        # No best bid or ask: the pages' tickers show none (the trade screen's book does).
        for market, found in zip(markets, ticker_list(markets=markets, book_top=False), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class LadderLevel:
    price: Decimal
    quantity: Decimal
    orders: int
    cumulative: Decimal
    depth: int  # cumulative size as a percentage of the deeper side, for the depth bar


def _ladder(levels: list[BookLevel], *, deepest: Decimal) -> list[LadderLevel]:
    rows, running = [], Decimal(0)
    for level in levels:
        running += level.quantity
        depth = int(running * HUNDRED / deepest) if deepest else 0
        rows.append(LadderLevel(level.price, level.quantity, level.orders, running, max(depth, 1)))
    return rows


@dataclass(frozen=True, slots=True)
class Book:
    bids: list[LadderLevel]
    asks: list[LadderLevel]  # best (lowest) first

    @property
    def spread(self) -> Decimal | None:
        return self.asks[0].price - self.bids[0].price if self.bids and self.asks else None

    @property
    def spread_pct(self) -> Decimal | None:
        spread = self.spread
        if spread is None or not self.asks[0].price:
            return None
        return (spread / self.asks[0].price * HUNDRED).quantize(Decimal("0.001"))


def _book(market: Market) -> Book:
    raw = order_book_get(market_id=market.pk, depth=BOOK_DEPTH)
    deepest = max(sum((level.quantity for level in raw[side]), Decimal(0)) for side in ("bids", "asks"))
    return Book(bids=_ladder(raw["bids"], deepest=deepest), asks=_ladder(raw["asks"], deepest=deepest))


def _market_or_404(symbol: str) -> Market:
    try:
        return market_get(symbol=symbol)
    except ApplicationError:
        raise Http404("No such market.") from None


# --- home ------------------------------------------------------------------------------

HOME_REGIONS = {"markets": "home/_markets.html"}


def _home_regions(request: HttpRequest) -> dict[str, LiveRegion]:
    return live_regions_render(
        request=request, templates=HOME_REGIONS, context={"tickers": _tickers(list(market_list()))}
    )


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home/home.html", {"regions": _home_regions(request), "ttx_asset": settings.TTX_ASSET})


@require_safe
def home_live(request: HttpRequest) -> HttpResponse:
    return live_regions_response(request=request, regions=_home_regions(request))


# --- trade -----------------------------------------------------------------------------

PUBLIC_TRADE_REGIONS = {"ticker": "trade/_ticker.html", "book": "trade/_book.html", "trades": "trade/_trades.html"}
TRADER_REGIONS = {
    "balances": "trade/_balances.html",
    "open_orders": "trade/_open_orders.html",
    "fills": "trade/_fills.html",
}


def _trade_regions(request: HttpRequest, market: Market) -> dict[str, LiveRegion]:
    context: dict[str, Any] = {
        "market": market,
        "fmt": Formats.of(market),
        "ticker": _tickers([market])[0],
        "book": _book(market),
        "trades": trade_list_for_market(market_id=market.pk, limit=RECENT_TRADES),
    }
    templates = dict(PUBLIC_TRADE_REGIONS)
    if request.user.is_authenticated:
        user_id = request.user.pk
        # One more than listed: whether the list leaves some out, without a count query.
        open_orders = list(order_open_list_for_user(user_id=user_id, market_id=market.pk)[: OPEN_ORDERS + 1])
        context |= {
            "base_balance": wallet_balance_get(user_id=user_id, asset_symbol=market.base.symbol),
            "quote_balance": wallet_balance_get(user_id=user_id, asset_symbol=market.quote.symbol),
            "open_orders": open_orders[:OPEN_ORDERS],
            "open_orders_cut": len(open_orders) > OPEN_ORDERS,
            "open_orders_listed": OPEN_ORDERS,
            "fills": fill_list_for_user(user_id=user_id, market=market.symbol, limit=LATEST_FILLS),
        }
        templates |= TRADER_REGIONS
    return live_regions_render(request=request, templates=templates, context=context)


def _trade_page(
    request: HttpRequest, market: Market, *, form: OrderForm | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "market": market,
        "fmt": Formats.of(market),
        "markets": market_list(),
        "form": form or OrderForm(market=market, account=request.user.pk),
        "regions": _trade_regions(request, market),
    }
    return render(request, "trade/trade.html", context, status=status)


@require_safe
def trade_default(request: HttpRequest) -> HttpResponse:
    markets = market_list()
    return redirect("trade", symbol=markets[0].symbol) if markets else redirect("home")


@require_safe
def trade(request: HttpRequest, symbol: str) -> HttpResponse:
    if symbol != symbol.upper():
        # A symbol typed in lower case (/trade/btc-usdt) finds its market's page, not a 404.
        return redirect("trade", symbol=_market_or_404(symbol.upper()).symbol)
    return _trade_page(request, _market_or_404(symbol))


@require_safe
def trade_live(request: HttpRequest, symbol: str) -> HttpResponse:
    return live_regions_response(request=request, regions=_trade_regions(request, _market_or_404(symbol)))


def _order_summary(order: Order, *, created: bool) -> str:
    kind = order.type.replace("_", " ")
    what = f"#{order.pk} {order.side} {kind} {order.quantity.normalize():f} {order.market.symbol}"
    reason = f" ({error_sentence(order.status_reason)})" if order.status_reason else ""
    state = order.status.replace("_", " ") + reason
    average, quote = order_average_price(order=order), order.market.quote.symbol
    if average is not None and order.status == OrderStatus.FILLED:
        # At which price and fee: a limit order fills at the book's better prices, a market order anywhere.
        state += f" at average {average.normalize():f} {quote}, fee {order.fee_paid.normalize():f} {quote}"
    elif average is not None:
        # Expired or resting after a part filled: say how much, or it reads as nothing bought.
        state += (
            f"; {order.filled_quantity.normalize():f} of {order.quantity.normalize():f} filled at average "
            f"{average.normalize():f} {quote}"
        )
    return f"Order {what}: {state}." if created else f"Order {what} already exists with this client order id: {state}."


def _house_fill_note(order: Order) -> str:
    """Why a market order filled from the house at its premium: the book had nothing else
    at an acceptable price, and (self-trade prevention) the trader's own orders were passed over."""
    house = [t for t in order.taker_trades.all() if t.is_house]
    if not house:
        return ""
    quote = order.market.quote.symbol
    premium = settings.AUTO_FILL_SLIPPAGE_PERCENT
    text = (
        f"Filled {sum((t.quantity for t in house), Decimal(0)).normalize():f} from the house at "
        f"{house[0].price.normalize():f} {quote} (reference price {premium}% "
        f"{'above' if order.side == OrderSide.BUY else 'below'}), because no one else's order was in range."
    )
    if order.stp == SelfTradePrevention.SKIP and order_own_liquidity_skipped(order=order, limit=house[-1].price):
        own = "asks" if order.side == OrderSide.BUY else "bids"
        text += (
            f" Your own {own} at a better price were skipped: self-trade prevention never matches you with yourself."
        )
    return text


def _session_expired_ticket(request: HttpRequest, market: Market) -> HttpResponse:
    """The order ticket again, with what was typed in, saying the session expired
    (instead of the login page or Django's CSRF page inside the ticket)."""
    fields = OrderForm(market=market).fields  # every value kept, the client order id too: nothing was placed
    form = OrderForm(initial={k: v for k, v in request.POST.items() if k in fields}, market=market)
    form.add_application_error(SessionExpired())
    login = f"{reverse(settings.LOGIN_URL)}?{urlencode({'next': reverse('trade', args=[market.symbol])}, safe='/')}"
    context = {"market": market, "form": form, "placed": None, "login_url": login}
    return render(request, "trade/_order_form.html", context, status=form.error_status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: an htmx post of the order ticket whose token no longer matches (the
    session expired, or a login elsewhere rotated it) gets the ticket back, values kept; any
    other htmx post (a cancel) a toast saying to reload (the page swaps nothing else from a
    403: the click looked ignored); everything else a 403 page of the site saying to reload
    (Django's own with DEBUG on)."""
    if getattr(request, "htmx", False):
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
        if match is not None and match.url_name == "order-place":
            try:
                return _session_expired_ticket(request, market_get(symbol=match.kwargs["symbol"]))
            except ApplicationError:
                pass
        context = {"text": error_sentence(CSRF_FAILED), "level": "error"}
        return render(request, "partials/toast.html", context, status=403)
    if settings.DEBUG:  # Django's page, which says why
        return django_csrf_failure(request, reason=reason)
    return render(request, "403_csrf.html", {"back": _csrf_failure_back(request)}, status=403)


# Forms that post to an address with no page of its own: where "Reload" goes instead.
POST_ONLY_PAGES = {"order-place": "trade", "order-cancel": "orders", "api-key-delete-page": "api-keys-page"}


def _csrf_failure_back(request: HttpRequest) -> str:
    """Where "Reload" goes after a refused post: the page the form was on (the trade screen
    for the order ticket, the admin page itself), else the markets."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return reverse("home")
    if match.url_name in POST_ONLY_PAGES:
        page = POST_ONLY_PAGES[match.url_name]
        return reverse(page, args=[match.kwargs["symbol"]]) if page == "trade" else reverse(page)
    return reverse("home") if match.url_name == "logout" else request.path


@require_http_methods(["GET", "HEAD", "POST"])
def order_place_page(request: HttpRequest, symbol: str) -> HttpResponse:
    """Without JavaScript: POST, then redirect to the trade screen with a message (or the
    screen again with the errors, at this address). With htmx: the order ticket is swapped in
    place; when the session expired meanwhile, the ticket says so and keeps what was typed in.
    This address opened as a page (GET: the address bar after a refused order) is the trade
    screen."""
    market = _market_or_404(symbol)
    if request.method != "POST":
        return redirect("trade", symbol=market.symbol)
    if not request.user.is_authenticated:
        if request.htmx:  # type: ignore[attr-defined]
            return _session_expired_ticket(request, market)
        return redirect_to_login(reverse("trade", args=[market.symbol]))
    user = page_user(request)
    form = OrderForm(request.POST, market=market)
    placed: Order | None = None
    summary = note = ""
    if form.is_valid():
        try:
            result = order_place_from_ticket(
                user=user,
                request=form.order_request(),
                ticket=form.cleaned_data["ticket"],
                opened_for=form.cleaned_data["account"],
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
        except OperationalError:  # the database is busy or away: retryable, as the API says
            form.add_application_error(ServiceUnavailable())
        else:
            placed = order_get_for_user(user_id=user.pk, order_id=result.order_id)
            summary = _order_summary(placed, created=result.created)
            note = _house_fill_note(placed)
    failed = placed is not None and placed.status in (OrderStatus.EXPIRED, OrderStatus.ERROR)
    if request.htmx:  # type: ignore[attr-defined]
        if placed is not None:
            form = OrderForm(initial=form.values_to_keep(), market=market)
        context = {
            "market": market,
            "form": form,
            "placed": placed,
            "summary": summary,
            "note": note,
            "failed": failed,
        }
        response = render(request, "trade/_order_form.html", context, status=form.error_status)
        return trigger_client_event(response, "live-refresh") if placed is not None else response
    if placed is None:
        return _trade_page(request, market, form=form, status=form.error_status)
    messages.add_message(request, messages.WARNING if failed else messages.SUCCESS, f"{summary} {note}".strip())
    return redirect("trade", symbol=market.symbol)


def _cancel_answer(request: HttpRequest, *, cancel: Callable[[], str], back: str) -> HttpResponse:
    """A cancel page's answer: `cancel` runs the service and says what it did; with htmx a
    toast and a refresh of the live regions, else a message and a redirect to `back`."""
    status, level = 200, messages.SUCCESS
    try:
        text = cancel()
    except (ApplicationError, OperationalError) as exc:
        error = exc if isinstance(exc, ApplicationError) else ServiceUnavailable()
        status, level, text = error.status, messages.ERROR, error_sentence(error.code, error.message)
    if request.htmx:  # type: ignore[attr-defined]
        context = {"text": text, "level": "error" if level == messages.ERROR else "success"}
        return trigger_client_event(render(request, "partials/toast.html", context, status=status), "live-refresh")
    messages.add_message(request, level, text)
    return redirect(back)


@form_address("orders")
@page_login_required
def order_cancel_page(request: HttpRequest, order_id: str) -> HttpResponse:
    user = page_user(request)

    def cancel() -> str:
        order_pk = path_id(order_id, not_found=OrderNotFound)
        order_cancel(user=user, order_id=order_pk)
        return f"Order #{order_pk} cancelled."

    return _cancel_answer(request, cancel=cancel, back=safe_next(request, reverse("orders")))


@form_address("trade", keep=("symbol",))
@page_login_required
def orders_cancel_all_page(request: HttpRequest, symbol: str) -> HttpResponse:
    """The trade page's "Cancel all": every live order of the trader in this market,
    pending stops included (the service POST /api/orders/cancel-all uses)."""
    user = page_user(request)
    market = _market_or_404(symbol)
    if not request.htmx and request.POST.get("confirmed") != "yes":  # type: ignore[attr-defined]
        # htmx asked first (hx-confirm); without JavaScript the button cancelled at once.
        live = order_list_for_user(user_id=user.pk, market=market.symbol, statuses=[s.value for s in LIVE_STATUSES])
        context = {"market": market, "live_count": live.count()}
        return render(request, "trade/cancel_all_confirm.html", context)

    def cancel() -> str:
        count = len(orders_cancel_all(user=user, symbol=market.symbol))
        if not count:
            return f"No open order in {market.symbol} to cancel."
        return f"{count} open order{'' if count == 1 else 's'} in {market.symbol} cancelled."

    return _cancel_answer(request, cancel=cancel, back=reverse("trade", kwargs={"symbol": market.symbol}))


# --- orders and wallet -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRow:
    order: Order
    fmt: Formats
    average_price: Decimal | None
    fee_asset: str  # fees are paid in the market's quote asset (docs/matching.md)

    @property
    def is_live(self) -> bool:
        return self.order.status in LIVE_STATUSES


@require_safe
@page_login_required
def order_history(request: HttpRequest) -> HttpResponse:
    user = page_user(request)
    markets = market_list(include_inactive=True)  # orders stay in a market that was deactivated
    filter_form = OrderFilterForm(request.GET or None, markets=markets)
    filters = filter_form.filters()
    # "Open" means still in the book: partially filled orders are open too.
    status = filters["status"]
    statuses = RESTING_STATUSES if status == OrderStatus.OPEN else ()
    orders = order_list_for_user(
        user_id=user.pk, status=None if statuses else status, statuses=statuses, market=filters["market"]
    ).order_by("-id")
    page = HistoryPaginator(orders, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    quote_of = {m.pk: m.quote.symbol for m in markets}
    rows = [
        OrderRow(
            o, Formats.of(o.market), order_average_price(order=o), quote_of.get(o.market_id) or o.market.quote.symbol
        )
        for o in page.object_list
    ]
    return render(request, "orders/history.html", _history_context(filter_form, page, rows))


def _history_context(filter_form: MarketFilterForm, page: Page, rows: list[Any]) -> dict[str, Any]:
    """A history page's context: its filters, and their query kept on the pager's links."""
    filters = filter_form.filters()
    return {
        "filter_form": filter_form,
        "page": page,
        "rows": rows,
        "filter_query": urlencode({k: v for k, v in filters.items() if v}),
        "filtered": any(filters.values()),
    }


@dataclass(frozen=True, slots=True)
class FillRow:
    fill: UserFill
    fmt: Formats

    @property
    def total(self) -> Decimal:
        """What the fill was worth in the quote asset, before its fee."""
        return self.fill.price * self.fill.quantity


@require_safe
@page_login_required
def fill_history(request: HttpRequest) -> HttpResponse:
    """Every fill of the trader's, all markets, newest first (the trade page shows a market's
    latest 20 only): GET /api/trades as a page."""
    user_id = page_user(request).pk
    filter_form = MarketFilterForm(request.GET or None, markets=market_list(include_inactive=True))
    filters = filter_form.filters()
    trades = trade_list_for_user(user_id=user_id, market=filters["market"]).select_related("market__quote")
    page = HistoryPaginator(trades.order_by("-id"), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [FillRow(trade_user_fill(trade=trade, user_id=user_id), Formats.of(trade.market)) for trade in page]
    return render(request, "orders/fills.html", _history_context(filter_form, page, rows))


WALLET_REGIONS = {"wallets": "wallet/_wallets.html"}


def _wallet_regions(request: HttpRequest) -> dict[str, LiveRegion]:
    wallets = wallet_list_for_user(user_id=page_user(request).pk)
    return live_regions_render(
        request=request,
        templates=WALLET_REGIONS,
        context={"wallets": wallets, "holds_nothing": not any(w.balance for w in wallets)},
    )


@require_safe
@page_login_required
def wallet(request: HttpRequest) -> HttpResponse:
    return render(request, "wallet/wallet.html", {"regions": _wallet_regions(request)})


@require_safe
@page_login_required
def wallet_live(request: HttpRequest) -> HttpResponse:
    return live_regions_response(request=request, regions=_wallet_regions(request))
