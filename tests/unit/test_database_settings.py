"""The production-Postgres settings: pooler mode, schema name, and a URL's password kept out
of reprs and validation errors (so out of logs)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime import Settings

URL = "postgresql://sg:Pa55-w0rd-XYZ@db1:5432,db2:5432/app?target_session_attrs=read-write"


class TestDatabaseSettings:
    def test_password_never_in_repr(self) -> None:
        """A settings repr (a log line, a traceback's locals) omits the database URL."""
        settings = Settings(database_url=URL)
        assert settings.database_url == URL
        assert "Pa55-w0rd-XYZ" not in repr(settings) and "Pa55-w0rd-XYZ" not in str(settings)

    def test_password_never_in_a_validation_error(self) -> None:
        """A refused configuration names the problem without echoing the URL."""
        with pytest.raises(ValidationError) as caught:
            Settings(database_url=URL, pool_min_size=20, pool_max_size=10)
        assert "Pa55-w0rd-XYZ" not in str(caught.value)

    def test_pooler_modes(self) -> None:
        """The pooler is `none` by default and one of three modes."""
        assert Settings().database_pooler == "none"
        assert Settings(database_pooler="transaction").database_pooler == "transaction"
        with pytest.raises(ValidationError):
            Settings(database_pooler="statement")

    @pytest.mark.parametrize("schema", ["tenant_a", "_x", "sg2"])
    def test_schema_names(self, schema: str) -> None:
        """A schema is a plain lower-case identifier."""
        assert Settings(database_schema=schema).database_schema == schema

    @pytest.mark.parametrize("schema", ["Tenant", "a-b", "1x", 'x"; DROP', "a" * 64])
    def test_schema_names_refused(self, schema: str) -> None:
        """Anything that would need quoting (or could inject SQL) is refused at start-up."""
        with pytest.raises(ValidationError):
            Settings(database_schema=schema)
