"""channels/email/translate.py: attachments kept in a folder are the customers' files: the
folders are 0700 and the files 0600 whatever the umask, and writing one twice is harmless."""

from __future__ import annotations

import os
import stat

from channels.email.translate import store_attachment


def test_attachments_in_a_folder_are_private(tmp_path) -> None:
    folder = tmp_path / "attachments"
    old = os.umask(0o022)
    try:
        path = store_attachment(str(folder), b"%PDF-1.4 invoice")
        assert store_attachment(str(folder), b"%PDF-1.4 invoice") == path
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(path) == 0o600
    assert mode(os.path.dirname(path)) == 0o700 and mode(folder) == 0o700
    with open(path, "rb") as f:
        assert f.read() == b"%PDF-1.4 invoice"
