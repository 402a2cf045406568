"""`POST /v1/feedback`: a delayed label for an earlier answer (for accuracy panels, the gate and rollback)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from redis.exceptions import RedisError

from adapter.answers import extract_answer
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
        label = extract_answer(body.label, None) or body.label.strip()
        # Compare normalized forms, so "7." and "7", or "b" and "B" for a choice, agree.
        correct = served.answer != "" and served.answer.lower() == label.lower()
        await gateway.redis.xadd(
            keys.FEEDBACK,
            {
                "id": body.id,
                "label": body.label,
                "answer": served.answer,
                "adapter_version": str(served.adapter_version),
                "correct": "1" if correct else "0",
                "ts": f"{time.time():.3f}",
            },
            maxlen=gateway.settings.stream_maxlen,
            approximate=True,
        )
    except RedisError:
        raise APIError(503, "Redis is unavailable; retry the feedback later", "redis_unavailable",
                       retry_after_s=gateway.settings.retry_after_s) from None  # fmt: skip
    return FeedbackResponse(id=body.id, correct=correct, adapter_version=served.adapter_version)
