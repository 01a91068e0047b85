"""A tracking server that is down is one line naming it, whichever registry call found out."""

from __future__ import annotations

import socket

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from graft.errors import ConfigError, RegistryError
from graft.registry.aliases import champion_version, rollback
from graft.registry.client import tracking_server_call
from graft.registry.model_logging import register


@pytest.fixture
def refused_uri(monkeypatch):
    """A local port nothing listens on, and no HTTP retries: the refusal comes at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{port}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_a_champion_lookup_against_a_stopped_server_is_one_line_naming_it(refused_uri):
    with pytest.raises(RegistryError) as raised:
        with tracking_server_call("reading the champion of m"):
            champion_version("m")
    message = str(raised.value)
    assert "\n" not in message
    assert refused_uri in message and "not reachable while reading the champion of m" in message


def test_register_against_a_stopped_server_is_one_line_naming_it(refused_uri):
    with pytest.raises(RegistryError, match=f"{refused_uri} is not reachable while registering m"):
        register("runs:/0123/model", "m", {})


def test_rollback_against_a_stopped_server_is_one_line_naming_it(refused_uri):
    with pytest.raises(RegistryError, match=f"{refused_uri} is not reachable while rolling back m"):
        rollback("m")


def test_errors_other_than_an_unreachable_server_pass_unchanged():
    refused = MlflowException("RESOURCE_ALREADY_EXISTS: version exists")
    with pytest.raises(MlflowException) as raised:
        with tracking_server_call("registering m"):
            raise refused
    assert raised.value is refused

    # A graft error raised while a connection error is being handled keeps its own message.
    with pytest.raises(ConfigError, match="^bad key$"):
        with tracking_server_call("registering m"):
            try:
                raise ConnectionError("refused")
            except ConnectionError:
                raise ConfigError("bad key") from None
