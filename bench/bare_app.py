"""The baseline for bench/collect_bench.py: a bare Starlette app that reads the body and answers 204."""
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def collect(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


app = Starlette(routes=[Route("/s/{site}/collect", collect, methods=["POST"])])
