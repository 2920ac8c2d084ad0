"""The delivery worker's heartbeat: written at the end of every cycle (the same row keeps
the pause and alert state of revenue.delivery.conditions)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from revenue.chain.client import chain_items_paid, chain_status, connect
from revenue.models import DeliveryHeartbeat

if TYPE_CHECKING:
    from revenue.chain.runtime import ChainContext
    from revenue.delivery.health import ChainView

logger = logging.getLogger("revenue.delivery")


def _chain_snapshot(context: ChainContext | None, view: ChainView | None) -> dict[str, Any]:
    if context is not None and view is not None:  # what the cycle read already, plus the reserve's count
        try:
            items_paid: int | None = chain_items_paid(context.w3, context.contract_address)
        except Exception:
            items_paid = None
        return {
            "connected": True,
            "chain_id": context.chain_id,
            "block_number": view.head,
            "signer_balance_wei": view.balance,
            "items_paid": items_paid,
            "contract_address": context.contract_address,
            "signer_address": context.signer_address,
        }
    if context is not None:
        status = chain_status(
            context.w3, contract_address=context.contract_address, signer_address=context.signer_address
        )
        return {**status, "contract_address": context.contract_address, "signer_address": context.signer_address}
    if settings.WEB3_PROVIDER_URI:  # no context (node down, nothing deployed): what can still be seen
        return chain_status(connect(provider_uri=settings.WEB3_PROVIDER_URI, timeout=2))
    return {"connected": False}


def delivery_heartbeat_write(
    *,
    context: ChainContext | None,
    view: ChainView | None,
    task: str,
    result: dict[str, Any],
    error: str,
    now: datetime,
) -> None:
    """Never raises: a failing heartbeat must not hide the cycle's own outcome. With the node
    unreachable the head and final block are left as last seen (with ``chain_seen_at``, when
    that was), and ``chain_lost_at`` says since when it does not answer."""
    try:
        chain = _chain_snapshot(context, view)
        connected = bool(chain.get("connected"))
        fields: dict[str, Any] = {
            "last_run_at": now,
            "last_task": task,
            "last_result": result,
            "connected": connected,
            "chain_id": chain.get("chain_id"),
            "items_paid": chain.get("items_paid"),
            "signer_address": chain.get("signer_address") or "",
            "signer_balance_wei": "" if chain.get("signer_balance_wei") is None else str(chain["signer_balance_wei"]),
            "contract_address": chain.get("contract_address") or "",
        }
        if connected:
            fields.update(block_number=chain.get("block_number"), chain_seen_at=now, chain_lost_at=None)
        if view is not None:
            fields["finalized_block"] = max(view.final_block, 0)
        if error:
            fields.update(last_error=error[:2000], last_error_at=now)
        else:
            fields["last_success_at"] = now
        DeliveryHeartbeat.objects.update_or_create(pk=1, defaults=fields)
        if not connected:  # the first cycle without the node since it last answered
            DeliveryHeartbeat.objects.filter(pk=1, chain_lost_at__isnull=True).update(chain_lost_at=now)
    except Exception:
        logger.warning("could not write the delivery heartbeat", exc_info=True)
