"""Adapters that put third-party asyncio frameworks on an aiostack stack.

Each adapter is a module of its own that imports its framework, so a user
who has only one of them installed can still import the other:

- :mod:`aiostack.contrib.aiohttp`: :class:`~aiostack.contrib.aiohttp.StackSite`
  serves an ``aiohttp.web.AppRunner`` on a stack;
  :class:`~aiostack.contrib.aiohttp.StackConnector` makes an
  ``aiohttp.ClientSession`` connect through one.
- :mod:`aiostack.contrib.uvicorn`: :class:`~aiostack.contrib.uvicorn.StackServer`
  runs any ASGI application under uvicorn, listening on a stack.

Both go through :func:`aiostack.aio.create_server` and
:func:`aiostack.aio.create_connection`, so the frameworks' own protocol
classes run unchanged on aiostack's :class:`~aiostack.aio.TcpTransport`.
"""
