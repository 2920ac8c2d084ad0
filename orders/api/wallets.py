from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.request import request_user
from orders.api.serializers import WalletOutput
from orders.selectors.wallets import wallet_list_for_user


class WalletListApi(APIView):
    @extend_schema(responses={200: WalletOutput(many=True)})
    def get(self, request: Request) -> Response:
        return Response(WalletOutput(wallet_list_for_user(user_id=request_user(request).pk), many=True).data)
