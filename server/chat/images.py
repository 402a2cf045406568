"""The images of a chat request: data URLs checked like `/v1/answer`'s images; remote URLs only from hosts
the operator allowed (`TTRV_IMAGE_URL_HOSTS`), fetched by the gateway itself with a byte cap and no
redirects, so vLLM is never asked to fetch anything and the image can be recorded for adaptation."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import httpx

from server.errors import APIError
from server.images import CheckedImage, check_image, decode_base64_image
from server.settings import GatewaySettings


async def load_image(url: str, settings: GatewaySettings, param: str) -> tuple[CheckedImage, str]:
    """The checked image behind `url`, and the URL to send vLLM (a data: URL in every case)."""
    s = settings
    if url[:5].lower() == "data:":
        try:
            data = decode_base64_image(url, s.max_image_bytes)
            return check_image(data, s.max_image_bytes, s.max_image_pixels), url
        except APIError as err:
            raise APIError(err.status, err.message, err.type, param=param) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(400, "image_url must be a data:image/...;base64,... URL", param=param)
    if parts.hostname.lower() not in {h.lower() for h in s.image_url_hosts}:
        raise APIError(
            400,
            f"remote image URLs are off for host {parts.hostname!r}: send the image as a data: URL "
            "(base64), or ask the operator to allow the host in TTRV_IMAGE_URL_HOSTS",
            param=param,
        )
    data = await _fetch(url, s.max_image_bytes, s.image_fetch_timeout_s, param)
    checked = check_image(data, s.max_image_bytes, s.max_image_pixels)
    return checked, f"data:{checked.mime};base64,{base64.b64encode(data).decode('ascii')}"


async def _fetch(url: str, max_bytes: int, timeout_s: float, param: str) -> bytes:
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http,
            http.stream("GET", url) as reply,
        ):
            if reply.status_code != 200:
                raise APIError(400, f"fetching the image answered HTTP {reply.status_code}", param=param)
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise APIError(
                        413, f"the image at the URL is over the {max_bytes} byte limit", param=param
                    )
            return bytes(body)
    except httpx.HTTPError as err:
        raise APIError(
            400, f"the image URL could not be fetched ({type(err).__name__})", param=param
        ) from None
