from django.urls import path

from orders.api import markets, staff, wallets

urlpatterns = [
    path("markets", markets.MarketListApi.as_view(), name="api-markets"),
    path("wallets", wallets.WalletListApi.as_view(), name="api-wallets"),
    path("admin/wallets/credit", staff.WalletCreditApi.as_view(), name="api-admin-credit"),
    path(
        "admin/markets/<str:symbol>/reference-price",
        staff.ReferencePriceSetApi.as_view(),
        name="api-admin-reference-price",
    ),
    path("admin/ledger", staff.LedgerApi.as_view(), name="api-admin-ledger"),
]
