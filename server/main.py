"""`ttrv serve`: run the gateway with uvicorn (one process; scale out with more gateway processes)."""

from __future__ import annotations

import uvicorn

from core.settings import read_settings
from server.app import create_app
from server.settings import GatewaySettings


def serve(host: str | None = None, port: int | None = None) -> None:
    settings = read_settings(GatewaySettings, "ttrv gateway")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
        access_log=False,  # the metrics middleware and structured logs cover requests
        # Longer than the idle timeout of clients' pools (httpx: 5 s) and of load balancers (often 60 s): a
        # server that closes an idle connection first races the client's next request on it (ReadError).
        timeout_keep_alive=75,
    )
