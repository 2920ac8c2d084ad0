from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.parsers import ExactJsonParser
from core.api.permissions import staff_permission
from core.api.request import request_user
from core.errors import InvalidInput
from orders.api.markets import SYMBOL
from orders.api.orders import ENGINE_UNAVAILABLE
from orders.api.serializers import CreditInput, LedgerOutput, MarketOutput, ReferencePriceInput, WalletOutput
from orders.selectors.ledger import ledger_report
from orders.selectors.markets import market_get
from orders.selectors.wallets import wallet_balance_get
from orders.services import market_reference_price_set, wallet_credit
from orders.services.wallets import DEPOSIT_REFERENCE_REFUSAL, deposit_reference_valid

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Makes the credit once only (kept as the deposit's reference): letters, digits and . _ : -, "
    "at most 64 (a UUID).",
)


class WalletCreditApi(APIView):
    # A credit is a deposit: money the ledger did not hold. Any staff account used to mint it.
    permission_classes = [staff_permission("orders.add_deposit")]
    parser_classes = [ExactJsonParser]  # an amount sent as a JSON number is not rounded to a float

    @extend_schema(
        request=CreditInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: WalletOutput},
        description="A deposit into a trader's wallet. With an `Idempotency-Key`, sent again (a retry after a "
        "timeout) it answers the wallet and credits nothing more; the same key with another credit is 409 "
        "`deposit_reference_reused`.",
    )
    def post(self, request: Request) -> Response:
        data = CreditInput(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = wallet_credit(
            username=data.validated_data["username"],
            asset_symbol=data.validated_data["asset"],
            amount=data.validated_data["amount"],
            credited_by=request_user(request),
            reference=_idempotency_key(request),
            reason=data.validated_data.get("reason"),
        )
        balance = wallet_balance_get(user_id=wallet.user_id, asset_symbol=wallet.asset.symbol)
        return Response(WalletOutput(balance).data)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY.name)
    if key is not None and not deposit_reference_valid(reference=key):
        raise InvalidInput(fields={IDEMPOTENCY_KEY.name: [DEPOSIT_REFERENCE_REFUSAL]})
    return key


class ReferencePriceSetApi(APIView):
    permission_classes = [staff_permission("orders.change_market")]
    parser_classes = [ExactJsonParser]

    @extend_schema(
        request=ReferencePriceInput, parameters=[SYMBOL], responses={200: MarketOutput, **ENGINE_UNAVAILABLE}
    )
    def post(self, request: Request, symbol: str) -> Response:
        data = ReferencePriceInput(data=request.data)
        data.is_valid(raise_exception=True)
        market_reference_price_set(
            symbol=symbol,
            price=data.validated_data["price"],
            large_move=data.validated_data["large_move"],
            actor=request_user(request),
            reason=data.validated_data.get("reason"),
        )
        return Response(MarketOutput(market_get(symbol=symbol)).data)


class LedgerApi(APIView):
    # Every balance summed: what the admin's wallet list shows row by row, so its permission.
    # Any staff account read it, with no permission at all.
    permission_classes = [staff_permission("orders.view_wallet")]

    @extend_schema(responses={200: LedgerOutput})
    def get(self, request: Request) -> Response:
        return Response(LedgerOutput(ledger_report()).data)
