"""A small MCP server for tests: files in one folder, over stdio or streamable HTTP.

Tools: ``list_files`` and ``read_file`` (read-only), ``delete_file`` (a write), and
``whoami`` (echoes the ``SG_TEST_WHO`` environment variable, to show ``env`` reaches a
stdio server). The folder is ``--root`` or the ``SG_TEST_ROOT`` environment variable.

::

    python tests/support/mcp_server.py --root /tmp/x                       # stdio
    python tests/support/mcp_server.py --root /tmp/x --transport streamable-http --port 9000

Over HTTP the server answers at ``http://127.0.0.1:<port>/mcp`` and, when
``--require-header NAME=VALUE`` is given, refuses requests without that header.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mcp.server.fastmcp import FastMCP


def build_server(root: Path, port: int) -> FastMCP:
    """A FastMCP server whose tools work on the files directly in ``root``."""
    server = FastMCP("files", host="127.0.0.1", port=port, log_level="WARNING")

    def _file(name: str) -> Path:
        path = (root / name).resolve()
        if path.parent != root.resolve():
            raise ValueError(f"{name!r} is not a file name in the folder")
        return path

    @server.tool()
    def list_files() -> list[str]:
        """List the names of the files in the folder."""
        return sorted(p.name for p in root.iterdir() if p.is_file())

    @server.tool()
    def read_file(name: str) -> str:
        """Read one file of the folder as text."""
        return _file(name).read_text()

    @server.tool()
    def delete_file(name: str) -> str:
        """Delete one file of the folder."""
        _file(name).unlink()
        return f"deleted {name}"

    @server.tool()
    def whoami() -> str:
        """Say who the server runs as (its SG_TEST_WHO environment variable)."""
        return os.environ.get("SG_TEST_WHO", "nobody")

    return server


def _require_header(server: FastMCP, header: str) -> object:
    """The streamable-HTTP app, refusing requests that lack ``NAME=VALUE``."""
    from starlette.responses import PlainTextResponse

    name, _, value = header.partition("=")
    app = server.streamable_http_app()

    async def guarded(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if headers.get(name.lower()) != value:
                await PlainTextResponse("forbidden", status_code=403)(scope, receive, send)  # type: ignore[arg-type]
                return
        await app(scope, receive, send)  # type: ignore[arg-type]

    return guarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=os.environ.get("SG_TEST_ROOT", "."))
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--require-header", default=None)
    args = parser.parse_args()
    server = build_server(Path(args.root), args.port)
    if args.transport == "stdio":
        server.run("stdio")
    elif args.require_header is None:
        server.run("streamable-http")
    else:
        import uvicorn

        app = _require_header(server, args.require_header)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
