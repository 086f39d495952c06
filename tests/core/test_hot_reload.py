"""A version published while the server runs is loaded, warmed and swapped in without a restart;
a broken version is skipped and the current one keeps serving."""

from __future__ import annotations

import shutil
import time

from solutions_core.demo import ServerProcess, http_json
from solutions_core.model_registry import ModelRegistry
from tiny_app import APP, server_environment

NAME = APP.name


def served_version(server) -> str:
    """The version un-versioned requests get (the AVAILABLE one; status also lists ended ones)."""
    status, body = http_json("GET", f"{server.url}/v1/models/{NAME}")
    assert status == 200, body
    available = [v["version"] for v in body["model_version_status"] if v["state"] == "AVAILABLE"]
    return max(available, key=int)


def wait_for_version(server, wanted: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_version(server) == wanted:
            return True
        time.sleep(0.5)
    return False


def test_new_versions_are_picked_up_and_broken_ones_skipped(tiny_run, tiny_home, tmp_path):
    shutil.copytree(tiny_home / "models", tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    champion = registry.champion(NAME)
    instance = tiny_run.golden_instances[0]
    with ServerProcess(tmp_path, extra_env=server_environment()) as server:
        server.wait_ready([NAME])
        assert served_version(server) == str(champion.version)

        # A broken "version" (no variables) appears first: the server must keep serving.
        broken = tmp_path / "models" / NAME / str(champion.version + 1)
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a model")
        time.sleep(3)
        assert served_version(server) == str(champion.version)
        # ... and reports the broken one as TF Serving does: ended, with its error.
        _, body = http_json("GET", f"{server.url}/v1/models/{NAME}")
        states = {v["version"]: v for v in body["model_version_status"]}
        assert states[str(champion.version + 1)]["state"] == "END"
        assert states[str(champion.version + 1)]["status"]["error_message"]
        status, _ = http_json("POST", f"{server.url}/v1/models/{NAME}:predict", {"instances": [instance]})
        assert status == 200

        published = registry.publish(NAME, champion.path, champion.metadata())
        assert published.version == champion.version + 2
        assert wait_for_version(server, str(published.version))
        status, body = http_json("POST", f"{server.url}/v1/models/{NAME}/versions/{published.version}:predict", {"instances": [instance]})
        assert status == 200, body
