from django.urls import path, register_converter

from core.api.converters import AnyTextConverter
from core.api.fast import FastRoute
from orders.api import client_ids, markets, orders, staff, wallets
from orders.api.hot import order_place_prepare

register_converter(AnyTextConverter, "anytext")

urlpatterns = [
    path("markets", markets.MarketListApi.as_view(), name="api-markets"),
    path("markets/<str:symbol>/book", markets.MarketBookApi.as_view(), name="api-market-book"),
    path("markets/<str:symbol>/trades", markets.MarketTradesApi.as_view(), name="api-market-trades"),
    path("markets/<str:symbol>/candles", markets.MarketCandlesApi.as_view(), name="api-market-candles"),
    path("markets/<str:symbol>/ticker", markets.MarketTickerApi.as_view(), name="api-market-ticker"),
    path("tickers", markets.TickerListApi.as_view(), name="api-tickers"),
    path("wallets", wallets.WalletListApi.as_view(), name="api-wallets"),
    path("orders", orders.OrdersApi.as_view(), name="api-orders"),
    path("orders/cancel-all", orders.OrdersCancelAllApi.as_view(), name="api-orders-cancel-all"),
    # Before orders/<order_id>/...: a client id "cancel" must not reach the cancel route.
    path(
        "orders/by-client-id/<anytext:client_order_id>",
        client_ids.OrderByClientIdApi.as_view(),
        name="api-order-by-client-id",
    ),
    path("orders/<str:order_id>", orders.OrderDetailApi.as_view(), name="api-order"),
    path("orders/<str:order_id>/cancel", orders.OrderCancelApi.as_view(), name="api-order-cancel"),
    path("trades", orders.UserTradesApi.as_view(), name="api-user-trades"),
    path("admin/wallets/credit", staff.WalletCreditApi.as_view(), name="api-admin-credit"),
    path(
        "admin/markets/<str:symbol>/reference-price",
        staff.ReferencePriceSetApi.as_view(),
        name="api-admin-reference-price",
    ),
    path("admin/ledger", staff.LedgerApi.as_view(), name="api-admin-ledger"),
]

# What core.api.fast serves under ASGI (config/asgi.py) when the request allows it.
FAST_ROUTES = (
    FastRoute(method="POST", url_name="api-orders", prepare=order_place_prepare, prefix="/api/orders"),
    FastRoute(method="POST", url_name="api-order-cancel", prepare=orders.order_cancel_prepare, prefix="/api/orders/"),
)
