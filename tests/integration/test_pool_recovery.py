"""The pool's defences against connections the network drops."""

from __future__ import annotations

from runtime import Runtime
from runtime.db import connect
from runtime.db.pool import TCP_KEEPALIVES


class TestKeepalives:
    async def test_pooled_connections_use_tcp_keepalives(self, runtime: Runtime) -> None:
        """Every pooled connection asks libpq for TCP keepalives."""
        async with connect(runtime.pool) as conn:
            params = conn.info.get_parameters()
        for name, value in TCP_KEEPALIVES.items():
            assert params.get(name) == str(value), (name, params)
