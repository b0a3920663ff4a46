"""The desk's MCP server (FastMCP): the help files in ./files, over stdio or HTTP.

python files_server.py                           # stdio (as langgraph.json starts it)
python files_server.py --http 9100               # streamable HTTP on :9100/mcp
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcp.server.fastmcp import FastMCP

ROOT = Path(__file__).resolve().parent / "files"


def build(port: int = 9100) -> FastMCP:
    server = FastMCP("files", host="127.0.0.1", port=port, log_level="WARNING")

    def path_of(name: str) -> Path:
        path = (ROOT / name).resolve()
        if path.parent != ROOT:
            raise ValueError(f"{name!r} is not a help file")
        return path

    @server.tool()
    def list_files() -> list[str]:
        """List the help files."""
        return sorted(p.name for p in ROOT.iterdir() if p.is_file())

    @server.tool()
    def read_file(name: str) -> str:
        """Read one help file."""
        return path_of(name).read_text()

    @server.tool()
    def delete_file(name: str) -> str:
        """Delete one help file."""
        path_of(name).unlink()
        return f"deleted {name}"

    return server


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on this port")
    args = parser.parse_args()
    if args.http is None:
        build().run("stdio")
    else:
        build(args.http).run("streamable-http")
