"""`POST /v1/feedback`: a delayed label for an earlier answer (for accuracy panels, the gate and rollback)."""

from __future__ import annotations

import time
from typing import cast

from fastapi import APIRouter
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from core import keys
from core.answers import is_correct
from core.records import FeedbackRecord
from core.wire import ERROR_RESPONSES, FeedbackRequest, FeedbackResponse
from server.deps import ClientDep, GatewayDep
from server.errors import APIError

router = APIRouter()


@router.post(
    "/v1/feedback", response_model=FeedbackResponse, responses=ERROR_RESPONSES, summary="Label an answer"
)
async def feedback(body: FeedbackRequest, gateway: GatewayDep, client: ClientDep) -> FeedbackResponse:
    try:
        served = await gateway.records.served(body.id)
        if served is None:
            raise APIError(404, f"no answer with id {body.id!r} (unknown, or older than its TTL)", param="id")
        correct = is_correct(served.answer, body.label, served.options, gateway.extract)
        # It keeps what the gate and the rollback check need to ask any version the same question again.
        record = FeedbackRecord.of_answer(served, body.label, correct, time.time())
        await gateway.redis.xadd(
            keys.FEEDBACK,
            cast(dict[FieldT, EncodableT], record.fields()),
            maxlen=gateway.settings.stream_maxlen,
            approximate=True,
        )
    except RedisError:
        raise APIError(503, "Redis is unavailable; retry the feedback later", "redis_unavailable",
                       retry_after_s=gateway.settings.retry_after_s) from None  # fmt: skip
    return FeedbackResponse(id=body.id, correct=correct, adapter_version=served.adapter_version)
