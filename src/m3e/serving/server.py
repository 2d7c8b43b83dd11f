"""Run the app under uvicorn with graceful shutdown: on SIGTERM/SIGINT the server stops accepting, reports 503 on
/health, lets in-flight requests finish, drains the batch queues, then exits."""

from __future__ import annotations

import json
import sys

from m3e.serving.app import ServeConfig, create_app


def serve(config: ServeConfig, log_level: str = "info") -> None:
    import uvicorn

    app = create_app(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.service.draining = True
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            # one line that says whether any request was left without an answer (uvicorn re-raises the signal
            # after this, so it is printed here)
            print(f"m3e serve: stopped; requests {json.dumps(app.state.service.request_counts)}",
                  file=sys.stderr, flush=True)

    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                               timeout_graceful_shutdown=30, access_log=False)
    Server(uv_config).run()
