"""Server-rendered pages (session auth). Included last from config.urls."""

from django.urls import URLPattern, URLResolver, path

from accounts import views as accounts
from flywheel import views as flywheel
from orders import views as orders

urlpatterns: list[URLPattern | URLResolver] = [
    path("", orders.home, name="home"),
    path("live/markets", orders.home_live, name="home-live"),
    path("login", accounts.login_page, name="login"),
    path("register", accounts.register_page, name="register"),
    path("logout", accounts.logout_page, name="logout"),
    path("trade/", orders.trade_default, name="trade-default"),
    path("trade/<str:symbol>", orders.trade, name="trade"),
    path("trade/<str:symbol>/live", orders.trade_live, name="trade-live"),
    path("trade/<str:symbol>/order", orders.order_place_page, name="order-place"),
    path("trade/<str:symbol>/cancel-all", orders.orders_cancel_all_page, name="orders-cancel-all-page"),
    path("orders/", orders.order_history, name="orders"),
    path("orders/<str:order_id>/cancel", orders.order_cancel_page, name="order-cancel"),
    path("fills/", orders.fill_history, name="fills"),
    path("wallet/", orders.wallet, name="wallet"),
    path("wallet/live", orders.wallet_live, name="wallet-live"),
    path("flywheel/", flywheel.flywheel_page, name="flywheel"),
    path("keys/", accounts.api_keys_page, name="api-keys-page"),
    path("keys/<str:key_id>/delete", accounts.api_key_delete_page, name="api-key-delete-page"),
    path("account/password", accounts.password_change_page, name="password-change"),
    path("account/password/reset", accounts.password_reset_page, name="password-reset"),
    path("account/password/reset/sent", accounts.password_reset_sent_page, name="password-reset-sent"),
    path(
        "account/password/reset/<str:uidb64>/<str:token>",
        accounts.password_reset_set_page,
        name="password-reset-set",
    ),
]
