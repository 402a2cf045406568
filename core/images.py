"""Image formats both processes agree on: which formats are accepted, and the MIME type of image bytes.

The gateway checks untrusted images in `server.images` and keeps each request's MIME type in its record
(`core.records.RequestRecord.mime`), so the worker never re-sniffs a stored image. Files read from disk (a
probe file, a dataset) are sniffed here.
"""

from __future__ import annotations

import io

from PIL import Image

# PIL's format name -> the MIME type sent to vLLM in the image's data URL.
FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


def sniff_mime(data: bytes) -> str:
    """The MIME type of image bytes, from their header (PNG when the format is not one of `FORMATS`).

    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    >>> sniff_mime(buffer.getvalue())
    'image/jpeg'
    """
    with Image.open(io.BytesIO(data)) as im:
        return FORMATS.get(im.format or "", "image/png")
