"""Commands sent to the sequencer and its answers: plain JSON-able dictionaries, so that
any transport carries them unchanged.

An answer is {"status": <HTTP status>, ...}: "order" (the contract's order body, built by
the engine), or "order_id" (the caller reads the order), or "order_ids", or "error"
({code, message, fields?}: an ApplicationError to raise)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings

from core.errors import ApplicationError, ServiceUnavailable

Command = dict[str, Any]
Answer = dict[str, Any]


def command_signature(payload: bytes) -> bytes:
    """HMAC-SHA256 of a command with a key derived from DJANGO_SECRET_KEY: an engine acts
    only on commands of the platform's own web workers, whoever else reaches its socket."""
    return hmac.digest(_command_key(settings.SECRET_KEY), payload, "sha256")


@functools.lru_cache(maxsize=4)
def _command_key(secret: str) -> bytes:
    # django.utils.crypto.salted_hmac's key for this salt (the same signature), derived once
    # per secret instead of at every command (web and engine both sign or check each one).
    return hashlib.sha256(f"{COMMAND_SALT}{secret}".encode()).digest()


COMMAND_SALT = "orders.sequencer.command"


def command_signed(payload: bytes, signature: bytes) -> bool:
    """Signed with the secret key or one of its fallbacks: during a rotation, web workers
    and engines restarted at different moments sign with either (docs/security.md,
    "Rotating the secret key")."""
    if hmac.compare_digest(command_signature(payload), signature):
        return True
    return any(
        hmac.compare_digest(hmac.digest(_command_key(str(secret)), payload, "sha256"), signature)
        for secret in settings.SECRET_KEY_FALLBACKS
    )


# A web worker waits `timeout` for an answer, then answers its client 503. The engine
# applies a command only until APPLY_SHARE of that wait has passed (`apply_by`): later, its
# client has had (or is about to have) that 503 and may well retry, so the command is
# answered 503 unapplied rather than carried out behind its back after a pause (an engine
# stopped, a stalled disk, a failover). The rest of the wait is left for the batch that
# applied it to commit and its answer to come back: a batch that would commit after a
# command's `answer_by` is rolled back instead and run again without the commands whose
# `apply_by` has passed (orders.sequencer.loop). One answered after `answer_by` all the
# same (its COMMIT itself took that long) is counted and logged by the engine
# (orders.sequencer.server). Wall-clock times: web and
# engine hosts must keep their clocks within a fraction of a second (NTP); /healthz shows
# each engine's offset from the web host's clock.
APPLY_SHARE = 0.75
APPLY_BY = "apply_by"
ANSWER_BY = "answer_by"


def deadline_past(command: Command, deadline: str, now: float) -> float:
    """How far `now` is past the command's `deadline` (APPLY_BY, ANSWER_BY); 0 for a
    command without one (sent in process, or by an older web worker)."""
    at = command.get(deadline)
    return now - at if isinstance(at, float | int) else 0.0


# An answer's mark that nothing of its command was applied (expired_answer).
UNAPPLIED = "unapplied"


def unapplied_answer(message: str) -> Answer:
    """A 503 for a command of which nothing was applied (the caller may send it again)."""
    return {**error_answer(ServiceUnavailable(message, retry_after=1)), UNAPPLIED: True}


def expired_answer() -> Answer:
    """A command not applied because its sender's wait was (nearly) over."""
    return unapplied_answer(
        "The matching engine did not reach this command while its sender waited; it was not applied. Please retry."
    )


def command_message(request_id: bytes, command: Command, *, timeout: float) -> list[bytes]:
    """The frames a web worker sends to an engine: the request id, the command stamped
    with its deadlines (covered by the signature, like the rest of it), its signature."""
    sent = time.time()
    payload = json.dumps({**command, APPLY_BY: sent + timeout * APPLY_SHARE, ANSWER_BY: sent + timeout}).encode()
    return [request_id, payload, command_signature(payload)]


PLACE = "place"
CANCEL = "cancel"
CANCEL_ALL = "cancel_all"
REFERENCE_PRICE = "reference_price"


CREDENTIALS_MARK = "credentials_mark"


def place_command(
    *,
    user_id: int,
    fields: dict[str, Any],
    correlation_id: str = "-",
    check_user: bool = False,
    credentials_mark: str | None = None,
) -> Command:
    """`correlation_id`: the web request's, carried into the engine's logs and outbox rows.
    `check_user`: the caller was authenticated from its credentials alone (the hot path:
    accounts.authentication.request_principal); the engine refuses it (401) unless the user
    exists and is active (one statement per batch for all such commands) and, with a
    `credentials_mark` (a JWT's), the user's password is still the one it was issued under."""
    command = {"op": PLACE, "user_id": user_id, "correlation_id": correlation_id, **fields}
    _user_check(command, check_user=check_user, credentials_mark=credentials_mark)
    return command


def cancel_command(
    *,
    user_id: int,
    order_id: int,
    market_id: int | None = None,
    check_user: bool = False,
    credentials_mark: str | None = None,
) -> Command:
    """`market_id` None: the engine finds the order itself (its live orders, the orders it
    closed lately, else one read per batch), so the web tier reads nothing. `check_user` and
    `credentials_mark`: as for place_command. The answer carries the contract's order body
    once cancelled."""
    command = {"op": CANCEL, "user_id": user_id, "order_id": order_id, "market_id": market_id}
    _user_check(command, check_user=check_user, credentials_mark=credentials_mark)
    return command


def _user_check(command: Command, *, check_user: bool, credentials_mark: str | None) -> None:
    if check_user:
        command["check_user"] = True
        if credentials_mark is not None:
            command[CREDENTIALS_MARK] = credentials_mark


def cancel_all_command(*, user_id: int, market_id: int | None) -> Command:
    return {"op": CANCEL_ALL, "user_id": user_id, "market_id": market_id}


def reference_price_command(*, market_id: int, price: object, large_move: bool = False) -> Command:
    """`large_move`: staff confirmed a move beyond REFERENCE_PRICE_MAX_MOVE_PERCENT."""
    return {"op": REFERENCE_PRICE, "market_id": market_id, "price": price, "large_move": large_move}


# An order's cancel answered by an engine whose markets do not hold the order: a 404 to the
# caller unless another shard's engine holds it (answers_merge).
ELSEWHERE = "elsewhere"


def answers_merge(command: Command, answers: list[Answer]) -> Answer:
    """One answer from every shard's answer to a command sent to all of them.

    cancel: the answer of the shard that holds the order (success, or a refusal other than
    404 and 503), else a 503 (the shard that may hold it did not answer), else 404.
    cancel-all: the cancelled ids of every shard, or the first refusal."""
    if command.get("op") == CANCEL:
        ranked = sorted(answers, key=lambda a: (a["status"] == 404, a["status"] == 503, "error" in a))
        answer = dict(ranked[0])
        answer.pop(ELSEWHERE, None)
        return answer
    merged: dict[str, Any] = {"status": 200, "order_ids": []}
    for answer in answers:
        if "error" in answer:
            return answer
        merged["order_ids"] += answer.get("order_ids", [])
    return merged


def error_answer(error: ApplicationError) -> Answer:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    if error.retry_after is not None:
        body["retry_after"] = error.retry_after
    return {"status": error.status, "error": body}


def _error_classes() -> dict[tuple[str, int], type[ApplicationError]]:
    found: dict[tuple[str, int], type[ApplicationError]] = {}
    pending: list[type[ApplicationError]] = [ApplicationError]
    while pending:
        klass = pending.pop()
        found.setdefault((klass.code, klass.status), klass)
        pending += klass.__subclasses__()
    return found


def answer_raise(answer: Answer) -> Answer:
    """The answer, or its error raised again as the ApplicationError class it was raised as
    in the engine (same code and status), so callers catch what they always caught."""
    error = answer.get("error")
    if error is None:
        return answer
    status = int(answer["status"])
    klass = _error_classes().get((error["code"], status), ApplicationError)
    raised = klass(error["message"], fields=error.get("fields"), retry_after=error.get("retry_after"))
    if klass is ApplicationError:
        raised.code, raised.status = error["code"], status
    if status == 503 and raised.retry_after is None:
        raised.retry_after = 1
    raise raised
