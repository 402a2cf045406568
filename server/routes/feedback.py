"""`POST /v1/feedback`: a delayed label for an earlier answer (for accuracy panels, the gate and rollback)."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter
from redis.exceptions import RedisError

from adapter.answers import matches_label
from server import keys
from server.deps import ClientDep, GatewayDep
from server.errors import APIError
from server.protocol import ERROR_RESPONSES, FeedbackRequest, FeedbackResponse

router = APIRouter()


@router.post(
    "/v1/feedback", response_model=FeedbackResponse, responses=ERROR_RESPONSES, summary="Label an answer"
)
async def feedback(body: FeedbackRequest, gateway: GatewayDep, client: ClientDep) -> FeedbackResponse:
    try:
        served = await gateway.records.served(body.id)
        if served is None:
            raise APIError(404, f"no answer with id {body.id!r} (unknown, or older than its TTL)", param="id")
        correct = matches_label(served.answer, body.label)
        await gateway.redis.xadd(
            keys.FEEDBACK,
            {
                "id": body.id,
                "label": body.label,
                "answer": served.answer,
                "adapter_version": str(served.adapter_version),
                "correct": "1" if correct else "0",
                "ts": f"{time.time():.3f}",
                # What the gate and the rollback check need to ask any version the same question again.
                "image": served.image,
                "question": served.question,
                "options": json.dumps(served.options) if served.options else "",
            },
            maxlen=gateway.settings.stream_maxlen,
            approximate=True,
        )
    except RedisError:
        raise APIError(503, "Redis is unavailable; retry the feedback later", "redis_unavailable",
                       retry_after_s=gateway.settings.retry_after_s) from None  # fmt: skip
    return FeedbackResponse(id=body.id, correct=correct, adapter_version=served.adapter_version)
