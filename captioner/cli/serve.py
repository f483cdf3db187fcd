"""captioner-serve: caption images over HTTP, concurrent requests in batches (``captioner.serve``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig

from captioner.cli.config import model_settings, typed, user_errors
from captioner.cli.overrides import command
from captioner.decode_options import DecodeOptions
from captioner.errors import CaptionerError


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings (``conf/serve.yaml``), checked before the model loads."""

    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 8000
    batch_size: int = 16
    max_wait_ms: float = 10.0
    max_upload_mb: float = 20.0
    max_images: int = 16
    device: str = "auto"

    def __post_init__(self):
        checks = [
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.max_images >= 1, f"max_images must be >= 1, got {self.max_images}"),
            (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0,
             f"max_wait_ms must be a number >= 0, got {self.max_wait_ms}"),
            (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0,
             f"max_upload_mb must be a number > 0, got {self.max_upload_mb}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CaptionerError(message)


@command("serve")
def main(cfg: DictConfig) -> None:
    with user_errors():
        settings = typed(ServeConfig, {k: v for k, v in cfg.items() if k not in ("decode", "rerank", "head")}, "serve")
        decode = typed(DecodeOptions, cfg.decode, "decode")
        try:
            import uvicorn

            from captioner.serve import app
        except ImportError as error:
            raise CaptionerError(f"captioner-serve needs FastAPI and uvicorn ({error}): "
                                 "pip install 'captioner[serve]'") from None
        from captioner.api import Captioner
        from captioner.devices import resolve_device

        captioner = Captioner.load(settings.checkpoint, resolve_device(settings.device), **model_settings(cfg))
        server = app(captioner, settings.batch_size, settings.max_wait_ms, settings.max_upload_mb, settings.max_images,
                     decode)
        print(f"captioner-serve: {settings.checkpoint} on http://{settings.host}:{settings.port}/ "
              f"(batches of up to {settings.batch_size}, waiting {settings.max_wait_ms:g} ms)", flush=True)
        uvicorn.run(server, host=settings.host, port=settings.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
