"""Untrusted image input: size limits before decoding, format sniffing, decompression-bomb checks.

The gateway decodes an image only to validate it; vLLM receives the original bytes as a data URL. Limits
are checked in the cheapest order: encoded length, decoded byte count, header dimensions (read without
decoding pixels), then a full decode that catches truncated or corrupt files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from core.images import FORMATS
from server.errors import APIError

_DATA_URL = re.compile(r"^data:([^;,]*)(;base64)?,", re.IGNORECASE)


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    mime: str
    sha256: str
    width: int
    height: int


def decode_base64_image(value: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string or a `data:image/...;base64,` URL, with the byte limit checked first."""
    match = _DATA_URL.match(value)
    if match:
        mime, is_base64 = match.group(1).lower(), match.group(2)
        if mime and not mime.startswith("image/"):
            raise APIError(
                415, f"data URL type '{mime}' is not an image; send an image/* data URL", param="image"
            )
        if not is_base64:
            raise APIError(400, "data URL must be base64-encoded (data:image/png;base64,...)", param="image")
        value = value[match.end() :]
    elif value.startswith(("http://", "https://", "file:", "/")):
        raise APIError(400, "send the image itself (base64 or a data URL), not a URL or path", param="image")
    if len(value) * 3 // 4 > max_bytes + 3:
        raise APIError(413, f"image is over the {max_bytes} byte limit; send a smaller file", param="image")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(
            400, "image is not valid base64; encode the file's bytes with base64", param="image"
        ) from None


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Validate image bytes; raises APIError 400/413/415 with a message that says what to do."""
    if not data:
        raise APIError(400, "image is empty; send the bytes of a PNG or JPEG file", param="image")
    if len(data) > max_bytes:
        raise APIError(413, f"image has {len(data)} bytes, over the {max_bytes} byte limit", param="image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format or "", im.size
    except UnidentifiedImageError:
        raise APIError(
            400, "image could not be decoded; send a PNG, JPEG, WebP, GIF or BMP file", param="image"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise APIError(400, "image header is corrupt; send a valid image file", param="image") from None
    if fmt not in FORMATS:
        raise APIError(
            415, f"image format {fmt} is not supported; send PNG, JPEG, WebP, GIF or BMP", param="image"
        )
    if width * height > max_pixels:
        raise APIError(
            413,
            f"image is {width}x{height} pixels, over the {max_pixels} pixel limit; downscale it",
            param="image",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except Exception:  # PIL raises many types for truncated or corrupt pixel data
        raise APIError(
            400, "image data is truncated or corrupt; send the complete file", param="image"
        ) from None
    return CheckedImage(data, FORMATS[fmt], hashlib.sha256(data).hexdigest(), width, height)
