"""Publish a model folder to the Hugging Face Hub (the way back of :mod:`crossencoder.model.loading`)."""

from __future__ import annotations

import os

from crossencoder.errors import CrossEncoderError


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    exist_ok: bool = True,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create ``repo_id`` on the Hub if needed and upload ``folder`` to it as one commit.

    Args:
        folder: The model folder to upload.
        repo_id: ``"user/name"`` or ``"org/name"``.
        token: Hub token; None uses the one saved by ``hf auth login`` or ``HF_TOKEN``.
        private: Visibility of a repository that does not exist yet (None: the account's default).
        commit_message: Defaults to "Upload crossencoder model".
        exist_ok: Upload to an existing repository (default); False refuses one.
        revision: Branch to commit to (created from the default branch if missing).
        create_pr: Open a pull request instead of committing to the branch.

    Returns:
        The URL of the commit, or of the pull request with ``create_pr=True``.

    Raises:
        CrossEncoderError: the Hub refused or could not be reached (no token, no network, offline mode, a name
            taken with ``exist_ok=False``...); the message gives the cause.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=exist_ok or create_pr)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder),
                                 commit_message=commit_message or "Upload crossencoder model", revision=revision,
                                 create_pr=create_pr)
    # huggingface_hub raises its own errors, OSError subclasses and its HTTP client's errors (whose classes vary
    # between versions); all of them mean the same thing to the user: the upload did not happen.
    except Exception as exc:
        cause = str(exc).splitlines()[0] if str(exc) else "no message"
        raise CrossEncoderError(
            f"Could not push to the Hugging Face Hub repository {repo_id!r}: {type(exc).__name__}: {cause}. "
            "Check that you are logged in (`hf auth login`, or pass token=...), that the network is reachable and "
            "that HF_HUB_OFFLINE is not set."
        ) from exc
    return info.pr_url if create_pr and info.pr_url else info.commit_url
