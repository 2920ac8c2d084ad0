"""Content negotiation for a view that writes its own non-JSON answer."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.utils.mediatypes import media_type_matches


class CsvAnswerNegotiation(DefaultContentNegotiation):
    """The view answers `text/csv` itself (an HttpResponse); DRF's renderers only write its
    errors, as the JSON envelope. So a client asking for CSV is accepted: DRF's default,
    knowing only the JSON renderer, refused `Accept: text/csv` with 406, the very type the
    schema declares for the answer."""

    media_type = "text/csv"

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            accepted = (part.split(";")[0].strip() for part in request.META.get("HTTP_ACCEPT", "").split(","))
            if any(media_type_matches(self.media_type, media_type) for media_type in accepted if media_type):
                return renderers[0], renderers[0].media_type
            raise
