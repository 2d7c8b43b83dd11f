"""Run the app under uvicorn with graceful shutdown: on SIGTERM/SIGINT the server stops accepting, reports 503 on
/health, lets in-flight requests finish, drains the batch queues, then exits."""

from __future__ import annotations

from m3e.serving.app import ServeConfig, create_app


def serve(config: ServeConfig, log_level: str = "info") -> None:
    import uvicorn

    app = create_app(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.m3e["draining"] = True
            super().handle_exit(sig, frame)

    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                               timeout_graceful_shutdown=30, access_log=False)
    Server(uv_config).run()
