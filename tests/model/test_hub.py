"""push_to_hub: what reaches the Hub client, the model card, and plain errors. Never touches the network."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from crossencoder import CrossEncoder, CrossEncoderError

PAIRS = [("how many people live in berlin", "Berlin has 3.5 million inhabitants."), ("a cat", "a dog")]


class FakeHfApi:
    """Records the calls push_to_hub makes and keeps a copy of the uploaded folder."""

    calls: list[tuple[str, dict]] = []
    uploaded = None

    def __init__(self, token=None):
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        shutil.copytree(kwargs["folder_path"], FakeHfApi.uploaded)
        return SimpleNamespace(commit_url=f"https://hub/{kwargs['repo_id']}/commit/1",
                               pr_url=f"https://hub/{kwargs['repo_id']}/discussions/1" if kwargs["create_pr"] else None)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    FakeHfApi.calls = []
    FakeHfApi.uploaded = tmp_path / "uploaded"
    monkeypatch.setattr("huggingface_hub.HfApi", FakeHfApi)
    return FakeHfApi


def test_push_uploads_a_loadable_folder_with_its_card(fake_hub, tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "model" / "README.md").write_text("---\nlibrary_name: crossencoder\n---\n# my reranker\n")
    model = CrossEncoder(tmp_path / "model")
    url = model.push_to_hub("me/reranker", token="hf_x", private=True, revision="v1")
    assert url == "https://hub/me/reranker/commit/1"
    kinds = [kind for kind, _ in fake_hub.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"]
    calls = dict(fake_hub.calls)
    assert calls["init"] == {"token": "hf_x"}
    assert calls["create_repo"] == {"repo_id": "me/reranker", "private": True, "exist_ok": True}
    assert calls["create_branch"]["branch"] == "v1"
    assert calls["upload_folder"]["revision"] == "v1" and calls["upload_folder"]["repo_id"] == "me/reranker"
    uploaded = fake_hub.uploaded
    assert (uploaded / "README.md").read_text().endswith("# my reranker\n")
    assert (uploaded / "model.safetensors").is_file() and not (uploaded / "pytorch_model.bin").exists()
    np.testing.assert_allclose(CrossEncoder(uploaded).predict(PAIRS), model.predict(PAIRS), atol=1e-6)


def test_pull_request_url_and_no_card_when_the_folder_has_none(fake_hub, tiny_model_dir):
    url = CrossEncoder(tiny_model_dir).push_to_hub("me/reranker", create_pr=True, commit_message="new head")
    assert url == "https://hub/me/reranker/discussions/1"
    calls = dict(fake_hub.calls)
    assert "create_branch" not in calls
    assert calls["upload_folder"]["commit_message"] == "new head" and calls["upload_folder"]["create_pr"] is True
    assert not (fake_hub.uploaded / "README.md").exists()


def test_offline_push_is_a_plain_error(tiny_model_dir):
    # The suite runs with HF_HUB_OFFLINE=1 (conftest): the real client refuses before any network access.
    with pytest.raises(CrossEncoderError, match=r"Could not push .*'me/reranker'.*HF_HUB_OFFLINE") as info:
        CrossEncoder(tiny_model_dir).push_to_hub("me/reranker", token="hf_x")
    assert "offline" in str(info.value).lower()
