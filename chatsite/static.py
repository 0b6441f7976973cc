"""WhiteNoise, as async-capable middleware.

WhiteNoise's own middleware is sync-only, which would put a thread hop in front of every request
under ASGI, the /v1 hot path included. This one hops to a thread only to serve a static file.
"""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        markcoroutinefunction(self)  # so Django's handler awaits it instead of wrapping it as sync

    async def __call__(self, request):
        if request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self.static_response, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def static_response(self, request):
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        return self.serve(static_file, request) if static_file is not None else None
