"""HTTP rerank server: TEI / Cohere / Jina compatible endpoints with micro-batching, limits, auth and metrics.

Start it with ``crossencoder serve --model M`` or build the ASGI app yourself with :func:`create_app`.
"""

from crossencoder.server.app import create_app
from crossencoder.server.batcher import MicroBatcher, QueueFullError, ShuttingDownError
from crossencoder.server.settings import ServerSettings, SettingsError

__all__ = ["MicroBatcher", "QueueFullError", "ServerSettings", "SettingsError", "ShuttingDownError", "create_app"]
